// Layer norm forward and backward on the GPU (see layer_norm_kernels.h for the math).
//
// Forward and the dx part of backward take a group of G threads per row (a warp for D <= 1024,
// else the whole block); each pass re-reads the row, which the previous pass left in cache. The
// parameter gradients reduce over rows, a column-wise reduction: blocks of 32 columns x 8 row
// lanes sum a chunk of rows each (neighbouring threads read neighbouring columns), writing one
// partial per (chunk, column); a second kernel adds the chunks in order. All sums run in trees and
// orders fixed by the shapes: bit-identical results run to run, no atomics.
#include <algorithm>

#include "backends/cuda/block_reduce.cuh"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/kernel_utils.cuh"
#include "backends/cuda/layer_norm_kernels.h"

namespace rw::cuda {
namespace {

constexpr int kBlock = 256;
// Column tiles x row chunks that the parameter-gradient pass aims for.
constexpr int64_t kTargetBlocks = 1024;
// The fewest rows a chunk of the parameter-gradient pass takes.
constexpr int64_t kMinChunkRows = 64;
constexpr int kTileColumns = 32;
constexpr int kRowLanes = kBlock / kTileColumns;

template <typename A>
__device__ __forceinline__ A read_stat(const void* p, DType dtype, int64_t i) {
  if (dtype == DType::f64) return static_cast<A>(static_cast<const double*>(p)[i]);
  return static_cast<A>(static_cast<const float*>(p)[i]);
}

template <typename A>
__device__ __forceinline__ void write_stat(void* p, DType dtype, int64_t i, A v) {
  if (dtype == DType::f64) {
    static_cast<double*>(p)[i] = static_cast<double>(v);
  } else {
    static_cast<float*>(p)[i] = static_cast<float>(v);
  }
}

// Row of this thread's group and its lane (G <= 32: blockDim.x / G rows per block; else one).
template <int G>
__device__ __forceinline__ int64_t group_row() {
  return static_cast<int64_t>(blockIdx.x) * (blockDim.x / G) + threadIdx.x / G;
}

template <int G, typename T>
__global__ void __launch_bounds__(G <= 32 ? kBlock : G)
    forward_kernel(LayerNormArgs a, const T* __restrict__ x, const T* __restrict__ w,
                   const T* __restrict__ b, acc_t<T> eps, T* __restrict__ y, void* mean,
                   void* rstd) {
  using A = acc_t<T>;
  __shared__ A smem[32];
  const int64_t row = group_row<G>();
  if (G <= 32 && row >= a.rows) return;  // whole groups (and warps) leave together
  const int lane = static_cast<int>(threadIdx.x) % G;
  const int64_t D = a.D;
  const T* xr = x + row * D;
  T* yr = y + row * D;
  auto sum = [&](A v) { return group_allreduce<G>(v, SumMerge{}, smem); };
  A s = 0;
  for (int64_t j = lane; j < D; j += G) s += load(xr + j);
  const A m = sum(s) / static_cast<A>(D);
  A q = 0;
  for (int64_t j = lane; j < D; j += G) {
    const A d = load(xr + j) - m;
    q += d * d;
  }
  const A var = sum(q) / static_cast<A>(D);
  const A rs = A(1) / sqrt_of(var + eps);
  for (int64_t j = lane; j < D; j += G) {
    A v = (load(xr + j) - m) * rs;
    if (w != nullptr) v *= load(w + j);
    if (b != nullptr) v += load(b + j);
    store(yr + j, v);
  }
  if (lane == 0) {
    write_stat(mean, a.stat_dtype, row, m);
    write_stat(rstd, a.stat_dtype, row, rs);
  }
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * weight.
template <int G, typename T>
__global__ void __launch_bounds__(G <= 32 ? kBlock : G)
    backward_dx_kernel(LayerNormArgs a, const T* __restrict__ dy, const T* __restrict__ x,
                       const T* __restrict__ w, const void* mean, const void* rstd,
                       T* __restrict__ dx) {
  using A = acc_t<T>;
  __shared__ A smem[32];
  const int64_t row = group_row<G>();
  if (G <= 32 && row >= a.rows) return;
  const int lane = static_cast<int>(threadIdx.x) % G;
  const int64_t D = a.D;
  const T* xr = x + row * D;
  const T* gr = dy + row * D;
  T* dr = dx + row * D;
  const A m = read_stat<A>(mean, a.stat_dtype, row);
  const A rs = read_stat<A>(rstd, a.stat_dtype, row);
  auto g_at = [&](int64_t j) { return w != nullptr ? load(gr + j) * load(w + j) : load(gr + j); };
  auto sum = [&](A v) { return group_allreduce<G>(v, SumMerge{}, smem); };
  A sg = 0, sgx = 0;
  for (int64_t j = lane; j < D; j += G) {
    const A xh = (load(xr + j) - m) * rs;
    const A g = g_at(j);
    sg += g;
    sgx += g * xh;
  }
  const A mg = sum(sg) / static_cast<A>(D);
  const A mgx = sum(sgx) / static_cast<A>(D);
  for (int64_t j = lane; j < D; j += G) {
    const A xh = (load(xr + j) - m) * rs;
    store(dr + j, rs * (g_at(j) - mg - xh * mgx));
  }
}

// Partial sums over the rows of chunk blockIdx.y for 32 columns (tile blockIdx.x): dweight gets
// dy * xhat, dbias dy, both in double. With one chunk the sums are the results and are stored
// directly; otherwise they go to partial_w / partial_b [chunks, D].
template <typename T>
__global__ void __launch_bounds__(kBlock)
    param_partials_kernel(LayerNormArgs a, const T* __restrict__ dy, const T* __restrict__ x,
                          const void* mean, const void* rstd, int64_t chunk_rows,
                          T* __restrict__ dw, T* __restrict__ db, double* __restrict__ partial_w,
                          double* __restrict__ partial_b) {
  using A = acc_t<T>;
  __shared__ double smem_w[kBlock];
  __shared__ double smem_b[kBlock];
  const int tid = static_cast<int>(threadIdx.x);
  const int tx = tid % kTileColumns, ty = tid / kTileColumns;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kTileColumns + tx;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * chunk_rows;
  const int64_t r1 = std::min(a.rows, r0 + chunk_rows);
  double sw = 0, sb = 0;
  if (j < a.D) {
    for (int64_t r = r0 + ty; r < r1; r += kRowLanes) {
      const A m = read_stat<A>(mean, a.stat_dtype, r);
      const A rs = read_stat<A>(rstd, a.stat_dtype, r);
      const A xh = (load(x + r * a.D + j) - m) * rs;
      const auto g = static_cast<double>(load(dy + r * a.D + j));
      sw += g * static_cast<double>(xh);
      sb += g;
    }
  }
  smem_w[tid] = sw;
  smem_b[tid] = sb;
  __syncthreads();
  for (int h = kRowLanes / 2; h > 0; h /= 2) {
    if (ty < h) {
      smem_w[tid] += smem_w[tid + h * kTileColumns];
      smem_b[tid] += smem_b[tid + h * kTileColumns];
    }
    __syncthreads();
  }
  if (ty != 0 || j >= a.D) return;
  if (gridDim.y == 1) {
    if (dw != nullptr) store(dw + j, smem_w[tid]);
    if (db != nullptr) store(db + j, smem_b[tid]);
  } else {
    partial_w[blockIdx.y * a.D + j] = smem_w[tid];
    partial_b[blockIdx.y * a.D + j] = smem_b[tid];
  }
}

template <typename T>
__global__ void param_combine_kernel(LayerNormArgs a, int64_t chunks,
                                     const double* __restrict__ partial_w,
                                     const double* __restrict__ partial_b, T* __restrict__ dw,
                                     T* __restrict__ db) {
  RW_CUDA_GRID_STRIDE_LOOP(j, a.D) {
    double sw = partial_w[j], sb = partial_b[j];
    for (int64_t c = 1; c < chunks; ++c) {
      sw += partial_w[c * a.D + j];
      sb += partial_b[c * a.D + j];
    }
    if (dw != nullptr) store(dw + j, sw);
    if (db != nullptr) store(db + j, sb);
  }
}

struct ParamPlan {
  int64_t tiles = 1, chunks = 1, chunk_rows = 1;
};

ParamPlan plan_params(const LayerNormArgs& a) {
  ParamPlan p;
  p.tiles = ceil_div(a.D, kTileColumns);
  const int64_t most = std::max<int64_t>(1, ceil_div(a.rows, kMinChunkRows));
  const int64_t chunks = std::clamp<int64_t>(ceil_div(kTargetBlocks, p.tiles), 1, most);
  p.chunk_rows = std::max<int64_t>(1, ceil_div(a.rows, chunks));
  p.chunks = std::min<int64_t>(ceil_div(a.rows, p.chunk_rows), 65535);
  p.chunk_rows = ceil_div(a.rows, p.chunks);
  return p;
}

// Threads per row: a warp for short rows, the block for long ones.
template <typename Launch>
void by_row_length(int64_t D, Launch&& launch) {
  if (D <= 1024) {
    launch(std::integral_constant<int, 32>{});
  } else if (D <= 8192) {
    launch(std::integral_constant<int, 256>{});
  } else {
    launch(std::integral_constant<int, 1024>{});
  }
}

template <int G>
dim3 row_grid(int64_t rows) {
  return dim3(static_cast<unsigned>(G <= 32 ? ceil_div(rows, kBlock / G) : rows));
}

}  // namespace

void launch_layer_norm(const LayerNormArgs& a, const void* x, const void* weight, const void* bias,
                       double eps, void* out, void* mean, void* rstd, cudaStream_t stream) {
  if (a.rows == 0 || a.D == 0) return;
  RW_CUDA_DISPATCH_FLOATING(a.dtype, T, {
    by_row_length(a.D, [&](auto group) {
      constexpr int G = decltype(group)::value;
      forward_kernel<G, T><<<row_grid<G>(a.rows), G <= 32 ? kBlock : G, 0, stream>>>(
          a, static_cast<const T*>(x), static_cast<const T*>(weight), static_cast<const T*>(bias),
          static_cast<acc_t<T>>(eps), static_cast<T*>(out), mean, rstd);
    });
    RW_CUDA_CHECK_LAUNCH();
  });
}

std::size_t layer_norm_backward_scratch_bytes(const LayerNormArgs& a, bool parameter_grads) {
  if (!parameter_grads || a.rows == 0 || a.D == 0) return 0;
  const ParamPlan p = plan_params(a);
  return p.chunks > 1 ? static_cast<std::size_t>(2 * p.chunks * a.D) * sizeof(double) : 0;
}

void launch_layer_norm_backward(const LayerNormArgs& a, const void* dy, const void* x,
                                const void* weight, const void* mean, const void* rstd, void* dx,
                                void* dweight, void* dbias, void* scratch, cudaStream_t stream) {
  if (a.rows == 0 || a.D == 0) return;
  RW_CUDA_DISPATCH_FLOATING(a.dtype, T, {
    const auto* pdy = static_cast<const T*>(dy);
    const auto* px = static_cast<const T*>(x);
    if (dx != nullptr) {
      by_row_length(a.D, [&](auto group) {
        constexpr int G = decltype(group)::value;
        backward_dx_kernel<G, T><<<row_grid<G>(a.rows), G <= 32 ? kBlock : G, 0, stream>>>(
            a, pdy, px, static_cast<const T*>(weight), mean, rstd, static_cast<T*>(dx));
      });
      RW_CUDA_CHECK_LAUNCH();
    }
    if (dweight != nullptr || dbias != nullptr) {
      const ParamPlan p = plan_params(a);
      auto* partial_w = static_cast<double*>(scratch);
      double* partial_b = p.chunks > 1 ? partial_w + p.chunks * a.D : nullptr;
      const dim3 grid(static_cast<unsigned>(p.tiles), static_cast<unsigned>(p.chunks));
      param_partials_kernel<T><<<grid, kBlock, 0, stream>>>(
          a, pdy, px, mean, rstd, p.chunk_rows, static_cast<T*>(dweight), static_cast<T*>(dbias),
          partial_w, partial_b);
      RW_CUDA_CHECK_LAUNCH();
      if (p.chunks > 1) {
        param_combine_kernel<T><<<grid_for(a.D), kThreads, 0, stream>>>(
            a, p.chunks, partial_w, partial_b, static_cast<T*>(dweight), static_cast<T*>(dbias));
        RW_CUDA_CHECK_LAUNCH();
      }
    }
  });
}

}  // namespace rw::cuda
