// Generation with a ReformerLM: the cached decoder against the uncached one (per-step logits and
// generated tokens) for full, local, LSH and mixed models; sampling (temperature, top-k, top-p);
// option checks; training mode restored.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "autograd/tape.h"
#include "core/generator_scope.h"
#include "core/ops.h"
#include "models/reformer/decode_cache.h"
#include "models/reformer/generate.h"
#include "models/reformer/lsh_self_attention.h"
#include "models/reformer/reformer_lm.h"
#include "nn/attention.h"
#include "reformer_test_util.h"
#include "test_util.h"

namespace rw::reformer {
namespace {

using test::contains;
using test::error_message;

ReformerConfig small_config(std::vector<AttentionKind> kinds) {
  ReformerConfig c;
  c.vocab_size = 23;
  c.d_model = 16;
  c.d_ff = 32;
  c.n_layers = static_cast<int64_t>(kinds.size());
  c.n_heads = 2;
  c.attention = std::move(kinds);
  c.chunk_len = 4;
  c.n_hashes = 2;
  c.n_buckets = 0;  // resolved once per generation call
  c.max_len = 64;
  return c;
}

std::shared_ptr<ReformerLM> make_model(const ReformerConfig& c, uint64_t seed = 1) {
  Generator gen(seed);
  auto model = std::make_shared<ReformerLM>(c, gen);
  // Larger output weights than the initialisation gives, so the logits of different tokens are
  // far apart and sampling is not nearly uniform.
  NoGradGuard no_grad;
  copy_(model->embedding->weight, mul(model->embedding->weight, 4.0));
  return model;
}

double max_abs(const Tensor& t) { return max(abs(t)).item(); }

struct Case {
  std::string name;
  ReformerConfig config;
  DecodePlan plan;  // expected
};

std::vector<Case> model_cases() {
  using K = AttentionKind;
  std::vector<Case> cases;
  cases.push_back({"full shared-qk", small_config({K::full, K::full}), {2, 0}});
  ReformerConfig separate = small_config({K::full, K::full});
  separate.shared_qk = false;
  separate.positions = PositionKind::learned;
  cases.push_back({"full separate qk, learned positions", separate, {2, 0}});
  cases.push_back({"local shared-qk", small_config({K::local, K::local}), {2, 0}});
  ReformerConfig local2 = small_config({K::local, K::local});
  local2.shared_qk = false;
  local2.chunks_before = 2;
  local2.chunks_after = 1;
  local2.ff_chunk = 3;
  local2.positions = PositionKind::sinusoidal;
  cases.push_back({"local 2 before 1 after, chunked ff", local2, {2, 0}});
  cases.push_back({"lsh 1 layer", small_config({K::lsh}), {1, 0}});
  ReformerConfig lsh_dup = small_config({K::lsh});
  lsh_dup.n_hashes = 3;
  lsh_dup.count_duplicates = true;
  lsh_dup.chunks_after = 1;
  lsh_dup.n_buckets = 4;
  cases.push_back({"lsh 1 layer, 3 hashes, duplicates, 1 after", lsh_dup, {1, 0}});
  cases.push_back({"mixed full, local, lsh", small_config({K::full, K::local, K::lsh}), {3, 0}});
  cases.push_back({"mixed local, lsh, full", small_config({K::local, K::lsh, K::full}), {1, 2}});
  cases.push_back({"lsh 2 layers", small_config({K::lsh, K::lsh}), {0, 2}});
  ReformerConfig plain = small_config({K::full, K::lsh});
  plain.reversible = false;
  plain.tie_embeddings = true;
  cases.push_back({"plain residual full, lsh, tied", plain, {2, 0}});
  ReformerConfig standard = small_config({K::local, K::lsh, K::full});
  standard.reversible = false;
  standard.standard_residual = true;
  cases.push_back({"standard residual local, lsh, full", standard, {1, 2}});
  return cases;
}

TEST_CASE("cache_plan: caches up to the first LSH layer, which is cached only when last") {
  for (const Case& c : model_cases()) {
    INFO(c.name);
    const DecodePlan plan = cache_plan(c.config);
    CHECK(plan.cached_layers == c.plan.cached_layers);
    CHECK(plan.recomputed_layers == c.plan.recomputed_layers);
  }
  ReformerConfig bidirectional = small_config({AttentionKind::full});
  bidirectional.causal = false;
  CHECK(cache_plan(bidirectional).cached_layers == 0);
  CHECK(cache_plan(bidirectional).recomputed_layers == 1);
}

TEST_CASE("cached decoder: per-step logits equal the uncached last-position logits") {
  for (const Case& c : model_cases()) {
    auto model = make_model(c.config);
    model->eval();
    // Prompt lengths 1, inside the first chunk, and crossing a chunk boundary; steps cross several.
    for (int64_t prompt_len : {1, 3, 6}) {
      INFO(c.name, ", prompt ", prompt_len);
      const int64_t steps = 13, B = 2;
      Tensor tokens =
          test::random_tokens(B, prompt_len + steps, c.config.vocab_size, 5 + prompt_len);
      const DecoderOptions base{.capacity = prompt_len + steps, .rng = Generator(9, 1).state()};
      DecoderOptions uncached_options = base;
      uncached_options.use_cache = false;
      IncrementalDecoder cached(*model, base), uncached(*model, uncached_options);
      CHECK(cached.plan().cached_layers == c.plan.cached_layers);
      double worst = 0;
      for (int64_t t = prompt_len; t <= prompt_len + steps; ++t) {
        const int64_t start = t == prompt_len ? 0 : t - 1;
        Tensor piece = tokens.narrow(1, start, t - start);
        Tensor a = cached.feed(piece), b = uncached.feed(piece);
        REQUIRE(a.shape() == Shape{B, c.config.vocab_size});
        worst = std::max(worst, max_abs(sub(a, b)) / std::max(max_abs(b), 1.0));
      }
      CHECK(worst < 2e-5);
    }
  }
}

TEST_CASE("the uncached decoder is the model's forward over the sequence") {
  // With a fixed bucket count, the decoder's last logits are the last row of forward() under the
  // decoder's generator state: generation samples from the model itself.
  ReformerConfig c = small_config({AttentionKind::full, AttentionKind::lsh});
  c.n_buckets = 4;
  auto model = make_model(c);
  model->eval();
  Tensor tokens = test::random_tokens(1, 11, c.vocab_size, 3);
  const PhiloxState state = Generator(4, 1).state();
  IncrementalDecoder decoder(*model, {.capacity = 11, .rng = state});
  Tensor last = decoder.feed(tokens.narrow(1, 0, 10));
  last = decoder.feed(tokens.narrow(1, 10, 1));
  Generator gen;
  gen.set_state(state);
  GeneratorScope scope(gen);
  NoGradGuard no_grad;
  Tensor full = model->forward(tokens).select(1, 10);
  CHECK(max_abs(sub(last, full)) < 1e-5 * std::max(max_abs(full), 1.0));
}

TEST_CASE("cached and uncached generation give the same tokens") {
  struct Sampling {
    double temperature;
    int64_t top_k;
    double top_p;
  };
  const std::vector<Sampling> samplings{{0, 0, 1}, {1.0, 0, 1}, {0.8, 5, 0.9}};
  for (const Case& c : model_cases()) {
    auto model = make_model(c.config, 2);
    for (int64_t prompt_len : {1, 5}) {
      for (const Sampling& s : samplings) {
        INFO(c.name, ", prompt ", prompt_len, ", temperature ", s.temperature);
        Tensor prompt = test::random_tokens(2, prompt_len, c.config.vocab_size, 11 + prompt_len);
        GenerateOptions o{.max_new_tokens = 10,
                          .temperature = s.temperature,
                          .top_k = s.top_k,
                          .top_p = s.top_p,
                          .seed = 17};
        Tensor cached = generate(*model, prompt, o);
        o.use_cache = false;
        Tensor uncached = generate(*model, prompt, o);
        REQUIRE(cached.shape() == Shape{2, prompt_len + 10});
        CHECK(cached.to_vector<int64_t>() == uncached.to_vector<int64_t>());
        CHECK(max_abs(sub(cached.narrow(1, 0, prompt_len), prompt)) == 0);
      }
    }
  }
}

TEST_CASE("generation: temperature 0 is greedy, top_k = 1 equals greedy, a seed fixes samples") {
  ReformerConfig c = small_config({AttentionKind::full});
  auto model = make_model(c, 3);
  Tensor prompt = test::random_tokens(1, 4, c.vocab_size, 8);
  Tensor greedy = generate(*model, prompt, {.max_new_tokens = 10, .temperature = 0});
  // Greedy by hand: the argmax of the model's last logits, one token at a time.
  model->eval();
  Tensor seq = prompt;
  {
    NoGradGuard no_grad;
    for (int step = 0; step < 10; ++step) {
      Tensor logits = model->forward(seq).select(1, seq.size(1) - 1);
      seq = concat({seq, argmax(logits, -1, true)}, 1);
    }
  }
  CHECK(greedy.to_vector<int64_t>() == seq.to_vector<int64_t>());
  Tensor top1 = generate(*model, prompt, {.max_new_tokens = 10, .temperature = 1.7, .top_k = 1});
  CHECK(top1.to_vector<int64_t>() == greedy.to_vector<int64_t>());
  const GenerateOptions sampled{.max_new_tokens = 10, .temperature = 1.5, .seed = 5};
  Tensor a = generate(*model, prompt, sampled), b = generate(*model, prompt, sampled);
  CHECK(a.to_vector<int64_t>() == b.to_vector<int64_t>());
  GenerateOptions other = sampled;
  other.seed = 6;
  CHECK(generate(*model, prompt, other).to_vector<int64_t>() != a.to_vector<int64_t>());
  CHECK(a.to_vector<int64_t>() != greedy.to_vector<int64_t>());
}

TEST_CASE("sampling: temperature, top-k and top-p distributions and draws") {
  // Two rows: probabilities 0.5, 0.3, 0.1, 0.06, 0.04 (in a shuffled order) and a tie.
  const std::vector<double> p{0.1, 0.5, 0.04, 0.3, 0.06};
  std::vector<double> logits;
  for (double v : p) logits.push_back(std::log(v));
  for (double v : {1.0, 2.0, 2.0, 0.0, -1.0}) logits.push_back(v);
  Tensor l = test::f64(logits, {2, 5});

  auto row = [](const Tensor& probs, int64_t r) { return probs.select(0, r).to_vector<double>(); };
  // Temperature 2: softmax(logits / 2), computed here directly.
  std::vector<double> expected(5);
  double z = 0;
  for (int i = 0; i < 5; ++i) z += std::sqrt(p[static_cast<std::size_t>(i)]);
  for (int i = 0; i < 5; ++i)
    expected[static_cast<std::size_t>(i)] = std::sqrt(p[static_cast<std::size_t>(i)]) / z;
  std::vector<double> t2 = row(sampling_probabilities(l, {.temperature = 2}), 0);
  for (int i = 0; i < 5; ++i)
    CHECK(t2[static_cast<std::size_t>(i)] ==
          doctest::Approx(expected[static_cast<std::size_t>(i)]).epsilon(1e-12));
  // top_p 0.75: the smallest set reaching 0.75 is {0.5, 0.3}, renormalised.
  std::vector<double> nucleus = row(sampling_probabilities(l, {.top_p = 0.75}), 0);
  CHECK(nucleus[0] == 0);
  CHECK(nucleus[1] == doctest::Approx(0.625));
  CHECK(nucleus[2] == 0);
  CHECK(nucleus[3] == doctest::Approx(0.375));
  CHECK(nucleus[4] == 0);
  // top_k 3 then top_p 0.95 of the renormalised three (0.5, 0.3, 0.1) / 0.9: needs all three.
  std::vector<double> k3 = row(sampling_probabilities(l, {.top_k = 3, .top_p = 0.95}), 0);
  CHECK(k3[0] == doctest::Approx(0.1 / 0.9));
  CHECK(k3[2] == 0);
  CHECK(k3[4] == 0);
  // Greedy on a tie: the lowest id.
  CHECK(row(sampling_probabilities(l, {.temperature = 0}), 1) ==
        std::vector<double>{0, 1, 0, 0, 0});

  // Many draws: tokens outside top-p never appear, the kept ones in proportion.
  Generator gen(3);
  std::vector<int64_t> counts(5, 0);
  const int draws = 4000;
  for (int i = 0; i < draws; ++i) {
    ++counts[static_cast<std::size_t>(
        sample_next_tokens(l, {.top_p = 0.75}, gen).to_vector<int64_t>()[0])];
  }
  CHECK(counts[0] == 0);
  CHECK(counts[2] == 0);
  CHECK(counts[4] == 0);
  CHECK(std::abs(counts[1] / static_cast<double>(draws) - 0.625) < 0.03);
  // top_k 2 keeps exactly the two most likely.
  std::vector<int64_t> k2(5, 0);
  for (int i = 0; i < 1000; ++i) {
    ++k2[static_cast<std::size_t>(
        sample_next_tokens(l, {.top_k = 2}, gen).to_vector<int64_t>()[0])];
  }
  CHECK(k2[0] + k2[2] + k2[4] == 0);
  CHECK(k2[1] > 0);
  CHECK(k2[3] > 0);
}

TEST_CASE("generate: bad options and prompts are clear errors") {
  ReformerConfig c = small_config({AttentionKind::full});
  c.max_len = 16;
  auto model = make_model(c);
  Tensor prompt = test::random_tokens(1, 4, c.vocab_size, 1);
  auto error = [&](const Tensor& p, GenerateOptions o) {
    return error_message([&] { generate(*model, p, o); });
  };
  CHECK(contains(error(prompt, {.temperature = -0.5}), "temperature must be finite and >= 0"));
  CHECK(contains(error(prompt, {.temperature = NAN}), "temperature must be finite"));
  CHECK(contains(error(prompt, {.top_p = 0}), "top_p must be in (0, 1]"));
  CHECK(contains(error(prompt, {.top_p = 1.5}), "top_p must be in (0, 1] (1 = off), got 1.5"));
  CHECK(contains(error(prompt, {.top_k = -1}), "top_k must be >= 0"));
  CHECK(contains(error(prompt, {.max_new_tokens = -1}), "max_new_tokens must be >= 0, got -1"));
  CHECK(contains(error(prompt, {.stop_token = 23}), "stop_token must lie in [0, 23)"));
  CHECK(contains(error(zeros({1, 0}, {.dtype = DType::i64}), {}), "the prompt is empty"));
  CHECK(contains(error(zeros({4}, {.dtype = DType::i64}), {}), "[1, length]"));
  CHECK(contains(error(zeros({1, 4}), {}), "must be i64 or i32 tokens, got f32"));
  CHECK(contains(error(full({1, 2}, 23, {.dtype = DType::i64}), {}),
                 "prompt tokens must lie in [0, 23)"));
  CHECK(contains(error(test::random_tokens(1, 17, c.vocab_size, 2), {}),
                 "the prompt length 17 exceeds max_len 16"));
  CHECK(contains(error(prompt, {.max_new_tokens = 13}),
                 "the prompt length 4 plus max_new_tokens 13 exceeds max_len 16"));
  CHECK(generate(*model, prompt, {.max_new_tokens = 12}).size(1) == 16);
  CHECK(contains(error_message([&] { IncrementalDecoder d(*model, {.capacity = 4}); }),
                 "must be in evaluation mode"));
}

TEST_CASE("generate: the training mode of every module is left as it was") {
  ReformerConfig c = small_config({AttentionKind::lsh, AttentionKind::local});
  c.dropout = 0.3;
  c.attention_dropout = 0.2;
  auto model = make_model(c);
  Tensor prompt = test::random_tokens(2, 3, c.vocab_size, 4);
  model->train();
  model->final_norm->eval();  // a mixed state survives too
  Tensor a = generate(*model, prompt, {.max_new_tokens = 6, .seed = 1});
  CHECK(model->is_training());
  CHECK(model->layers->is_training());
  CHECK(!model->final_norm->is_training());
  // Dropout was off: the same tokens as from the model in evaluation mode.
  model->eval();
  Tensor b = generate(*model, prompt, {.max_new_tokens = 6, .seed = 1});
  CHECK(!model->is_training());
  CHECK(a.to_vector<int64_t>() == b.to_vector<int64_t>());
  // The generation's bucket count override is gone: forward resolves per length again.
  auto& lsh = static_cast<LSHSelfAttention&>(*model->layer(0).attention);
  CHECK(!lsh.n_buckets_override().has_value());
}

TEST_CASE("generate: a stop token ends a sequence and fills it") {
  ReformerConfig c = small_config({AttentionKind::full});
  auto model = make_model(c, 4);
  Tensor prompt = test::random_tokens(2, 3, c.vocab_size, 12);
  Tensor greedy = generate(*model, prompt, {.max_new_tokens = 8, .temperature = 0});
  std::vector<int64_t> g = greedy.to_vector<int64_t>();
  // Row 0's first new token as the stop token: row 0 stops at once, row 1 runs on (unless it hits
  // the same token) and the output is padded with the stop token after row 0's stop.
  const int64_t stop = g[3];
  Tensor stopped =
      generate(*model, prompt, {.max_new_tokens = 8, .temperature = 0, .stop_token = stop});
  std::vector<int64_t> s = stopped.to_vector<int64_t>();
  const int64_t width = stopped.size(1);
  CHECK(width >= 4);
  for (int64_t t = 3; t < width; ++t) CHECK(s[static_cast<std::size_t>(t)] == stop);
  bool row1_stopped = false;
  for (int64_t t = 3; t < width; ++t) {
    const int64_t got = s[static_cast<std::size_t>(width + t)];
    if (row1_stopped) CHECK(got == stop);
    if (!row1_stopped) CHECK(got == g[static_cast<std::size_t>(11 + t)]);
    row1_stopped = row1_stopped || got == stop;
  }
  CHECK((width == 11 || row1_stopped));
}

TEST_CASE("MultiHeadAttention::forward_cached equals forward row by row") {
  for (bool shared : {false, true}) {
    for (bool fused : {false, true}) {
      INFO("shared ", shared, " fused ", fused);
      Generator gen(7);
      nn::MultiHeadAttention attn(
          12, 3, {.causal = true, .shared_qk = shared, .fused_projection = fused}, gen);
      Tensor x = randn({2, 9, 12}, gen);
      NoGradGuard no_grad;
      Tensor full = attn.forward(x);
      nn::KeyValueCache cache;
      Tensor first = attn.forward_cached(x.narrow(1, 0, 4), cache, 9);
      CHECK(max_abs(sub(first, full.narrow(1, 0, 4))) < 1e-5);
      // Two positions at once, then one at a time.
      Tensor pair = attn.forward_cached(x.narrow(1, 4, 2), cache, 9);
      CHECK(max_abs(sub(pair, full.narrow(1, 4, 2))) < 1e-5);
      for (int64_t t = 6; t < 9; ++t) {
        Tensor row = attn.forward_cached(x.narrow(1, t, 1), cache, 9);
        CHECK(max_abs(sub(row, full.narrow(1, t, 1))) < 1e-5);
      }
      CHECK(contains(error_message([&] { attn.forward_cached(x.narrow(1, 0, 1), cache, 9); }),
                     "over its capacity 9"));
    }
  }
  nn::MultiHeadAttention bidirectional(8, 2, {.causal = false});
  nn::KeyValueCache cache;
  CHECK(contains(error_message([&] {
                   bidirectional.forward_cached(randn({1, 2, 8}), cache, 4);
                 }),
                 "forward_cached needs a causal module"));
}

}  // namespace
}  // namespace rw::reformer
