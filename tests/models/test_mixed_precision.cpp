// Mixed precision on the CPU: a ReformerLM under bf16/f16 autocast against f32 (loss and every
// parameter gradient), and attention masks in f16 that stay finite where f32's penalties would
// overflow to -inf and turn lone rows into NaN.
//
// Tolerances. A half type rounds each stored value with relative error u = 2^-8 (bf16) or 2^-11
// (f16); a layer rounds its projections, scores, attention output and feed-forward activations,
// and the mean loss averages those errors out (measured on these seeds: bf16 4e-5, f16 4e-6
// relative), while a single gradient entry carries a few u of each factor it multiplies (measured:
// worst entry relative to the tensor's largest, bf16 1.1e-2, f16 1.6e-3). The bounds are about 4x
// the measurements, and far below what a real bug (an uncast operand, a lost scale, a wrong mask)
// gives, which is O(1).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "autograd/tape.h"
#include "core/autocast.h"
#include "core/generator_scope.h"
#include "core/ops.h"
#include "models/reformer/local_attention.h"
#include "models/reformer/lsh_attention.h"
#include "models/reformer/lsh_hashing.h"
#include "models/reformer/reformer_lm.h"
#include "nn/attention.h"
#include "nn/attention_mask.h"
#include "reformer_test_util.h"
#include "test_util.h"

namespace rw::reformer {
namespace {

double max_rel(const Tensor& a, const Tensor& b) {
  const double scale = std::max(max(abs(b.to(DType::f64))).item(), 1e-30);
  return max(abs(sub(a.to(DType::f64), b.to(DType::f64)))).item() / scale;
}

bool all_finite(const Tensor& t) {
  const std::vector<double> v = t.to_vector<double>();
  for (double x : v) {
    if (!std::isfinite(x)) return false;
  }
  return true;
}

ReformerConfig two_layer_config(std::vector<AttentionKind> kinds) {
  ReformerConfig c;
  c.vocab_size = 32;
  c.d_model = 32;
  c.d_ff = 64;
  c.n_layers = 2;
  c.n_heads = 2;
  c.attention = std::move(kinds);
  c.chunk_len = 8;
  c.n_hashes = 2;
  c.n_buckets = 1;  // LSH buckets from rounded projections would be a discrete change; see below
  c.max_len = 64;
  c.loss_chunk = 16;
  c.ff_chunk = 16;
  c.causal = true;
  return c;
}

struct LossAndGrads {
  double loss = 0;
  std::vector<std::pair<std::string, Tensor>> grads;
};

// loss and parameter gradients of one step, forward and backward under `precision` (f32: off).
LossAndGrads step(ReformerLM& model, const Tensor& tokens, const Tensor& targets, DType precision,
                  const Tensor& padding = {}) {
  model.zero_grad();
  LossAndGrads r;
  Generator rotations(9);
  GeneratorScope generators(rotations);
  AutocastScope autocast(precision);
  Tensor loss = model.loss(tokens, targets, padding);
  CHECK(loss.dtype() == DType::f32);
  backward(loss);
  r.loss = loss.item();
  for (const auto& [name, p] : model.named_parameters()) r.grads.emplace_back(name, p.grad());
  return r;
}

TEST_CASE("ReformerLM under bf16 and f16 autocast: loss and gradients close to f32") {
  struct Case {
    std::vector<AttentionKind> kinds;
    bool reversible;
  };
  const std::vector<Case> cases{{{AttentionKind::lsh, AttentionKind::local}, true},
                                {{AttentionKind::full, AttentionKind::lsh}, false}};
  for (const Case& c : cases) {
    ReformerConfig config = two_layer_config(c.kinds);
    config.reversible = c.reversible;
    Generator init(1);
    ReformerLM model(config, init);
    const Tensor tokens = test::random_tokens(2, 24, config.vocab_size, 3);
    const Tensor targets = test::random_tokens(2, 24, config.vocab_size, 4);
    const LossAndGrads ref = step(model, tokens, targets, DType::f32);
    for (DType low : {DType::bf16, DType::f16}) {
      INFO(config.to_map().at("attention"), " reversible ", c.reversible, ", ", dtype_name(low));
      const double loss_tol = low == DType::bf16 ? 2e-4 : 2e-5;
      const double grad_tol = low == DType::bf16 ? 5e-2 : 7e-3;
      const LossAndGrads got = step(model, tokens, targets, low);
      CHECK(std::abs(got.loss - ref.loss) <= loss_tol * std::abs(ref.loss));
      REQUIRE(got.grads.size() == ref.grads.size());
      double worst = 0;
      for (std::size_t i = 0; i < got.grads.size(); ++i) {
        INFO(got.grads[i].first);
        REQUIRE(got.grads[i].second.defined());
        // Master weights: the parameters and their gradients stay f32.
        CHECK(got.grads[i].second.dtype() == DType::f32);
        CHECK(all_finite(got.grads[i].second));
        worst = std::max(worst, max_rel(got.grads[i].second, ref.grads[i].second));
      }
      CHECK(worst <= grad_tol);
    }
  }
}

// Causal shared-QK attention: query 0 may attend only to itself (self penalty), and a padded
// position may attend to nothing. With f32's penalties (-1e5 self, -1e9 hard) in f16 both round
// to -inf, so the softmax of such a row is NaN; the per-dtype penalties keep every row finite.
TEST_CASE("f16 attention: f32's penalties overflow to NaN, the per-dtype ones stay finite") {
  Generator gen(6);
  const int64_t L = 6, d = 4;
  // Large logits too: |q . k| / sqrt(d) up to ~ 100.
  const Tensor q = mul(randn({1, 2, L, d}, gen), 30.0);
  const Tensor k = nn::unit_normalize(q);

  // The naive f16 computation, with f32's constants.
  const nn::AttentionPenalties f32_penalties = nn::attention_penalties(DType::f32);
  {
    const Tensor qh = q.to(DType::f16), kh = k.to(DType::f16);
    Tensor logits = mul(matmul(qh, kh.mT()), 0.5);
    Tensor pos = arange(L, {.dtype = DType::i64});
    Tensor qpos = pos.reshape({L, 1}), kpos = pos.reshape({1, L});
    Tensor soft = where(eq(qpos, kpos), full({}, f32_penalties.self, {.dtype = DType::f16}), 0.0);
    logits = add(logits, where(le(kpos, qpos), soft, f32_penalties.masked));
    CHECK(std::isinf(logits.select(-2, 0).select(-1, 0).select(1, 0).item()));
    CHECK_FALSE(all_finite(softmax(logits, -1)));
  }

  // The per-dtype penalties: every attention function finite in f16 and close to f32.
  const nn::AttentionPenalties f16_penalties = nn::attention_penalties(DType::f16);
  CHECK(f16_penalties.masked > -65504);  // f16's largest finite magnitude
  CHECK(f16_penalties.self > f16_penalties.masked);
  const Tensor v = randn({1, 2, L, d}, gen);
  const Tensor padding = from_vector<uint8_t>({1, 1, 1, 1, 0, 0}, Shape{1, L}).to(DType::boolean);
  auto check_pair = [&](const char* what, const Tensor& half, const Tensor& full32) {
    INFO(what);
    CHECK(half.dtype() == DType::f16);
    CHECK(all_finite(half));
    CHECK(max_rel(half, full32) < 1e-2);
  };
  const nn::AttentionMaskSpec causal_self{.causal = true, .mask_self = true};
  check_pair("attention_weights, causal + self",
             nn::attention_weights(q.to(DType::f16), k.to(DType::f16), causal_self),
             nn::attention_weights(q, k, causal_self));
  // Padded queries: the padded keys are hard-masked for everyone; rows stay finite.
  const nn::AttentionMaskSpec padded{
      .causal = true, .mask_self = true, .key_padding_mask = padding};
  check_pair("attention, causal + self + padding",
             nn::attention(q.to(DType::f16), k.to(DType::f16), v.to(DType::f16), padded),
             nn::attention(q, k, v, padded));
  const LocalAttentionOptions local{.chunk_len = 2, .causal = true, .shared_qk = true};
  check_pair("local_attention",
             local_attention(q.to(DType::f16), Tensor(), v.to(DType::f16), local, padding),
             local_attention(q, Tensor(), v, local, padding));
  const LSHAttentionOptions lsh{.chunk_len = 2, .n_buckets = 2, .n_hashes = 2, .causal = true};
  Generator rot(7);
  const LSHRotations rotations = random_lsh_rotations(2, d, 2, 2, rot);
  const Tensor buckets = lsh_hash(q, rotations);  // the same buckets for both dtypes
  check_pair("lsh_attention",
             lsh_attention_with_buckets(q.to(DType::f16), v.to(DType::f16), buckets, lsh, padding),
             lsh_attention_with_buckets(q, v, buckets, lsh, padding));
}

// The whole model in f16 autocast on a padded, causal batch with large activations: the loss and
// every gradient finite (where f32 is), and close to f32.
TEST_CASE("ReformerLM under f16 autocast: padded causal batch stays finite") {
  for (AttentionKind kind : {AttentionKind::lsh, AttentionKind::full, AttentionKind::local}) {
    ReformerConfig config = two_layer_config({kind});
    config.n_layers = 1;
    Generator init(2);
    ReformerLM model(config, init);
    // Scale the query/key projections up: logits of several hundred before the penalties.
    for (auto& [name, p] : model.named_parameters()) {
      if (name.find("w_qk") != std::string::npos || name.find("w_q") != std::string::npos) {
        NoGradGuard no_grad;
        mul_(p, 20.0);
      }
    }
    const Tensor tokens = test::random_tokens(2, 16, config.vocab_size, 5);
    Tensor targets = test::random_tokens(2, 16, config.vocab_size, 6);
    // Sequence 1 is padding after position 5: its targets there are ignored.
    std::vector<uint8_t> real(32, 1);
    for (int i = 16 + 5; i < 32; ++i) real[static_cast<std::size_t>(i)] = 0;
    const Tensor padding = from_vector<uint8_t>(real, Shape{2, 16}).to(DType::boolean);
    targets = where(padding, targets, -100.0);
    const LossAndGrads ref = step(model, tokens, targets, DType::f32, padding);
    REQUIRE(std::isfinite(ref.loss));
    const LossAndGrads got = step(model, tokens, targets, DType::f16, padding);
    INFO(to_string(kind));
    CHECK(std::isfinite(got.loss));
    CHECK(std::abs(got.loss - ref.loss) <= 5e-3 * std::abs(ref.loss));
    for (std::size_t i = 0; i < got.grads.size(); ++i) {
      INFO(got.grads[i].first);
      CHECK(all_finite(got.grads[i].second));
      CHECK(max_rel(got.grads[i].second, ref.grads[i].second) < 5e-2);
    }
  }
}

}  // namespace
}  // namespace rw::reformer
