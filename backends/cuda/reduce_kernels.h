#pragma once
// Launchers of the reduction kernels: reduce (sum, mean, max, min, prod, logsumexp), arg_reduce
// (argmax, argmin) and cumsum. Shared by the host wrapper (cuda_reduce.cpp, which turns Tensors
// into these geometries and provides scratch memory) and the kernels (reduce_kernels.cu,
// cumsum_kernels.cu); nvcc-safe (no fmt).
//
// Results follow the CPU backend (backends/cpu/cpu_reduce.cpp): sums and products of floating
// types accumulate in double (bf16/f16 are widened to f32 on load), of integers and bools in int64;
// max/min propagate NaN; argmax/argmin return the first index of the extreme, a NaN counting as the
// extreme (the first NaN wins); logsumexp of a row whose max is not finite is that max (all -inf
// gives -inf). Combination orders are fixed by the shapes alone: no atomics, bit-identical results
// run to run. They differ from the CPU's orders, so floating sums may differ in their last bits,
// and a max or min over both -0 and +0 may pick the other zero (each backend keeps the one its
// order meets last).
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "backends/backend_ops.h"
#include "backends/cuda/tensor_arg.h"
#include "core/dtype_id.h"

namespace rw::cuda {

// x's dims split into kept dims (out's extent equals x's) and reduced dims, each group ordered by
// decreasing x stride with neighbours that form one dense run merged (the CPU backend's layout).
// Output o (flat over the kept dims in this order) reads x at
//   sum_d k_d(o) * kept_x_strides[d] + sum_d r_d(i) * red_x_strides[d]   for i in [0, n_red)
// and is written at sum_d k_d(o) * kept_out_strides[d] of out (in elements). A group may be empty
// (rank 0): then n_out or n_red is 1.
struct ReduceGeometry {
  int kept_rank = 0;
  int64_t kept_sizes[kMaxDims] = {};
  int64_t kept_x_strides[kMaxDims] = {};
  int64_t kept_out_strides[kMaxDims] = {};
  int red_rank = 0;
  int64_t red_sizes[kMaxDims] = {};
  int64_t red_x_strides[kMaxDims] = {};
  int64_t n_out = 1;
  int64_t n_red = 1;
  // The innermost x dim (smallest stride) is a kept one: threads then run over outputs, so that
  // neighbouring threads read neighbouring elements.
  bool column = false;
};

// Device memory the launchers below need for intermediate states (0: none); the host passes a
// block of at least this many bytes, 16-byte aligned.
std::size_t reduce_scratch_bytes(ReduceOp op, DType x_dtype, const ReduceGeometry& g);
std::size_t arg_reduce_scratch_bytes(DType x_dtype, const ReduceGeometry& g);

// out = op over the reduced dims of x (any dtype; logsumexp floating only). out's dtype may differ
// from x's (integer sums and products are i64): results are converted on the store.
void launch_reduce(ReduceOp op, const void* x, DType x_dtype, void* out, DType out_dtype,
                   const ReduceGeometry& g, void* scratch, cudaStream_t stream);

// out (i64) = index along the one reduced dim of the first extreme (g.red_rank <= 1).
void launch_arg_reduce(ArgReduceOp op, const void* x, DType x_dtype, int64_t* out,
                       const ReduceGeometry& g, void* scratch, cudaStream_t stream);

// cumsum (cumsum_kernels.cu): contiguous x and out viewed as [outer, n, inner], the inclusive
// prefix sum running along n, accumulated in double (floating x) or int64 like the CPU's; out's
// dtype is x's or i64.
struct ScanGeometry {
  int64_t outer = 1, n = 1, inner = 1;
};
std::size_t cumsum_scratch_bytes(const ScanGeometry& g);
void launch_cumsum(const void* x, DType x_dtype, void* out, DType out_dtype, const ScanGeometry& g,
                   void* scratch, cudaStream_t stream);

}  // namespace rw::cuda
