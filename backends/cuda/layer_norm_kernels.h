#pragma once
// Launchers of the layer-norm kernels (forward, backward). Shared by the host wrapper
// (cuda_layer_norm.cpp) and the kernels (layer_norm_kernels.cu); nvcc-safe (no fmt).
//
// The math is the CPU backend's (backends/cpu/cpu_layer_norm.cpp): per row of x [rows, D], two
// passes (mean, then the mean of centred squares: no cancellation for rows with a large mean),
// rstd = 1 / sqrt(var + eps), y = (x - mean) * rstd (* weight) (+ bias); f32 and bf16/f16 compute
// in f32, f64 in f64. Backward: dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with
// g = dy * weight; dweight = sum over rows of dy * xhat and dbias = sum of dy, accumulated in
// double in two deterministic stages (row chunks, then the chunks in order).
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "core/dtype_id.h"

namespace rw::cuda {

// Contiguous [rows, D] operands. x, weight, bias, out (and dy, dx, dweight, dbias) share `dtype`
// (floating); mean and rstd are [rows] of `stat_dtype` (f32 or f64).
struct LayerNormArgs {
  int64_t rows = 0, D = 0;
  DType dtype = DType::f32;
  DType stat_dtype = DType::f32;
};

// weight and bias may be null (absent).
void launch_layer_norm(const LayerNormArgs& a, const void* x, const void* weight, const void* bias,
                       double eps, void* out, void* mean, void* rstd, cudaStream_t stream);

// Device memory launch_layer_norm_backward needs for the parameter gradients' partial sums (0:
// none); the host passes a block of at least this many bytes.
std::size_t layer_norm_backward_scratch_bytes(const LayerNormArgs& a, bool parameter_grads);

// weight may be null (then g = dy); dx, dweight and dbias may each be null (not wanted).
void launch_layer_norm_backward(const LayerNormArgs& a, const void* dy, const void* x,
                                const void* weight, const void* mean, const void* rstd, void* dx,
                                void* dweight, void* dbias, void* scratch, cudaStream_t stream);

}  // namespace rw::cuda
