#pragma once
// The shared-QK inputs of the chunk attention in one pass: from the projection qk [B, H, L, d]
// (any strides; the heads of a [B, L, H d] projection are a transposed view) the scaled queries
// qk * scale and the unit keys qk / |qk|, each as contiguous [B H, Lp, d] with zero rows for the
// padding L..Lp.
//
// Why fused: written as ops this is a scale, a square, a sum, a root, a division and two copies
// into the padded layout, and in backward the gradients of each: about fifteen passes over
// [L, H d] per layer and call where one reads qk once (forward) and dq, dk, qk once (backward).
// On other devices (and for bf16/f16) it runs as those ops, so the two compute the same function.
#include "core/tensor.h"

namespace rw::reformer {

struct SharedQKInputs {
  Tensor q;  // [B H, Lp, d] = qk * scale, zero rows past L
  Tensor k;  // [B H, Lp, d] = qk / sqrt(|qk|^2 + 1e-24) (nn::unit_normalize), zero rows past L
};

// Differentiable in qk. Lp >= L.
SharedQKInputs shared_qk_inputs(const Tensor& qk, double scale, int64_t Lp);

// The chunk attention's layout for any other input (the values): x [B, H, L, d] with zero rows
// appended up to Lp, as contiguous [B H, Lp, d]. Differentiable.
Tensor pad_rows(const Tensor& x, int64_t Lp);

}  // namespace rw::reformer
