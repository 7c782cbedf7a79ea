// Full attention (nn/attention.h, nn/attention_mask.h): the module against a brute-force per-head
// loop in every mode, gradchecks, the shared-QK self mask, padding, causality, fully masked rows
// in f32/bf16/f16, dropout, parameters and initialisation, and error messages.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/tape.h"
#include "core/generator_scope.h"
#include "core/ops.h"
#include "nn/attention.h"
#include "nn/nn_test_util.h"
#include "test_util.h"

namespace rw::nn {

using namespace rw::test;

namespace {

// A bool [B, L] padding mask from rows of 0/1.
Tensor padding(const std::vector<std::vector<int>>& rows) {
  std::vector<bool> flat;
  for (const auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
  return from_vector<bool>(
      flat, Shape{static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows.front().size())});
}

// An f64 module whose every parameter (biases included) is random, so the biases are exercised.
std::shared_ptr<MultiHeadAttention> random_mha(int64_t d_model, int64_t n_heads,
                                               MultiHeadAttentionOptions options, uint64_t seed) {
  Generator gen(seed);
  auto m = std::make_shared<MultiHeadAttention>(d_model, n_heads, options, gen);
  m->to(DType::f64);
  NoGradGuard no_grad;
  for (auto& [name, p] : m->named_parameters()) {
    copy_(p, mul(randn(p.shape(), gen, {.dtype = DType::f64}), 0.7));
  }
  return m;
}

// The parameter members a module uses, in a fixed order (gradcheck substitutes its inputs).
std::vector<Tensor*> parameter_slots(MultiHeadAttention& m) {
  std::vector<Tensor*> out;
  for (Tensor* t : {&m.w_q, &m.b_q, &m.w_k, &m.b_k, &m.w_qk, &m.b_qk, &m.w_v, &m.b_v, &m.w_in,
                    &m.b_in, &m.w_o, &m.b_o}) {
    if (t->defined()) out.push_back(t);
  }
  return out;
}

// The projections of a module as host matrices: [inner, d_model] for q, k, v; [d_model, inner]
// for the output. With shared QK, k's projection is q's.
struct HostParams {
  std::vector<double> wq, bq, wk, bk, wv, bv, wo, bo;
};

HostParams host_params(const MultiHeadAttention& m) {
  const int64_t inner = m.n_heads() * m.d_head(), dm = m.d_model();
  const bool shared = m.options().shared_qk;
  auto bias_or_zero = [&](const Tensor& b, int64_t n) {
    return b.defined() ? host(b) : std::vector<double>(static_cast<std::size_t>(n), 0.0);
  };
  HostParams p;
  std::vector<std::vector<double>> w(3), b(3);
  if (m.options().fused_projection) {
    const std::vector<double> all_w = host(m.w_in);
    const std::vector<double> all_b = bias_or_zero(m.b_in, m.w_in.size(0));
    for (int64_t blk = 0; blk < m.w_in.size(0) / inner; ++blk) {
      w[blk].assign(all_w.begin() + blk * inner * dm, all_w.begin() + (blk + 1) * inner * dm);
      b[blk].assign(all_b.begin() + blk * inner, all_b.begin() + (blk + 1) * inner);
    }
    if (shared) {  // blocks [qk, v]: k's projection is q's
      w = {w[0], w[0], w[1]};
      b = {b[0], b[0], b[1]};
    }
  } else if (shared) {
    w = {host(m.w_qk), host(m.w_qk), host(m.w_v)};
    b = {bias_or_zero(m.b_qk, inner), bias_or_zero(m.b_qk, inner), bias_or_zero(m.b_v, inner)};
  } else {
    w = {host(m.w_q), host(m.w_k), host(m.w_v)};
    b = {bias_or_zero(m.b_q, inner), bias_or_zero(m.b_k, inner), bias_or_zero(m.b_v, inner)};
  }
  p.wq = w[0], p.wk = w[1], p.wv = w[2], p.bq = b[0], p.bk = b[1], p.bv = b[2];
  p.wo = host(m.w_o);
  p.bo = bias_or_zero(m.b_o, dm);
  return p;
}

// y = W x + b for W [rows, cols] row-major.
std::vector<double> affine(const std::vector<double>& W, const std::vector<double>& b,
                           const double* x, int64_t rows, int64_t cols) {
  std::vector<double> y(static_cast<std::size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    double s = b[r];
    for (int64_t c = 0; c < cols; ++c) s += W[r * cols + c] * x[c];
    y[r] = s;
  }
  return y;
}

// Multi-head self-attention written out per batch, head and query: an explicit softmax over the
// keys a query may see. Under shared QK the keys are the unit-normalised queries and the query's
// own key is dropped from that set unless it is the only one. A query that may see nothing
// contributes zeros. `pad` is [B * L] (empty: no padding).
std::vector<double> brute_force_mha(const MultiHeadAttention& m, const std::vector<double>& x,
                                    int64_t B, int64_t L, const std::vector<bool>& pad) {
  const HostParams P = host_params(m);
  const int64_t dm = m.d_model(), H = m.n_heads(), dh = m.d_head(), inner = H * dh;
  const bool causal = m.options().causal, shared = m.options().shared_qk;
  std::vector<double> out;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<std::vector<double>> q(L), k(L), v(L);
    for (int64_t l = 0; l < L; ++l) {
      const double* xl = x.data() + (b * L + l) * dm;
      q[l] = affine(P.wq, P.bq, xl, inner, dm);
      k[l] = affine(P.wk, P.bk, xl, inner, dm);
      v[l] = affine(P.wv, P.bv, xl, inner, dm);
    }
    for (int64_t i = 0; i < L; ++i) {
      std::vector<double> merged(static_cast<std::size_t>(inner), 0.0);
      for (int64_t h = 0; h < H; ++h) {
        auto key = [&](int64_t j) {
          std::vector<double> kj(k[j].begin() + h * dh, k[j].begin() + (h + 1) * dh);
          if (shared) {
            double n = 0;
            for (double e : kj) n += e * e;
            for (double& e : kj) e /= std::sqrt(n);
          }
          return kj;
        };
        std::vector<int64_t> keys;
        for (int64_t j = 0; j < L; ++j) {
          if ((!causal || j <= i) && (pad.empty() || pad[b * L + j])) keys.push_back(j);
        }
        if (shared && keys.size() > 1) std::erase(keys, i);
        if (keys.empty()) continue;
        std::vector<double> logits;
        for (int64_t j : keys) {
          std::vector<double> kj = key(j);
          double s = 0;
          for (int64_t e = 0; e < dh; ++e) s += q[i][h * dh + e] * kj[e];
          logits.push_back(s / std::sqrt(static_cast<double>(dh)));
        }
        double mx = logits[0], z = 0;
        for (double s : logits) mx = std::max(mx, s);
        for (double s : logits) z += std::exp(s - mx);
        for (std::size_t n = 0; n < keys.size(); ++n) {
          const double w = std::exp(logits[n] - mx) / z;
          for (int64_t e = 0; e < dh; ++e) merged[h * dh + e] += w * v[keys[n]][h * dh + e];
        }
      }
      std::vector<double> y = affine(P.wo, P.bo, merged.data(), dm, inner);
      out.insert(out.end(), y.begin(), y.end());
    }
  }
  return out;
}

std::string mode_name(const MultiHeadAttentionOptions& o, bool padded) {
  return fmt::format("causal={} shared_qk={} fused={} bias={} padded={}", o.causal, o.shared_qk,
                     o.fused_projection, o.bias, padded);
}

bool all_finite(const Tensor& t) {
  for (double v : t.to_vector<double>()) {
    if (!std::isfinite(v)) return false;
  }
  return true;
}

}  // namespace

// --- against the brute-force loop ---------------------------------------------------------------

TEST_CASE("MultiHeadAttention: every mode equals a brute-force per-head loop in f64") {
  const int64_t B = 2, L = 5, dm = 6;
  // Batch 1 starts with padding: under causal masking its query 0 has no key at all, and under
  // shared QK its query 1 has only itself.
  const std::vector<bool> pad_flat{true, true, true, false, false, false, true, true, true, true};
  const Tensor pad = padding({{1, 1, 1, 0, 0}, {0, 1, 1, 1, 1}});
  uint64_t seed = 10;
  for (bool causal : {false, true}) {
    for (bool shared : {false, true}) {
      for (bool fused : {false, true}) {
        for (bool padded : {false, true}) {
          MultiHeadAttentionOptions o{.causal = causal,
                                      .shared_qk = shared,
                                      .fused_projection = fused,
                                      .bias = !(fused && padded),
                                      .d_head = fused ? 4 : 0};
          INFO(mode_name(o, padded));
          auto m = random_mha(dm, 2, o, ++seed);
          Tensor x = randn64({B, L, dm}, ++seed);
          Tensor y = m->forward(x, padded ? pad : Tensor());
          REQUIRE(y.shape() == Shape{B, L, dm});
          check_close(y,
                      brute_force_mha(*m, host(x), B, L, padded ? pad_flat : std::vector<bool>{}),
                      1e-12);
        }
      }
    }
  }
}

TEST_CASE("attention: the functional core equals an explicit softmax, with Lq != Lk and a scale") {
  // q [B, Lq, d], k [B, Lk, d], v [B, Lk, dv]: a rank-3 (single-head) layout and a padding mask.
  const int64_t B = 2, Lq = 3, Lk = 4, d = 5, dv = 2;
  Tensor q = randn64({B, Lq, d}, 1), k = randn64({B, Lk, d}, 2), v = randn64({B, Lk, dv}, 3);
  const std::vector<std::vector<int>> real{{1, 0, 1, 1}, {0, 0, 0, 1}};
  const double scale = 0.37;
  Tensor out = attention(q, k, v, {.key_padding_mask = padding(real)}, {.scale = scale});
  REQUIRE(out.shape() == Shape{B, Lq, dv});
  std::vector<double> Q = host(q), K = host(k), V = host(v), expected;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t i = 0; i < Lq; ++i) {
      std::vector<double> e(static_cast<std::size_t>(Lk), 0.0);
      double z = 0;
      for (int64_t j = 0; j < Lk; ++j) {
        if (!real[b][j]) continue;
        double s = 0;
        for (int64_t c = 0; c < d; ++c) s += Q[(b * Lq + i) * d + c] * K[(b * Lk + j) * d + c];
        e[j] = std::exp(scale * s);  // small logits: no max subtraction needed
        z += e[j];
      }
      for (int64_t c = 0; c < dv; ++c) {
        double o = 0;
        for (int64_t j = 0; j < Lk; ++j) o += e[j] / z * V[(b * Lk + j) * dv + c];
        expected.push_back(o);
      }
    }
  }
  check_close(out, expected, 1e-12);
}

// --- gradients ----------------------------------------------------------------------------------

TEST_CASE("MultiHeadAttention: gradcheck in f64 for x and every parameter, in each mode") {
  const int64_t B = 2, L = 3, dm = 4;
  const Tensor pad = padding({{1, 1, 0}, {0, 1, 1}});
  struct Mode {
    MultiHeadAttentionOptions options;
    bool padded;
  };
  const std::vector<Mode> modes{
      {{}, false},
      {{.causal = true}, false},
      {{.shared_qk = true}, false},
      {{.causal = true, .shared_qk = true}, true},
      {{.causal = true}, true},
      {{.fused_projection = true}, true},
      {{.causal = true, .shared_qk = true, .fused_projection = true, .bias = false}, false},
  };
  uint64_t seed = 40;
  for (const Mode& mode : modes) {
    INFO(mode_name(mode.options, mode.padded));
    auto m = random_mha(dm, 2, mode.options, ++seed);
    std::vector<Tensor*> slots = parameter_slots(*m);
    std::vector<Tensor> inputs{randn64({B, L, dm}, ++seed).requires_grad_()};
    for (Tensor* s : slots) inputs.push_back(s->detach().clone().requires_grad_());
    const Tensor mask = mode.padded ? pad : Tensor();
    GradcheckResult r = gradcheck(
        [&](const std::vector<Tensor>& in) {
          for (std::size_t i = 0; i < slots.size(); ++i) *slots[i] = in[i + 1];
          return m->forward(in[0], mask);
        },
        inputs);
    CHECK_MESSAGE(r.ok, r.message);
  }
}

// --- shared QK: the self mask -------------------------------------------------------------------

TEST_CASE("attention: shared-QK keys attend to themselves only when nothing else is allowed") {
  const int64_t L = 5, d = 4;
  Tensor q = randn64({1, 2, L, d}, 7);
  Tensor k = unit_normalize(q);
  // Without the self mask each query's own key has the largest logit (Cauchy-Schwarz: q . k_j <=
  // |q| = q . k_i), which is why the Reformer masks it.
  Tensor unmasked = attention_weights(q, k).reshape({2, L, L});
  for (int64_t h = 0; h < 2; ++h) {
    for (int64_t i = 0; i < L; ++i) {
      Tensor row = unmasked.select(0, h).select(0, i);
      CHECK(argmax(row).item<int64_t>() == i);
    }
  }
  for (bool causal : {false, true}) {
    INFO("causal = ", causal);
    Tensor w = attention_weights(q, k, {.causal = causal, .mask_self = true}).reshape({2, L, L});
    std::vector<double> p = host(w);
    for (int64_t h = 0; h < 2; ++h) {
      for (int64_t i = 0; i < L; ++i) {
        const double self = p[(h * L + i) * L + i];
        double total = 0;
        for (int64_t j = 0; j < L; ++j) total += p[(h * L + i) * L + j];
        CHECK(total == doctest::Approx(1.0).epsilon(1e-12));
        if (causal && i == 0) {
          CHECK(self == 1.0);  // the first position has only itself
        } else {
          CHECK(self == 0.0);
        }
      }
    }
  }
  // Padding that leaves a query only its own key: it attends to itself.
  Tensor w =
      attention_weights(q, k, {.mask_self = true, .key_padding_mask = padding({{0, 0, 1, 0, 0}})})
          .reshape({2, L, L});
  for (int64_t h = 0; h < 2; ++h) {
    for (int64_t i = 0; i < L; ++i) CHECK(host(w)[(h * L + i) * L + 2] == 1.0);
  }
}

TEST_CASE("MultiHeadAttention: shared-QK weights exclude the diagonal, through the module") {
  Generator gen(5);
  for (bool causal : {false, true}) {
    INFO("causal = ", causal);
    auto m = std::make_shared<MultiHeadAttention>(
        8, 2, MultiHeadAttentionOptions{.causal = causal, .shared_qk = true}, gen);
    Tensor x = randn({2, 6, 8}, gen);
    AttentionResult r = m->forward_with_weights(x);
    REQUIRE(r.weights.shape() == Shape{2, 2, 6, 6});
    std::vector<double> p = host(r.weights);
    for (int64_t bh = 0; bh < 4; ++bh) {
      for (int64_t i = 0; i < 6; ++i) {
        CHECK(p[(bh * 6 + i) * 6 + i] == (causal && i == 0 ? 1.0 : 0.0));
        if (causal) {
          for (int64_t j = i + 1; j < 6; ++j) CHECK(p[(bh * 6 + i) * 6 + j] == 0.0);
        }
      }
    }
  }
}

// --- padding, causality, fully masked rows ------------------------------------------------------

TEST_CASE("MultiHeadAttention: padded tokens' values do not change real tokens' outputs") {
  const Tensor pad = padding({{1, 1, 0, 1, 0}, {1, 1, 1, 1, 0}});
  const std::vector<int64_t> padded_at{2, 4, 9};  // flat b * L + l
  uint64_t seed = 60;
  for (bool shared : {false, true}) {
    for (bool causal : {false, true}) {
      INFO("shared_qk = ", shared, ", causal = ", causal);
      auto m = random_mha(6, 3, {.causal = causal, .shared_qk = shared}, ++seed);
      Tensor x = randn64({2, 5, 6}, ++seed);
      Tensor x2 = x.clone();
      {
        NoGradGuard no_grad;
        Tensor flat = x2.view({10, 6});
        for (int64_t row : padded_at) copy_(flat.select(0, row), randn64({6}, ++seed) * 10.0);
      }
      std::vector<double> y = host(m->forward(x, pad)), y2 = host(m->forward(x2, pad));
      std::vector<bool> real{true, true, false, true, false, true, true, true, true, false};
      for (int64_t row = 0; row < 10; ++row) {
        for (int64_t c = 0; c < 6; ++c) {
          if (real[row]) CHECK(y[row * 6 + c] == y2[row * 6 + c]);
        }
      }
      // The padded tokens' own outputs did change (the perturbation was real).
      CHECK(y[2 * 6] != y2[2 * 6]);
    }
  }
}

TEST_CASE("MultiHeadAttention: causal outputs at t do not depend on inputs after t") {
  uint64_t seed = 80;
  for (bool shared : {false, true}) {
    INFO("shared_qk = ", shared);
    auto m = random_mha(6, 2, {.causal = true, .shared_qk = shared}, ++seed);
    const int64_t L = 6;
    Tensor x = randn64({2, L, 6}, ++seed);
    std::vector<double> y = host(m->forward(x));
    for (int64_t t = 0; t + 1 < L; ++t) {
      INFO("t = ", t);
      Tensor x2 = x.clone();
      {
        NoGradGuard no_grad;
        copy_(x2.narrow(1, t + 1, L - t - 1), randn64({2, L - t - 1, 6}, ++seed));
      }
      std::vector<double> y2 = host(m->forward(x2));
      bool later_changed = false;
      for (int64_t b = 0; b < 2; ++b) {
        for (int64_t l = 0; l < L; ++l) {
          for (int64_t c = 0; c < 6; ++c) {
            const std::size_t at = (b * L + l) * 6 + c;
            if (l <= t) CHECK(y[at] == y2[at]);
            if (l > t && y[at] != y2[at]) later_changed = true;
          }
        }
      }
      CHECK(later_changed);
    }
  }
  // Without the causal mask an early output does depend on later inputs.
  auto m = random_mha(6, 2, {}, 99);
  Tensor x = randn64({1, 4, 6}, 100);
  Tensor x2 = x.clone();
  {
    NoGradGuard no_grad;
    copy_(x2.narrow(1, 3, 1), randn64({1, 1, 6}, 101));
  }
  CHECK(host(m->forward(x))[0] != host(m->forward(x2))[0]);
}

TEST_CASE("MultiHeadAttention: fully masked rows give zero attention and no NaN, f32/bf16/f16") {
  // Batch 0 is all padding; batch 1 is left-padded, so under causal masking its query 0 sees no
  // key and its query 1 (shared QK) sees only itself.
  const Tensor pad = padding({{0, 0, 0, 0}, {0, 1, 1, 1}});
  for (DType dt : {DType::f32, DType::bf16, DType::f16}) {
    INFO("dtype = ", dt);
    Generator gen(3);
    auto m = std::make_shared<MultiHeadAttention>(
        8, 2, MultiHeadAttentionOptions{.causal = true, .shared_qk = true}, gen);
    m->to(dt);
    {
      NoGradGuard no_grad;
      copy_(m->b_o, randn({8}, gen));  // so a zero attention output is recognisable
    }
    // Large inputs: logits far from 0, where a careless penalty would overflow in f16.
    Tensor x = mul(randn({2, 4, 8}, gen), 8.0).to(dt).detach().requires_grad_();
    AttentionResult r = m->forward_with_weights(x, pad);
    CHECK(r.output.dtype() == dt);
    CHECK(all_finite(r.output));
    CHECK(all_finite(r.weights));
    std::vector<double> w = host(r.weights), y = host(r.output), bo = host(m->b_o);
    for (int64_t h = 0; h < 2; ++h) {
      for (int64_t j = 0; j < 4; ++j) {
        for (int64_t i = 0; i < 4; ++i) CHECK(w[((0 * 2 + h) * 4 + i) * 4 + j] == 0.0);
        CHECK(w[((1 * 2 + h) * 4 + 0) * 4 + j] == 0.0);
        CHECK(w[((1 * 2 + h) * 4 + 1) * 4 + j] == (j == 1 ? 1.0 : 0.0));
      }
    }
    // No attention: the output is the output projection's bias.
    for (int64_t row : {0, 1, 2, 3, 4}) {
      for (int64_t c = 0; c < 8; ++c) CHECK(y[row * 8 + c] == bo[c]);
    }
    backward(sum(r.output.to(DType::f32)));
    CHECK(all_finite(x.grad()));
    for (auto& [name, p] : m->named_parameters()) {
      INFO(name);
      CHECK(all_finite(p.grad()));
    }
  }
}

TEST_CASE("attention: penalties are finite and ordered in every floating dtype") {
  const AttentionMaskSpec spec{.causal = true, .mask_self = true};
  for (DType dt : {DType::f64, DType::f32, DType::bf16, DType::f16}) {
    INFO("dtype = ", dt);
    const AttentionPenalties p = attention_penalties(dt);
    CHECK(p.masked < p.self);
    CHECK(p.self < -1e3);  // far below any reasonable logit
    // exp(masked - self) underflows to zero even in f64, so a lone self key takes all the weight.
    CHECK(std::exp(p.masked - p.self) == 0.0);
    Tensor bias = attention_bias(spec, 2, 3, 3, dt, Device::cpu());
    CHECK(bias.dtype() == dt);
    CHECK(all_finite(bias));
    // Room for logits: a penalty plus a logit of 1e4 is still finite in the dtype.
    CHECK(all_finite(add(bias, 1e4 * -1.0)));
    std::vector<double> b = host(bias);
    CHECK(b[0] < 0);     // diagonal: the self penalty
    CHECK(b[1] < b[0]);  // above the diagonal: the causal penalty, lower
    CHECK(b[3] == 0.0);  // below the diagonal: allowed
  }
  CHECK(contains(error_message([] { attention_penalties(DType::i64); }), "got i64"));
}

TEST_CASE("attention: unit_normalize gives unit rows and keeps a zero row finite") {
  for (DType dt : {DType::f64, DType::f32, DType::bf16}) {
    INFO("dtype = ", dt);
    Tensor x = concat({randn64({3, 4}, 1), zeros({1, 4}, {.dtype = DType::f64})}, 0)
                   .to(dt)
                   .detach()
                   .requires_grad_();
    Tensor k = unit_normalize(x);
    CHECK(k.dtype() == dt);
    std::vector<double> kv = host(k), xv = host(x);
    for (int64_t r = 0; r < 3; ++r) {
      double n = 0, nx = 0;
      for (int64_t c = 0; c < 4; ++c) n += kv[r * 4 + c] * kv[r * 4 + c];
      for (int64_t c = 0; c < 4; ++c) nx += xv[r * 4 + c] * xv[r * 4 + c];
      CHECK(n == doctest::Approx(1.0).epsilon(dt == DType::bf16 ? 1e-2 : 1e-6));
      // Same direction: k = x / |x|.
      for (int64_t c = 0; c < 4; ++c) {
        CHECK(kv[r * 4 + c] == doctest::Approx(xv[r * 4 + c] / std::sqrt(nx))
                                   .epsilon(dt == DType::bf16 ? 1e-2 : 1e-6));
      }
    }
    for (int64_t c = 0; c < 4; ++c) CHECK(kv[12 + c] == 0.0);
    backward(sum(k.to(DType::f64)));
    CHECK(all_finite(x.grad()));
  }
}

// --- dropout ------------------------------------------------------------------------------------

TEST_CASE("MultiHeadAttention: attention dropout draws from current_generator in training") {
  Generator init(1);
  auto m =
      std::make_shared<MultiHeadAttention>(8, 2, MultiHeadAttentionOptions{.dropout = 0.5}, init);
  Tensor x = randn({2, 5, 8}, init);
  auto run = [&](uint64_t seed) {
    Generator gen(seed);
    GeneratorScope scope(gen);
    Tensor y = m->forward(x);
    // In training, one draw of the probabilities' size [2, 2, 5, 5]; in eval mode none.
    CHECK(gen.state().counter == (m->is_training() ? (2 * 2 * 5 * 5 + 3) / 4 : 0));
    return host(y);
  };
  CHECK(m->is_training());
  const std::vector<double> a = run(7), b = run(7), c = run(8);
  CHECK(a == b);
  CHECK(a != c);
  m->eval();
  const std::vector<double> eval_a = host(m->forward(x)), eval_b = run(9);
  CHECK(eval_a == eval_b);  // no dropout, whatever the generator
  CHECK(eval_a != a);
  // The functional core applies exactly rw::dropout's mask to the probabilities.
  Tensor q = randn64({1, 2, 4, 3}, 1), k = randn64({1, 2, 4, 3}, 2), v = randn64({1, 2, 4, 3}, 3);
  const PhiloxState state{.seed = 5, .stream = 0, .counter = 0};
  Tensor expected = matmul(dropout(attention_weights(q, k), 0.3, state), v);
  check_close(attention(q, k, v, {}, {.dropout_p = 0.3, .dropout_state = state}), host(expected),
              1e-15);
}

// --- parameters, initialisation ------------------------------------------------------------------

TEST_CASE("MultiHeadAttention: parameter names and shapes in each layout") {
  auto names = [](const MultiHeadAttention& m) {
    std::vector<std::string> out;
    for (const auto& [name, p] : m.named_parameters()) {
      out.push_back(fmt::format("{}{}", name, p.shape()));
    }
    return out;
  };
  using V = std::vector<std::string>;
  CHECK(names(MultiHeadAttention(8, 2)) == V{"w_q[8, 8]", "b_q[8]", "w_k[8, 8]", "b_k[8]",
                                             "w_v[8, 8]", "b_v[8]", "w_o[8, 8]", "b_o[8]"});
  CHECK(names(MultiHeadAttention(8, 2, {.shared_qk = true, .d_head = 3})) ==
        V{"w_qk[6, 8]", "b_qk[6]", "w_v[6, 8]", "b_v[6]", "w_o[8, 6]", "b_o[8]"});
  CHECK(names(MultiHeadAttention(8, 2, {.fused_projection = true, .bias = false})) ==
        V{"w_in[24, 8]", "w_o[8, 8]"});
  CHECK(names(MultiHeadAttention(8, 2, {.shared_qk = true, .fused_projection = true})) ==
        V{"w_in[16, 8]", "b_in[16]", "w_o[8, 8]", "b_o[8]"});
}

TEST_CASE("MultiHeadAttention: fused and separate projections start equal and compute the same") {
  for (bool shared : {false, true}) {
    INFO("shared_qk = ", shared);
    Generator g1(21), g2(21);
    MultiHeadAttention separate(8, 2, {.shared_qk = shared}, g1);
    MultiHeadAttention fused(8, 2, {.shared_qk = shared, .fused_projection = true}, g2);
    Tensor expected_w = shared ? concat({separate.w_qk, separate.w_v}, 0)
                               : concat({separate.w_q, separate.w_k, separate.w_v}, 0);
    CHECK(host(fused.w_in) == host(expected_w));
    CHECK(host(fused.w_o) == host(separate.w_o));
    Tensor x = randn({2, 5, 8}, g1);
    check_close(fused.forward(x), host(separate.forward(x)), 1e-5);
  }
}

TEST_CASE("MultiHeadAttention: initialisation follows nn.MultiheadAttention's") {
  const int64_t dm = 64, H = 4;
  Generator gen(3);
  MultiHeadAttention m(dm, H, {}, gen);
  const double xavier = std::sqrt(6.0 / (dm + dm)), linear = 1.0 / std::sqrt(double(dm));
  for (const auto& [w, bound] : std::vector<std::pair<Tensor, double>>{
           {m.w_q, xavier}, {m.w_k, xavier}, {m.w_v, xavier}, {m.w_o, linear}}) {
    std::vector<double> v = host(w);
    double sq = 0, mx = 0;
    for (double e : v) sq += e * e, mx = std::max(mx, std::abs(e));
    CHECK(mx <= bound);
    // U(-a, a) has standard deviation a / sqrt(3); 4096 samples put it within a few percent.
    CHECK(std::sqrt(sq / double(v.size())) ==
          doctest::Approx(bound / std::sqrt(3.0)).epsilon(0.05));
  }
  for (const Tensor& b : {m.b_q, m.b_k, m.b_v, m.b_o}) CHECK(max(abs(b)).item() == 0.0);
  CHECK(host(m.w_q) != host(m.w_k));
  // Without a generator the constructor draws from current_generator().
  Generator scoped(3);
  GeneratorScope scope(scoped);
  MultiHeadAttention from_scope(dm, H);
  CHECK(host(from_scope.w_q) == host(m.w_q));
  CHECK(host(from_scope.w_o) == host(m.w_o));
}

// --- errors
// ---------------------------------------------------------------------------------------

TEST_CASE("MultiHeadAttention: errors name the module and the offending values") {
  auto msg = [](auto f) { return error_message(f); };
  CHECK(contains(msg([] { MultiHeadAttention(10, 3); }),
                 "MultiHeadAttention: d_model 10 is not divisible by n_heads 3"));
  CHECK(contains(msg([] { MultiHeadAttention(8, 0); }),
                 "MultiHeadAttention: d_model and n_heads must be positive, got 8 and 0"));
  CHECK(contains(msg([] { MultiHeadAttention(8, 2, {.dropout = 1.0}); }),
                 "MultiHeadAttention: dropout must be in [0, 1), got 1"));
  MultiHeadAttention m(8, 2);
  CHECK(contains(msg([&] {
                   m.forward(zeros({2, 3, 5}));
                 }),
                 "MultiHeadAttention: expected x of shape [batch, length, 8], got [2, 3, 5]"));
  CHECK(contains(msg([&] {
                   m.forward(zeros({3, 8}));
                 }),
                 "MultiHeadAttention: expected x of shape [batch, length, 8], got [3, 8]"));
  CHECK(contains(msg([&] {
                   m.forward(zeros({2, 3, 8}), zeros({2, 2}, {.dtype = DType::boolean}));
                 }),
                 "MultiHeadAttention: key_padding_mask must have shape [batch, key length] = "
                 "[2, 3], got [2, 2]"));
  CHECK(contains(msg([&] {
                   m.forward(zeros({2, 3, 8}), ones({2, 3}));
                 }),
                 "MultiHeadAttention: key_padding_mask must be bool (true = real token), got "
                 "dtype f32"));
  Tensor q = zeros({2, 3, 4}), v = zeros({2, 5, 4});
  CHECK(contains(msg([&] { attention(q, q, v); }),
                 "attention: v must have one row per key: k [2, 3, 4] vs v [2, 5, 4]"));
  CHECK(contains(msg([&] {
                   attention(q, zeros({2, 3, 5}), q);
                 }),
                 "attention: q and k need the same non-zero last dim, got shapes [2, 3, 4] and "
                 "[2, 3, 5]"));
  CHECK(contains(msg([&] {
                   attention(zeros({3, 4}), zeros({3, 4}), zeros({3, 4}),
                             {.key_padding_mask = padding({{1, 1, 1}})});
                 }),
                 "attention: a key_padding_mask needs a batch dim"));
}

}  // namespace rw::nn
