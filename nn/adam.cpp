#include "nn/adam.h"

#include <cmath>

#include "core/ops.h"

namespace rw::nn {

Adam::Adam(ParameterList params, AdamOptions options)
    : Adam("Adam", std::move(params), options, false) {}

Adam::Adam(std::string type_name, ParameterList params, AdamOptions options, bool decoupled)
    : Optimizer(std::move(type_name), std::move(params), options.lr),
      options_(options),
      decoupled_(decoupled) {
  const auto [beta1, beta2] = options.betas;
  check_option(beta1 >= 0 && beta1 < 1, "beta1 (want 0 <= beta1 < 1)", beta1);
  check_option(beta2 >= 0 && beta2 < 1, "beta2 (want 0 <= beta2 < 1)", beta2);
  check_option(std::isfinite(options.eps) && options.eps >= 0, "eps", options.eps);
  check_option(std::isfinite(options.weight_decay) && options.weight_decay >= 0, "weight_decay",
               options.weight_decay);
}

AdamW::AdamW(ParameterList params, AdamWOptions options)
    : Adam("AdamW", std::move(params),
           AdamOptions{.lr = options.lr,
                       .betas = options.betas,
                       .eps = options.eps,
                       .weight_decay = options.weight_decay,
                       .amsgrad = options.amsgrad},
           true) {}

std::vector<Optimizer::Slot> Adam::slots_for(const Tensor& param) const {
  std::vector<Slot> slots{{"exp_avg", param.shape()}, {"exp_avg_sq", param.shape()}};
  if (options_.amsgrad) slots.push_back({"max_exp_avg_sq", param.shape()});
  return slots;
}

void Adam::update(const Tensor& param, const Tensor& grad, ParamState& state) {
  const auto [beta1, beta2] = options_.betas;
  const double wd = options_.weight_decay;
  Tensor g = grad;
  if (wd != 0) {
    if (decoupled_) {
      mul_(param, 1 - lr() * wd);
    } else {
      g = add(g, mul(param, wd));
    }
  }
  const Tensor& exp_avg = state.slots[0];
  const Tensor& exp_avg_sq = state.slots[1];
  mul_(exp_avg, beta1);
  add_(exp_avg, g, 1 - beta1);
  mul_(exp_avg_sq, beta2);
  add_(exp_avg_sq, square(g), 1 - beta2);

  // Bias corrections in double, as torch computes them on host scalars.
  const auto t = static_cast<double>(state.step);
  const double step_size = lr() / (1 - std::pow(beta1, t));
  const double bias_correction2_sqrt = std::sqrt(1 - std::pow(beta2, t));
  Tensor second_moment = exp_avg_sq;
  if (options_.amsgrad) {
    const Tensor& max_exp_avg_sq = state.slots[2];
    copy_(max_exp_avg_sq, maximum(max_exp_avg_sq, exp_avg_sq));
    second_moment = max_exp_avg_sq;
  }
  Tensor denom = add(div(sqrt(second_moment), bias_correction2_sqrt), options_.eps);
  add_(param, div(exp_avg, denom), -step_size);
}

}  // namespace rw::nn
