// Copy (with dtype conversion), fill and arange kernels. Conversions follow the CPU backend
// (backends/cpu/cpu_copy.cpp) exactly rather than kernel_utils.cuh's convert<>, which differs
// for one case: the CPU's copy to bool tests `float(v) != 0.0f`, so an f64 below f32's smallest
// subnormal (1e-50) becomes false, while fill and arange test the f64 value itself.
#include <cstring>

#include "backends/cuda/copy_kernels.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/kernel_utils.cuh"

namespace rw::cuda {
namespace {

template <typename T>
__host__ __device__ __forceinline__ float to_float(T v) {
  if constexpr (std::is_same_v<T, bool>) {
    return v ? 1.0f : 0.0f;
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __bfloat162float(v);
  } else if constexpr (std::is_same_v<T, __half>) {
    return __half2float(v);
  } else {
    return static_cast<float>(v);
  }
}

template <typename T>
__host__ __device__ __forceinline__ T half_from_float(float f) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __float2bfloat16_rn(f);
  } else {
    return __float2half_rn(f);
  }
}

// The CPU backend's copy conversion (cpu_copy.cpp's convert<To, From>).
template <typename To, typename From>
__device__ __forceinline__ To copy_convert(From v) {
  if constexpr (std::is_same_v<To, From>) {
    return v;
  } else if constexpr (std::is_same_v<To, bool>) {
    return to_float(v) != 0.0f;
  } else if constexpr (is_half_v<To>) {
    return half_from_float<To>(to_float(v));
  } else if constexpr (is_half_v<From>) {
    return static_cast<To>(to_float(v));
  } else {
    return static_cast<To>(v);
  }
}

// The CPU backend's conversion of an f64 value in fill and arange.
template <typename T>
__host__ __device__ __forceinline__ T value_convert(double v) {
  if constexpr (std::is_same_v<T, bool>) {
    return v != 0;
  } else if constexpr (is_half_v<T>) {
    return half_from_float<T>(static_cast<float>(v));
  } else {
    return static_cast<T>(v);
  }
}

template <typename To, typename From>
__global__ void copy_contiguous_kernel(To* dst, const From* src, int64_t n) {
  RW_CUDA_GRID_STRIDE_LOOP(i, n) { dst[i] = copy_convert<To>(src[i]); }
}

template <typename To, typename From>
__global__ void copy_strided_kernel(To* dst, Indexer dst_index, const From* src, Indexer src_index,
                                    int64_t n) {
  RW_CUDA_GRID_STRIDE_LOOP(i, n) {
    dst[dst_index.offset(i)] = copy_convert<To>(src[src_index.offset(i)]);
  }
}

template <typename T>
__global__ void fill_kernel(T* dst, Indexer index, int64_t n, T value) {
  RW_CUDA_GRID_STRIDE_LOOP(i, n) { dst[index.offset(i)] = value; }
}

template <typename T>
__global__ void arange_kernel(T* out, int64_t stride, int64_t n, double start, double step) {
  RW_CUDA_GRID_STRIDE_LOOP(i, n) {
    // start + i * step with the product rounded before the sum, as the CPU computes it (a fused
    // multiply-add would round once and differ in the last bit).
    const double v = __dadd_rn(start, __dmul_rn(static_cast<double>(i), step));
    out[i * stride] = value_convert<T>(v);
  }
}

template <typename To, typename From>
void copy_typed(const TensorArg& src, const TensorArg& dst, cudaStream_t stream) {
  const int64_t n = dst.numel;
  auto* d = static_cast<To*>(dst.data);
  const auto* s = static_cast<const From*>(src.data);
  if (src.contiguous && dst.contiguous) {
    copy_contiguous_kernel<To, From><<<grid_for(n), kThreads, 0, stream>>>(d, s, n);
  } else {
    copy_strided_kernel<To, From>
        <<<grid_for(n), kThreads, 0, stream>>>(d, Indexer(dst), s, Indexer(src), n);
  }
  RW_CUDA_CHECK_LAUNCH();
}

template <typename To>
void copy_to(const TensorArg& src, const TensorArg& dst, cudaStream_t stream) {
  RW_CUDA_DISPATCH_ALL(src.dtype, From, copy_typed<To, From>(src, dst, stream));
}

template <typename T>
void fill_typed(const TensorArg& dst, double value, cudaStream_t stream) {
  const T v = value_convert<T>(value);
  unsigned char zero[sizeof(T)] = {};
  if (dst.contiguous && std::memcmp(&v, zero, sizeof(T)) == 0) {
    // All bytes zero (zeros(), false): a memset, which the copy engines do at full bandwidth.
    RW_CUDA_CHECK(
        cudaMemsetAsync(dst.data, 0, static_cast<std::size_t>(dst.numel) * sizeof(T), stream));
    return;
  }
  fill_kernel<T><<<grid_for(dst.numel), kThreads, 0, stream>>>(static_cast<T*>(dst.data),
                                                               Indexer(dst), dst.numel, v);
  RW_CUDA_CHECK_LAUNCH();
}

}  // namespace

void launch_copy(const TensorArg& src, const TensorArg& dst, cudaStream_t stream) {
  if (dst.numel == 0) return;
  RW_CUDA_DISPATCH_ALL(dst.dtype, To, copy_to<To>(src, dst, stream));
}

void launch_fill(const TensorArg& dst, double value, cudaStream_t stream) {
  if (dst.numel == 0) return;
  RW_CUDA_DISPATCH_ALL(dst.dtype, T, fill_typed<T>(dst, value, stream));
}

void launch_arange(const TensorArg& out, double start, double step, cudaStream_t stream) {
  if (out.numel == 0) return;
  // After merging, a 1-D tensor has rank 1 (or 0 when it has one element).
  const int64_t stride = out.rank == 1 ? out.strides[0] : 1;
  RW_CUDA_DISPATCH_ALL(out.dtype, T,
                       arange_kernel<T><<<grid_for(out.numel), kThreads, 0, stream>>>(
                           static_cast<T*>(out.data), stride, out.numel, start, step);
                       RW_CUDA_CHECK_LAUNCH());
}

}  // namespace rw::cuda
