#include "nn/sgd.h"

#include <cmath>

#include "core/ops.h"

namespace rw::nn {

SGD::SGD(ParameterList params, SGDOptions options)
    : Optimizer("SGD", std::move(params), options.lr), options_(options) {
  check_option(std::isfinite(options.momentum) && options.momentum >= 0, "momentum",
               options.momentum);
  check_option(std::isfinite(options.dampening), "dampening", options.dampening);
  check_option(std::isfinite(options.weight_decay) && options.weight_decay >= 0, "weight_decay",
               options.weight_decay);
  RW_CHECK(!options.nesterov || (options.momentum > 0 && options.dampening == 0),
           "SGD: nesterov momentum requires momentum > 0 and dampening == 0, got momentum {} and "
           "dampening {}",
           options.momentum, options.dampening);
}

std::vector<Optimizer::Slot> SGD::slots_for(const Tensor& param) const {
  if (options_.momentum == 0) return {};
  return {{"momentum_buffer", param.shape()}};
}

void SGD::update(const Tensor& param, const Tensor& grad, ParamState& state) {
  Tensor g = grad;
  if (options_.weight_decay != 0) g = add(g, mul(param, options_.weight_decay));
  if (options_.momentum != 0) {
    const Tensor& buffer = state.slots[0];
    if (state.step == 1) {
      copy_(buffer, g);  // torch starts the buffer at the first gradient, undamped
    } else {
      mul_(buffer, options_.momentum);
      add_(buffer, g, 1 - options_.dampening);
    }
    g = options_.nesterov ? add(g, mul(buffer, options_.momentum)) : buffer;
  }
  add_(param, g, -lr());
}

}  // namespace rw::nn
