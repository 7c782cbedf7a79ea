#include "nn/clip_grad.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "autograd/tape.h"
#include "core/error.h"
#include "core/ops.h"

namespace rw::nn {

namespace {

// sum |g|^p (or max |g| for p = inf) of one gradient, in float64, as a 0-dim tensor.
Tensor partial_norm(const Tensor& grad, double p) {
  Tensor a = abs(grad.to(DType::f64));
  if (std::isinf(p)) return max(a);
  if (p == 1) return sum(a);
  if (p == 2) return sum(square(a));
  return sum(pow(a, p));
}

}  // namespace

ClipGradResult clip_grad_norm_(const ParameterList& parameters, double max_norm,
                               ClipGradOptions options) {
  const double p = options.norm_type;
  RW_CHECK(std::isfinite(max_norm) && max_norm > 0,
           "clip_grad_norm_: max_norm must be finite and > 0, got {}", max_norm);
  RW_CHECK(p > 0 && !std::isnan(p), "clip_grad_norm_: norm_type must be > 0 (or infinity), got {}",
           p);
  NoGradGuard no_grad;
  std::vector<const std::pair<std::string, Tensor>*> with_grad;
  std::vector<Tensor> partials;  // on the first gradient's device, so one host read gets them all
  for (const auto& named : parameters.items) {
    Tensor g = named.second.defined() ? named.second.grad() : Tensor();
    if (!g.defined()) continue;
    with_grad.push_back(&named);
    const Device device = partials.empty() ? g.device() : partials[0].device();
    partials.push_back(g.numel() > 0 ? partial_norm(g, p).to(device)
                                     : zeros({}, {.dtype = DType::f64, .device = device}));
  }
  ClipGradResult result;
  if (partials.empty()) return result;
  std::vector<double> values = stack(partials).to_vector<double>();
  double total = 0;
  if (std::isinf(p)) {
    for (double v : values) {
      total = std::isnan(v) || std::isnan(total) ? std::numeric_limits<double>::quiet_NaN()
                                                 : std::max(total, v);
    }
  } else {
    for (double v : values) total += v;
    total = std::pow(total, 1 / p);
  }
  result.total_norm = total;
  result.finite = std::isfinite(total);
  if (!result.finite) {
    if (options.error_if_nonfinite) {
      // Name the first parameter whose gradient holds a NaN or an infinity (read only here, on the
      // error path); if none does, finite gradients overflowed the norm.
      for (const auto* named : with_grad) {
        std::vector<double> g = named->second.grad().to_vector<double>();
        if (std::any_of(g.begin(), g.end(), [](double x) { return !std::isfinite(x); })) {
          throw Error(fmt::format(
              "clip_grad_norm_: the total norm of order {} of the gradients is {}: the gradient "
              "of '{}' is not finite",
              p, total, named->first));
        }
      }
      throw Error(fmt::format(
          "clip_grad_norm_: the total norm of order {} of the gradients is {}: every gradient is "
          "finite, but the norm overflowed",
          p, total));
    }
    return result;
  }
  const double coef = max_norm / (total + 1e-6);
  if (coef < 1) {
    for (const auto* named : with_grad) mul_(named->second.grad(), coef);
    result.clipped = true;
  }
  return result;
}

}  // namespace rw::nn
