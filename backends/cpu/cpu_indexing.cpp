// gather, scatter_add, index_select and index_add on OpenMP loops.
//
// The accumulating kernels (scatter_add, index_add) never let two threads write one element: work
// is split either over the coordinates an index cannot move (outer slices), or over ranges of the
// destination's indexed dim, each thread applying only the updates that land in its own range.
// Within one destination element updates are applied in index order, so results do not depend on
// the thread count.
#include <omp.h>

#include <cstring>
#include <type_traits>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/dispatch.h"
#include "backends/cpu/strided_loop.h"

namespace rw {
namespace {

using cpu::kParallelGrain;

int usable_threads(int64_t work) {
  if (work < kParallelGrain || omp_in_parallel()) return 1;
  return omp_get_max_threads();
}

// Runs body(begin, end) on one contiguous piece of [0, n) per thread.
template <typename F>
void parallel_ranges(int64_t n, int64_t work, F&& body) {
  if (n <= 1 || usable_threads(work) == 1) {
    body(int64_t{0}, n);
    return;
  }
#pragma omp parallel
  {
    int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    int64_t chunk = (n + nt - 1) / nt;
    int64_t b = std::min(n, t * chunk), e = std::min(n, b + chunk);
    if (b < e) body(b, e);
  }
}

// Like parallel_ranges but every thread gets its piece [lo, hi) of [0, n), even if empty, and is
// told the thread count (the owner-computes kernels scan all updates in each thread).
template <typename F>
void parallel_owned(int64_t n, int nt, F&& body) {
  if (nt <= 1) {
    body(int64_t{0}, n);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    int64_t t = omp_get_thread_num(), count = omp_get_num_threads();
    int64_t chunk = (n + count - 1) / count;
    int64_t lo = std::min(n, t * chunk), hi = std::min(n, lo + chunk);
    if (lo < hi) body(lo, hi);
  }
}

template <typename T>
inline void accumulate(T& dst, T src) {
  if constexpr (std::is_same_v<T, bool>) {
    dst = dst || src;
  } else if constexpr (std::is_same_v<T, bf16> || std::is_same_v<T, f16>) {
    dst = T(static_cast<float>(dst) + static_cast<float>(src));
  } else {
    dst = static_cast<T>(dst + src);
  }
}

// An index tensor of shape S (rank r) addressing a contiguous data tensor of shape D (same rank)
// along `dim`, as [A, J, B] = [prod S[:dim], S[dim], prod S[dim+1:]]. The index may be smaller
// than the data in every dim but `dim` (torch semantics), so data offsets of the outer (a) and
// inner (b) coordinates are decomposed with the data's strides.
struct IndexGeometry {
  int64_t A = 1, J = 1, B = 1;
  int64_t dim_extent = 1;  // D[dim]
  int64_t dim_stride = 1;  // the data's stride of dim
  std::vector<int64_t> outer_extents, outer_strides;
  bool inner_dense = true;             // S[d] == D[d] for every d > dim: offset of b is b
  std::vector<int64_t> inner_offsets;  // otherwise the data offset of each b

  IndexGeometry(const Shape& index_shape, const Shape& data_shape, int64_t dim) {
    Shape s = index_shape, d = data_shape;
    if (s.empty()) {  // a 0-dim tensor is one element along dim 0
      s = {1};
      d = {1};
      dim = 0;
    }
    const auto rank = static_cast<int64_t>(s.size());
    Strides ds = contiguous_strides(d);
    for (int64_t k = 0; k < dim; ++k) {
      A *= s[k];
      outer_extents.push_back(s[k]);
      outer_strides.push_back(ds[k]);
    }
    J = s[dim];
    dim_extent = d[dim];
    dim_stride = ds[dim];
    for (int64_t k = dim + 1; k < rank; ++k) {
      B *= s[k];
      inner_dense = inner_dense && s[k] == d[k];
    }
    if (!inner_dense) {
      inner_offsets.resize(static_cast<std::size_t>(B));
      for (int64_t b = 0; b < B; ++b) {
        int64_t rem = b, off = 0;
        for (int64_t k = rank - 1; k > dim; --k) {
          off += (rem % s[k]) * ds[k];
          rem /= s[k];
        }
        inner_offsets[static_cast<std::size_t>(b)] = off;
      }
    }
  }

  int64_t outer_offset(int64_t a) const {
    int64_t off = 0;
    for (std::size_t k = outer_extents.size(); k-- > 0;) {
      off += (a % outer_extents[k]) * outer_strides[k];
      a /= outer_extents[k];
    }
    return off;
  }
  int64_t inner_offset(int64_t b) const {
    return inner_dense ? b : inner_offsets[static_cast<std::size_t>(b)];
  }
};

// Element types by size: gather and index_select only move bytes.
template <typename F>
void dispatch_size(std::size_t size, F&& f) {
  switch (size) {
    case 1:
      return f(uint8_t{});
    case 2:
      return f(uint16_t{});
    case 4:
      return f(uint32_t{});
    case 8:
      return f(uint64_t{});
    default:
      throw Error(fmt::format("cpu indexing: unsupported element size {}", size));
  }
}

template <typename T>
void gather_kernel(const T* x, const int64_t* index, T* out, const IndexGeometry& g) {
  const int64_t items = g.A * g.J;  // (a, j) pairs, each a run of B elements
  const int64_t ds = g.dim_stride;
  parallel_ranges(items, items * g.B, [&](int64_t begin, int64_t end) {
    // Walk the piece as runs of consecutive j within one outer slice a.
    for (int64_t it = begin; it < end;) {
      const int64_t a = it / g.J, j0 = it % g.J;
      const int64_t j1 = std::min(g.J, j0 + (end - it));
      const T* xa = x + g.outer_offset(a);
      const int64_t* ia = index + it * g.B;
      T* oa = out + it * g.B;
      const int64_t n = (j1 - j0) * g.B;
      if (g.B == 1) {
        for (int64_t j = 0; j < n; ++j) oa[j] = xa[ia[j] * ds];
      } else {
        for (int64_t r = 0; r < n; r += g.B) {
          for (int64_t b = 0; b < g.B; ++b) oa[r + b] = xa[ia[r + b] * ds + g.inner_offset(b)];
        }
      }
      it += j1 - j0;
    }
  });
}

template <typename T>
void scatter_add_kernel(T* dst, const int64_t* index, const T* src, const IndexGeometry& g) {
  const int64_t numel = g.A * g.J * g.B;
  const int nt = usable_threads(numel);
  // Applies the updates of outer slices [a0, a1) whose target along dim lies in [lo, hi).
  auto apply = [&]<bool kFilter>(int64_t a0, int64_t a1, int64_t lo, int64_t hi) {
    for (int64_t a = a0; a < a1; ++a) {
      T* da = dst + g.outer_offset(a);
      for (int64_t j = 0; j < g.J; ++j) {
        const int64_t row = (a * g.J + j) * g.B;
        for (int64_t b = 0; b < g.B; ++b) {
          const int64_t i = index[row + b];
          if (kFilter && (i < lo || i >= hi)) continue;
          accumulate(da[i * g.dim_stride + g.inner_offset(b)], src[row + b]);
        }
      }
    }
  };
  if (nt == 1 || g.A >= nt) {
    // Distinct outer slices never share a destination element.
    parallel_ranges(g.A, numel, [&](int64_t a0, int64_t a1) {
      apply.template operator()<false>(a0, a1, 0, 0);
    });
  } else {
    // Few outer slices: each thread owns a range of the destination's indexed dim.
    parallel_owned(g.dim_extent, nt, [&](int64_t lo, int64_t hi) {
      apply.template operator()<true>(0, g.A, lo, hi);
    });
  }
}

template <typename T>
void add_row(T* __restrict dst, const T* __restrict src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) accumulate(dst[i], src[i]);
}

// dst [A, N, B] += src [A, K, B] at rows index[K] of the middle dim.
template <typename T>
void index_add_kernel(T* dst, const int64_t* index, const T* src, int64_t A, int64_t N, int64_t K,
                      int64_t B) {
  const int64_t numel = A * K * B;
  const int nt = usable_threads(numel);
  if (nt == 1 || A >= nt) {
    parallel_ranges(A, numel, [&](int64_t a0, int64_t a1) {
      for (int64_t a = a0; a < a1; ++a) {
        for (int64_t k = 0; k < K; ++k) {
          add_row(dst + (a * N + index[k]) * B, src + (a * K + k) * B, B);
        }
      }
    });
  } else if (N >= nt) {
    // Each thread owns a range of destination rows and scans every index for its own.
    parallel_owned(N, nt, [&](int64_t lo, int64_t hi) {
      for (int64_t a = 0; a < A; ++a) {
        for (int64_t k = 0; k < K; ++k) {
          const int64_t i = index[k];
          if (i >= lo && i < hi) add_row(dst + (a * N + i) * B, src + (a * K + k) * B, B);
        }
      }
    });
  } else {
    // Few rows, long ones: each thread owns a range of columns.
    parallel_owned(B, nt, [&](int64_t lo, int64_t hi) {
      for (int64_t a = 0; a < A; ++a) {
        for (int64_t k = 0; k < K; ++k) {
          add_row(dst + (a * N + index[k]) * B + lo, src + (a * K + k) * B + lo, hi - lo);
        }
      }
    });
  }
}

// [A, N, B] view of a shape around dim (a 0-dim shape is [1, 1, 1]).
void split_around(const Shape& shape, int64_t dim, int64_t& A, int64_t& N, int64_t& B) {
  A = 1, N = 1, B = 1;
  if (shape.empty()) return;
  for (int64_t k = 0; k < dim; ++k) A *= shape[static_cast<std::size_t>(k)];
  N = shape[static_cast<std::size_t>(dim)];
  for (auto k = static_cast<std::size_t>(dim) + 1; k < shape.size(); ++k) B *= shape[k];
}

}  // namespace

void CpuBackend::gather(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) {
  if (out.numel() == 0) return;
  IndexGeometry g(index.shape(), x.shape(), dim);
  const auto* idx = index.data<int64_t>();
  dispatch_size(dtype_size(x.dtype()), [&](auto tag) {
    using T = decltype(tag);
    gather_kernel(static_cast<const T*>(x.data_ptr()), idx, static_cast<T*>(out.data_ptr()), g);
  });
}

void CpuBackend::scatter_add(const Tensor& dst, int64_t dim, const Tensor& index,
                             const Tensor& src) {
  if (index.numel() == 0) return;
  IndexGeometry g(index.shape(), dst.shape(), dim);
  const auto* idx = index.data<int64_t>();
  RW_DISPATCH_ALL(dst.dtype(), "scatter_add", [&] {
    scatter_add_kernel(static_cast<scalar_t*>(dst.data_ptr()), idx,
                       static_cast<const scalar_t*>(src.data_ptr()), g);
  });
}

void CpuBackend::index_select(const Tensor& x, int64_t dim, const Tensor& index,
                              const Tensor& out) {
  if (out.numel() == 0) return;
  int64_t A, N, B;
  split_around(x.shape(), dim, A, N, B);
  const int64_t K = index.numel();
  const auto* idx = index.data<int64_t>();
  const std::size_t es = dtype_size(x.dtype());
  const auto* xp = static_cast<const unsigned char*>(x.data_ptr());
  auto* op = static_cast<unsigned char*>(out.data_ptr());
  if (B == 1) {  // selecting single elements: a typed loop beats one memcpy per element
    dispatch_size(es, [&](auto tag) {
      using T = decltype(tag);
      const T* xs = reinterpret_cast<const T*>(xp);
      T* os = reinterpret_cast<T*>(op);
      if (A == 1) {
        parallel_ranges(K, K, [&](int64_t k0, int64_t k1) {
          for (int64_t k = k0; k < k1; ++k) os[k] = xs[idx[k]];
        });
        return;
      }
      parallel_ranges(A, A * K, [&](int64_t a0, int64_t a1) {
        for (int64_t a = a0; a < a1; ++a) {
          for (int64_t k = 0; k < K; ++k) os[a * K + k] = xs[a * N + idx[k]];
        }
      });
    });
    return;
  }
  // Whole rows (the Reformer's permutations of [n_hashes * L, d] rows): one memcpy per row.
  const std::size_t row_bytes = static_cast<std::size_t>(B) * es;
  const int64_t rows = A * K;
  parallel_ranges(rows, rows * B, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t a = r / K, k = r % K;
      std::memcpy(op + static_cast<std::size_t>(r) * row_bytes,
                  xp + static_cast<std::size_t>(a * N + idx[k]) * row_bytes, row_bytes);
    }
  });
}

void CpuBackend::index_add(const Tensor& dst, int64_t dim, const Tensor& index, const Tensor& src) {
  if (src.numel() == 0) return;
  int64_t A, N, B;
  split_around(dst.shape(), dim, A, N, B);
  const int64_t K = index.numel();
  const auto* idx = index.data<int64_t>();
  RW_DISPATCH_ALL(dst.dtype(), "index_add", [&] {
    index_add_kernel(static_cast<scalar_t*>(dst.data_ptr()), idx,
                     static_cast<const scalar_t*>(src.data_ptr()), A, N, K, B);
  });
}

}  // namespace rw
