#include "common/training_step_timing.h"

#include <algorithm>
#include <chrono>

#include "autograd/tape.h"
#include "core/allocator.h"
#include "core/autocast.h"
#include "core/device_sync.h"
#include "core/ops.h"
#include "nn/grad_scaler.h"

namespace rw::tools {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

StepTiming time_training_step(reformer::ReformerLM& model, const Tensor& tokens,
                              const Tensor& targets, const StepRun& run) {
  const Device device = tokens.device();
  StepTiming r;
  for (const Tensor& p : model.parameters()) r.params += static_cast<int64_t>(p.nbytes());
  nn::GradScaler scaler({.enabled = run.precision == DType::f16});
  for (int64_t rep = 0; rep < run.reps; ++rep) {
    model.zero_grad();
    current_tape().sweep();
    // A GPU queues its kernels: the zeroing above (and the last rep's update) must not count,
    // and each clock reading below waits for what it times.
    synchronize(device);
    const int64_t before = memory_stats(device).allocated_bytes;
    reset_peak_memory(device);
    const auto t0 = Clock::now();
    {
      AutocastScope autocast(run.precision);
      Tensor loss = model.loss(tokens, targets);
      backward(scaler.scale(loss));
      synchronize(device);
    }
    const double fb = seconds_since(t0);
    double st = 0;
    if (run.optimizer) {
      const auto t1 = Clock::now();
      scaler.step(*run.optimizer);  // optimizer->step() unless f16 gradients overflowed
      scaler.update();
      synchronize(device);
      st = seconds_since(t1);
    }
    if (fb < r.fwd_bwd_s) {
      r.fwd_bwd_s = fb;
      r.optimizer_s = st;
    }
    r.peak = std::max(r.peak, memory_stats(device).peak_allocated_bytes - before);
  }
  return r;
}

}  // namespace rw::tools
