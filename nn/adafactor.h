#pragma once
// Adafactor (Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost",
// 2018), the optimizer of the Reformer paper. On update t (1-based) of a parameter X with
// gradient G:
//   beta2_t = 1 - t^(-decay_exponent)                       (0 at t = 1: no bias correction needed)
//   rho_t   = relative_step ? min(lr, 1 / sqrt(t)) : lr
//   alpha_t = scale_parameter ? rho_t * max(eps2, RMS(X)) : rho_t      (RMS of X before the update)
//   G2 = G^2 + eps1
//   factored (rank >= 2, over the last two dims [.., n, m]):
//     R = beta2_t R + (1 - beta2_t) mean(G2, over m)        "exp_avg_sq_row" [.., n]
//     C = beta2_t C + (1 - beta2_t) mean(G2, over n)        "exp_avg_sq_col" [.., m]
//     V = R C / mean(R)                                     (the rank-1 estimate, never stored)
//   unfactored (vectors, scalars, or factored = false):
//     V = beta2_t V + (1 - beta2_t) G2                      "exp_avg_sq" [shape of X]
//   U = G / sqrt(V);  U = U / max(1, RMS(U) / clip_threshold)          (update clipping)
//   U = alpha_t U;    with beta1 > 0: M = beta1 M + (1 - beta1) U; U = M   "exp_avg"
//   X = (1 - weight_decay_rate) X - U
//
// The defaults are the paper's proposed configuration: factored second moments with
// beta2_t = 1 - t^-0.8, relative step size min(1e-2, 1/sqrt(t)) scaled by the parameter's RMS,
// update clipping d = 1, no first moment, eps1 = 1e-30, eps2 = 1e-3. With relative_step, lr caps
// rho_t (the paper's cap is 1e-2, the default), as in torch.optim.Adafactor.
//
// trax's Adafactor (trax/optimizers/adafactor.py, the Reformer code's) is reproduced by
// {.relative_step = false, .weight_decay_rate = 1e-5} with lr set every step from the schedule
// (e.g. LinearWarmupRsqrtDecay); its other defaults are ours under other names: factored,
// multiply_by_parameter_scale (scale_parameter), do_clipping with clipping_threshold 1
// (clip_threshold), beta1 = 0, decay_rate 0.8 (decay_exponent), epsilon1 = 1e-30 (eps1),
// epsilon2 = 1e-3 (eps2). trax's update(step) uses t = step + 1 with a 0-based step, which is our
// 1-based t. One difference: trax keeps the factored moments in f32, here every slot has the
// parameter's dtype. The first moment follows trax and averages the scaled update alpha_t U
// (fairseq and Hugging Face average U before scaling; the two agree while alpha_t is constant).
#include <optional>

#include "nn/optimizer.h"

namespace rw::nn {

struct AdafactorOptions {
  double lr = 1e-2;             // relative_step: the cap of rho_t; otherwise rho_t itself
  bool relative_step = true;    // rho_t = min(lr, 1 / sqrt(t))
  bool scale_parameter = true;  // multiply rho_t by max(eps2, RMS(X))
  bool factored = true;         // row/column second moments for rank >= 2 parameters
  double beta1 = 0;             // first moment (0: off, no "exp_avg" slot)
  double decay_exponent = 0.8;  // beta2_t = 1 - t^(-decay_exponent), in (0, 1]
  double eps1 = 1e-30;          // added to G^2
  double eps2 = 1e-3;           // lower bound of the parameter scale
  std::optional<double> clip_threshold = 1.0;  // d; nullopt: no update clipping
  double weight_decay_rate = 0;  // X *= 1 - rate each update (not scaled by lr, as trax)
};

class Adafactor : public Optimizer {
 public:
  explicit Adafactor(ParameterList params, AdafactorOptions options = {});
  const AdafactorOptions& options() const { return options_; }

 protected:
  std::vector<Slot> slots_for(const Tensor& param) const override;
  void update(const Tensor& param, const Tensor& grad, ParamState& state) override;

 private:
  bool is_factored(const Tensor& param) const { return options_.factored && param.dim() >= 2; }
  AdafactorOptions options_;
};

}  // namespace rw::nn
