// Integration of the nn library as a user writes a training loop: a tiny Transformer LM
// (tests/nn/tiny_lm.h) overfits a repeating sequence with every optimizer, and a run interrupted by
// a checkpoint file continues bit-exactly.
#include <doctest/doctest.h>

#include <filesystem>
#include <functional>
#include <memory>

#include "autograd/tape.h"
#include "core/generator_scope.h"
#include "core/ops.h"
#include "nn/adafactor.h"
#include "nn/adam.h"
#include "nn/checkpoint.h"
#include "nn/clip_grad.h"
#include "nn/nn_test_util.h"
#include "nn/sgd.h"
#include "nn/tiny_lm.h"

namespace rw {
namespace {
using test::TinyLM;

constexpr int64_t kVocab = 8, kLen = 12;

using MakeOptimizer = std::function<std::unique_ptr<nn::Optimizer>(TinyLM&)>;

double train_step(TinyLM& model, nn::Optimizer& opt, const Tensor& x, const Tensor& y) {
  opt.zero_grad();
  Tensor loss = cross_entropy(model.forward(x).reshape({-1, kVocab}), y.reshape({-1}));
  backward(loss);
  nn::clip_grad_norm_(model.parameters(), 1.0);
  opt.step();
  return loss.item();
}

std::shared_ptr<TinyLM> make_model(uint64_t seed) {
  Generator gen(seed);
  GeneratorScope scope(gen);
  return std::make_shared<TinyLM>(kVocab, kLen);
}

TEST_CASE("training: a 2-layer Transformer LM overfits a repeating sequence with every optimizer") {
  struct Case {
    std::string name;
    MakeOptimizer make;
    int steps;
  };
  const std::vector<Case> cases = {
      {"SGD (momentum 0.9, nesterov)",
       [](TinyLM& m) {
         return std::make_unique<nn::SGD>(
             m.named_parameters(), nn::SGDOptions{.lr = 0.1, .momentum = 0.9, .nesterov = true});
       },
       200},
      {"Adam",
       [](TinyLM& m) {
         return std::make_unique<nn::Adam>(m.named_parameters(), nn::AdamOptions{.lr = 1e-2});
       },
       150},
      {"AdamW",
       [](TinyLM& m) {
         return std::make_unique<nn::AdamW>(m.named_parameters(), nn::AdamWOptions{.lr = 1e-2});
       },
       150},
      {"Adafactor (paper defaults)",
       [](TinyLM& m) { return std::make_unique<nn::Adafactor>(m.named_parameters()); }, 150},
  };
  auto [x, y] = test::repeating_batch(4, kLen, kVocab);
  for (const Case& c : cases) {
    CAPTURE(c.name);
    auto model = make_model(7);
    auto opt = c.make(*model);
    const double first = train_step(*model, *opt, x, y);
    double last = first;
    for (int s = 1; s < c.steps; ++s) last = train_step(*model, *opt, x, y);
    MESSAGE(c.name << ": loss " << first << " -> " << last << " in " << c.steps << " steps");
    CHECK(first > 1.5);  // about ln(8) = 2.08 at the start
    CHECK(last < 0.05);
  }
}

TEST_CASE("training: save a checkpoint after N steps, load, train M more == N + M steps") {
  auto [x, y] = test::repeating_batch(4, kLen, kVocab);
  auto make_opt = [](TinyLM& m) {
    return std::make_unique<nn::AdamW>(m.named_parameters(), nn::AdamWOptions{.lr = 5e-3});
  };
  const int n = 5, m = 4;
  // Uninterrupted.
  auto ref = make_model(3);
  auto ref_opt = make_opt(*ref);
  for (int s = 0; s < n + m; ++s) train_step(*ref, *ref_opt, x, y);
  // Interrupted: N steps, checkpoint to disk, a fresh process-like restart, M steps.
  test::TempDir dir("training");
  const auto path = dir / "resume.safetensors";
  {
    auto model = make_model(3);
    auto opt = make_opt(*model);
    for (int s = 0; s < n; ++s) train_step(*model, *opt, x, y);
    nn::save_checkpoint(path, {.model = model->state_dict(),
                               .optimizer = opt->state_dict(),
                               .step = n,
                               .rng = {},
                               .config = {{"d_model", "32"}}});
  }
  auto model = make_model(99);  // different initial values: everything must come from the file
  auto opt = make_opt(*model);
  nn::Checkpoint ckpt = nn::load_checkpoint(path);
  CHECK(ckpt.step == n);
  CHECK(ckpt.config.at("d_model") == "32");
  model->load_state_dict(ckpt.model);
  opt->load_state_dict(ckpt.optimizer);
  for (int s = 0; s < m; ++s) train_step(*model, *opt, x, y);
  auto want = ref->named_parameters();
  auto got = model->named_parameters();
  REQUIRE(want.size() == got.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    CAPTURE(want[i].first);
    CHECK(want[i].second.to_vector<float>() == got[i].second.to_vector<float>());
  }
}

}  // namespace
}  // namespace rw
