#pragma once
// Stochastic gradient descent with momentum, as torch.optim.SGD:
//   g = grad + weight_decay * p
//   b = g on the first step, else momentum * b + (1 - dampening) * g   (when momentum != 0)
//   g = nesterov ? g + momentum * b : b
//   p = p - lr * g
// State per parameter (momentum != 0 only): "momentum_buffer".
#include "nn/optimizer.h"

namespace rw::nn {

struct SGDOptions {
  double lr = 1e-3;
  double momentum = 0;
  double dampening = 0;
  double weight_decay = 0;  // L2: added to the gradient
  bool nesterov = false;    // needs momentum > 0 and dampening == 0
};

class SGD : public Optimizer {
 public:
  explicit SGD(ParameterList params, SGDOptions options = {});
  const SGDOptions& options() const { return options_; }

 protected:
  std::vector<Slot> slots_for(const Tensor& param) const override;
  void update(const Tensor& param, const Tensor& grad, ParamState& state) override;

 private:
  SGDOptions options_;
};

}  // namespace rw::nn
