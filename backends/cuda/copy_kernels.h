#pragma once
// Launchers of the copy, fill and arange kernels, shared by the host side (cuda_copy.cpp) and the
// kernels (copy_kernels.cu); nvcc-safe (no fmt). Every value is what the CPU backend
// (backends/cpu/cpu_copy.cpp) computes for the same inputs.
#include <cuda_runtime.h>

#include "backends/cuda/tensor_arg.h"

namespace rw::cuda {

// dst = src elementwise, converting the dtype like the CPU backend: to bool is
// `float(v) != 0.0f`, to bf16/f16 goes through f32 (round to nearest even), from bf16/f16 through
// f32, everything else is static_cast. src and dst have the same shape (their TensorArgs may have
// merged it differently) and may be strided (src may be a stride-0 broadcast view); both are on
// the stream's device.
void launch_copy(const TensorArg& src, const TensorArg& dst, cudaStream_t stream);

// dst (any strides) = value converted like the CPU backend: to bool is `value != 0`, to bf16/f16
// through f32, else static_cast.
void launch_fill(const TensorArg& dst, double value, cudaStream_t stream);

// out[i] = start + i * step, computed in f64 (rounded after the product, no fused multiply-add)
// and converted like fill. out is 1-D (rank <= 1 after merging).
void launch_arange(const TensorArg& out, double start, double step, cudaStream_t stream);

}  // namespace rw::cuda
