// ReformerLM: the config, every attention kind, reversible against plain gradients, gradcheck,
// causality, odd lengths and padding, checkpoints, and memory flat in depth.
#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/tape.h"
#include "core/generator_scope.h"
#include "core/ops.h"
#include "models/reformer/reformer_lm.h"
#include "nn/checkpoint.h"
#include "nn/nn_test_util.h"
#include "reformer_test_util.h"
#include "test_util.h"

namespace rw::reformer {
namespace {

ReformerConfig tiny_config(AttentionKind kind) {
  ReformerConfig c;
  c.vocab_size = 11;
  c.d_model = 8;
  c.d_ff = 16;
  c.n_layers = 2;
  c.n_heads = 2;
  c.attention = {kind};
  c.chunk_len = 4;
  c.n_hashes = 2;
  c.n_buckets = 4;
  c.max_len = 64;
  c.loss_chunk = 5;
  return c;
}

double max_rel_diff(const Tensor& a, const Tensor& b) {
  const double scale = std::max(max(abs(b)).item(), 1e-300);
  return max(abs(sub(a, b))).item() / scale;
}

TEST_CASE("ReformerConfig round-trips through its map and rejects bad values") {
  ReformerConfig c = tiny_config(AttentionKind::lsh);
  c.attention = {AttentionKind::lsh, AttentionKind::full};
  c.reversible = false;
  c.ff_chunk = 3;
  c.dropout = 0.125;
  c.positions = PositionKind::sinusoidal;
  c.axial_shape = {4, 16};
  c.ff_activation = nn::Activation::silu;
  const auto map = c.to_map();
  CHECK(map.at("attention") == "lsh,full");
  CHECK(map.at("axial_shape") == "4,16");
  CHECK(ReformerConfig::from_map(map) == c);
  CHECK(ReformerConfig::from_map({}) == ReformerConfig{});

  auto error_of = [](ReformerConfig bad) { return test::error_message([&] { bad.validate(); }); };
  ReformerConfig heads = c;
  heads.n_heads = 3;
  CHECK(test::contains(error_of(heads), "ReformerConfig: n_heads 3 must divide d_model 8"));
  ReformerConfig kinds = c;
  kinds.attention = {AttentionKind::lsh, AttentionKind::lsh, AttentionKind::lsh};
  CHECK(test::contains(error_of(kinds),
                       "attention lists 3 kinds; give one for every layer or one "
                       "per layer (n_layers 2)"));
  ReformerConfig drop = c;
  drop.dropout = 1.0;
  CHECK(test::contains(error_of(drop), "ReformerConfig: dropout must be in [0, 1), got 1"));
  ReformerConfig axial = tiny_config(AttentionKind::lsh);
  axial.axial_shape = {4, 4};
  CHECK(test::contains(error_of(axial),
                       "axial_shape [4, 4] covers 16 positions, fewer than max_len 64"));

  CHECK(test::contains(test::error_message([] {
                         ReformerConfig::from_map({{"d_modle", "3"}});
                       }),
                       "ReformerConfig: unknown key 'd_modle' (value '3')"));
  CHECK(test::contains(test::error_message([] {
                         ReformerConfig::from_map({{"d_model", "3x"}});
                       }),
                       "ReformerConfig: d_model must be an integer, got '3x'"));
  CHECK(test::contains(test::error_message([] {
                         ReformerConfig::from_map({{"attention", "lsh,fast"}});
                       }),
                       "unknown attention kind 'fast' (expected full, lsh or local)"));
  CHECK(test::contains(test::error_message([] {
                         ReformerConfig::from_map({{"reversible", "yes"}});
                       }),
                       "ReformerConfig: reversible must be true or false, got 'yes'"));
}

TEST_CASE("every attention kind, mixed kinds, any length, length 1 and a padded batch") {
  for (auto kinds :
       std::vector<std::vector<AttentionKind>>{{AttentionKind::lsh},
                                               {AttentionKind::full},
                                               {AttentionKind::local},
                                               {AttentionKind::lsh, AttentionKind::local}}) {
    ReformerConfig c = tiny_config(kinds[0]);
    c.attention = kinds;
    CAPTURE(c.to_map().at("attention"));
    Generator gen(3);
    ReformerLM model(c, gen);
    for (int64_t length : {1, 7, 13}) {
      CAPTURE(length);
      Tensor tokens = test::random_tokens(2, length, c.vocab_size, 4);
      Tensor logits = model.forward(tokens);
      CHECK(logits.shape() == Shape{2, length, c.vocab_size});
      CHECK(std::isfinite(sum(logits).item()));
    }
    // A padded batch: the second sequence has 4 real tokens; its real positions see the same
    // logits as the 4 tokens alone.
    Tensor tokens = test::random_tokens(2, 9, c.vocab_size, 5);
    std::vector<uint8_t> mask(18, 1);
    for (int64_t t = 4; t < 9; ++t) mask[9 + t] = 0;
    Tensor padding = from_vector<uint8_t>(mask, Shape{2, 9}).to(DType::boolean);
    Tensor padded = model.forward(tokens, padding);
    Tensor alone = model.forward(tokens.narrow(0, 1, 1).narrow(1, 0, 4).contiguous());
    Tensor padded_real = padded.narrow(0, 1, 1).narrow(1, 0, 4);
    if (kinds[0] == AttentionKind::lsh) {
      // LSH buckets depend on the other tokens of the chunked ticker; only check finiteness.
      CHECK(std::isfinite(sum(padded_real).item()));
    } else {
      CHECK(max_rel_diff(padded_real, alone) < 1e-5);
    }
  }
}

// The gradients of the loss with respect to every parameter.
std::vector<Tensor> loss_gradients(ReformerLM& model, const Tensor& tokens, const Tensor& targets) {
  model.zero_grad();
  Generator gen(99);
  GeneratorScope scope(gen);
  backward(model.loss(tokens, targets));
  std::vector<Tensor> g;
  for (const Tensor& p : model.parameters()) g.push_back(p.grad());
  return g;
}

TEST_CASE("reversible ReformerLM gradients equal the plain residual ones (f64, dropout)") {
  for (AttentionKind kind : {AttentionKind::lsh, AttentionKind::full, AttentionKind::local}) {
    ReformerConfig c = tiny_config(kind);
    c.dropout = 0.1;
    c.attention_dropout = 0.1;
    c.ff_dropout = 0.1;
    c.ff_chunk = 3;
    CAPTURE(to_string(kind));
    Generator gen(7);
    ReformerLM model(c, gen);
    model.to(DType::f64);
    model.train();
    Tensor tokens = test::random_tokens(2, 10, c.vocab_size, 8);
    Tensor targets = test::random_tokens(2, 10, c.vocab_size, 9);
    model.set_reversible(true);
    std::vector<Tensor> rev = loss_gradients(model, tokens, targets);
    model.set_reversible(false);
    std::vector<Tensor> plain = loss_gradients(model, tokens, targets);
    REQUIRE(rev.size() == plain.size());
    double worst = 0;
    for (std::size_t i = 0; i < rev.size(); ++i) {
      REQUIRE(rev[i].defined());
      worst = std::max(worst, max_rel_diff(rev[i], plain[i]));
    }
    CHECK(worst <= 1e-9);
  }
}

TEST_CASE("a 2-layer ReformerLM passes gradcheck in float64") {
  for (AttentionKind kind : {AttentionKind::lsh, AttentionKind::local}) {
    CAPTURE(to_string(kind));
    ReformerConfig c = tiny_config(kind);
    Generator gen(11);
    ReformerLM model(c, gen);
    model.to(DType::f64);
    model.train();
    Tensor tokens = test::random_tokens(1, 9, c.vocab_size, 12);
    Tensor targets = test::random_tokens(1, 9, c.vocab_size, 13);
    GradcheckResult r = test::gradcheck_reformer_lm(model, tokens, targets);
    CHECK_MESSAGE(r.ok, r.message);
  }
}

TEST_CASE("causal: no output depends on a later token") {
  for (AttentionKind kind : {AttentionKind::full, AttentionKind::local, AttentionKind::lsh}) {
    CAPTURE(to_string(kind));
    ReformerConfig c = tiny_config(kind);
    // One LSH bucket: the chunks are then positional, so which keys a query sees cannot depend on
    // later tokens (with several buckets, a later token's bucket moves earlier tokens between
    // chunks of the sorted ticker: the selection, not the attention, sees the future).
    c.n_buckets = 1;
    Generator gen(21);
    ReformerLM model(c, gen);
    Tensor tokens = test::random_tokens(1, 12, c.vocab_size, 22);
    Tensor changed = tokens.clone();
    for (int64_t t = 7; t < 12; ++t) {
      copy_(changed.narrow(1, t, 1),
            full({1, 1}, static_cast<double>((t * 3) % 11), {.dtype = DType::i64}));
    }
    Generator g1(1), g2(1);
    Tensor a, b;
    {
      GeneratorScope s(g1);
      a = model.forward(tokens);
    }
    {
      GeneratorScope s(g2);
      b = model.forward(changed);
    }
    CHECK(max(abs(sub(a.narrow(1, 0, 7), b.narrow(1, 0, 7)))).item() == 0);
    CHECK(max(abs(sub(a.narrow(1, 7, 5), b.narrow(1, 7, 5)))).item() > 0);
  }
}

TEST_CASE("the config and the weights round-trip through a checkpoint") {
  ReformerConfig c = tiny_config(AttentionKind::lsh);
  c.attention = {AttentionKind::lsh, AttentionKind::full};
  c.tie_embeddings = true;
  Generator gen(31);
  ReformerLM model(c, gen);
  test::TempDir dir("reformer-ckpt");
  nn::Checkpoint ckpt;
  ckpt.model = model.state_dict();
  ckpt.config = c.to_map();
  ckpt.step = 5;
  nn::save_checkpoint(dir / "m.safetensors", ckpt);
  nn::Checkpoint back = nn::load_checkpoint(dir / "m.safetensors");
  ReformerConfig c2 = ReformerConfig::from_map(back.config);
  CHECK(c2 == c);
  Generator other(999);
  ReformerLM restored(c2, other);
  restored.load_state_dict(back.model);
  Tensor tokens = test::random_tokens(2, 6, c.vocab_size, 32);
  Generator g1(3), g2(3);
  Tensor a, b;
  {
    GeneratorScope s(g1);
    a = model.forward(tokens);
  }
  {
    GeneratorScope s(g2);
    b = restored.forward(tokens);
  }
  CHECK(max(abs(sub(a, b))).item() == 0);
  const auto names = model.named_parameters();
  CHECK(std::any_of(names.begin(), names.end(),
                    [](const auto& p) { return p.first == "output_bias"; }));
  CHECK(std::none_of(names.begin(), names.end(),
                     [](const auto& p) { return p.first.starts_with("output."); }));
}

TEST_CASE("bad input to ReformerLM is a clear error") {
  ReformerConfig c = tiny_config(AttentionKind::lsh);
  Generator gen(41);
  ReformerLM model(c, gen);
  CHECK(
      test::contains(test::error_message([&] { model.forward(test::random_tokens(2, 65, 11, 1)); }),
                     "ReformerLM: sequence length 65 exceeds max_len 64 of the axial positions"));
  CHECK(test::contains(test::error_message([&] {
                         model.forward(zeros({2, 3}));
                       }),
                       "ReformerLM: tokens must be i64 or i32, got f32"));
  CHECK(test::contains(
      test::error_message([&] { model.forward(zeros({3}, {.dtype = DType::i64})); }),
      "ReformerLM: expected tokens [batch, length] with length >= 1, got shape [3]"));
  CHECK(test::contains(
      test::error_message([&] {
        model.forward(zeros({2, 3}, {.dtype = DType::i64}),
                      zeros({2, 4}, {.dtype = DType::boolean}));
      }),
      "ReformerLM: key_padding_mask must be bool [2, 3] like the tokens, got bool [2, 4]"));
  CHECK(test::contains(
      test::error_message([&] {
        model.loss(zeros({2, 3}, {.dtype = DType::i64}), zeros({2, 4}, {.dtype = DType::i64}));
      }),
      "ReformerLM: targets must have the tokens' shape [2, 3], got [2, 4]"));
  ReformerConfig bad = c;
  bad.d_model = 0;
  CHECK(test::contains(test::error_message([&] { ReformerLM m(bad); }),
                       "ReformerConfig: d_model must be > 0, got 0"));
}

TEST_CASE("memory: the reversible ReformerLM's peak is nearly flat in depth") {
  auto activations = [](int64_t depth, bool reversible) {
    ReformerConfig c;
    c.vocab_size = 32;
    c.d_model = 32;
    c.n_heads = 2;
    c.n_layers = depth;
    c.chunk_len = 32;
    c.n_hashes = 2;
    c.max_len = 1024;
    c.reversible = reversible;
    c.d_ff = 256;  // unchunked: the plain stack keeps each layer's d_ff activations
    c.loss_chunk = 128;
    Generator gen(51);
    ReformerLM model(c, gen);
    int64_t param_bytes = 0;
    for (const Tensor& p : model.parameters()) param_bytes += static_cast<int64_t>(p.nbytes());
    Tensor tokens = test::random_tokens(1, 1024, c.vocab_size, 52);
    const int64_t peak = test::peak_bytes([&] { backward(model.loss(tokens, tokens)); });
    return peak - param_bytes;  // minus the gradients, as large as the parameters
  };
  const int64_t rev1 = activations(1, true), rev2 = activations(2, true),
                rev6 = activations(6, true);
  const int64_t plain1 = activations(1, false), plain6 = activations(6, false);
  MESSAGE("ReformerLM activations (bytes): reversible depth 1 "
          << rev1 << ", 2 " << rev2 << ", 6 " << rev6 << "; plain depth 1 " << plain1
          << ", depth 6 " << plain6);
  // From two layers on, each layer adds only the LSH buckets its block cache keeps for the
  // backward (i64 per token, head and round: 32 KB here, against 4.9 MB of activations). The step
  // from one layer to two is a constant: the backward's walk holds the stack's outputs and their
  // gradients (4 tensors of [1, 1024, 32] floats, 0.5 MB) beside the block it recomputes.
  const int64_t hidden_bytes = 1024 * 32 * 4;
  const int64_t bucket_bytes = 2 * 2 * 1024 * 8;  // heads x hashes x L x sizeof(i64)
  CHECK(rev6 - rev2 <= 4 * bucket_bytes);
  CHECK(rev6 - rev1 <= 4 * hidden_bytes + 5 * bucket_bytes);
  CHECK(static_cast<double>(rev6) <= 1.15 * static_cast<double>(rev1));
  CHECK(plain6 - plain1 >= 10 * (rev6 - rev2));
  CHECK(plain6 >= 2 * plain1);
}

}  // namespace
}  // namespace rw::reformer
