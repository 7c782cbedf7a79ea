// GradScaler (nn/grad_scaler.h): loss scaling, exact unscaling, skipped steps on inf/NaN with
// backoff, growth after growth_interval good steps, state round trips and their validation, and
// the point of it all: f16 gradients that underflow to zero without scaling survive with it.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "autograd/tape.h"
#include "core/autocast.h"
#include "core/ops.h"
#include "nn/grad_scaler.h"
#include "nn/sgd.h"
#include "test_util.h"

namespace rw::nn {
namespace {

using Vec = std::vector<float>;

Tensor param(Vec values) { return from_vector<float>(values).requires_grad_(); }

TEST_CASE("GradScaler::scale multiplies the loss by the scale in f32, disabled it is a no-op") {
  GradScaler scaler({.init_scale = 1024});
  CHECK(scaler.get_scale() == 1024);
  const Tensor loss = full({}, 0.375, {.dtype = DType::f16});
  const Tensor scaled = scaler.scale(loss);
  CHECK(scaled.dtype() == DType::f32);
  CHECK(scaled.item() == 384.0);
  GradScaler off({.init_scale = 1024, .enabled = false});
  CHECK(off.get_scale() == 1);
  CHECK(off.scale(loss).is_same(loss));
  CHECK(test::contains(test::error_message([&] { scaler.scale(Tensor()); }),
                       "GradScaler: scale expects a floating loss tensor"));
}

TEST_CASE("GradScaler: unscale_ divides the gradients exactly, step updates, update counts") {
  Tensor a = param({1, 2, 3}), b = param({4, 5});
  SGD opt({{"a", a}, {"b", b}}, {.lr = 0.5});
  GradScaler scaler({.init_scale = 256, .growth_interval = 10});
  a.set_grad(from_vector<float>({256 * 0.5f, -256 * 0.25f, 256 * 3.0f}));
  b.set_grad(from_vector<float>({256 * 1e-7f, 0}));
  scaler.unscale_(opt);
  CHECK_FALSE(scaler.found_inf());
  CHECK(test::vals(a.grad()) == Vec{0.5f, -0.25f, 3.0f});
  CHECK(test::vals(b.grad()) == Vec{1e-7f, 0});
  CHECK(test::contains(test::error_message([&] { scaler.unscale_(opt); }),
                       "GradScaler: unscale_ was already called since the last update()"));
  CHECK(scaler.step(opt));  // does not unscale again
  CHECK(test::vals(a) == Vec{1 - 0.25f, 2 + 0.125f, 3 - 1.5f});
  CHECK(opt.step_count() == 1);
  scaler.update();
  CHECK(scaler.get_scale() == 256);
  CHECK(scaler.growth_tracker() == 1);
}

TEST_CASE("GradScaler: an inf or NaN gradient skips the step and backs off the scale") {
  for (float bad : {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN(),
                    -std::numeric_limits<float>::infinity()}) {
    INFO("bad value ", bad);
    Tensor a = param({1, 2}), b = param({3});
    SGD opt({a, b}, {.lr = 1});
    GradScaler scaler({.init_scale = 64, .backoff_factor = 0.25, .growth_interval = 2});
    // One good step first: the tracker is reset by the bad one.
    a.set_grad(full({2}, 64.0));
    b.set_grad(full({1}, 64.0));
    CHECK(scaler.step(opt));
    scaler.update();
    CHECK(scaler.growth_tracker() == 1);
    a.set_grad(from_vector<float>({64, bad}));
    b.set_grad(full({1}, 64.0));
    CHECK_FALSE(scaler.step(opt));
    CHECK(scaler.found_inf());
    CHECK(test::vals(a) == Vec{0, 1});  // unchanged since the good step
    CHECK(test::vals(b) == Vec{2});
    CHECK(opt.step_count() == 1);
    scaler.update();
    CHECK(scaler.get_scale() == 16);
    CHECK(scaler.growth_tracker() == 0);
    CHECK_FALSE(scaler.found_inf());
  }
}

TEST_CASE("GradScaler: the scale grows after growth_interval good steps in a row") {
  Tensor a = param({1});
  SGD opt({a}, {.lr = 0});
  GradScaler scaler({.init_scale = 8, .growth_factor = 4, .growth_interval = 3});
  std::vector<double> scales;
  for (int i = 0; i < 7; ++i) {
    a.set_grad(full({1}, scaler.get_scale()));
    CHECK(scaler.step(opt));
    scaler.update();
    scales.push_back(scaler.get_scale());
  }
  CHECK(scales == std::vector<double>{8, 8, 32, 32, 32, 128, 128});
  CHECK(scaler.growth_tracker() == 1);
  // update() without an unscale in between (no step taken) changes nothing.
  scaler.update();
  CHECK(scaler.growth_tracker() == 1);
}

TEST_CASE("GradScaler: state_dict round trip and validation") {
  Tensor a = param({1});
  SGD opt({a}, {.lr = 0});
  GradScaler scaler({.init_scale = 1024, .growth_interval = 5});
  for (int i = 0; i < 3; ++i) {
    a.set_grad(full({1}, std::numeric_limits<double>::infinity()));
    scaler.step(opt);
    scaler.update();
    a.set_grad(full({1}, 1.0));
    scaler.step(opt);
    scaler.update();
  }
  const StateDict state = scaler.state_dict();
  CHECK(state.at("scale").dtype() == DType::f64);
  CHECK(state.at("growth_tracker").dtype() == DType::i64);
  GradScaler restored({.growth_interval = 5});
  restored.load_state_dict(state);
  CHECK(restored.get_scale() == scaler.get_scale());
  CHECK(restored.get_scale() == 128);
  CHECK(restored.growth_tracker() == 1);

  auto error_of = [&](StateDict s) {
    return test::error_message([&] { restored.load_state_dict(s); });
  };
  StateDict extra = state;
  extra["loss"] = full({}, 1.0);
  CHECK(test::contains(error_of(extra), "GradScaler: load_state_dict: unexpected key 'loss'"));
  StateDict missing = state;
  missing.erase("growth_tracker");
  CHECK(test::contains(error_of(missing), "GradScaler: load_state_dict: missing 'growth_tracker'"));
  StateDict zero = state;
  zero["scale"] = full({}, 0.0, {.dtype = DType::f64});
  CHECK(test::contains(error_of(zero), "'scale' must be positive and finite, got 0"));
  StateDict negative = state;
  negative["growth_tracker"] = full({}, -2.0, {.dtype = DType::i64});
  CHECK(test::contains(error_of(negative), "'growth_tracker' must be a non-negative integer"));
  StateDict shaped = state;
  shaped["scale"] = full({2}, 1.0);
  CHECK(test::contains(error_of(shaped), "'scale' must be a scalar, got shape [2]"));
  // Nothing changed by the failed loads.
  CHECK(restored.get_scale() == 128);
  CHECK(restored.growth_tracker() == 1);
}

TEST_CASE("GradScaler rejects bad options") {
  auto error_of = [](GradScalerOptions o) { return test::error_message([&] { GradScaler s(o); }); };
  CHECK(test::contains(error_of({.init_scale = 0}), "GradScaler: init_scale must be positive"));
  CHECK(test::contains(error_of({.growth_factor = 1}), "GradScaler: growth_factor must be > 1"));
  CHECK(test::contains(error_of({.backoff_factor = 1}),
                       "GradScaler: backoff_factor must be in (0, 1), got 1"));
  CHECK(test::contains(error_of({.growth_interval = 0}),
                       "GradScaler: growth_interval must be > 0, got 0"));
}

// Gradients of 2e-8 per output element: below half of f16's smallest subnormal (6e-8), so they
// round to zero on their way through the f16 activations, unless the loss is scaled.
TEST_CASE("GradScaler: f16 gradients that underflow unscaled survive scaling") {
  Generator gen(1);
  const Tensor x = randn({64, 16}, gen);
  Tensor w = randn({8, 16}, gen).requires_grad_();
  auto loss_of = [&] { return mul(mean(linear(x, w)), 1e-5); };
  // The f32 reference.
  backward(loss_of());
  const Tensor reference = w.grad();
  w.set_grad(Tensor());
  {
    AutocastScope autocast(DType::f16);
    backward(loss_of());
  }
  CHECK(max(abs(w.grad())).item() == 0);  // every gradient lost
  w.set_grad(Tensor());
  SGD opt({w}, {.lr = 0});
  GradScaler scaler;
  {
    AutocastScope autocast(DType::f16);
    backward(scaler.scale(loss_of()));
  }
  scaler.unscale_(opt);
  CHECK_FALSE(scaler.found_inf());
  CHECK(w.grad().dtype() == DType::f32);
  // Within f16's rounding of the scaled output gradient and of x (relative 2^-11 each).
  const double err = max(abs(sub(w.grad(), reference))).item();
  CHECK(err <= 2e-3 * max(abs(reference)).item());
}

}  // namespace
}  // namespace rw::nn
