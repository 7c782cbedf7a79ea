#pragma once
// Building blocks of the reduce, softmax and layer-norm kernels: deterministic cooperative
// reductions (warp butterflies over shuffles, block-wide combinations through shared memory) and
// math in the accumulation type. Every combination happens in an order fixed by the launch shape
// alone, so the same input gives bit-identical results run to run (no atomics). Included by .cu
// files only.
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

namespace rw::cuda {

inline constexpr unsigned kFullMask = 0xffffffffu;

// Sums (and products) of floating values accumulate in double, of integers and bools in int64: the
// CPU backend's rule for reductions and cumsum (V is the compute type, acc_t of the element type).
template <typename V>
using wide_t = std::conditional_t<std::is_floating_point_v<V>, double, int64_t>;

// One lane's value exchanged with lane ^ mask inside groups of `width` lanes (a power of two at
// most 32). Types narrower than 32 bits travel as int.
template <typename T>
__device__ __forceinline__ T shuffle_xor(T v, int mask, int width = 32) {
  if constexpr (sizeof(T) < 4) {
    return static_cast<T>(__shfl_xor_sync(kFullMask, static_cast<int>(v), mask, width));
  } else if constexpr (std::is_same_v<T, int64_t>) {
    return static_cast<T>(__shfl_xor_sync(kFullMask, static_cast<long long>(v), mask, width));
  } else {
    return __shfl_xor_sync(kFullMask, v, mask, width);
  }
}

// Combines the values of each group of `width` consecutive lanes (a power of two at most 32) with a
// butterfly. Lane 0 of each group ends with the combination of its group; for a commutative merge
// (sum, fmax) every lane of the group holds the same bits. All 32 lanes of the warp must call it.
template <typename S, typename Merge>
__device__ __forceinline__ S warp_allreduce(S s, int width, Merge merge) {
  for (int m = width / 2; m > 0; m /= 2) s = merge(s, shuffle_xor(s, m, width));
  return s;
}

// Combines one value per thread over the whole block (blockDim.x a multiple of 32, at most 1024):
// warp butterflies, then every thread folds the per-warp results in warp order, so all threads
// return the same bits. `smem` holds at least blockDim.x / 32 values; every thread of the block
// must call it (it synchronises), and it may be called again with the same buffer.
template <typename S, typename Merge>
__device__ __forceinline__ S block_allreduce(S s, Merge merge, S* smem) {
  s = warp_allreduce(s, 32, merge);
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int warps = static_cast<int>(blockDim.x) / 32;
  __syncthreads();  // a previous call may still be reading smem
  if (threadIdx.x % 32 == 0) smem[warp] = s;
  __syncthreads();
  S r = smem[0];
  for (int w = 1; w < warps; ++w) r = merge(r, smem[w]);
  return r;
}

// A group of G threads cooperating on one row: a sub-warp group (G <= 32) or the whole block
// (G == blockDim.x > 32). Returns the combination over the group to every thread of it.
template <int G, typename S, typename Merge>
__device__ __forceinline__ S group_allreduce(S s, Merge merge, S* smem) {
  if constexpr (G <= 32) {
    (void)smem;
    return warp_allreduce(s, G, merge);
  } else {
    return block_allreduce(s, merge, smem);
  }
}

struct SumMerge {
  template <typename S>
  __device__ __forceinline__ S operator()(S a, S b) const {
    return a + b;
  }
};

// std::max(a, b): a NaN b is dropped, so a running max that starts at -inf never becomes NaN (the
// CPU softmax's max, which ignores NaNs; the NaN then shows up through exp(NaN - max)).
struct MaxMerge {
  template <typename S>
  __device__ __forceinline__ S operator()(S a, S b) const {
    return a < b ? b : a;
  }
};

// exp, log and sqrt in the accumulation type (float or double), with CUDA's accurate functions
// (never the fast intrinsics): within 1-2 ulp of glibc's, as the CPU backend computes.
template <typename A>
__device__ __forceinline__ A exp_of(A v) {
  if constexpr (std::is_same_v<A, float>) {
    return expf(v);
  } else {
    return exp(v);
  }
}
template <typename A>
__device__ __forceinline__ A log_of(A v) {
  if constexpr (std::is_same_v<A, float>) {
    return logf(v);
  } else {
    return log(v);
  }
}
template <typename A>
__device__ __forceinline__ A sqrt_of(A v) {
  if constexpr (std::is_same_v<A, float>) {
    return sqrtf(v);
  } else {
    return sqrt(v);
  }
}

__host__ __device__ inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

inline int next_pow2(int64_t n) {
  int p = 1;
  while (p < n && p < (1 << 30)) p *= 2;
  return p;
}

}  // namespace rw::cuda
