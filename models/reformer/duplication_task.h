#pragma once
// The duplication task of the Reformer paper (Sec. 5, Table 2): every sequence is `0 w 0 w`, w a
// string of random symbols from 1..vocab_size-1 (1..127 in the paper), so the second copy of w can
// be predicted exactly by attending back to the first one, and only that second copy is scored.
//
//   rw::reformer::DuplicationTask task({.length = 64}, /*seed=*/1);
//   rw::reformer::DuplicationBatch b = task.next(8);       // inputs/targets/loss_mask [8, 64]
//   rw::Tensor logits = model(b.inputs);                   // [8, 64, 128]
//   rw::Tensor loss = rw::reformer::masked_cross_entropy(logits, b.targets, b.loss_mask);
//   double acc = rw::reformer::masked_accuracy(logits, b.targets, b.loss_mask);
//
// Layout of one sequence of length L (L even, >= 4; w has L/2 - 1 symbols):
//   position  0      1 .. L/2-1   L/2    L/2+1 .. L-1
//   input     0      w            0      w
// targets[t] = input[t + 1] (the next token) for t < L - 1, and kNoTarget at t = L - 1 (there is
// no next token). loss_mask[t] is true exactly where the target is a symbol of the second copy of
// w: t in [L/2, L-2], L/2 - 1 positions per sequence. The first of them predicts w[0] from the
// second 0, which is predictable (it is the symbol after the first 0).
#include <cstdint>

#include "core/device.h"
#include "core/philox.h"
#include "core/tensor.h"

namespace rw::reformer {

// The target where there is none; rw::cross_entropy's default ignore_index.
inline constexpr int64_t kNoTarget = -100;

struct DuplicationTaskOptions {
  int64_t length = 1024;     // L: even, >= 4 (the paper uses 1024)
  int64_t vocab_size = 128;  // symbols 1..vocab_size-1; 0 is the separator (>= 2)
  Device device = Device::cpu();
};

struct DuplicationBatch {
  Tensor inputs;     // i64 [B, L]
  Tensor targets;    // i64 [B, L], the next token (kNoTarget at the last position)
  Tensor loss_mask;  // bool [B, L], true where the target lies in the second copy of w
};

// A batch whose symbols are a pure function of `state` (B * (L/2 - 1) draws).
DuplicationBatch duplication_batch(int64_t batch_size, const DuplicationTaskOptions& options,
                                   PhiloxState state);
// The same, drawing the next state from `generator`.
DuplicationBatch duplication_batch(int64_t batch_size, const DuplicationTaskOptions& options,
                                   Generator& generator);

// A seeded stream of batches: the same seed gives the same batches, in order.
class DuplicationTask {
 public:
  explicit DuplicationTask(DuplicationTaskOptions options = {}, uint64_t seed = 0);
  DuplicationBatch next(int64_t batch_size);
  const DuplicationTaskOptions& options() const { return options_; }
  // The generator's position (three plain integers), to save and resume the stream.
  PhiloxState state() const { return generator_.state(); }
  void set_state(PhiloxState state) { generator_.set_state(state); }

 private:
  DuplicationTaskOptions options_;
  Generator generator_;
};

// Mean cross-entropy over the positions where mask is true: logits [B, L, V] (floating), targets
// i64 [B, L], mask bool [B, L]. Differentiable in logits. An error when no position is masked.
Tensor masked_cross_entropy(const Tensor& logits, const Tensor& targets, const Tensor& mask);

// The fraction of masked positions whose prediction is right: the argmax of the logits over the
// vocabulary (the first index among ties) equals the target. Token-level accuracy, as the paper's
// Table 2 reports it; in [0, 1]. An error when no position is masked.
double masked_accuracy(const Tensor& logits, const Tensor& targets, const Tensor& mask);

}  // namespace rw::reformer
