// Stable sort along a dim on CUB's device-wide radix sort, for every row at once:
//  1. each element becomes an unsigned key whose order is the requested order (the CPU backend's
//     mapping: NaNs the largest key, -0 == +0, negatives below positives; complemented when
//     descending), paired with its position p in the rows laid end to end (row-major [A, B, N]:
//     the sorted dim last, whatever dim it was in x);
//  2. the pairs are radix-sorted by key (stable: ties keep position order, i.e. input order);
//  3. with more than one row, the result is radix-sorted again by row id p / N, which is stable
//     too, so each row's elements come out together and still in key order ("back-to-back" sort:
//     two device-wide sorts instead of one block per row, fast for rows of every length);
//  4. values and i64 indices are written from the sorted positions (values copied from x, so NaN
//     payloads and the sign of zero survive as on the CPU).
// Integer keys (the Reformer's i64 bucket ids) usually differ in a few low bits only: a reduction
// finds the bits that vary and the radix sort runs over those alone (one or two passes instead of
// eight), at the cost of one synchronisation to read the result.
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <type_traits>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/kernel_utils.cuh"
#include "backends/cuda/sort_kernels.h"

namespace rw::cuda {
namespace {

// The unsigned key type of each element type.
template <typename T>
struct KeyOf {
  using type = std::conditional_t<
      sizeof(T) == 1, uint8_t,
      std::conditional_t<sizeof(T) == 2, uint16_t,
                         std::conditional_t<sizeof(T) == 4, uint32_t, unsigned long long>>>;
};
template <typename T>
using key_t = typename KeyOf<T>::type;

// IEEE sign-magnitude bits -> unsigned order: negatives reversed below positives; every NaN is the
// largest key; -0 is +0 so the two zeros tie (and keep their input order).
template <typename U>
__device__ __forceinline__ U float_bits_key(U bits, U exp_mask) {
  constexpr U sign = U(1) << (sizeof(U) * 8 - 1);
  const U magnitude = static_cast<U>(bits & ~sign);
  if (magnitude > exp_mask) return static_cast<U>(~U(0));  // NaN
  if (magnitude == 0) return sign;                         // +-0
  return (bits & sign) ? static_cast<U>(~bits) : static_cast<U>(bits | sign);
}

template <typename T>
__device__ __forceinline__ key_t<T> ascending_key(T v) {
  using U = key_t<T>;
  if constexpr (std::is_same_v<T, bool> || std::is_same_v<T, uint8_t>) {
    return static_cast<U>(v);
  } else if constexpr (std::is_same_v<T, int32_t> || std::is_same_v<T, int64_t>) {
    return static_cast<U>(static_cast<U>(v) ^ (U(1) << (sizeof(U) * 8 - 1)));
  } else if constexpr (std::is_same_v<T, float>) {
    return float_bits_key<U>(__float_as_uint(v), 0x7f800000u);
  } else if constexpr (std::is_same_v<T, double>) {
    return float_bits_key<U>(static_cast<U>(__double_as_longlong(v)), 0x7ff0000000000000ull);
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return float_bits_key<U>(__bfloat16_as_ushort(v), 0x7f80u);
  } else {
    static_assert(std::is_same_v<T, __half>);
    return float_bits_key<U>(__half_as_ushort(v), 0x7c00u);
  }
}

// Element k of row r = a * B + b sits at (a * N + k) * B + b in x, values and indices.
__device__ __forceinline__ uint64_t element_offset(const SortGeometry& g, uint32_t row,
                                                   uint64_t k) {
  const auto B = static_cast<uint32_t>(g.B);
  const uint32_t a = row / B, b = row - a * B;
  return (a * static_cast<uint64_t>(g.N) + k) * static_cast<uint64_t>(g.B) + b;
}

template <typename T>
__global__ void make_keys_kernel(const T* __restrict__ x, key_t<T>* __restrict__ keys,
                                 uint32_t* __restrict__ positions, SortGeometry g, uint32_t n,
                                 bool descending) {
  const auto N = static_cast<uint32_t>(g.N);
  for (uint64_t i = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<uint64_t>(blockDim.x) * gridDim.x) {
    const auto p = static_cast<uint32_t>(i);
    const uint32_t row = p / N, k = p - row * N;
    const key_t<T> key = ascending_key(x[element_offset(g, row, k)]);
    // Complementing reverses the order while the stable sort still keeps ties in input order.
    keys[p] = descending ? static_cast<key_t<T>>(~key) : key;
    positions[p] = p;
  }
}

// bits[0] |= every key, bits[1] |= every complemented key: a bit varies where both are set.
template <typename U>
__global__ void key_bits_kernel(const U* __restrict__ keys, uint32_t n, unsigned long long* bits) {
  unsigned long long any = 0, any_clear = 0;
  for (uint64_t i = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<uint64_t>(blockDim.x) * gridDim.x) {
    const U k = keys[i];
    any |= k;
    any_clear |= static_cast<U>(~k);
  }
  for (int offset = 16; offset > 0; offset /= 2) {
    any |= __shfl_xor_sync(0xffffffffu, any, offset);
    any_clear |= __shfl_xor_sync(0xffffffffu, any_clear, offset);
  }
  if ((threadIdx.x & 31u) == 0) {
    atomicOr(&bits[0], any);
    atomicOr(&bits[1], any_clear);
  }
}

__global__ void row_ids_kernel(const uint32_t* __restrict__ positions, uint32_t* __restrict__ rows,
                               uint32_t n, uint32_t N) {
  for (uint64_t i = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<uint64_t>(blockDim.x) * gridDim.x) {
    rows[i] = positions[i] / N;
  }
}

template <typename T>
__global__ void write_sorted_kernel(const T* __restrict__ x, const uint32_t* __restrict__ positions,
                                    T* __restrict__ values, int64_t* __restrict__ indices,
                                    SortGeometry g, uint32_t n) {
  const auto N = static_cast<uint32_t>(g.N);
  for (uint64_t i = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<uint64_t>(blockDim.x) * gridDim.x) {
    const auto slot = static_cast<uint32_t>(i);
    const uint32_t row = slot / N, k = slot - row * N;
    const uint32_t source = positions[slot] - row * N;  // the row of a sorted position is `row`
    values[element_offset(g, row, k)] = x[element_offset(g, row, source)];
    indices[element_offset(g, row, k)] = source;
  }
}

int bit_width(uint64_t v) { return v == 0 ? 0 : 64 - __builtin_clzll(v); }

template <typename T>
T* allocate(DeviceScratch& scratch, uint64_t count) {
  return static_cast<T*>(scratch.allocate(static_cast<std::size_t>(count) * sizeof(T)));
}

template <typename T>
void sort_rows(const T* x, T* values, int64_t* indices, SortGeometry g, bool descending,
               DeviceScratch& scratch, cudaStream_t stream) {
  using U = key_t<T>;
  const auto n = static_cast<uint32_t>(g.A * g.N * g.B);
  const auto rows = static_cast<uint32_t>(g.A * g.B);
  const unsigned grid = grid_for(n);

  U* keys = allocate<U>(scratch, n);
  uint32_t* positions = allocate<uint32_t>(scratch, n);
  make_keys_kernel<T><<<grid, kThreads, 0, stream>>>(x, keys, positions, g, n, descending);
  RW_CUDA_CHECK_LAUNCH();

  bool needs_sort = g.N > 1;
  int begin_bit = 0, end_bit = static_cast<int>(sizeof(U) * 8);
  if constexpr (std::is_integral_v<T> && sizeof(T) >= 4) {
    if (needs_sort) {
      auto* bits = allocate<unsigned long long>(scratch, 2);
      RW_CUDA_CHECK(cudaMemsetAsync(bits, 0, 2 * sizeof(unsigned long long), stream));
      key_bits_kernel<U><<<std::min(grid, 1024u), kThreads, 0, stream>>>(keys, n, bits);
      RW_CUDA_CHECK_LAUNCH();
      unsigned long long host_bits[2] = {0, 0};
      RW_CUDA_CHECK(
          cudaMemcpyAsync(host_bits, bits, sizeof(host_bits), cudaMemcpyDeviceToHost, stream));
      RW_CUDA_CHECK(cudaStreamSynchronize(stream));
      const unsigned long long varying = host_bits[0] & host_bits[1];
      if (varying == 0) {
        needs_sort = false;  // all keys equal: the stable order is the input order
      } else {
        begin_bit = __builtin_ctzll(varying);
        end_bit = bit_width(varying);
      }
    }
  }

  const uint32_t* sorted = positions;
  if (needs_sort) {
    U* keys_out = allocate<U>(scratch, n);
    uint32_t* positions_out = allocate<uint32_t>(scratch, n);
    // The row ids of the second pass reuse the key buffers when those are wide enough.
    const bool reuse = sizeof(U) >= sizeof(uint32_t);
    uint32_t* row_ids = nullptr;
    uint32_t* row_ids_out = nullptr;
    const int row_bits = bit_width(rows - 1);
    if (rows > 1) {
      row_ids = reuse ? reinterpret_cast<uint32_t*>(keys) : allocate<uint32_t>(scratch, n);
      row_ids_out = reuse ? reinterpret_cast<uint32_t*>(keys_out) : allocate<uint32_t>(scratch, n);
    }

    std::size_t key_temp = 0, row_temp = 0;
    RW_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, key_temp, keys, keys_out, positions,
                                                  positions_out, n, begin_bit, end_bit, stream));
    if (rows > 1) {
      RW_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, row_temp, row_ids, row_ids_out,
                                                    positions_out, positions, n, 0, row_bits,
                                                    stream));
    }
    void* temp = scratch.allocate(std::max(key_temp, row_temp));

    RW_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, key_temp, keys, keys_out, positions,
                                                  positions_out, n, begin_bit, end_bit, stream));
    sorted = positions_out;
    if (rows > 1) {
      row_ids_kernel<<<grid, kThreads, 0, stream>>>(positions_out, row_ids, n,
                                                    static_cast<uint32_t>(g.N));
      RW_CUDA_CHECK_LAUNCH();
      RW_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
          temp, row_temp, row_ids, row_ids_out, positions_out, positions, n, 0, row_bits, stream));
      sorted = positions;
    }
  }

  write_sorted_kernel<T><<<grid, kThreads, 0, stream>>>(x, sorted, values, indices, g, n);
  RW_CUDA_CHECK_LAUNCH();
}

}  // namespace

void launch_sort(const void* x, void* values, int64_t* indices, DType dtype, SortGeometry g,
                 bool descending, DeviceScratch& scratch, cudaStream_t stream) {
  if (g.A * g.N * g.B == 0) return;
  RW_CUDA_DISPATCH_ALL(dtype, T,
                       sort_rows<T>(static_cast<const T*>(x), static_cast<T*>(values), indices, g,
                                    descending, scratch, stream));
}

}  // namespace rw::cuda
