#pragma once
// Time and peak memory of one training step of a ReformerLM (loss, backward, optionally the
// optimizer update), shared by `rewind-bench model` and `rewind-ablate memory` (the Reformer's
// Table 3):
//
//   auto model = std::make_shared<rw::reformer::ReformerLM>(config, gen);
//   rw::tools::StepTiming t = rw::tools::time_training_step(*model, tokens, targets, {.reps = 2});
//   t.peak;  // bytes above what was live before the step: activations and parameter gradients
#include <cstdint>

#include "core/tensor.h"
#include "models/reformer/reformer_lm.h"
#include "nn/optimizer.h"

namespace rw::tools {

struct StepRun {
  int64_t reps = 1;                    // timed steps (the best counts)
  nn::Optimizer* optimizer = nullptr;  // also time its step() after each backward
  // Autocast compute dtype of the forward and backward (core/autocast.h; f32: off). f16 also
  // scales the loss with an nn::GradScaler (its unscale and skip test count into optimizer_s).
  DType precision = DType::f32;
};

struct StepTiming {
  double fwd_bwd_s = 1e300;  // best model.loss + rw::backward over the reps
  double optimizer_s = 0;    // the optimizer's step() of that rep (0 without an optimizer)
  int64_t peak = 0;          // allocator peak above what was live before the step, max over reps
  int64_t params = 0;        // parameter bytes (their gradients are as large)
};

// `reps` training steps of `model` (in its current train/eval mode) on tokens and targets [B, L]
// (on the model's device); the gradients are zeroed before each. No separate warm-up: the best
// rep is the warm one. On a GPU each part is timed between two rw::synchronize calls, and the
// peak is that device's allocator's.
StepTiming time_training_step(reformer::ReformerLM& model, const Tensor& tokens,
                              const Tensor& targets, const StepRun& run);

}  // namespace rw::tools
