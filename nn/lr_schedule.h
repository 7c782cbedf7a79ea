#pragma once
// Learning-rate schedules: pure functions of the update number, so a resumed run recomputes the
// same rate from the optimizer's restored step_count() and no schedule state needs saving.
//
// `step` counts updates from 1: lr(1) is the rate of the first optimizer step. A training loop
// calls apply_schedule(schedule, optimizer) (or optimizer.set_lr(schedule.lr(step_count() + 1)))
// before each optimizer.step(). lr(0) is defined (the value before any update) for plotting.
#include <cstdint>
#include <string>

#include "nn/optimizer.h"

namespace rw::nn {

class LrSchedule {
 public:
  virtual ~LrSchedule() = default;
  // The learning rate of update number `step` (>= 0; a negative step is an rw::Error).
  virtual double lr(int64_t step) const = 0;
  virtual std::string type_name() const = 0;

 protected:
  void check_step(int64_t step) const;
};

// lr(step) = value.
class ConstantSchedule : public LrSchedule {
 public:
  explicit ConstantSchedule(double value);
  double lr(int64_t step) const override;
  std::string type_name() const override { return "ConstantSchedule"; }

 private:
  double value_;
};

// Linear warm-up then reciprocal-square-root decay (Vaswani et al. 2017; the Reformer's trax
// "constant * linear_warmup * rsqrt_decay"), normalised so that the peak, reached at step =
// warmup_steps, is base_lr:
//   lr(step) = base_lr * min(step / warmup, 1) * sqrt(warmup / max(step, warmup))
// i.e. base_lr * step / warmup while warming up, then base_lr * sqrt(warmup / step).
// trax's multifactor(constant = C, warmup_steps = W) is C * min(step / W, 1) / sqrt(max(step, W)),
// which is this schedule with base_lr = C / sqrt(W): the peak is then stated directly instead of
// hidden in C (the Reformer's enwik8 config, C = 0.03125 and W = 2000, peaks at 6.99e-4). trax's
// trainer evaluates it at the 0-based step (a zero rate on the first update); here the first update
// uses lr(1) = base_lr / warmup.
class LinearWarmupRsqrtDecay : public LrSchedule {
 public:
  LinearWarmupRsqrtDecay(double base_lr, int64_t warmup_steps);  // warmup_steps >= 1
  double lr(int64_t step) const override;
  std::string type_name() const override { return "LinearWarmupRsqrtDecay"; }

 private:
  double base_lr_;
  int64_t warmup_steps_;
};

// Linear warm-up from 0 to base_lr over warmup_steps, then half a cosine from base_lr down to
// min_lr at total_steps, and min_lr after:
//   step <= warmup:          base_lr * step / warmup      (no warm-up when warmup = 0)
//   warmup < step <= total:  min_lr + (base_lr - min_lr) * (1 + cos(pi * (step - warmup) /
//                                                                   (total - warmup))) / 2
//   step > total:            min_lr
class CosineSchedule : public LrSchedule {
 public:
  // 0 <= warmup_steps < total_steps, 0 <= min_lr <= base_lr.
  CosineSchedule(double base_lr, int64_t total_steps, int64_t warmup_steps = 0, double min_lr = 0);
  double lr(int64_t step) const override;
  std::string type_name() const override { return "CosineSchedule"; }

 private:
  double base_lr_;
  int64_t total_steps_;
  int64_t warmup_steps_;
  double min_lr_;
};

// Sets the optimizer's learning rate for its next step (update number step_count() + 1) and
// returns it.
double apply_schedule(const LrSchedule& schedule, Optimizer& optimizer);

}  // namespace rw::nn
