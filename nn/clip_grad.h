#pragma once
// Gradient clipping by the global norm, as torch.nn.utils.clip_grad_norm_, with non-finite
// gradients reported instead of spread: torch multiplies every gradient by a NaN coefficient when
// one gradient holds a NaN; here nothing is scaled and the result says so.
//
//   auto clip = rw::nn::clip_grad_norm_(model->named_parameters(), 1.0);
//   if (!clip.finite) skip_this_step();
#include "nn/optimizer.h"

namespace rw::nn {

struct ClipGradOptions {
  double norm_type = 2;  // p > 0, or infinity for the max-norm
  // Throw an rw::Error naming the first parameter whose gradient is not finite, instead of
  // returning finite = false.
  bool error_if_nonfinite = false;
};

struct ClipGradResult {
  double total_norm = 0;  // of all gradients together, before clipping (NaN/inf if not finite)
  bool finite = true;     // total_norm is finite (when not, no gradient was changed)
  bool clipped = false;   // gradients were scaled by max_norm / (total_norm + 1e-6)
};

// The p-norm of the concatenation of every gradient (parameters without one are skipped),
// accumulated in float64 whatever the gradients' dtype. When it exceeds max_norm, every gradient
// is multiplied in place by max_norm / (total_norm + 1e-6) (torch's coefficient).
ClipGradResult clip_grad_norm_(const ParameterList& parameters, double max_norm,
                               ClipGradOptions options = {});

}  // namespace rw::nn
