// The README's ten-line Reformer training example, at a small size (fewer steps, a shorter
// window, a generated text file), so the code shown there is known to compile and to learn.
#include <doctest/doctest.h>

#include <fstream>

#include "autograd/tape.h"
#include "models/reformer/byte_dataset.h"
#include "models/reformer/reformer_lm.h"
#include "nn/adam.h"
#include "nn/nn_test_util.h"

namespace {

TEST_CASE("the README's ReformerLM training example runs and its loss falls") {
  rw::test::TempDir dir("readme");
  {
    std::ofstream out(dir / "input.txt");
    for (int i = 0; i < 400; ++i) out << "the quick brown fox jumps over the lazy dog. ";
  }
  const std::string path = (dir / "input.txt").string();

  // From here on, the README's code; only the sizes differ (marked).
  rw::reformer::ReformerConfig cfg;
  cfg.n_layers = 2, cfg.n_hashes = 4, cfg.ff_chunk = 128;
  cfg.d_model = 64, cfg.d_ff = 128;  // smaller than the README's defaults
  auto model = std::make_shared<rw::reformer::ReformerLM>(cfg);
  rw::nn::Adam opt(model->parameters(), {.lr = 1e-3});
  auto text = std::make_shared<rw::reformer::ByteDataset>(path);
  rw::reformer::WindowSampler windows(text, rw::reformer::Split::train, 128, /*seed=*/0);
  double first = 0, last = 0;
  for (int step = 0; step < 40; ++step) {
    auto [x, y] = windows.next(4);
    opt.zero_grad();
    rw::Tensor loss = model->loss(x, y);
    rw::backward(loss);
    opt.step();
    (step == 0 ? first : last) = loss.item();
  }
  MESSAGE("loss " << first << " -> " << last << " nats per byte");
  CHECK(last < 0.75 * first);
}

}  // namespace
