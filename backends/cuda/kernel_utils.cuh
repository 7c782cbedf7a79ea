#pragma once
// Device-side building blocks shared by the CUDA kernel families: element types per DType, the
// compute type (f32 for bf16/f16, as on the CPU), conversions with the CPU backend's semantics,
// strided indexing and launch sizes. Included by .cu files only.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "backends/cuda/tensor_arg.h"

namespace rw::cuda {

// --- element types ---------------------------------------------------------------------------
template <typename T>
struct AccType {
  using type = T;
};
template <>
struct AccType<__nv_bfloat16> {
  using type = float;
};
template <>
struct AccType<__half> {
  using type = float;
};
template <typename T>
using acc_t = typename AccType<T>::type;

template <typename T>
inline constexpr bool is_half_v = std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>;

// Converts between element types like the CPU backend's static_cast (bf16/f16 through f32,
// round-to-nearest-even; anything to bool is `!= 0`).
template <typename To, typename From>
__device__ __forceinline__ To convert(From v) {
  if constexpr (std::is_same_v<To, From>) {
    return v;
  } else if constexpr (is_half_v<From>) {
    return convert<To>(static_cast<float>(v));
  } else if constexpr (std::is_same_v<To, __nv_bfloat16>) {
    return __float2bfloat16_rn(static_cast<float>(v));
  } else if constexpr (std::is_same_v<To, __half>) {
    return __float2half_rn(static_cast<float>(v));
  } else if constexpr (std::is_same_v<To, bool>) {
    return v != From(0);
  } else {
    return static_cast<To>(v);
  }
}

template <typename T>
__device__ __forceinline__ acc_t<T> load(const T* p) {
  return convert<acc_t<T>>(*p);
}
template <typename T, typename V>
__device__ __forceinline__ void store(T* p, V v) {
  *p = convert<T>(v);
}

// --- dtype dispatch (host code in .cu files) ----------------------------------------------------
// RW_CUDA_DISPATCH_ALL(dtype, T, body): runs body with T the element type of dtype.
#define RW_CUDA_DISPATCH_CASE(D, TYPE, T, ...) \
  case ::rw::DType::D: {                       \
    using T = TYPE;                            \
    __VA_ARGS__;                               \
    break;                                     \
  }
#define RW_CUDA_DISPATCH_FLOATING(dtype, T, ...)               \
  switch (dtype) {                                             \
    RW_CUDA_DISPATCH_CASE(f32, float, T, __VA_ARGS__)          \
    RW_CUDA_DISPATCH_CASE(f64, double, T, __VA_ARGS__)         \
    RW_CUDA_DISPATCH_CASE(bf16, __nv_bfloat16, T, __VA_ARGS__) \
    RW_CUDA_DISPATCH_CASE(f16, __half, T, __VA_ARGS__)         \
    default:                                                   \
      ::rw::cuda::unsupported_dtype(__func__, dtype);          \
  }
#define RW_CUDA_DISPATCH_ALL(dtype, T, ...)                    \
  switch (dtype) {                                             \
    RW_CUDA_DISPATCH_CASE(f32, float, T, __VA_ARGS__)          \
    RW_CUDA_DISPATCH_CASE(f64, double, T, __VA_ARGS__)         \
    RW_CUDA_DISPATCH_CASE(bf16, __nv_bfloat16, T, __VA_ARGS__) \
    RW_CUDA_DISPATCH_CASE(f16, __half, T, __VA_ARGS__)         \
    RW_CUDA_DISPATCH_CASE(i32, int32_t, T, __VA_ARGS__)        \
    RW_CUDA_DISPATCH_CASE(i64, int64_t, T, __VA_ARGS__)        \
    RW_CUDA_DISPATCH_CASE(u8, uint8_t, T, __VA_ARGS__)         \
    RW_CUDA_DISPATCH_CASE(boolean, bool, T, __VA_ARGS__)       \
  }

// Throws rw::Error "cuda <function>: dtype <name> is not supported" (defined in cuda_check.cpp).
[[noreturn]] void unsupported_dtype(const char* function, DType dtype);

// --- indexing ----------------------------------------------------------------------------------
// Maps the row-major linear index of an element to its offset in a strided tensor.
struct Indexer {
  int rank = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};

  explicit Indexer(const TensorArg& t) : rank(t.rank) {
    for (int d = 0; d < t.rank; ++d) {
      sizes[d] = t.sizes[d];
      strides[d] = t.strides[d];
    }
  }
  __device__ __forceinline__ int64_t offset(int64_t i) const {
    int64_t off = 0;
    for (int d = rank - 1; d >= 0; --d) {
      int64_t s = sizes[d];
      off += (i % s) * strides[d];
      i /= s;
    }
    return off;
  }
};

// --- launch sizes ------------------------------------------------------------------------------
inline constexpr int kThreads = 256;
// Blocks for a grid-stride loop over n elements (capped: each thread then loops).
inline unsigned grid_for(int64_t n, int threads = kThreads) {
  int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::clamp<int64_t>(blocks, 1, int64_t{1} << 20));
}

#define RW_CUDA_GRID_STRIDE_LOOP(i, n)                                                   \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

}  // namespace rw::cuda
