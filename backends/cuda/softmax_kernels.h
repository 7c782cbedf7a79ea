#pragma once
// Launchers of the softmax and log_softmax kernels, forward and backward. Shared by the host
// wrapper (cuda_softmax.cpp) and the kernels (softmax_kernels.cu); nvcc-safe (no fmt).
//
// Every kernel computes what the CPU backend computes (backends/cpu/cpu_softmax.cpp): bf16/f16 in
// f32 (rounded once on the store), f32 in f32, f64 in f64; the max ignores NaN, so a NaN anywhere
// in a row makes the whole row NaN through exp(NaN - max); a row of all -inf gives NaN (as PyTorch
// and the CPU); -inf entries of other rows give 0 (log_softmax: -inf). (The CPU's f32 path along
// the innermost dim, oneDNN, gives NaN only at a NaN or +inf entry and 0 elsewhere; its f64 path
// and its f32 path along other dims agree with these kernels.)
#include <cuda_runtime.h>

#include <cstdint>

#include "backends/backend_ops.h"
#include "core/dtype_id.h"

namespace rw::cuda {

// Contiguous tensors viewed as [outer, C, inner], the softmax running over C.
struct SoftmaxGeometry {
  int64_t outer = 1, C = 1, inner = 1;
};

// y = softmax(x) or log_softmax(x); x and y of one floating dtype.
void launch_softmax(SoftmaxKind kind, const void* x, void* y, DType dtype, const SoftmaxGeometry& g,
                    cudaStream_t stream);

// dx from the forward output y and dy: softmax dx = y * (dy - sum(dy * y)); log_softmax
// dx = dy - exp(y) * sum(dy). All of one floating dtype.
void launch_softmax_backward(SoftmaxKind kind, const void* y, const void* dy, void* dx, DType dtype,
                             const SoftmaxGeometry& g, cudaStream_t stream);

}  // namespace rw::cuda
