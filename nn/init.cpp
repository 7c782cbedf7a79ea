#include "nn/init.h"

#include <cmath>

#include "autograd/tape.h"
#include "core/ops.h"

namespace rw::nn::init {
namespace {

void check_target(const char* op, const Tensor& t) {
  RW_CHECK(t.defined(), "init::{}: the tensor is undefined", op);
  RW_CHECK(is_floating(t.dtype()), "init::{}: the tensor must be floating, got {}", op, t.dtype());
}

// Writes `values` (already t's shape, dtype and device) into t without recording.
const Tensor& assign(const Tensor& t, const Tensor& values) {
  NoGradGuard no_grad;
  copy_(t, values);
  return t;
}

int64_t chosen_fan(const char* op, const Tensor& t, FanMode mode) {
  const Fans fans = calculate_fans(t);
  const int64_t fan = mode == FanMode::fan_in ? fans.fan_in : fans.fan_out;
  RW_CHECK(fan > 0, "init::{}: the {} of a tensor of shape {} is 0", op,
           mode == FanMode::fan_in ? "fan_in" : "fan_out", t.shape());
  return fan;
}

}  // namespace

double calculate_gain(Nonlinearity nonlinearity, double param) {
  switch (nonlinearity) {
    case Nonlinearity::linear:
    case Nonlinearity::sigmoid:
      return 1.0;
    case Nonlinearity::tanh:
      return 5.0 / 3.0;
    case Nonlinearity::relu:
      return std::sqrt(2.0);
    case Nonlinearity::leaky_relu:
      return std::sqrt(2.0 / (1.0 + param * param));
    case Nonlinearity::selu:
      return 0.75;
  }
  return 1.0;
}

Fans calculate_fans(const Tensor& t) {
  RW_CHECK(t.defined(), "init::calculate_fans: the tensor is undefined");
  RW_CHECK(t.dim() >= 2,
           "init::calculate_fans: fan_in and fan_out need a tensor of at least 2 dims "
           "[out, in, ...], got shape {}",
           t.shape());
  int64_t receptive = 1;
  for (int64_t d = 2; d < t.dim(); ++d) receptive *= t.size(d);
  return {.fan_in = t.size(1) * receptive, .fan_out = t.size(0) * receptive};
}

const Tensor& uniform_(const Tensor& t, double low, double high, Generator& generator) {
  check_target("uniform_", t);
  RW_CHECK(std::isfinite(low) && std::isfinite(high) && low <= high,
           "init::uniform_: need finite low <= high, got low {} and high {}", low, high);
  // U(b, b) is the constant b (a zero bound happens for a fan that makes the bound vanish).
  if (low == high) return constant_(t, low);
  return assign(t, uniform(t.shape(), low, high, generator, options_of(t)));
}

const Tensor& normal_(const Tensor& t, double mean, double std, Generator& generator) {
  check_target("normal_", t);
  RW_CHECK(std::isfinite(mean) && std::isfinite(std) && std >= 0,
           "init::normal_: need a finite mean and a finite std >= 0, got mean {} and std {}", mean,
           std);
  return assign(t, normal(t.shape(), mean, std, generator, options_of(t)));
}

const Tensor& constant_(const Tensor& t, double value) {
  check_target("constant_", t);
  NoGradGuard no_grad;
  fill_(t, value);
  return t;
}

const Tensor& zeros_(const Tensor& t) { return constant_(t, 0); }
const Tensor& ones_(const Tensor& t) { return constant_(t, 1); }

const Tensor& xavier_uniform_(const Tensor& t, double gain, Generator& generator) {
  check_target("xavier_uniform_", t);
  if (t.numel() == 0) return t;  // nothing to draw (PyTorch warns and does nothing too)
  const Fans fans = calculate_fans(t);
  RW_CHECK(fans.fan_in + fans.fan_out > 0,
           "init::xavier_uniform_: fan_in + fan_out is 0 for shape {}", t.shape());
  const double bound = gain * std::sqrt(6.0 / static_cast<double>(fans.fan_in + fans.fan_out));
  return uniform_(t, -bound, bound, generator);
}

const Tensor& xavier_normal_(const Tensor& t, double gain, Generator& generator) {
  check_target("xavier_normal_", t);
  if (t.numel() == 0) return t;  // nothing to draw (PyTorch warns and does nothing too)
  const Fans fans = calculate_fans(t);
  RW_CHECK(fans.fan_in + fans.fan_out > 0,
           "init::xavier_normal_: fan_in + fan_out is 0 for shape {}", t.shape());
  const double std = gain * std::sqrt(2.0 / static_cast<double>(fans.fan_in + fans.fan_out));
  return normal_(t, 0, std, generator);
}

const Tensor& kaiming_uniform_(const Tensor& t, KaimingOptions options, Generator& generator) {
  check_target("kaiming_uniform_", t);
  if (t.numel() == 0) return t;  // nothing to draw (PyTorch warns and does nothing too)
  const int64_t fan = chosen_fan("kaiming_uniform_", t, options.mode);
  const double std =
      calculate_gain(options.nonlinearity, options.a) / std::sqrt(static_cast<double>(fan));
  const double bound = std::sqrt(3.0) * std;
  return uniform_(t, -bound, bound, generator);
}

const Tensor& kaiming_normal_(const Tensor& t, KaimingOptions options, Generator& generator) {
  check_target("kaiming_normal_", t);
  if (t.numel() == 0) return t;  // nothing to draw (PyTorch warns and does nothing too)
  const int64_t fan = chosen_fan("kaiming_normal_", t, options.mode);
  const double std =
      calculate_gain(options.nonlinearity, options.a) / std::sqrt(static_cast<double>(fan));
  return normal_(t, 0, std, generator);
}

}  // namespace rw::nn::init
