#include "nn/adafactor.h"

#include <algorithm>
#include <cmath>

#include "core/ops.h"

namespace rw::nn {

Adafactor::Adafactor(ParameterList params, AdafactorOptions options)
    : Optimizer("Adafactor", std::move(params), options.lr), options_(options) {
  check_option(options.beta1 >= 0 && options.beta1 < 1, "beta1 (want 0 <= beta1 < 1)",
               options.beta1);
  check_option(options.decay_exponent > 0 && options.decay_exponent <= 1,
               "decay_exponent (want 0 < c <= 1)", options.decay_exponent);
  check_option(std::isfinite(options.eps1) && options.eps1 >= 0, "eps1", options.eps1);
  check_option(std::isfinite(options.eps2) && options.eps2 >= 0, "eps2", options.eps2);
  if (options.clip_threshold) {
    check_option(*options.clip_threshold > 0, "clip_threshold (want > 0)", *options.clip_threshold);
  }
  check_option(options.weight_decay_rate >= 0 && options.weight_decay_rate < 1,
               "weight_decay_rate (want 0 <= rate < 1)", options.weight_decay_rate);
}

std::vector<Optimizer::Slot> Adafactor::slots_for(const Tensor& param) const {
  std::vector<Slot> slots;
  const Shape& shape = param.shape();
  if (is_factored(param)) {
    Shape rows(shape.begin(), shape.end() - 1);  // [.., n]
    Shape cols(shape.begin(), shape.end() - 2);  // [.., m]
    cols.push_back(shape.back());
    slots.push_back({"exp_avg_sq_row", rows});
    slots.push_back({"exp_avg_sq_col", cols});
  } else {
    slots.push_back({"exp_avg_sq", shape});
  }
  if (options_.beta1 > 0) slots.push_back({"exp_avg", shape});
  return slots;
}

namespace {

// Root mean square of all elements, as a 0-dim tensor (kept on the device: no host sync).
Tensor rms(const Tensor& x) { return sqrt(mean(square(x))); }

}  // namespace

void Adafactor::update(const Tensor& param, const Tensor& grad, ParamState& state) {
  const auto t = static_cast<double>(state.step);
  const double beta2 = 1 - std::pow(t, -options_.decay_exponent);
  const double mixing = 1 - beta2;
  const double rho = options_.relative_step ? std::min(lr(), 1 / std::sqrt(t)) : lr();

  Tensor grad_sq = add(square(grad), options_.eps1);
  Tensor u;
  if (is_factored(param)) {
    const Tensor& row = state.slots[0];
    const Tensor& col = state.slots[1];
    mul_(row, beta2);
    add_(row, mean(grad_sq, {-1}), mixing);
    mul_(col, beta2);
    add_(col, mean(grad_sq, {-2}), mixing);
    // 1/sqrt(V) = rsqrt(R / mean(R)) * rsqrt(C), applied as outer factors.
    Tensor row_factor = rsqrt(div(row, mean(row, {-1}, true)));
    Tensor col_factor = rsqrt(col);
    u = mul(mul(grad, row_factor.unsqueeze(-1)), col_factor.unsqueeze(-2));
  } else {
    const Tensor& v = state.slots[0];
    mul_(v, beta2);
    add_(v, grad_sq, mixing);
    u = mul(grad, rsqrt(v));
  }
  if (options_.clip_threshold) {
    u = div(u, maximum(div(rms(u), *options_.clip_threshold), 1.0));
  }
  // The step size multiplies after clipping; the parameter scale is that of X before this update.
  u = options_.scale_parameter ? mul(u, mul(maximum(rms(param), options_.eps2), rho)) : mul(u, rho);
  if (options_.beta1 > 0) {
    const Tensor& exp_avg = state.slots.back();
    mul_(exp_avg, options_.beta1);
    add_(exp_avg, u, 1 - options_.beta1);
    u = exp_avg;
  }
  if (options_.weight_decay_rate != 0) mul_(param, 1 - options_.weight_decay_rate);
  sub_(param, u);
}

}  // namespace rw::nn
