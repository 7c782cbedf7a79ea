// LSH attention (models/reformer/lsh_attention.h) against full attention and against a brute-force
// float64 reference that builds, per round, the full L x L mask of the keys each query attends to.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "autograd/gradcheck.h"
#include "core/ops.h"
#include "models/reformer/chunk_attention.h"
#include "models/reformer/lsh_attention.h"
#include "models/reformer/lsh_hashing.h"
#include "nn/attention.h"
#include "nn/nn_test_util.h"
#include "test_util.h"

namespace rw::reformer {
namespace {

using test::contains;
using test::error_message;
using test::host;

double max_abs_diff(const Tensor& a, const Tensor& b) {
  std::vector<double> x = host(a), y = host(b);
  REQUIRE(x.size() == y.size());
  double worst = 0;
  for (std::size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::abs(x[i] - y[i]));
  return worst;
}

// The brute-force reference, written from the definition on plain host arrays.
// union_of_keys: one softmax over every key a query attends in any round (what count_duplicates
// must equal), instead of the per-round softmaxes combined by their logsumexps.
std::vector<double> reference(const Tensor& qk, const Tensor& v, const Tensor& buckets,
                              const LSHAttentionOptions& o, const Tensor& mask,
                              bool union_of_keys = false) {
  const int64_t B = qk.size(0), H = qk.size(1), L = qk.size(2), d = qk.size(3);
  const int64_t n = o.n_hashes, c = o.chunk_len, nb = resolve_n_buckets(o, L);
  const int64_t Lp = (L + c - 1) / c * c, S = n * Lp, N = S / c;
  const double scale = o.scale.value_or(1 / std::sqrt(static_cast<double>(d)));
  const std::vector<double> X = host(qk), V = host(v);
  const std::vector<int64_t> bk = buckets.contiguous().to_vector<int64_t>();
  std::vector<bool> real(static_cast<std::size_t>(B * L), true);
  if (mask.defined()) {
    std::vector<uint8_t> m = mask.to(DType::u8).to_vector<uint8_t>();
    for (std::size_t i = 0; i < real.size(); ++i) real[i] = m[i] != 0;
  }
  std::vector<double> out(static_cast<std::size_t>(B * H * L * d), 0.0);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      auto x = [&](int64_t i, int64_t e) { return X[((b * H + h) * L + i) * d + e]; };
      auto is_real = [&](int64_t j) { return j < L && real[b * L + j]; };
      // The ticker: per round a stable sort by bucket, padding in an extra last bucket.
      std::vector<int64_t> tok(S), slot_bucket(S), slot_of(n * L);
      for (int64_t r = 0; r < n; ++r) {
        std::vector<int64_t> key(Lp), perm(Lp);
        for (int64_t j = 0; j < Lp; ++j) {
          key[j] = is_real(j) ? bk[((b * H + h) * n + r) * L + j] - r * nb : nb;
        }
        std::iota(perm.begin(), perm.end(), 0);
        std::stable_sort(perm.begin(), perm.end(),
                         [&](int64_t a, int64_t z) { return key[a] < key[z]; });
        for (int64_t i = 0; i < Lp; ++i) {
          tok[r * Lp + i] = perm[i];
          slot_bucket[r * Lp + i] = r * (nb + 1) + key[perm[i]];
          if (perm[i] < L) slot_of[r * L + perm[i]] = r * Lp + i;
        }
      }
      // mult[r][i][j]: how often query i meets key j in round r (an L x L mask per round).
      std::vector<double> mult(static_cast<std::size_t>(n * L * L), 0.0);
      for (int64_t r = 0; r < n; ++r) {
        for (int64_t i = 0; i < L; ++i) {
          const int64_t s = slot_of[r * L + i];
          for (int64_t off = -o.chunks_before; off <= o.chunks_after; ++off) {
            const int64_t ch = ((s / c + off) % N + N) % N;
            for (int64_t jj = 0; jj < c; ++jj) {
              const int64_t s2 = ch * c + jj, j = tok[s2];
              if (!is_real(j) || (o.causal && j > i)) continue;
              if (!o.attend_across_buckets && slot_bucket[s2] != slot_bucket[s]) continue;
              mult[(r * L + i) * L + j] += 1;
            }
          }
        }
      }
      for (int64_t i = 0; i < L; ++i) {
        std::vector<double> logit(L);
        for (int64_t j = 0; j < L; ++j) {
          double dot = 0, norm = 0;
          for (int64_t e = 0; e < d; ++e) {
            dot += x(i, e) * x(j, e);
            norm += x(j, e) * x(j, e);
          }
          logit[j] = scale * dot / std::sqrt(norm + 1e-24) + (i == j ? -1e5 : 0.0);
        }
        std::vector<double> total(L, 0.0);
        for (int64_t r = 0; r < n; ++r) {
          for (int64_t j = 0; j < L; ++j) total[j] += mult[(r * L + i) * L + j];
        }
        // Shift by the largest attended logit: exp(-1e5) underflows even in f64, and a query
        // whose only key is itself must still attend to it.
        double shift = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < L; ++j) {
          if (total[j] > 0) shift = std::max(shift, logit[j]);
        }
        for (int64_t j = 0; j < L; ++j) logit[j] -= total[j] > 0 ? shift : 0.0;
        // weight[j] = sum over rounds of exp(lse_r - LSE) p_r(j), p_r the round's softmax.
        std::vector<double> weight(L, 0.0);
        if (union_of_keys) {
          double z = 0;
          for (int64_t j = 0; j < L; ++j) z += total[j] > 0 ? std::exp(logit[j]) : 0.0;
          for (int64_t j = 0; j < L; ++j) {
            if (total[j] > 0) weight[j] = std::exp(logit[j]) / z;
          }
        } else {
          std::vector<double> lse(n, -std::numeric_limits<double>::infinity());
          double grand = 0;
          for (int64_t r = 0; r < n; ++r) {
            double z = 0;
            for (int64_t j = 0; j < L; ++j) {
              double m = mult[(r * L + i) * L + j];
              if (m > 0 && o.count_duplicates) m /= total[j];
              z += m * std::exp(logit[j]);
            }
            if (z > 0) lse[r] = std::log(z);
            grand += z;
          }
          for (int64_t r = 0; r < n && grand > 0; ++r) {
            for (int64_t j = 0; j < L; ++j) {
              double m = mult[(r * L + i) * L + j];
              if (m > 0 && o.count_duplicates) m /= total[j];
              // exp(lse_r - LSE) * m e^logit / e^lse_r = m e^logit / sum over rounds.
              weight[j] += m * std::exp(logit[j]) / grand;
            }
          }
        }
        for (int64_t j = 0; j < L; ++j) {
          for (int64_t e = 0; e < d; ++e) {
            out[((b * H + h) * L + i) * d + e] += weight[j] * V[((b * H + h) * L + j) * d + e];
          }
        }
      }
    }
  }
  return out;
}

void check_against(const Tensor& got, const std::vector<double>& expected, double tol) {
  std::vector<double> g = host(got);
  REQUIRE(g.size() == expected.size());
  double worst = 0;
  for (std::size_t i = 0; i < g.size(); ++i) worst = std::max(worst, std::abs(g[i] - expected[i]));
  INFO("max abs error ", worst);
  CHECK(worst <= tol);
}

struct Inputs {
  Tensor qk, v, buckets;
};

Inputs random_inputs(int64_t B, int64_t H, int64_t L, int64_t d, const LSHAttentionOptions& o,
                     uint64_t seed, DType dtype = DType::f64) {
  Generator gen(seed);
  Inputs in;
  in.qk = randn({B, H, L, d}, gen, {.dtype = dtype});
  in.v = randn({B, H, L, d}, gen, {.dtype = dtype});
  LSHRotations rot =
      random_lsh_rotations(H, d, o.n_hashes, resolve_n_buckets(o, L), gen, DType::f64);
  in.buckets = lsh_hash(in.qk, rot);
  return in;
}

// Batch element 1 has its last `pad` positions padded.
Tensor padding_mask(int64_t B, int64_t L, int64_t pad) {
  std::vector<uint8_t> m(static_cast<std::size_t>(B * L), 1);
  for (int64_t j = L - pad; j < L; ++j) m[static_cast<std::size_t>(L + j)] = 0;
  return from_vector<uint8_t>(m, Shape{B, L}).to(DType::boolean);
}

TEST_CASE("lsh attention with one bucket and one chunk equals shared-QK full attention") {
  for (bool causal : {false, true}) {
    for (bool padded : {false, true}) {
      for (int64_t L : {1, 7, 16}) {
        INFO("causal ", causal, " padded ", padded, " L ", L);
        Generator gen(11);
        Tensor qk = randn({2, 3, L, 8}, gen), v = randn({2, 3, L, 8}, gen);
        Tensor mask = padded && L > 2 ? padding_mask(2, L, 2) : Tensor();
        LSHAttentionOptions o{.chunk_len = 16, .n_buckets = 1, .causal = causal};
        LSHRotations rot = random_lsh_rotations(3, 8, 1, 1, gen);
        Tensor got = lsh_attention(qk, v, rot, o, mask);
        Tensor expected =
            nn::attention(qk, nn::unit_normalize(qk), v,
                          {.causal = causal, .mask_self = true, .key_padding_mask = mask});
        CHECK(got.shape() == Shape{2, 3, L, 8});
        CHECK(max_abs_diff(got, expected) <= 2e-6);
      }
    }
  }
}

TEST_CASE("lsh attention with several buckets and rounds equals the brute-force reference") {
  struct Config {
    int64_t n_hashes, n_buckets, before, after;
    bool causal, across, count, padded;
  };
  const std::vector<Config> configs = {
      {1, 4, 1, 0, false, true, false, false}, {3, 8, 1, 0, false, true, false, false},
      {3, 8, 1, 0, true, true, false, true},   {2, 4, 1, 1, false, false, false, true},
      {3, 8, 2, 0, true, false, true, false},  {4, 4, 1, 0, false, true, true, true},
      {2, 16, 0, 1, true, true, true, true},   {2, 6, 1, 0, false, false, true, false},
  };
  for (const Config& cf : configs) {
    INFO("n_hashes ", cf.n_hashes, " n_buckets ", cf.n_buckets, " before ", cf.before, " after ",
         cf.after, " causal ", cf.causal, " across ", cf.across, " count ", cf.count, " padded ",
         cf.padded);
    const LSHAttentionOptions o{.chunk_len = 4,
                                .n_buckets = cf.n_buckets,
                                .n_hashes = cf.n_hashes,
                                .chunks_before = cf.before,
                                .chunks_after = cf.after,
                                .causal = cf.causal,
                                .count_duplicates = cf.count,
                                .attend_across_buckets = cf.across};
    Inputs in = random_inputs(2, 2, 29, 5, o, 100 + cf.n_hashes * 7 + cf.n_buckets);
    Tensor mask = cf.padded ? padding_mask(2, 29, 5) : Tensor();
    Tensor got = lsh_attention_with_buckets(in.qk, in.v, in.buckets, o, mask);
    check_against(got, reference(in.qk, in.v, in.buckets, o, mask), 1e-10);
    if (cf.count) {
      // Duplicate counting makes the rounds one softmax over the union of attended keys.
      check_against(got, reference(in.qk, in.v, in.buckets, o, mask, true), 1e-10);
    }
  }
}

TEST_CASE("without duplicate counting, multi-round lsh attention differs from the union") {
  const LSHAttentionOptions o{.chunk_len = 4, .n_buckets = 4, .n_hashes = 4};
  Inputs in = random_inputs(1, 2, 24, 4, o, 5);
  Tensor got = lsh_attention_with_buckets(in.qk, in.v, in.buckets, o);
  std::vector<double> uni = reference(in.qk, in.v, in.buckets, o, {}, true);
  std::vector<double> g = host(got);
  double worst = 0;
  for (std::size_t i = 0; i < g.size(); ++i) worst = std::max(worst, std::abs(g[i] - uni[i]));
  CHECK(worst > 1e-3);  // the union test above is not vacuous
}

TEST_CASE("lsh attention in float32 matches the float64 reference") {
  const LSHAttentionOptions o{.chunk_len = 8, .n_buckets = 8, .n_hashes = 2, .causal = true};
  Inputs in = random_inputs(1, 2, 45, 16, o, 9, DType::f32);
  Tensor got = lsh_attention_with_buckets(in.qk, in.v, in.buckets, o);
  check_against(got, reference(in.qk.to(DType::f64), in.v.to(DType::f64), in.buckets, o, {}), 1e-5);
}

TEST_CASE("causal lsh attention: later tokens do not change earlier outputs") {
  const LSHAttentionOptions o{.chunk_len = 4, .n_buckets = 8, .n_hashes = 3, .causal = true};
  Inputs in = random_inputs(1, 2, 30, 8, o, 21, DType::f32);
  Tensor y = lsh_attention_with_buckets(in.qk, in.v, in.buckets, o);
  const int64_t t0 = 13;
  // New values (and buckets) for every position after t0.
  Generator gen(99);
  Tensor later = gt(arange(30), static_cast<double>(t0)).reshape({1, 1, 30, 1});
  Tensor qk2 = where(later, randn({1, 2, 30, 8}, gen), in.qk);
  Tensor v2 = where(later, randn({1, 2, 30, 8}, gen), in.v);
  Tensor y2 = lsh_attention_with_buckets(qk2, v2, in.buckets, o);
  CHECK(max_abs_diff(y.narrow(2, 0, t0 + 1), y2.narrow(2, 0, t0 + 1)) == 0);
  CHECK(max_abs_diff(y.narrow(2, t0 + 1, 30 - t0 - 1), y2.narrow(2, t0 + 1, 30 - t0 - 1)) > 0);
}

TEST_CASE("lsh attention: padding keys are never attended and length 1 attends to itself") {
  const LSHAttentionOptions o{.chunk_len = 4, .n_buckets = 4, .n_hashes = 2};
  Inputs in = random_inputs(2, 2, 11, 4, o, 3, DType::f32);
  Tensor mask = padding_mask(2, 11, 3);
  Tensor y = lsh_attention_with_buckets(in.qk, in.v, in.buckets, o, mask);
  // Anything at the padded positions of batch element 1 (values and buckets alike).
  Generator gen(4);
  Tensor pads = logical_not(mask).reshape({2, 1, 11, 1});
  Tensor qk2 = where(pads, randn({2, 2, 11, 4}, gen), in.qk);
  Tensor v2 = where(pads, randn({2, 2, 11, 4}, gen), in.v);
  Tensor b2 = where(logical_not(mask).reshape({2, 1, 1, 11}),
                    mul(arange(2, {.dtype = DType::i64}), 4).reshape({1, 1, 2, 1}), in.buckets);
  Tensor y2 = lsh_attention_with_buckets(qk2, v2, b2, o, mask);
  CHECK(max_abs_diff(y.narrow(2, 0, 8), y2.narrow(2, 0, 8)) == 0);
  CHECK(max_abs_diff(y.select(0, 0), y2.select(0, 0)) == 0);

  // A single token has only itself to attend to.
  Generator g1(8);
  Tensor qk1 = randn({1, 2, 1, 4}, g1), v1 = randn({1, 2, 1, 4}, g1);
  LSHRotations rot = random_lsh_rotations(2, 4, 2, 2, g1);
  Tensor y1 = lsh_attention(qk1, v1, rot, {.n_hashes = 2}, {});
  CHECK(max_abs_diff(y1, v1) <= 1e-6);
}

TEST_CASE("lsh attention gradients pass gradcheck in float64") {
  struct Config {
    bool causal, padded, count, across;
    double dropout;
  };
  for (const Config& cf :
       {Config{false, false, false, true, 0}, Config{true, false, false, true, 0},
        Config{true, true, true, true, 0}, Config{false, true, true, false, 0},
        Config{true, false, false, true, 0.3}}) {
    INFO("causal ", cf.causal, " padded ", cf.padded, " count ", cf.count, " across ", cf.across,
         " dropout ", cf.dropout);
    const LSHAttentionOptions o{.chunk_len = 4,
                                .n_buckets = 4,
                                .n_hashes = 2,
                                .causal = cf.causal,
                                .count_duplicates = cf.count,
                                .attend_across_buckets = cf.across,
                                .dropout_p = cf.dropout,
                                .dropout_state = {.seed = 3}};
    Inputs in = random_inputs(2, 1, 11, 3, o, 31);
    Tensor mask = cf.padded ? padding_mask(2, 11, 3) : Tensor();
    auto r = gradcheck(
        [&](const std::vector<Tensor>& x) {
          return lsh_attention_with_buckets(x[0], x[1], in.buckets, o, mask);
        },
        {in.qk.requires_grad_(), in.v.requires_grad_()});
    INFO(r.message);
    CHECK(r.ok);
  }
  // Through the hashing path too (fixed rotations; the buckets carry no gradient).
  Generator gen(2);
  Tensor qk = randn({1, 2, 9, 4}, gen, {.dtype = DType::f64}).requires_grad_();
  Tensor v = randn({1, 2, 9, 4}, gen, {.dtype = DType::f64}).requires_grad_();
  const LSHAttentionOptions o{.chunk_len = 4, .n_buckets = 4, .n_hashes = 2, .causal = true};
  LSHRotations rot = random_lsh_rotations(2, 4, 2, 4, gen, DType::f64);
  auto r = gradcheck(
      [&](const std::vector<Tensor>& x) { return lsh_attention(x[0], x[1], rot, o); }, {qk, v});
  INFO(r.message);
  CHECK(r.ok);
}

// Output and input gradients of lsh_attention_with_buckets for the cotangent `cot`.
struct ValueAndGrads {
  Tensor y, dqk, dv;
};
ValueAndGrads value_and_grads(const Inputs& in, const LSHAttentionOptions& o, const Tensor& mask,
                              const Tensor& cot) {
  Tensor qk = in.qk.detach().requires_grad_(), v = in.v.detach().requires_grad_();
  Tensor y = lsh_attention_with_buckets(qk, v, in.buckets, o, mask);
  backward(y, cot);
  return {y.detach(), qk.grad(), v.grad()};
}

TEST_CASE("the fused CPU kernel of lsh attention equals the op path, with gradients") {
  struct Config {
    int64_t n_hashes, n_buckets, before, after;
    bool causal, across, count, padded;
    double dropout;
  };
  const std::vector<Config> configs = {
      {1, 4, 1, 0, false, true, false, false, 0},  {3, 8, 1, 0, true, true, false, true, 0},
      {2, 4, 1, 1, false, false, false, true, 0},  {3, 8, 2, 0, true, false, true, false, 0},
      {4, 4, 1, 0, false, true, true, true, 0},    {2, 16, 0, 1, true, true, true, true, 0},
      {2, 8, 1, 0, true, true, false, false, 0.3},
  };
  for (DType dtype : {DType::f64, DType::f32}) {
    for (const Config& cf : configs) {
      INFO("dtype ", dtype, " n_hashes ", cf.n_hashes, " n_buckets ", cf.n_buckets, " before ",
           cf.before, " after ", cf.after, " causal ", cf.causal, " across ", cf.across, " count ",
           cf.count, " padded ", cf.padded, " dropout ", cf.dropout);
      const LSHAttentionOptions o{.chunk_len = 4,
                                  .n_buckets = cf.n_buckets,
                                  .n_hashes = cf.n_hashes,
                                  .chunks_before = cf.before,
                                  .chunks_after = cf.after,
                                  .causal = cf.causal,
                                  .count_duplicates = cf.count,
                                  .attend_across_buckets = cf.across,
                                  .dropout_p = cf.dropout,
                                  .dropout_state = {.seed = 5}};
      Inputs in = random_inputs(2, 3, 37, 8, o, 200 + cf.n_hashes * 3 + cf.n_buckets, dtype);
      Tensor mask = cf.padded ? padding_mask(2, 37, 6) : Tensor();
      Generator gen(17);
      Tensor cot = randn({2, 3, 37, 8}, gen, {.dtype = dtype});
      ValueAndGrads fused = value_and_grads(in, o, mask, cot);
      ValueAndGrads ops;
      {
        ChunkAttentionKernelScope scope(ChunkAttentionKernel::ops);
        ops = value_and_grads(in, o, mask, cot);
      }
      const double tol = dtype == DType::f64 ? 1e-10 : 2e-5;
      CHECK(max_abs_diff(fused.y, ops.y) <= tol);
      CHECK(max_abs_diff(fused.dqk, ops.dqk) <= tol);
      CHECK(max_abs_diff(fused.dv, ops.dv) <= tol);
      // The comparison is not vacuous: the gradients are not all zero.
      CHECK(max_abs_diff(fused.dqk, zeros_like(fused.dqk)) > 1e-3);
    }
  }
  CHECK(current_chunk_attention_kernel() == ChunkAttentionKernel::automatic);
}

TEST_CASE(
    "the fused CPU kernel: a causal first token (only itself to attend to) gets exact "
    "gradients in float32") {
  // Its every round has the self-penalised key alone, at about -1e5 where f32 rounds to 1/128;
  // the kernel keeps the shift and the log-denominator apart, so the weights stay exact.
  const LSHAttentionOptions o{.chunk_len = 4, .n_buckets = 4, .n_hashes = 4, .causal = true};
  Inputs in32 = random_inputs(1, 2, 16, 8, o, 77, DType::f32);
  Inputs in64{in32.qk.to(DType::f64), in32.v.to(DType::f64), in32.buckets};
  Generator gen(3);
  Tensor cot = randn({1, 2, 16, 8}, gen);
  ValueAndGrads g32 = value_and_grads(in32, o, {}, cot);
  ValueAndGrads g64 = value_and_grads(in64, o, {}, cot.to(DType::f64));
  CHECK(max_abs_diff(g32.dv, g64.dv) <= 1e-5);
  CHECK(max_abs_diff(g32.dqk, g64.dqk) <= 1e-4);
}

TEST_CASE("lsh attention works for any length") {
  for (int64_t L : {1, 2, 5, 63, 64, 65, 130}) {
    INFO("L ", L);
    const LSHAttentionOptions o{.chunk_len = 8, .n_hashes = 2, .causal = true};
    Inputs in = random_inputs(1, 2, L, 4, o, static_cast<uint64_t>(L));
    Tensor y = lsh_attention_with_buckets(in.qk, in.v, in.buckets, o);
    CHECK(y.shape() == Shape{1, 2, L, 4});
    check_against(y, reference(in.qk, in.v, in.buckets, o, {}), 1e-10);
  }
}

TEST_CASE("lsh attention rejects bad inputs with messages naming the op and the shapes") {
  Generator gen(1);
  Tensor qk = randn({1, 2, 8, 4}, gen), v = randn({1, 2, 8, 4}, gen);
  const LSHAttentionOptions o{.chunk_len = 4, .n_buckets = 4};
  Tensor buckets = zeros({1, 2, 1, 8}, {.dtype = DType::i64});
  auto msg = [&](auto f) { return error_message(f); };
  CHECK(contains(msg([&] {
                   lsh_attention_with_buckets(qk.reshape({2, 8, 4}), v, buckets, o);
                 }),
                 "lsh_attention: qk must be floating [batch, heads, length, d_head], got f32 "
                 "[2, 8, 4]"));
  CHECK(contains(msg([&] { lsh_attention_with_buckets(qk, v.narrow(2, 0, 7), buckets, o); }),
                 "lsh_attention: qk and v must have the same shape, got [1, 2, 8, 4] and "
                 "[1, 2, 7, 4]"));
  CHECK(contains(msg([&] { lsh_attention_with_buckets(qk, v, add(buckets, 4), o); }),
                 "lsh_attention: bucket ids of round r must lie in [r * 4, (r + 1) * 4)"));
  CHECK(contains(msg([&] { lsh_attention_with_buckets(qk, v, buckets.narrow(3, 0, 5), o); }),
                 "lsh_attention: buckets must be i64 [batch, heads, n_hashes, length] = "
                 "[1, 2, 1, 8], got i64 [1, 2, 1, 5]"));
  CHECK(contains(
      msg([&] { lsh_attention_with_buckets(qk, v, buckets, {.chunk_len = 4, .n_buckets = 3}); }),
      "lsh_attention: n_buckets must be 0 (default), 1 or even, got 3"));
  CHECK(contains(msg([&] { lsh_attention_with_buckets(qk, v, buckets, {.chunk_len = 0}); }),
                 "lsh_attention: chunk_len must be positive, got 0"));
  CHECK(contains(
      msg([&] {
        lsh_attention_with_buckets(qk, v, buckets, o, ones({1, 7}, {.dtype = DType::boolean}));
      }),
      "lsh_attention: key_padding_mask must be bool [batch, length] = [1, 8], got bool [1, 7]"));
  LSHRotations rot = random_lsh_rotations(2, 4, 2, 4, gen);
  CHECK(contains(msg([&] { lsh_attention(qk, v, rot, o); }),
                 "lsh_attention: the rotations are for 4 buckets and 2 hashes, but the options "
                 "ask for 4 buckets (length 8, chunk_len 4) and 1 hashes"));
}

TEST_CASE("lsh attention forward+backward peak memory grows linearly in L") {
  const LSHAttentionOptions o{.chunk_len = 32, .n_hashes = 2, .causal = true};
  auto peak_at = [&](int64_t L) {
    Inputs in = random_inputs(1, 2, L, 16, o, 7, DType::f32);
    Tensor qk = in.qk.requires_grad_(), v = in.v.requires_grad_();
    Generator gen(1);
    Tensor cot = randn({1, 2, L, 16}, gen);
    return test::peak_bytes([&] {
      Tensor y = lsh_attention_with_buckets(qk, v, in.buckets, o);
      backward(y, cot);
    });
  };
  const int64_t p1 = peak_at(2048), p2 = peak_at(4096);
  INFO("peak(2048) = ", p1, " peak(4096) = ", p2);
  CHECK(static_cast<double>(p2) / static_cast<double>(p1) <= 2.3);
  // Far below one L x L score matrix per head.
  CHECK(p2 < 2 * 4096LL * 4096 * 4);
}

}  // namespace
}  // namespace rw::reformer
