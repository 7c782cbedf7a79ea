#include "nn/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"

namespace rw::nn {

namespace {

void check_rate(bool ok, const char* schedule, const char* what, double value) {
  RW_CHECK(ok, "{}: invalid {}: {}", schedule, what, value);
}

}  // namespace

void LrSchedule::check_step(int64_t step) const {
  RW_CHECK(step >= 0, "{}: step must be >= 0 (updates count from 1), got {}", type_name(), step);
}

ConstantSchedule::ConstantSchedule(double value) : value_(value) {
  check_rate(std::isfinite(value) && value >= 0, "ConstantSchedule", "learning rate (want >= 0)",
             value);
}

double ConstantSchedule::lr(int64_t step) const {
  check_step(step);
  return value_;
}

LinearWarmupRsqrtDecay::LinearWarmupRsqrtDecay(double base_lr, int64_t warmup_steps)
    : base_lr_(base_lr), warmup_steps_(warmup_steps) {
  check_rate(std::isfinite(base_lr) && base_lr >= 0, "LinearWarmupRsqrtDecay",
             "base_lr (want >= 0)", base_lr);
  RW_CHECK(warmup_steps >= 1, "LinearWarmupRsqrtDecay: warmup_steps must be >= 1, got {}",
           warmup_steps);
}

double LinearWarmupRsqrtDecay::lr(int64_t step) const {
  check_step(step);
  const auto s = static_cast<double>(step);
  const auto w = static_cast<double>(warmup_steps_);
  return base_lr_ * std::min(s / w, 1.0) * std::sqrt(w / std::max(s, w));
}

CosineSchedule::CosineSchedule(double base_lr, int64_t total_steps, int64_t warmup_steps,
                               double min_lr)
    : base_lr_(base_lr), total_steps_(total_steps), warmup_steps_(warmup_steps), min_lr_(min_lr) {
  check_rate(std::isfinite(base_lr) && base_lr >= 0, "CosineSchedule", "base_lr (want >= 0)",
             base_lr);
  check_rate(std::isfinite(min_lr) && min_lr >= 0 && min_lr <= base_lr, "CosineSchedule",
             "min_lr (want 0 <= min_lr <= base_lr)", min_lr);
  RW_CHECK(total_steps >= 1, "CosineSchedule: total_steps must be >= 1, got {}", total_steps);
  RW_CHECK(warmup_steps >= 0 && warmup_steps < total_steps,
           "CosineSchedule: warmup_steps must be in [0, total_steps = {}), got {}", total_steps,
           warmup_steps);
}

double CosineSchedule::lr(int64_t step) const {
  check_step(step);
  if (warmup_steps_ > 0 && step <= warmup_steps_) {
    return base_lr_ * static_cast<double>(step) / static_cast<double>(warmup_steps_);
  }
  if (step >= total_steps_) return min_lr_;
  const double progress =
      static_cast<double>(step - warmup_steps_) / static_cast<double>(total_steps_ - warmup_steps_);
  return min_lr_ + (base_lr_ - min_lr_) * (1 + std::cos(std::numbers::pi * progress)) / 2;
}

double apply_schedule(const LrSchedule& schedule, Optimizer& optimizer) {
  const double lr = schedule.lr(optimizer.step_count() + 1);
  optimizer.set_lr(lr);
  return lr;
}

}  // namespace rw::nn
