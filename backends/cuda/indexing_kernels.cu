// Kernels of gather, scatter_add, index_select and index_add: one thread per element of the index
// (or of the selection), decomposing its linear position into coordinates. Positions below 2^31
// use 32-bit division (several times cheaper on the GPU than 64-bit); data offsets are 64-bit.
//
// The accumulating kernels use atomic adds, so a destination element hit by several indices
// receives its updates in whatever order the threads run: floating-point results can differ in
// the last bits between runs and from the CPU backend (which applies updates in index order).
#include <cstring>
#include <type_traits>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/indexing_kernels.h"
#include "backends/cuda/kernel_utils.cuh"

namespace rw::cuda {
namespace {

// Unsigned integer of the same size as a dtype's elements: moving bytes needs nothing more.
#define RW_CUDA_DISPATCH_BYTES(dtype, function, T, ...) \
  switch (dtype) {                                      \
    case ::rw::DType::f32:                              \
    case ::rw::DType::i32: {                            \
      using T = uint32_t;                               \
      __VA_ARGS__;                                      \
      break;                                            \
    }                                                   \
    case ::rw::DType::f64:                              \
    case ::rw::DType::i64: {                            \
      using T = uint64_t;                               \
      __VA_ARGS__;                                      \
      break;                                            \
    }                                                   \
    case ::rw::DType::bf16:                             \
    case ::rw::DType::f16: {                            \
      using T = uint16_t;                               \
      __VA_ARGS__;                                      \
      break;                                            \
    }                                                   \
    case ::rw::DType::u8:                               \
    case ::rw::DType::boolean: {                        \
      using T = uint8_t;                                \
      __VA_ARGS__;                                      \
      break;                                            \
    }                                                   \
    default:                                            \
      ::rw::cuda::unsupported_dtype(function, dtype);   \
  }

// --- atomics -----------------------------------------------------------------------------------

// Read-modify-write of a 1- or 2-byte element through a compare-and-swap on the aligned 32-bit
// word that contains it (the hardware has no narrower atomics for these types).
template <typename T, typename F>
__device__ void atomic_update_subword(T* p, F update) {
  static_assert(sizeof(T) == 1 || sizeof(T) == 2);
  using Bits = std::conditional_t<sizeof(T) == 1, uint8_t, uint16_t>;
  const auto addr = reinterpret_cast<uintptr_t>(p);
  auto* word = reinterpret_cast<unsigned int*>(addr & ~uintptr_t{3});
  const unsigned shift = static_cast<unsigned>(addr & 3) * 8;
  const unsigned mask = ((1u << (8 * sizeof(T))) - 1u) << shift;
  unsigned old = *word, assumed = 0;
  do {
    assumed = old;
    Bits bits = static_cast<Bits>((assumed & mask) >> shift);
    T current;
    memcpy(&current, &bits, sizeof(T));
    T next = update(current);
    memcpy(&bits, &next, sizeof(T));
    old = atomicCAS(word, assumed, (assumed & ~mask) | (static_cast<unsigned>(bits) << shift));
  } while (assumed != old);
}

// dst += v atomically, with the CPU backend's per-dtype semantics: bf16/f16 sums are rounded after
// each addition, integers wrap, bool is `or`.
template <typename T>
__device__ __forceinline__ void atomic_accumulate(T* dst, T v) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, int32_t>) {
    atomicAdd(dst, v);
  } else if constexpr (std::is_same_v<T, double>) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 600
    atomicAdd(dst, v);
#else
    auto* word = reinterpret_cast<unsigned long long*>(dst);
    unsigned long long old = *word, assumed = 0;
    do {
      assumed = old;
      old = atomicCAS(word, assumed, __double_as_longlong(__longlong_as_double(assumed) + v));
    } while (assumed != old);
#endif
  } else if constexpr (is_half_v<T>) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 700
    atomicAdd(dst, v);
#else
    atomic_update_subword(
        dst, [v](T cur) { return convert<T>(static_cast<float>(cur) + static_cast<float>(v)); });
#endif
  } else if constexpr (std::is_same_v<T, int64_t>) {
    // Two's complement: an unsigned add wraps exactly like the signed one.
    atomicAdd(reinterpret_cast<unsigned long long*>(dst), static_cast<unsigned long long>(v));
  } else if constexpr (std::is_same_v<T, uint8_t>) {
    atomic_update_subword(dst, [v](uint8_t cur) { return static_cast<uint8_t>(cur + v); });
  } else {
    static_assert(std::is_same_v<T, bool>);
    // `or`: every writer stores the same value, so a plain store is race-free in effect.
    if (v) *reinterpret_cast<volatile bool*>(dst) = true;
  }
}

// --- gather / scatter_add ----------------------------------------------------------------------

// The data offset of index element i whose index value is `target`.
template <typename I>
__device__ __forceinline__ int64_t indexed_offset(const IndexedGeometry& g, I i, int64_t target) {
  int64_t offset = 0;
  for (int d = g.rank - 1; d >= 0; --d) {
    const auto size = static_cast<I>(g.sizes[d]);
    const I c = i % size;
    i /= size;
    offset += (d == g.dim ? target : static_cast<int64_t>(c)) * g.data_strides[d];
  }
  return offset;
}

template <typename T, typename I>
__global__ void gather_kernel(const T* __restrict__ x, const int64_t* __restrict__ index,
                              T* __restrict__ out, IndexedGeometry g) {
  const auto n = static_cast<I>(g.numel);
  for (I i = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<I>(blockDim.x) * gridDim.x) {
    out[i] = x[indexed_offset(g, i, index[i])];
  }
}

template <typename T, typename I>
__global__ void scatter_add_kernel(T* dst, const int64_t* __restrict__ index,
                                   const T* __restrict__ src, IndexedGeometry g) {
  const auto n = static_cast<I>(g.numel);
  for (I i = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<I>(blockDim.x) * gridDim.x) {
    atomic_accumulate(dst + indexed_offset(g, i, index[i]), src[i]);
  }
}

// --- index_select / index_add ------------------------------------------------------------------

// out [A, K, B] = x [A, N, B] at rows index[K]; T is the unit moved (B counts units).
template <typename T, typename I>
__global__ void index_select_kernel(const T* __restrict__ x, const int64_t* __restrict__ index,
                                    T* __restrict__ out, SliceGeometry g) {
  const auto n = static_cast<I>(g.A * g.K * g.B);
  const auto B = static_cast<I>(g.B), K = static_cast<I>(g.K);
  for (I i = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<I>(blockDim.x) * gridDim.x) {
    const I b = i % B, row = i / B;
    const I k = row % K, a = row / K;
    out[i] = x[(static_cast<int64_t>(a) * g.N + index[k]) * g.B + b];
  }
}

template <typename T, typename I>
__global__ void index_add_kernel(T* dst, const int64_t* __restrict__ index,
                                 const T* __restrict__ src, SliceGeometry g) {
  const auto n = static_cast<I>(g.A * g.K * g.B);
  const auto B = static_cast<I>(g.B), K = static_cast<I>(g.K);
  for (I i = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<I>(blockDim.x) * gridDim.x) {
    const I b = i % B, row = i / B;
    const I k = row % K, a = row / K;
    atomic_accumulate(dst + (static_cast<int64_t>(a) * g.N + index[k]) * g.B + b, src[i]);
  }
}

// Runs kernel<I> with 32-bit positions when n allows (the grid-stride loop then stays below 2^32).
template <typename Launch>
void with_position_type(int64_t n, Launch&& launch) {
  if (n <= INT32_MAX) {
    launch(uint32_t{});
  } else {
    launch(uint64_t{});
  }
}

// The widest unit (16, 8, 4, 2 or 1 bytes) that divides a row of `row_bytes` and both addresses.
int unit_bytes(int64_t row_bytes, const void* p, const void* q) {
  const auto bits = static_cast<uint64_t>(row_bytes) | reinterpret_cast<uintptr_t>(p) |
                    reinterpret_cast<uintptr_t>(q);
  for (int w = 16; w > 1; w /= 2) {
    if ((bits & static_cast<uint64_t>(w - 1)) == 0) return w;
  }
  return 1;
}

template <typename T>
void index_select_units(const void* x, const int64_t* index, void* out, SliceGeometry g,
                        cudaStream_t stream) {
  const int64_t n = g.A * g.K * g.B;
  with_position_type(n, [&](auto position) {
    using I = decltype(position);
    index_select_kernel<T, I><<<grid_for(n), kThreads, 0, stream>>>(static_cast<const T*>(x), index,
                                                                    static_cast<T*>(out), g);
  });
  RW_CUDA_CHECK_LAUNCH();
}

std::size_t element_bytes(DType dtype) {
  std::size_t size = 0;
  RW_CUDA_DISPATCH_BYTES(dtype, "index_select", T, size = sizeof(T));
  return size;
}

}  // namespace

void launch_gather(const void* x, const int64_t* index, void* out, DType dtype,
                   const IndexedGeometry& g, cudaStream_t stream) {
  if (g.numel == 0) return;
  RW_CUDA_DISPATCH_BYTES(dtype, "gather", T, {
    with_position_type(g.numel, [&](auto position) {
      using I = decltype(position);
      gather_kernel<T, I><<<grid_for(g.numel), kThreads, 0, stream>>>(
          static_cast<const T*>(x), index, static_cast<T*>(out), g);
    });
  });
  RW_CUDA_CHECK_LAUNCH();
}

void launch_scatter_add(void* dst, const int64_t* index, const void* src, DType dtype,
                        const IndexedGeometry& g, cudaStream_t stream) {
  if (g.numel == 0) return;
  RW_CUDA_DISPATCH_ALL(dtype, T, {
    with_position_type(g.numel, [&](auto position) {
      using I = decltype(position);
      scatter_add_kernel<T, I><<<grid_for(g.numel), kThreads, 0, stream>>>(
          static_cast<T*>(dst), index, static_cast<const T*>(src), g);
    });
  });
  RW_CUDA_CHECK_LAUNCH();
}

void launch_index_select(const void* x, const int64_t* index, void* out, DType dtype,
                         const SliceGeometry& g, cudaStream_t stream) {
  if (g.A * g.K * g.B == 0) return;
  // Rows move in the widest unit their size and addresses allow (a row of 64 f32 is 16 uint4).
  const int64_t row_bytes = g.B * static_cast<int64_t>(element_bytes(dtype));
  const int w = unit_bytes(row_bytes, x, out);
  SliceGeometry units = g;
  units.B = row_bytes / w;
  switch (w) {
    case 16:
      return index_select_units<uint4>(x, index, out, units, stream);
    case 8:
      return index_select_units<uint2>(x, index, out, units, stream);
    case 4:
      return index_select_units<uint32_t>(x, index, out, units, stream);
    case 2:
      return index_select_units<uint16_t>(x, index, out, units, stream);
    default:
      return index_select_units<uint8_t>(x, index, out, units, stream);
  }
}

void launch_index_add(void* dst, const int64_t* index, const void* src, DType dtype,
                      const SliceGeometry& g, cudaStream_t stream) {
  const int64_t n = g.A * g.K * g.B;
  if (n == 0) return;
  RW_CUDA_DISPATCH_ALL(dtype, T, {
    with_position_type(n, [&](auto position) {
      using I = decltype(position);
      index_add_kernel<T, I><<<grid_for(n), kThreads, 0, stream>>>(static_cast<T*>(dst), index,
                                                                   static_cast<const T*>(src), g);
    });
  });
  RW_CUDA_CHECK_LAUNCH();
}

}  // namespace rw::cuda
