#include "common/training_step_timing.h"

#include <algorithm>
#include <chrono>

#include "autograd/tape.h"
#include "core/allocator.h"
#include "core/ops.h"

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
  for (int64_t rep = 0; rep < run.reps; ++rep) {
    model.zero_grad();
    current_tape().sweep();
    const int64_t before = memory_stats(device).allocated_bytes;
    reset_peak_memory(device);
    const auto t0 = Clock::now();
    {
      Tensor loss = model.loss(tokens, targets);
      backward(loss);
      // An accelerator queues its kernels; its stream runs in order, so reading the loss after
      // the backward waits for both.
      if (!device.is_cpu()) (void)loss.item();
    }
    const double fb = seconds_since(t0);
    double st = 0;
    if (run.optimizer) {
      const auto t1 = Clock::now();
      run.optimizer->step();
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
