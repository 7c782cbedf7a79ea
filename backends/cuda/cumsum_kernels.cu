// Inclusive prefix sums along a dim on the GPU (launch_cumsum, declared in reduce_kernels.h).
//
// x is contiguous [outer, n, inner]; every line (o, i) is scanned along n, accumulating in double
// (floating x) or int64 as the CPU does. Two thread layouts:
//  - columns (inner > 1): one thread walks a line sequentially; neighbouring threads take
//    neighbouring lines, hence neighbouring elements.
//  - rows (inner == 1): a group of G threads per line (a warp for rows up to 2048, a block of 512
//    beyond) scans pieces of G * 4 elements with shuffles and carries the pieces' totals.
// When there are too few lines to keep the GPU busy, n is cut into segments: a first pass sums
// every segment, a second turns each line's segment sums into starting offsets (in segment order),
// and the scan then runs on all segments at once, each from its offset. All combination orders
// follow from the shape alone: bit-identical results run to run.
#include <algorithm>
#include <type_traits>

#include "backends/cuda/block_reduce.cuh"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/kernel_utils.cuh"
#include "backends/cuda/reduce_kernels.h"

namespace rw::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kLongRowThreads = 512;
// Rows up to this length take a warp each; longer ones a block of kLongRowThreads.
constexpr int64_t kWarpRowMax = 2048;
// Columns: lines (threads) from which the sequential walk alone fills the GPU, and the threads
// that segmenting aims for otherwise.
constexpr int64_t kColumnLinesEnough = 65536;
constexpr int64_t kColumnThreadsTarget = 131072;
constexpr int64_t kMinColumnSegment = 64;
// Long rows: blocks from which one per row fills the GPU, and the blocks segmenting aims for.
constexpr int64_t kRowBlocksEnough = 264;
constexpr int64_t kRowBlocksTarget = 528;
constexpr int64_t kMinRowSegment = 8192;

struct ScanPlan {
  int64_t segments = 1;
  int64_t segment_len = 0;
};

ScanPlan plan_scan(const ScanGeometry& g) {
  ScanPlan p;
  p.segment_len = g.n;
  int64_t want = 1;
  if (g.inner > 1) {
    const int64_t lines = g.outer * g.inner;
    if (lines < kColumnLinesEnough && g.n >= 2 * kMinColumnSegment) {
      want = std::min(ceil_div(kColumnThreadsTarget, lines), g.n / kMinColumnSegment);
    }
  } else if (g.n > kWarpRowMax && g.outer < kRowBlocksEnough) {
    want = std::min(ceil_div(kRowBlocksTarget, g.outer), g.n / kMinRowSegment);
  }
  if (want > 1) {
    p.segment_len = ceil_div(g.n, want);
    p.segments = ceil_div(g.n, p.segment_len);
  }
  return p;
}

template <typename A>
__device__ __forceinline__ A shuffle_up(A v, int delta) {
  if constexpr (std::is_same_v<A, int64_t>) {
    return static_cast<A>(__shfl_up_sync(kFullMask, static_cast<long long>(v), delta));
  } else {
    return __shfl_up_sync(kFullMask, v, delta);
  }
}

template <typename A>
__device__ __forceinline__ A shuffle_idx(A v, int lane) {
  if constexpr (std::is_same_v<A, int64_t>) {
    return static_cast<A>(__shfl_sync(kFullMask, static_cast<long long>(v), lane));
  } else {
    return __shfl_sync(kFullMask, v, lane);
  }
}

template <typename T>
using scan_acc_t = wide_t<acc_t<T>>;

// Segment s of line (o, i) covers [s * len, min(n, (s + 1) * len)) along n; its slot in the
// segment arrays is (o * segments + s) * inner + i.
struct Segment {
  int64_t o, s, i, begin, end;
};

__device__ __forceinline__ Segment segment_of(const ScanGeometry& g, const ScanPlan& p,
                                              int64_t slot) {
  Segment seg;
  seg.i = slot % g.inner;
  const int64_t rest = slot / g.inner;
  seg.s = rest % p.segments;
  seg.o = rest / p.segments;
  seg.begin = seg.s * p.segment_len;
  seg.end = std::min(g.n, seg.begin + p.segment_len);
  return seg;
}

// Pass 1, columns: the sum of each segment, walked sequentially by one thread.
template <typename T>
__global__ void segment_sums_columns_kernel(const T* __restrict__ x,
                                            scan_acc_t<T>* __restrict__ sums, ScanGeometry g,
                                            ScanPlan p) {
  using A = scan_acc_t<T>;
  RW_CUDA_GRID_STRIDE_LOOP(slot, g.outer * p.segments * g.inner) {
    const Segment seg = segment_of(g, p, slot);
    const T* src = x + seg.o * g.n * g.inner + seg.i;
    A acc = 0;
    for (int64_t k = seg.begin; k < seg.end; ++k) acc += static_cast<A>(load(src + k * g.inner));
    sums[slot] = acc;
  }
}

// Pass 1, rows: the sum of each segment by a block.
template <typename T>
__global__ void __launch_bounds__(kLongRowThreads)
    segment_sums_rows_kernel(const T* __restrict__ x, scan_acc_t<T>* __restrict__ sums,
                             ScanGeometry g, ScanPlan p) {
  using A = scan_acc_t<T>;
  __shared__ A smem[32];
  const Segment seg = segment_of(g, p, blockIdx.x);
  const T* src = x + seg.o * g.n;
  A acc = 0;
  for (int64_t k = seg.begin + threadIdx.x; k < seg.end; k += blockDim.x) {
    acc += static_cast<A>(load(src + k));
  }
  acc = block_allreduce(acc, SumMerge{}, smem);
  if (threadIdx.x == 0) sums[blockIdx.x] = acc;
}

// Pass 2: each line's segment sums become the segments' starting offsets, in segment order.
template <typename A>
__global__ void segment_offsets_kernel(A* __restrict__ sums, ScanGeometry g, ScanPlan p) {
  RW_CUDA_GRID_STRIDE_LOOP(line, g.outer * g.inner) {
    const int64_t o = line / g.inner, i = line % g.inner;
    A running = 0;
    for (int64_t s = 0; s < p.segments; ++s) {
      A& slot = sums[(o * p.segments + s) * g.inner + i];
      const A t = slot;
      slot = running;
      running += t;
    }
  }
}

// The scan, columns: one thread per segment of a line, from the segment's offset (null: 0),
// sequential as on the CPU.
template <typename T, typename O>
__global__ void scan_columns_kernel(const T* __restrict__ x, O* __restrict__ out,
                                    const scan_acc_t<T>* __restrict__ offsets, ScanGeometry g,
                                    ScanPlan p) {
  using A = scan_acc_t<T>;
  RW_CUDA_GRID_STRIDE_LOOP(slot, g.outer * p.segments * g.inner) {
    const Segment seg = segment_of(g, p, slot);
    const int64_t base = seg.o * g.n * g.inner + seg.i;
    A acc = offsets != nullptr ? offsets[slot] : A(0);
    for (int64_t k = seg.begin; k < seg.end; ++k) {
      acc += static_cast<A>(load(x + base + k * g.inner));
      store(out + base + k * g.inner, acc);
    }
  }
}

// The scan, rows: a group of G threads per segment of a row (G <= 32: blockDim.x / G segments per
// block; else one per block), kPer neighbouring elements per thread and piece.
template <int G, typename T, typename O>
__global__ void __launch_bounds__(G <= 32 ? kBlock : G)
    scan_rows_kernel(const T* __restrict__ x, O* __restrict__ out,
                     const scan_acc_t<T>* __restrict__ offsets, ScanGeometry g, ScanPlan p) {
  using A = scan_acc_t<T>;
  constexpr int kPer = 4;
  constexpr int kPiece = G * kPer;
  constexpr int kWarps = G <= 32 ? 1 : G / 32;
  __shared__ A warp_totals[kWarps];
  const int tid = static_cast<int>(threadIdx.x);
  const int lane = tid % G, wlane = tid % 32, warp = lane / 32;
  const int64_t slot = static_cast<int64_t>(blockIdx.x) * (blockDim.x / G) + tid / G;
  if (G <= 32 && slot >= g.outer * p.segments) return;  // whole groups (and warps) leave together
  const Segment seg = segment_of(g, p, slot);
  const T* src = x + seg.o * g.n + seg.begin;
  O* dst = out + seg.o * g.n + seg.begin;
  const int64_t n = seg.end - seg.begin;
  A carry = offsets != nullptr ? offsets[slot] : A(0);
  for (int64_t base = 0; base < n; base += kPiece) {
    const int64_t i0 = base + static_cast<int64_t>(lane) * kPer;
    A run[kPer];
    A total = 0;
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
      if (i0 + k < n) total += static_cast<A>(load(src + i0 + k));
      run[k] = total;
    }
    // Inclusive scan of the threads' totals within each warp (or sub-warp group).
    A incl = total;
#pragma unroll
    for (int d = 1; d < (G < 32 ? G : 32); d *= 2) {
      const A t = shuffle_up(incl, d);
      if (wlane % G >= d) incl += t;
    }
    A before = shuffle_up(incl, 1);  // exclusive prefix within the warp
    if (wlane % G == 0) before = 0;
    A piece_total;
    if constexpr (G <= 32) {
      piece_total = shuffle_idx(incl, (wlane / G) * G + G - 1);
    } else {
      if (wlane == 31) warp_totals[warp] = incl;
      __syncthreads();
      A earlier = 0;
      piece_total = 0;
      for (int w = 0; w < kWarps; ++w) {
        if (w < warp) earlier += warp_totals[w];
        piece_total += warp_totals[w];
      }
      before += earlier;
      __syncthreads();  // warp_totals is rewritten by the next piece
    }
    const A prefix = carry + before;
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
      if (i0 + k < n) store(dst + i0 + k, prefix + run[k]);
    }
    carry += piece_total;
  }
}

template <typename T, typename O>
void cumsum_typed(const T* x, O* out, const ScanGeometry& g, void* scratch, cudaStream_t stream) {
  using A = scan_acc_t<T>;
  const ScanPlan p = plan_scan(g);
  const int64_t slots = g.outer * p.segments * g.inner;
  A* offsets = nullptr;
  if (p.segments > 1) {
    offsets = static_cast<A*>(scratch);
    if (g.inner > 1) {
      segment_sums_columns_kernel<<<grid_for(slots), kThreads, 0, stream>>>(x, offsets, g, p);
    } else {
      segment_sums_rows_kernel<<<static_cast<unsigned>(slots), kLongRowThreads, 0, stream>>>(
          x, offsets, g, p);
    }
    RW_CUDA_CHECK_LAUNCH();
    segment_offsets_kernel<<<grid_for(g.outer * g.inner), kThreads, 0, stream>>>(offsets, g, p);
    RW_CUDA_CHECK_LAUNCH();
  }
  if (g.inner > 1) {
    scan_columns_kernel<<<grid_for(slots), kThreads, 0, stream>>>(x, out, offsets, g, p);
  } else if (g.n <= kWarpRowMax) {
    scan_rows_kernel<32>
        <<<static_cast<unsigned>(ceil_div(slots, kBlock / 32)), kBlock, 0, stream>>>(x, out,
                                                                                     offsets, g, p);
  } else {
    scan_rows_kernel<kLongRowThreads>
        <<<static_cast<unsigned>(slots), kLongRowThreads, 0, stream>>>(x, out, offsets, g, p);
  }
  RW_CUDA_CHECK_LAUNCH();
}

}  // namespace

std::size_t cumsum_scratch_bytes(const ScanGeometry& g) {
  const ScanPlan p = plan_scan(g);
  if (p.segments <= 1) return 0;
  return static_cast<std::size_t>(g.outer * p.segments * g.inner) * sizeof(double);
}

void launch_cumsum(const void* x, DType x_dtype, void* out, DType out_dtype, const ScanGeometry& g,
                   void* scratch, cudaStream_t stream) {
  if (g.outer * g.n * g.inner == 0) return;
  RW_CUDA_DISPATCH_ALL(x_dtype, T, {
    const auto* px = static_cast<const T*>(x);
    if (out_dtype == x_dtype) {
      cumsum_typed(px, static_cast<T*>(out), g, scratch, stream);
    } else if (out_dtype == DType::i64) {
      cumsum_typed(px, static_cast<int64_t*>(out), g, scratch, stream);
    } else {
      unsupported_dtype("cumsum (output)", out_dtype);
    }
  });
}

}  // namespace rw::cuda
