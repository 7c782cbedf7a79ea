#pragma once
// Launcher of the random kernels, shared by the host side (cuda_random.cpp) and the kernels
// (random_kernels.cu); nvcc-safe (no fmt). The numbers are the CPU backend's
// (backends/cpu/cpu_random.cpp) for the same PhiloxState: element i takes word i % 4 of block
// state.counter + i / 4, computed in f64 with the same operations in the same order, then
// converted to the output dtype like the CPU (to bool: != 0; to bf16/f16: through f32).
#include <cuda_runtime.h>

#include "backends/backend_ops.h"
#include "backends/cuda/tensor_arg.h"
#include "core/philox.h"

namespace rw::cuda {

// Fills contiguous `out` (any dtype) with `kind` samples:
//   uniform:   a + (b - a) * u, clamped to `uniform_max` for floating dtypes (the largest value of
//              the dtype below b, computed by the caller, as the CPU clamps)
//   normal:    a + b * z (Box-Muller on the word pairs (0, 1) and (2, 3) of a block)
//   bernoulli: u < a ? 1 : 0
//   randint:   min(a + floor(u * (b - a)), b - 1)
void launch_random(RandomKind kind, PhiloxState state, double a, double b, double uniform_max,
                   const TensorArg& out, cudaStream_t stream);

}  // namespace rw::cuda
