#pragma once
// Launchers of the elementwise kernels: unary, unary_backward, binary and where. Shared by the host
// wrappers (cuda_elementwise.cpp, which validates dtypes and ops and turns Tensors into
// TensorArgs) and the kernels (elementwise_*.cu); nvcc-safe (no fmt).
//
// Every kernel computes what the CPU backend computes (backends/cpu/cpu_elementwise.cpp), with
// the same formulas in the same order: bf16/f16 compute in f32 and round once, integers compute
// in their own type (wrapping), and no multiply-add is fused unless the CPU fuses it too.
// Inputs may be strided (stride-0 broadcast views included); outputs may be too, though the op
// layer always passes contiguous ones. When every operand is contiguous and suitably aligned the
// kernels load and store 16-byte vectors.
#include <cuda_runtime.h>

#include "backends/backend_ops.h"
#include "backends/cuda/tensor_arg.h"

namespace rw::cuda {

// out = op(x); x and out have the same shape. The dtype combination was validated by the caller:
// logical_not is bool -> bool, isfinite is any -> bool, every other op maps a dtype to itself
// (floating dtypes: all ops; i32/i64/u8: neg, abs, sign, square, relu, pow_scalar, clamp).
void launch_unary(UnaryOp op, const TensorArg& x, const TensorArg& out, UnaryParams params,
                  cudaStream_t stream);

// dx = dy * d op(x)/dx over contiguous operands of one floating dtype. `saved` is what the
// derivative reads: y = op(x) for exp, sqrt, rsqrt, reciprocal, tanh and sigmoid, x for the other
// ops (neg and sign read neither; any operand of the right shape will do).
void launch_unary_backward(UnaryOp op, const TensorArg& saved, const TensorArg& dy,
                           const TensorArg& dx, UnaryParams params, cudaStream_t stream);

// out = op(a, b); a and b are broadcast to out's shape and of one dtype. Comparisons and logical
// ops write bool; arithmetic writes a's dtype (bool only for maximum/minimum: or/and).
void launch_binary(BinaryOp op, const TensorArg& a, const TensorArg& b, const TensorArg& out,
                   cudaStream_t stream);

// out = cond ? a : b, elements moved as they are (no conversion); cond is bool, a and b of out's
// dtype, all broadcast to out's shape.
void launch_where(const TensorArg& cond, const TensorArg& a, const TensorArg& b,
                  const TensorArg& out, cudaStream_t stream);

}  // namespace rw::cuda
