// Learning-rate schedules (nn/lr_schedule.h): values at the key steps against the formulas written
// out here, trax's multifactor equivalence, validation errors, and apply_schedule's step numbering.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/ops.h"
#include "nn/lr_schedule.h"
#include "nn/sgd.h"
#include "test_util.h"

namespace rw::nn {

using namespace rw::test;

TEST_CASE("ConstantSchedule returns its value at every step") {
  ConstantSchedule s(3e-4);
  CHECK(s.lr(0) == 3e-4);
  CHECK(s.lr(1) == 3e-4);
  CHECK(s.lr(1'000'000) == 3e-4);
}

TEST_CASE("LinearWarmupRsqrtDecay rises linearly to base_lr at warmup, then decays as rsqrt") {
  const double base = 2e-3;
  LinearWarmupRsqrtDecay s(base, 100);
  CHECK(s.lr(0) == 0);
  CHECK(s.lr(1) == doctest::Approx(base / 100).epsilon(1e-14));
  CHECK(s.lr(50) == doctest::Approx(base / 2).epsilon(1e-14));
  CHECK(s.lr(100) == doctest::Approx(base).epsilon(1e-14));
  CHECK(s.lr(400) == doctest::Approx(base / 2).epsilon(1e-14));  // sqrt(100 / 400)
  CHECK(s.lr(10'000) == doctest::Approx(base / 10).epsilon(1e-14));
  // The peak is at warmup: below it on both sides.
  CHECK(s.lr(99) < s.lr(100));
  CHECK(s.lr(101) < s.lr(100));
}

TEST_CASE(
    "LinearWarmupRsqrtDecay(C / sqrt(W), W) is trax's 'constant * linear_warmup * "
    "rsqrt_decay'") {
  // The Reformer enwik8 config: constant 0.03125, warmup 2000.
  const double constant = 0.03125;
  const int64_t warmup = 2000;
  auto trax = [&](int64_t step) {
    const double s = static_cast<double>(step), w = static_cast<double>(warmup);
    return constant * std::min(1.0, s / w) / std::sqrt(std::max(s, w));
  };
  LinearWarmupRsqrtDecay s(constant / std::sqrt(static_cast<double>(warmup)), warmup);
  for (int64_t step : {0, 1, 7, 1999, 2000, 2001, 5000, 100'000}) {
    CAPTURE(step);
    CHECK(s.lr(step) == doctest::Approx(trax(step)).epsilon(1e-13));
  }
  CHECK(s.lr(warmup) == doctest::Approx(6.98771242e-4).epsilon(1e-8));
}

TEST_CASE("CosineSchedule warms up, follows half a cosine to min_lr, then stays there") {
  const double base = 1.0, min_lr = 0.1;
  CosineSchedule s(base, 110, 10, min_lr);
  CHECK(s.lr(0) == 0);
  CHECK(s.lr(5) == doctest::Approx(0.5).epsilon(1e-14));
  CHECK(s.lr(10) == doctest::Approx(1.0).epsilon(1e-14));
  // A quarter of the way through the decay: (1 + cos(pi / 4)) / 2 of the span.
  const double quarter = min_lr + (base - min_lr) * (1 + std::cos(std::numbers::pi / 4)) / 2;
  CHECK(s.lr(35) == doctest::Approx(quarter).epsilon(1e-14));
  CHECK(s.lr(60) == doctest::Approx(0.55).epsilon(1e-14));  // half way
  CHECK(s.lr(110) == doctest::Approx(min_lr).epsilon(1e-14));
  CHECK(s.lr(1000) == min_lr);
  for (int64_t step = 11; step <= 110; ++step) CHECK(s.lr(step) <= s.lr(step - 1));

  // Without warm-up the decay starts at base_lr from step 0.
  CosineSchedule no_warmup(0.5, 4);
  CHECK(no_warmup.lr(0) == 0.5);
  CHECK(no_warmup.lr(2) == doctest::Approx(0.25).epsilon(1e-14));
  CHECK(no_warmup.lr(4) == 0);
}

TEST_CASE("Schedules reject bad arguments and negative steps") {
  CHECK(contains(error_message([] { ConstantSchedule(-1); }),
                 "ConstantSchedule: invalid learning rate (want >= 0): -1"));
  CHECK(contains(error_message([] { LinearWarmupRsqrtDecay(1e-3, 0); }),
                 "LinearWarmupRsqrtDecay: warmup_steps must be >= 1, got 0"));
  CHECK(contains(error_message([] { LinearWarmupRsqrtDecay(NAN, 10); }),
                 "LinearWarmupRsqrtDecay: invalid base_lr (want >= 0): nan"));
  CHECK(contains(error_message([] { CosineSchedule(1.0, 0); }),
                 "CosineSchedule: total_steps must be >= 1, got 0"));
  CHECK(contains(error_message([] { CosineSchedule(1.0, 10, 10); }),
                 "CosineSchedule: warmup_steps must be in [0, total_steps = 10), got 10"));
  CHECK(contains(error_message([] { CosineSchedule(1.0, 10, 2, 2.0); }),
                 "CosineSchedule: invalid min_lr (want 0 <= min_lr <= base_lr): 2"));
  CHECK(contains(error_message([] { CosineSchedule(1.0, 10).lr(-3); }),
                 "CosineSchedule: step must be >= 0 (updates count from 1), got -3"));
  CHECK(contains(error_message([] { LinearWarmupRsqrtDecay(1.0, 10).lr(-1); }),
                 "LinearWarmupRsqrtDecay: step must be >= 0"));
}

TEST_CASE("apply_schedule sets the rate of the optimizer's next update (step_count() + 1)") {
  Tensor p = f64({1.0}, {1});
  p.requires_grad_();
  SGD opt({p}, {.lr = 0.5});
  LinearWarmupRsqrtDecay schedule(0.4, 4);
  CHECK(apply_schedule(schedule, opt) == doctest::Approx(0.1));
  CHECK(opt.lr() == doctest::Approx(0.1));
  p.set_grad(f64({1.0}, {1}));
  opt.step();  // p = 1 - 0.1 * 1
  check_close(p, {0.9}, 1e-15);
  CHECK(apply_schedule(schedule, opt) == doctest::Approx(0.2));
  opt.step();
  check_close(p, {0.7}, 1e-15);
}

}  // namespace rw::nn
