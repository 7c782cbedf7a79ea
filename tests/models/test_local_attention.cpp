// Local (chunked) attention against a brute-force float64 reference that builds the full L x L
// "same or neighbouring chunk" mask, against full attention when one chunk covers the sequence,
// gradients, errors and linear memory.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "core/ops.h"
#include "models/reformer/local_attention.h"
#include "nn/attention.h"
#include "nn/nn_test_util.h"
#include "test_util.h"

namespace {

using rw::Tensor;
using rw::reformer::local_attention;
using rw::reformer::LocalAttentionOptions;
using rw::test::host;
using rw::test::randn64;

// Full attention written out with loops: query i sees key j when j's chunk lies within
// [chunk(i) - before, chunk(i) + after] (chunk(x) = x / chunk_len), j <= i under causal masking
// and j is a real token; the shared-QK self logit gets -1e5 and keys are unit-normalised; a query
// with no allowed key outputs zeros. q, k [B, H, L, d], v [B, H, L, dv]; pad: per batch row, 1 =
// real token (empty = no padding).
std::vector<double> reference(const Tensor& q_t, const Tensor& k_t, const Tensor& v_t,
                              const LocalAttentionOptions& o,
                              const std::vector<std::vector<int>>& pad = {}) {
  const int64_t B = q_t.size(0), H = q_t.size(1), L = q_t.size(2), d = q_t.size(3),
                dv = v_t.size(3);
  const std::vector<double> q = host(q_t), k = host(k_t), v = host(v_t);
  const double scale = o.scale.value_or(1 / std::sqrt(static_cast<double>(d)));
  std::vector<double> out(static_cast<std::size_t>(B * H * L * dv), 0.0);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      const int64_t base = (b * H + h) * L;
      auto key = [&](int64_t j, int64_t e) {
        const double* row = &k[static_cast<std::size_t>((base + j) * d)];
        if (!o.shared_qk) return row[e];
        double norm = 0;
        for (int64_t f = 0; f < d; ++f) norm += row[f] * row[f];
        return row[e] / std::sqrt(norm);
      };
      for (int64_t i = 0; i < L; ++i) {
        std::vector<double> logit(static_cast<std::size_t>(L));
        std::vector<bool> allowed(static_cast<std::size_t>(L));
        double top = -1e300;
        for (int64_t j = 0; j < L; ++j) {
          const int64_t ci = i / o.chunk_len, cj = j / o.chunk_len;
          bool ok = cj >= ci - o.chunks_before && cj <= ci + o.chunks_after;
          ok = ok && (!o.causal || j <= i) && (pad.empty() || pad[b][j] == 1);
          allowed[j] = ok;
          if (!ok) continue;
          double s = 0;
          for (int64_t e = 0; e < d; ++e) s += q[(base + i) * d + e] * key(j, e);
          s *= scale;
          if (o.shared_qk && j == i) s -= 1e5;
          logit[j] = s;
          top = std::max(top, s);
        }
        double total = 0;
        for (int64_t j = 0; j < L; ++j) total += allowed[j] ? std::exp(logit[j] - top) : 0.0;
        for (int64_t j = 0; j < L; ++j) {
          if (!allowed[j]) continue;
          const double p = std::exp(logit[j] - top) / total;
          for (int64_t e = 0; e < dv; ++e) out[(base + i) * dv + e] += p * v[(base + j) * dv + e];
        }
      }
    }
  }
  return out;
}

Tensor pad_mask(const std::vector<std::vector<int>>& rows) {
  std::vector<int64_t> flat;
  for (const auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
  return rw::test::i64(flat,
                       {static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows[0].size())})
      .to(rw::DType::boolean);
}

struct Case {
  int64_t length, chunk_len, before, after;
};

}  // namespace

TEST_CASE("local_attention equals the banded brute-force reference") {
  const std::vector<Case> cases = {
      {10, 4, 1, 0},  // L not a multiple of the chunk
      {12, 4, 1, 0},  // a multiple
      {13, 3, 2, 1},  // several chunks before and after
      {9, 2, 0, 0},   // each chunk alone
      {1, 4, 1, 0},   // a single position
      {7, 16, 1, 0},  // one chunk covers everything
  };
  uint64_t seed = 1;
  for (const Case& c : cases) {
    for (bool causal : {false, true}) {
      for (bool shared : {false, true}) {
        CAPTURE(c.length);
        CAPTURE(c.chunk_len);
        CAPTURE(c.before);
        CAPTURE(c.after);
        CAPTURE(causal);
        CAPTURE(shared);
        const LocalAttentionOptions o{.chunk_len = c.chunk_len,
                                      .chunks_before = c.before,
                                      .chunks_after = c.after,
                                      .causal = causal,
                                      .shared_qk = shared};
        Tensor q = randn64({2, 2, c.length, 3}, seed++);
        Tensor k = shared ? q : randn64({2, 2, c.length, 3}, seed++);
        Tensor v = randn64({2, 2, c.length, 5}, seed++);
        Tensor y = local_attention(q, k, v, o);
        REQUIRE(y.shape() == rw::Shape{2, 2, c.length, 5});
        rw::test::check_close(y, reference(q, k, v, o), 1e-10);
      }
    }
  }
}

TEST_CASE("local_attention masks padded keys and zeroes queries with no key") {
  const int64_t L = 11;
  // Row 0: padding at the end. Row 1: padding at the start, so under causal masking the first
  // queries have no allowed key at all.
  const std::vector<std::vector<int>> pad = {{1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0},
                                             {0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1}};
  for (bool causal : {false, true}) {
    for (bool shared : {false, true}) {
      CAPTURE(causal);
      CAPTURE(shared);
      const LocalAttentionOptions o{.chunk_len = 3, .causal = causal, .shared_qk = shared};
      Tensor q = randn64({2, 3, L, 4}, 11), k = shared ? q : randn64({2, 3, L, 4}, 12);
      Tensor v = randn64({2, 3, L, 2}, 13);
      Tensor y = local_attention(q, k, v, o, pad_mask(pad));
      const std::vector<double> expected = reference(q, k, v, o, pad);
      rw::test::check_close(y, expected, 1e-10);
      if (causal) {
        // Batch 1, every head, position 0: nothing to attend to, so exactly zero.
        for (int64_t h = 0; h < 3; ++h)
          CHECK(host(y.select(0, 1).select(0, h).select(0, 0)) == std::vector<double>{0.0, 0.0});
      }
    }
  }
}

TEST_CASE("local_attention with one chunk covering the sequence equals full attention") {
  for (bool causal : {false, true}) {
    for (bool shared : {false, true}) {
      CAPTURE(causal);
      CAPTURE(shared);
      rw::Generator gen(21);
      Tensor q = rw::randn({2, 4, 37, 8}, gen), k = rw::randn({2, 4, 37, 8}, gen);
      Tensor v = rw::randn({2, 4, 37, 8}, gen);
      Tensor pad =
          rw::lt(rw::arange(37).reshape({1, 37}).expand({2, 37}), rw::test::i64({37, 30}, {2, 1}));
      const rw::nn::AttentionMaskSpec spec{
          .causal = causal, .mask_self = shared, .key_padding_mask = pad};
      Tensor expected = rw::nn::attention(q, shared ? rw::nn::unit_normalize(q) : k, v, spec);
      for (int64_t chunk : {37, 64}) {
        Tensor y = local_attention(
            q, shared ? q : k, v, {.chunk_len = chunk, .causal = causal, .shared_qk = shared}, pad);
        rw::test::check_close(y, host(expected), 1e-5);
      }
    }
  }
}

TEST_CASE("local_attention gradients pass gradcheck in float64") {
  struct GradCase {
    bool causal, shared, padded;
    int64_t before, after;
    double dropout;
  };
  const std::vector<GradCase> cases = {{false, false, false, 1, 0, 0},
                                       {true, false, true, 1, 1, 0},
                                       {true, true, false, 2, 0, 0},
                                       {false, true, true, 0, 1, 0},
                                       {true, false, false, 1, 0, 0.3}};
  uint64_t seed = 100;
  for (const GradCase& g : cases) {
    CAPTURE(g.causal);
    CAPTURE(g.shared);
    CAPTURE(g.padded);
    CAPTURE(g.dropout);
    const LocalAttentionOptions o{.chunk_len = 2,
                                  .chunks_before = g.before,
                                  .chunks_after = g.after,
                                  .causal = g.causal,
                                  .shared_qk = g.shared,
                                  .dropout_p = g.dropout,
                                  .dropout_state = {7, 0, 0}};
    Tensor pad = g.padded ? pad_mask({{1, 1, 1, 1, 0}, {0, 1, 1, 1, 1}}) : Tensor();
    std::vector<Tensor> inputs = {randn64({2, 2, 5, 3}, seed++).requires_grad_(),
                                  randn64({2, 2, 5, 3}, seed++).requires_grad_(),
                                  randn64({2, 2, 5, 2}, seed++).requires_grad_()};
    if (g.shared) inputs.erase(inputs.begin() + 1);
    auto result = rw::gradcheck(
        [&](const std::vector<Tensor>& in) {
          const Tensor& q = in[0];
          return local_attention(q, g.shared ? q : in[1], in.back(), o, pad);
        },
        inputs);
    INFO(result.message);
    CHECK(result.ok);
  }
}

TEST_CASE("local_attention full Jacobian on a tiny causal shared-QK case") {
  // 1 x 1 x 3 x 2 inputs and outputs: gradcheck compares the whole Jacobian, not projections.
  for (bool shared : {false, true}) {
    CAPTURE(shared);
    const LocalAttentionOptions o{.chunk_len = 1, .causal = true, .shared_qk = shared};
    std::vector<Tensor> inputs = {randn64({1, 1, 3, 2}, 201).requires_grad_(),
                                  randn64({1, 1, 3, 2}, 202).requires_grad_(),
                                  randn64({1, 1, 3, 2}, 203).requires_grad_()};
    auto result = rw::gradcheck(
        [&](const std::vector<Tensor>& in) {
          return local_attention(in[0], shared ? in[0] : in[1], in[2], o);
        },
        inputs);
    INFO(result.message);
    CHECK(result.ok);
  }
}

TEST_CASE("local_attention dropout is a pure function of its state") {
  Tensor q = randn64({1, 2, 9, 4}, 31), k = randn64({1, 2, 9, 4}, 32),
         v = randn64({1, 2, 9, 4}, 33);
  LocalAttentionOptions o{.chunk_len = 4, .dropout_p = 0.5, .dropout_state = {3, 0, 0}};
  const std::vector<double> first = host(local_attention(q, k, v, o));
  CHECK(host(local_attention(q, k, v, o)) == first);
  o.dropout_state = {4, 0, 0};
  CHECK(host(local_attention(q, k, v, o)) != first);
  o.dropout_p = 0;
  CHECK(host(local_attention(q, k, v, o)) != first);
  CHECK(rw::reformer::local_attention_dropout_numel(1, 2, 9, o) == 1 * 2 * 3 * 4 * 8);
}

TEST_CASE("local_attention rejects bad arguments naming the op and the shapes") {
  using rw::test::contains;
  using rw::test::error_message;
  Tensor q = rw::zeros({2, 2, 6, 4}), v = rw::zeros({2, 2, 6, 3});
  std::string m = error_message([&] { local_attention(q, rw::zeros({2, 2, 5, 4}), v); });
  CHECK(contains(m, "local_attention"));
  CHECK(contains(m, "k [2, 2, 5, 4]"));
  m = error_message([&] { local_attention(q.reshape({2, 12, 4}), q.reshape({2, 12, 4}), v); });
  CHECK(contains(m, "q [2, 12, 4]"));
  m = error_message([&] { local_attention(q, q, rw::zeros({2, 2, 7, 3})); });
  CHECK(contains(m, "v [2, 2, 7, 3]"));
  m = error_message([&] { local_attention(q, Tensor(), v); });
  CHECK(contains(m, "local_attention: k is undefined"));
  m = error_message([&] { local_attention(q, q, v, {.chunk_len = 0}); });
  CHECK(contains(m, "chunk_len must be positive, got 0"));
  m = error_message([&] { local_attention(q, q, v, {.chunks_before = -1}); });
  CHECK(contains(m, "chunks_before and chunks_after must be >= 0, got -1 and 0"));
  m = error_message([&] { local_attention(q, q, v.to(rw::DType::f64)); });
  CHECK(contains(m, "must share a dtype"));
  m = error_message([&] { local_attention(q, q, v, {}, rw::ones({2, 5}).to(rw::DType::boolean)); });
  CHECK(contains(m,
                 "local_attention: key_padding_mask must have shape [batch, key length] = [2, 6], "
                 "got [2, 5]"));
  m = error_message([&] {
    local_attention(rw::zeros({2, 2, 0, 4}), rw::zeros({2, 2, 0, 4}), rw::zeros({2, 2, 0, 3}));
  });
  CHECK(contains(m, "length and head dims must be positive"));
}

TEST_CASE("local_attention forward+backward memory grows linearly with the length") {
  auto measure = [](int64_t L) {
    rw::Generator gen(5);
    Tensor q = rw::randn({1, 2, L, 32}, gen).requires_grad_();
    Tensor k = rw::randn({1, 2, L, 32}, gen).requires_grad_();
    Tensor v = rw::randn({1, 2, L, 32}, gen).requires_grad_();
    return rw::test::peak_bytes([&] {
      Tensor y = local_attention(q, k, v, {.chunk_len = 64, .causal = true});
      rw::backward(rw::sum(y));
    });
  };
  const double small = static_cast<double>(measure(2048));
  const double large = static_cast<double>(measure(4096));
  INFO("peak(2048) = ", small, " bytes, peak(4096) = ", large, " bytes");
  CHECK(large / small <= 2.3);
  // Far below the L x L logits of full attention (2 heads x 4096^2 floats = 128 MiB).
  CHECK(large < 2.0 * 4096 * 4096 * 4 / 4);
}

// --- LocalSelfAttention --------------------------------------------------------------------------

TEST_CASE("LocalSelfAttention has MultiHeadAttention's parameters and equals it on one chunk") {
  for (bool shared : {false, true}) {
    for (bool causal : {false, true}) {
      CAPTURE(shared);
      CAPTURE(causal);
      rw::Generator g1(42), g2(42);
      auto local = std::make_shared<rw::reformer::LocalSelfAttention>(
          16, 2,
          rw::reformer::LocalSelfAttentionOptions{
              .chunk_len = 32, .causal = causal, .shared_qk = shared},
          g1);
      auto full = std::make_shared<rw::nn::MultiHeadAttention>(
          16, 2, rw::nn::MultiHeadAttentionOptions{.causal = causal, .shared_qk = shared}, g2);
      std::vector<std::string> local_names, full_names;
      for (const auto& [name, t] : local->named_parameters()) local_names.push_back(name);
      for (const auto& [name, t] : full->named_parameters()) full_names.push_back(name);
      CHECK(local_names == full_names);
      const auto full_params = full->named_parameters();
      for (std::size_t i = 0; i < full_params.size() && i < local_names.size(); ++i) {
        CAPTURE(full_params[i].first);
        CHECK(rw::test::vals(local->named_parameters()[i].second) ==
              rw::test::vals(full_params[i].second));
      }
      {
        // Non-zero biases so that they take part in the comparison.
        rw::NoGradGuard no_grad;
        for (const auto& [name, t] : local->named_parameters()) {
          if (name[0] == 'b') rw::copy_(t, rw::randn(t.shape(), g1));
        }
      }
      full->load_state_dict(local->state_dict());
      rw::Generator gx(3);
      Tensor x = rw::randn({2, 21, 16}, gx);
      Tensor pad =
          rw::lt(rw::arange(21).reshape({1, 21}).expand({2, 21}), rw::test::i64({21, 17}, {2, 1}));
      rw::test::check_close(local->forward(x, pad), host(full->forward(x, pad)), 1e-5);
    }
  }
}

TEST_CASE("LocalSelfAttention on several chunks matches local_attention of its projections") {
  rw::Generator gen(8);
  auto attn = std::make_shared<rw::reformer::LocalSelfAttention>(
      12, 3, rw::reformer::LocalSelfAttentionOptions{.chunk_len = 4, .causal = true}, gen);
  attn->to(rw::DType::f64);
  Tensor x = randn64({2, 10, 12}, 9);
  auto heads = [](const Tensor& t) { return t.reshape({2, 10, 3, 4}).transpose(1, 2); };
  Tensor q = heads(rw::linear(x, attn->w_q, attn->b_q));
  Tensor k = heads(rw::linear(x, attn->w_k, attn->b_k));
  Tensor v = heads(rw::linear(x, attn->w_v, attn->b_v));
  Tensor y = local_attention(q, k, v, {.chunk_len = 4, .causal = true});
  Tensor expected = rw::linear(y.transpose(1, 2).reshape({2, 10, 12}), attn->w_o, attn->b_o);
  rw::test::check_close(attn->forward(x), host(expected), 1e-12);

  auto result = rw::test::gradcheck_module(
      {&attn->w_q, &attn->w_k, &attn->w_v, &attn->w_o, &attn->b_q}, randn64({1, 6, 12}, 10),
      [&](const Tensor& in) { return attn->forward(in); });
  INFO(result.message);
  CHECK(result.ok);
}

TEST_CASE("LocalSelfAttention dropout draws from the current generator, in training only") {
  rw::Generator gen(1);
  auto attn = std::make_shared<rw::reformer::LocalSelfAttention>(
      8, 2, rw::reformer::LocalSelfAttentionOptions{.chunk_len = 4, .dropout = 0.5}, gen);
  Tensor x = rw::randn({1, 9, 8}, gen);
  rw::Generator a(77), b(77);
  std::vector<float> first, second;
  {
    rw::GeneratorScope scope(a);
    first = rw::test::vals(attn->forward(x));
  }
  {
    rw::GeneratorScope scope(b);
    second = rw::test::vals(attn->forward(x));
  }
  CHECK(first == second);
  CHECK(a.state() == b.state());
  CHECK(a.state().counter > 0);
  attn->eval();
  const rw::PhiloxState before = a.state();
  {
    rw::GeneratorScope scope(a);
    CHECK(rw::test::vals(attn->forward(x)) != first);
  }
  CHECK(a.state() == before);
}

TEST_CASE("LocalSelfAttention rejects bad inputs naming the module") {
  using rw::test::contains;
  using rw::test::error_message;
  auto attn = std::make_shared<rw::reformer::LocalSelfAttention>(8, 2);
  std::string m = error_message([&] { attn->forward(rw::zeros({2, 5, 6})); });
  CHECK(contains(m, "LocalSelfAttention: expected x of shape [batch, length, 8], got [2, 5, 6]"));
  m = error_message([&] { rw::reformer::LocalSelfAttention(7, 2); });
  CHECK(contains(m, "d_model 7 is not divisible by n_heads 2"));
  m = error_message([&] { rw::reformer::LocalSelfAttention(8, 2, {.chunk_len = -3}); });
  CHECK(contains(m, "LocalSelfAttention: chunk_len must be positive, got -3"));
}

TEST_CASE("LocalSelfAttention::forward_cached equals forward row by row with a bounded cache") {
  using rw::test::contains;
  using rw::test::error_message;
  struct Config {
    int64_t chunk, before, after;
    bool shared;
  };
  for (const Config& cf : {Config{4, 1, 0, true}, Config{4, 2, 1, false}, Config{3, 0, 0, true},
                           Config{5, 1, 2, false}}) {
    INFO("chunk ", cf.chunk, " before ", cf.before, " after ", cf.after, " shared ", cf.shared);
    rw::Generator init(3);
    rw::reformer::LocalSelfAttention attn(12, 2,
                                          {.chunk_len = cf.chunk,
                                           .chunks_before = cf.before,
                                           .chunks_after = cf.after,
                                           .causal = true,
                                           .shared_qk = cf.shared},
                                          init);
    rw::Generator data(4);
    const int64_t L = 23;
    Tensor x = rw::randn({2, L, 12}, data);
    rw::NoGradGuard no_grad;
    Tensor full = attn.forward(x);
    for (int64_t prompt : {int64_t{1}, cf.chunk - 1, cf.chunk + 2}) {
      INFO("prompt ", prompt);
      rw::reformer::LocalKeyValueCache cache;
      Tensor first = attn.forward_cached(x.narrow(1, 0, prompt), cache);
      double worst = rw::max(rw::abs(rw::sub(first, full.narrow(1, 0, prompt)))).item();
      for (int64_t t = prompt; t < L; ++t) {
        Tensor row = attn.forward_cached(x.narrow(1, t, 1), cache);
        worst = std::max(worst, rw::max(rw::abs(rw::sub(row, full.narrow(1, t, 1)))).item());
        // Never more than the chunks the next query can reach, plus one being filled.
        CHECK(cache.held <= (cf.before + 2) * cf.chunk);
      }
      CHECK(worst < 1e-5);
      CHECK(cache.keys.size(2) == (cf.before + 2) * cf.chunk);
      CHECK(contains(error_message([&] { attn.forward_cached(x.narrow(1, 0, 2), cache); }),
                     "takes one position at a time"));
    }
  }
  rw::reformer::LocalSelfAttention bidirectional(8, 2, {.chunk_len = 4});
  rw::reformer::LocalKeyValueCache cache;
  CHECK(contains(error_message([&] {
                   bidirectional.forward_cached(rw::randn({1, 2, 8}), cache);
                 }),
                 "forward_cached needs a causal module"));
}
