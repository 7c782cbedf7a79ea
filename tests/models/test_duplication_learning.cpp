// The Reformer paper's duplication task at a small scale: a 1-layer LSH model learns to copy.
#include <doctest/doctest.h>

#include "autograd/tape.h"
#include "core/ops.h"
#include "models/reformer/duplication_task.h"
#include "models/reformer/reformer_lm.h"
#include "nn/adam.h"

namespace rw::reformer {
namespace {

TEST_CASE("a 1-layer LSH ReformerLM learns the duplication task (length 64)") {
  ReformerConfig c;
  c.vocab_size = 128;
  c.d_model = 64;
  c.d_ff = 128;
  c.n_layers = 1;
  c.n_heads = 2;
  c.attention = {AttentionKind::lsh};
  c.n_hashes = 4;
  c.chunk_len = 16;  // 4 chunks of the 64 positions; 8 buckets per round
  c.positions = PositionKind::learned;
  c.max_len = 64;
  c.loss_chunk = 64;
  Generator init(1);
  ReformerLM model(c, init);
  nn::Adam optimizer(model.parameters(), {.lr = 3e-3});
  DuplicationTask train({.length = 64}, /*seed=*/7);
  const DuplicationBatch held_out = DuplicationTask({.length = 64}, /*seed=*/999).next(32);

  auto accuracy = [&] {
    NoGradGuard no_grad;
    model.eval();
    Generator rotations(3);
    GeneratorScope scope(rotations);
    const double acc =
        masked_accuracy(model.forward(held_out.inputs), held_out.targets, held_out.loss_mask);
    model.train();
    return acc;
  };
  const double before = accuracy();
  Generator dropout_and_rotations(5);
  GeneratorScope scope(dropout_and_rotations);
  for (int step = 0; step < 300; ++step) {
    DuplicationBatch b = train.next(16);
    // The loss on the second copy only, as the paper scores it.
    Tensor targets = where(b.loss_mask, b.targets, static_cast<double>(kNoTarget));
    optimizer.zero_grad();
    backward(model.loss(b.inputs, targets));
    optimizer.step();
  }
  const double after = accuracy();
  MESSAGE("held-out accuracy on the second copy: " << before << " before, " << after
                                                   << " after 300 steps");
  CHECK(before < 0.05);  // chance is 1/127
  CHECK(after >= 0.95);
}

}  // namespace
}  // namespace rw::reformer
