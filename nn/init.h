#pragma once
// Parameter initialisers, as torch.nn.init: each fills a tensor in place (under no-grad, so it
// works on parameters that require grad) and returns it. Random ones draw one PhiloxState from the
// given generator (default: rw::current_generator()) through the random ops, so a model built
// twice from the same seed has bit-identical parameters.
//
//   rw::nn::init::kaiming_uniform_(linear->weight, {.a = std::sqrt(5.0)});
//   rw::nn::init::xavier_normal_(w,
//   rw::nn::init::calculate_gain(rw::nn::init::Nonlinearity::tanh));
//
// Fans follow PyTorch for a weight laid out [out, in, *receptive field]: fan_in = in * receptive,
// fan_out = out * receptive (a Linear weight [out, in] has fan_in = in).
#include <cstdint>

#include "core/generator_scope.h"
#include "core/philox.h"
#include "core/tensor.h"

namespace rw::nn::init {

enum class FanMode { fan_in, fan_out };
enum class Nonlinearity { linear, sigmoid, tanh, relu, leaky_relu, selu };

// The recommended gain for a nonlinearity (torch.nn.init.calculate_gain): 1 for linear and
// sigmoid, 5/3 for tanh, sqrt(2) for relu, sqrt(2 / (1 + slope^2)) for leaky_relu (slope = param),
// 3/4 for selu.
double calculate_gain(Nonlinearity nonlinearity, double param = 0.01);

struct Fans {
  int64_t fan_in = 0;
  int64_t fan_out = 0;
};
// An rw::Error for a tensor of fewer than two dims (no fan_out/fan_in split exists).
Fans calculate_fans(const Tensor& t);

const Tensor& uniform_(const Tensor& t, double low = 0, double high = 1,
                       Generator& generator = current_generator());
const Tensor& normal_(const Tensor& t, double mean = 0, double std = 1,
                      Generator& generator = current_generator());
const Tensor& constant_(const Tensor& t, double value);
const Tensor& zeros_(const Tensor& t);
const Tensor& ones_(const Tensor& t);

// Glorot & Bengio (2010): U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out)), or
// N(0, gain^2 * 2 / (fan_in + fan_out)).
const Tensor& xavier_uniform_(const Tensor& t, double gain = 1,
                              Generator& generator = current_generator());
const Tensor& xavier_normal_(const Tensor& t, double gain = 1,
                             Generator& generator = current_generator());

// He et al. (2015). std = gain / sqrt(fan) with gain = calculate_gain(nonlinearity, a) and fan
// chosen by mode; uniform draws U(-b, b) with b = sqrt(3) * std. The defaults are PyTorch's
// (a = 0, fan_in, leaky_relu, i.e. gain sqrt(2)).
struct KaimingOptions {
  double a = 0;  // negative slope of the leaky_relu that follows
  FanMode mode = FanMode::fan_in;
  Nonlinearity nonlinearity = Nonlinearity::leaky_relu;
};
const Tensor& kaiming_uniform_(const Tensor& t, KaimingOptions options = {},
                               Generator& generator = current_generator());
const Tensor& kaiming_normal_(const Tensor& t, KaimingOptions options = {},
                              Generator& generator = current_generator());

}  // namespace rw::nn::init
