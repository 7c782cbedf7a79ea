#pragma once
#include "core/tensor.h"

namespace rw {

// Matrix product with NumPy semantics: 1-D operands are promoted and the added dim removed;
// batch dims broadcast. Transposed views are used without copies where the backend allows.
Tensor matmul(const Tensor& a, const Tensor& b);
// x [..., in] @ weight[out, in]^T + bias[out] (bias optional: pass an undefined tensor), with
// the bias fused into the matmul epilogue.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = {});

}  // namespace rw
