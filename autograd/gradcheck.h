#pragma once
// Gradient checking: the analytic gradient of f (from rw::backward) against central finite
// differences in float64. Public so library users can check their own ops and custom functions.
//
//   auto r = rw::gradcheck([](const std::vector<rw::Tensor>& x) { return rw::tanh(x[0]); },
//                          {rw::randn({3, 4}, state, {.dtype = rw::DType::f64}).requires_grad_()});
//   if (!r.ok) fmt::print("{}\n", r.message);
//
// For each input that requires grad: when numel(input) * numel(output) <= full_jacobian_max the
// whole Jacobian is compared (analytic rows by a backward per unit cotangent, numeric columns by
// perturbing one element at a time); otherwise the output is reduced with a fixed random cotangent
// u and, for num_projections random directions v, <grad(u . f), v> is compared with
// (u . f(x + eps v) - u . f(x - eps v)) / (2 eps).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace rw {

struct GradcheckOptions {
  double eps = 1e-6;   // finite-difference step
  double atol = 1e-6;  // an entry passes when |analytic - numeric| <= atol + rtol * |numeric|
  double rtol = 1e-4;
  int64_t full_jacobian_max = 256;  // numel(input) * numel(output) up to which J is compared whole
  int num_projections = 8;          // random directions per input otherwise
  uint64_t seed = 0;                // of the random cotangent and directions
};

struct GradcheckResult {
  bool ok = true;
  // On failure: the input index, the element (or projection), the analytic and numeric values
  // of the worst mismatch, and how many comparisons failed. On success a short summary.
  std::string message;
  double max_abs_error = 0;
  double max_rel_error = 0;  // |analytic - numeric| / max(|numeric|, atol)
};

// Checks the inputs that require grad (they must be f64; an error when none does). Inputs are
// copied (contiguous, detached) before use: the caller's tensors are never modified, and a layout
// to be tested (transposed, strided, broadcast) should be built inside f. f must be a pure function
// of its inputs returning a floating tensor of any shape. An rw::Error thrown by f or by a backward
// rule propagates to the caller; a wrong gradient (value, shape or dtype) gives ok == false.
GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                          const std::vector<Tensor>& inputs, GradcheckOptions options = {});

}  // namespace rw
