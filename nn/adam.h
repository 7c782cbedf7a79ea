#pragma once
// Adam (Kingma & Ba, 2015) and AdamW (Loshchilov & Hutter, 2019), as torch.optim.Adam/AdamW.
// On update t of a parameter p with gradient g:
//   Adam:  g = g + weight_decay * p                 (L2, folded into the gradient)
//   AdamW: p = p * (1 - lr * weight_decay)          (decoupled decay)
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g^2
//   v_max = max(v_max, v)                           (amsgrad; then v_max replaces v below)
//   p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// State per parameter: "exp_avg", "exp_avg_sq", and "max_exp_avg_sq" with amsgrad.
#include <array>

#include "nn/optimizer.h"

namespace rw::nn {

struct AdamOptions {
  double lr = 1e-3;
  std::array<double, 2> betas = {0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 0;  // L2 penalty added to the gradient
  bool amsgrad = false;
};

// The same options; only the default weight decay differs (torch's 1e-2), and it is decoupled.
struct AdamWOptions {
  double lr = 1e-3;
  std::array<double, 2> betas = {0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 1e-2;  // decoupled: p *= 1 - lr * weight_decay
  bool amsgrad = false;
};

class Adam : public Optimizer {
 public:
  explicit Adam(ParameterList params, AdamOptions options = {});
  const AdamOptions& options() const { return options_; }

 protected:
  // For AdamW: decoupled decides how weight_decay is applied.
  Adam(std::string type_name, ParameterList params, AdamOptions options, bool decoupled);
  std::vector<Slot> slots_for(const Tensor& param) const override;
  void update(const Tensor& param, const Tensor& grad, ParamState& state) override;

 private:
  AdamOptions options_;
  bool decoupled_;
};

class AdamW : public Adam {
 public:
  explicit AdamW(ParameterList params, AdamWOptions options = {});
};

}  // namespace rw::nn
