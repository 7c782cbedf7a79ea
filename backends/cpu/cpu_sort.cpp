// Stable sort along a dim: each row's keys are mapped to unsigned integers whose order is the
// requested order (NaNs last ascending, first descending; -0 == +0), then sorted with an LSD radix
// sort (stable by construction; passes whose byte is the same for every key are skipped, so small
// integer keys such as LSH bucket ids take one or two passes). Rows are sorted in parallel.
#include <omp.h>

#include <array>
#include <bit>
#include <cstring>
#include <type_traits>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/dispatch.h"
#include "backends/cpu/strided_loop.h"

namespace rw {
namespace {

// The unsigned key type of each element type.
template <typename T>
struct KeyOf;
template <>
struct KeyOf<bool> {
  using type = uint8_t;
};
template <>
struct KeyOf<uint8_t> {
  using type = uint8_t;
};
template <>
struct KeyOf<int32_t> {
  using type = uint32_t;
};
template <>
struct KeyOf<int64_t> {
  using type = uint64_t;
};
template <>
struct KeyOf<float> {
  using type = uint32_t;
};
template <>
struct KeyOf<double> {
  using type = uint64_t;
};
template <>
struct KeyOf<bf16> {
  using type = uint16_t;
};
template <>
struct KeyOf<f16> {
  using type = uint16_t;
};

// IEEE sign-magnitude bits -> unsigned order: negatives reversed below positives; every NaN is the
// largest key; -0 is +0 so the two zeros tie (and keep their input order).
template <typename U>
U float_bits_key(U bits, U exp_mask) {
  constexpr U sign = U(1) << (sizeof(U) * 8 - 1);
  const U magnitude = static_cast<U>(bits & ~sign);
  if (magnitude > exp_mask) return static_cast<U>(~U(0));  // NaN
  if (magnitude == 0) return sign;                         // +-0
  return (bits & sign) ? static_cast<U>(~bits) : static_cast<U>(bits | sign);
}

template <typename T>
typename KeyOf<T>::type ascending_key(T v) {
  using U = typename KeyOf<T>::type;
  if constexpr (std::is_same_v<T, bool> || std::is_same_v<T, uint8_t>) {
    return static_cast<U>(v);
  } else if constexpr (std::is_same_v<T, int32_t> || std::is_same_v<T, int64_t>) {
    return static_cast<U>(static_cast<U>(v) ^ (U(1) << (sizeof(U) * 8 - 1)));
  } else if constexpr (std::is_same_v<T, float>) {
    return float_bits_key<U>(std::bit_cast<uint32_t>(v), 0x7f800000u);
  } else if constexpr (std::is_same_v<T, double>) {
    return float_bits_key<U>(std::bit_cast<uint64_t>(v), 0x7ff0000000000000ull);
  } else if constexpr (std::is_same_v<T, bf16>) {
    return float_bits_key<U>(v.bits, 0x7f80u);
  } else {
    static_assert(std::is_same_v<T, f16>);
    return float_bits_key<U>(v.bits, 0x7c00u);
  }
}

// Scratch buffers of one thread, reused across its rows.
template <typename U>
struct SortScratch {
  std::vector<U> keys, keys_tmp;
  std::vector<int64_t> idx, idx_tmp;
  void resize(int64_t n) {
    auto s = static_cast<std::size_t>(n);
    keys.resize(s), keys_tmp.resize(s), idx.resize(s), idx_tmp.resize(s);
  }
};

// Sorts (keys, idx) by key, stably. Returns the array holding the sorted indices (idx or idx_tmp).
template <typename U>
const int64_t* stable_sort_keys(SortScratch<U>& s, int64_t n) {
  U* keys = s.keys.data();
  int64_t* idx = s.idx.data();
  if (n <= 32) {  // insertion sort: stable, and cheaper than histograms for tiny rows
    for (int64_t i = 1; i < n; ++i) {
      U k = keys[i];
      int64_t v = idx[i], j = i;
      for (; j > 0 && keys[j - 1] > k; --j) keys[j] = keys[j - 1], idx[j] = idx[j - 1];
      keys[j] = k, idx[j] = v;
    }
    return idx;
  }
  // Only bytes that differ between keys need a pass (one or two for small integer keys).
  U any = 0, all = static_cast<U>(~U(0));
  for (int64_t i = 0; i < n; ++i) any |= keys[i], all &= keys[i];
  const U varying = static_cast<U>(any ^ all);
  int digits[sizeof(U)];
  int active = 0;
  for (int d = 0; d < static_cast<int>(sizeof(U)); ++d) {
    if ((varying >> (8 * d)) & 0xff) digits[active++] = d;
  }
  std::array<std::array<int64_t, 256>, sizeof(U)> hist;
  for (int p = 0; p < active; ++p) hist[static_cast<std::size_t>(p)].fill(0);
  for (int64_t i = 0; i < n; ++i) {
    const U k = keys[i];
    for (int p = 0; p < active; ++p)
      ++hist[static_cast<std::size_t>(p)][(k >> (8 * digits[p])) & 0xff];
  }
  U* src_k = keys;
  U* dst_k = s.keys_tmp.data();
  int64_t* src_i = idx;
  int64_t* dst_i = s.idx_tmp.data();
  for (int p = 0; p < active; ++p) {
    const int d = digits[p];
    auto& h = hist[static_cast<std::size_t>(p)];
    int64_t offset = 0;
    for (auto& c : h) {
      int64_t count = c;
      c = offset;
      offset += count;
    }
    for (int64_t i = 0; i < n; ++i) {
      U k = src_k[i];
      int64_t pos = h[(k >> (8 * d)) & 0xff]++;
      dst_k[pos] = k;
      dst_i[pos] = src_i[i];
    }
    std::swap(src_k, dst_k);
    std::swap(src_i, dst_i);
  }
  return src_i;
}

template <typename T>
void sort_rows(const T* x, T* values, int64_t* indices, int64_t A, int64_t N, int64_t B,
               bool descending) {
  using U = typename KeyOf<T>::type;
  const int64_t rows = A * B;
  const bool parallel = rows > 1 && rows * N >= cpu::kParallelGrain && !omp_in_parallel();
#pragma omp parallel if (parallel)
  {
    SortScratch<U> s;
    s.resize(N);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t a = r / B, b = r % B;
      const int64_t base = a * N * B + b;  // element k of the row is at base + k * B
      for (int64_t k = 0; k < N; ++k) {
        U key = ascending_key(x[base + k * B]);
        // Complementing reverses the order while the stable sort still keeps ties in input order.
        s.keys[static_cast<std::size_t>(k)] = descending ? static_cast<U>(~key) : key;
        s.idx[static_cast<std::size_t>(k)] = k;
      }
      const int64_t* order = stable_sort_keys(s, N);
      for (int64_t k = 0; k < N; ++k) {
        values[base + k * B] = x[base + order[k] * B];
        indices[base + k * B] = order[k];
      }
    }
  }
}

}  // namespace

void CpuBackend::sort(const Tensor& x, int64_t dim, bool descending, const Tensor& values,
                      const Tensor& indices) {
  if (x.numel() == 0) return;
  int64_t A = 1, N = 1, B = 1;
  const Shape& shape = x.shape();
  if (!shape.empty()) {
    for (int64_t k = 0; k < dim; ++k) A *= shape[static_cast<std::size_t>(k)];
    N = shape[static_cast<std::size_t>(dim)];
    for (auto k = static_cast<std::size_t>(dim) + 1; k < shape.size(); ++k) B *= shape[k];
  }
  RW_DISPATCH_ALL(x.dtype(), "sort", [&] {
    sort_rows(static_cast<const scalar_t*>(x.data_ptr()), static_cast<scalar_t*>(values.data_ptr()),
              indices.data<int64_t>(), A, N, B, descending);
  });
}

}  // namespace rw
