// softmax / log_softmax forward and backward on the GPU (see softmax_kernels.h for the semantics).
//
// A row is the C elements of one (outer, inner) position, `inner` apart. Two thread layouts:
//  - rows (inner == 1, rows contiguous): a group of G threads per row, a warp for short rows and
//    the whole block for long ones; neighbouring threads read neighbouring elements.
//  - columns (inner > 1): bx neighbouring threads take bx neighbouring rows (neighbouring elements
//    again), and the by rows of threads of the block split C.
// Each pass over a row (max, sum, write) re-reads x, which the row's earlier pass left in cache.
// Row statistics are combined in trees fixed by the launch shape: bit-identical run to run.
#include <algorithm>
#include <limits>

#include "backends/cuda/block_reduce.cuh"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/kernel_utils.cuh"
#include "backends/cuda/softmax_kernels.h"

namespace rw::cuda {
namespace {

constexpr int kBlock = 256;

// The per-row work. `reduce(v, merge)` combines a value over the threads that share the row (all
// of them call it, active or not); lane / lanes split the row's C elements among them.
template <typename T>
struct ForwardRow {
  using A = acc_t<T>;
  SoftmaxKind kind;
  const T* x;
  T* y;
  int64_t C;

  template <typename Reduce>
  __device__ void operator()(int64_t base, int64_t stride, int lane, int lanes, bool active,
                             Reduce reduce) const {
    const T* xr = x + base;
    T* yr = y + base;
    const int64_t n = active ? C : 0;
    // The CPU's max: starts at -inf and skips NaNs (std::max), so a row of all -inf keeps -inf and
    // then gives exp(-inf - -inf) = NaN, as on the CPU.
    A m = -std::numeric_limits<A>::infinity();
    for (int64_t c = lane; c < n; c += lanes) {
      const A v = load(xr + c * stride);
      m = m < v ? v : m;
    }
    m = reduce(m, MaxMerge{});
    A total = 0;
    for (int64_t c = lane; c < n; c += lanes) total += exp_of(load(xr + c * stride) - m);
    total = reduce(total, SumMerge{});
    if (kind == SoftmaxKind::softmax) {
      const A inv = A(1) / total;
      for (int64_t c = lane; c < n; c += lanes) {
        store(yr + c * stride, exp_of(load(xr + c * stride) - m) * inv);
      }
    } else {
      const A lse = m + log_of(total);
      for (int64_t c = lane; c < n; c += lanes) store(yr + c * stride, load(xr + c * stride) - lse);
    }
  }
};

template <typename T>
struct BackwardRow {
  using A = acc_t<T>;
  SoftmaxKind kind;
  const T* y;
  const T* dy;
  T* dx;
  int64_t C;

  template <typename Reduce>
  __device__ void operator()(int64_t base, int64_t stride, int lane, int lanes, bool active,
                             Reduce reduce) const {
    const T* yr = y + base;
    const T* gr = dy + base;
    T* dr = dx + base;
    const int64_t n = active ? C : 0;
    const bool soft = kind == SoftmaxKind::softmax;
    // softmax: <dy, y>; log_softmax: sum(dy).
    A s = 0;
    for (int64_t c = lane; c < n; c += lanes) {
      const A g = load(gr + c * stride);
      s += soft ? g * load(yr + c * stride) : g;
    }
    s = reduce(s, SumMerge{});
    for (int64_t c = lane; c < n; c += lanes) {
      const A yv = load(yr + c * stride), g = load(gr + c * stride);
      store(dr + c * stride, soft ? yv * (g - s) : g - exp_of(yv) * s);
    }
  }
};

// Rows of contiguous elements, a group of G threads each (G <= 32: blockDim.x / G rows per block;
// G > 32: one row per block of G threads).
template <int G, typename Row>
__global__ void __launch_bounds__(G <= 32 ? kBlock : G) rows_kernel(Row body, int64_t rows) {
  __shared__ typename Row::A smem[32];
  const int tid = static_cast<int>(threadIdx.x);
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x / G) + tid / G;
  if (G <= 32 && row >= rows) return;  // whole groups (and warps) leave together
  body(row * body.C, 1, tid % G, G, true,
       [&](auto v, auto merge) { return group_allreduce<G>(v, merge, smem); });
}

// Rows `inner` apart: block (bx, by) over (inner positions, parts of C), 1-D grid over
// outer x ceil(inner / bx) tiles.
template <typename Row>
__global__ void __launch_bounds__(kBlock)
    columns_kernel(Row body, SoftmaxGeometry g, int bx, int by) {
  using A = typename Row::A;
  __shared__ A smem[kBlock];
  const int tid = static_cast<int>(threadIdx.x);
  const int tx = tid % bx, ty = tid / bx;
  const int64_t tiles = ceil_div(g.inner, bx);
  const int64_t o = blockIdx.x / tiles;
  const int64_t i = (blockIdx.x % tiles) * bx + tx;
  const bool active = i < g.inner;
  // Every thread folds its column's by partial values in the same order.
  auto reduce = [&](A v, auto merge) {
    __syncthreads();  // the previous reduction may still be reading smem
    smem[tid] = v;
    __syncthreads();
    A r = smem[tx];
    for (int k = 1; k < by; ++k) r = merge(r, smem[k * bx + tx]);
    return r;
  };
  body(o * g.C * g.inner + (active ? i : 0), g.inner, ty, by, active, reduce);
}

template <typename Row>
void launch_rows_or_columns(const Row& body, const SoftmaxGeometry& g, cudaStream_t stream) {
  const int64_t rows = g.outer * g.inner;
  if (g.inner == 1) {
    if (g.C <= 1024) {
      rows_kernel<32>
          <<<static_cast<unsigned>(ceil_div(rows, kBlock / 32)), kBlock, 0, stream>>>(body, rows);
    } else if (g.C <= 8192) {
      rows_kernel<256><<<static_cast<unsigned>(rows), 256, 0, stream>>>(body, rows);
    } else {
      rows_kernel<1024><<<static_cast<unsigned>(rows), 1024, 0, stream>>>(body, rows);
    }
  } else {
    const int bx = std::min(32, next_pow2(g.inner));
    const int by = kBlock / bx;
    const int64_t blocks = g.outer * ceil_div(g.inner, bx);
    columns_kernel<<<static_cast<unsigned>(blocks), kBlock, 0, stream>>>(body, g, bx, by);
  }
  RW_CUDA_CHECK_LAUNCH();
}

}  // namespace

void launch_softmax(SoftmaxKind kind, const void* x, void* y, DType dtype, const SoftmaxGeometry& g,
                    cudaStream_t stream) {
  if (g.outer * g.C * g.inner == 0) return;
  RW_CUDA_DISPATCH_FLOATING(dtype, T, {
    const ForwardRow<T> body{kind, static_cast<const T*>(x), static_cast<T*>(y), g.C};
    launch_rows_or_columns(body, g, stream);
  });
}

void launch_softmax_backward(SoftmaxKind kind, const void* y, const void* dy, void* dx, DType dtype,
                             const SoftmaxGeometry& g, cudaStream_t stream) {
  if (g.outer * g.C * g.inner == 0) return;
  RW_CUDA_DISPATCH_FLOATING(dtype, T, {
    const BackwardRow<T> body{kind, static_cast<const T*>(y), static_cast<const T*>(dy),
                              static_cast<T*>(dx), g.C};
    launch_rows_or_columns(body, g, stream);
  });
}

}  // namespace rw::cuda
