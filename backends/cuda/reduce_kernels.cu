// Reductions and arg-reductions on the GPU (see reduce_kernels.h for the semantics; cumsum is in
// cumsum_kernels.cu).
//
// One kernel shape serves every reduction: a block of 256 threads is a grid of bx x by threads
// (tx = threadIdx.x % bx fastest).
//  - row layout (a reduced dim is innermost): the bx threads of a row share one output and walk
//    its reduced range together (neighbouring threads read neighbouring elements); a block holds
//    by outputs. Short ranges take sub-warp groups, longer ones a warp, and long ones with few
//    outputs the whole block.
//  - column layout (a kept dim is innermost): the bx threads of a row take bx neighbouring
//    outputs (again neighbouring elements), and the by rows of the block split the reduced range.
// When there are too few outputs to fill the GPU, gridDim.y slices the reduced range; each slice
// writes its partial states and a second kernel folds them in slice order. Each thread updates in
// index order; lanes, rows and slices are then combined in trees whose shape depends on the
// geometry alone, so results are bit-identical run to run (no atomics).
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "backends/cuda/block_reduce.cuh"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/kernel_utils.cuh"
#include "backends/cuda/reduce_kernels.h"

namespace rw::cuda {
namespace {

constexpr int kBlock = 256;
// Blocks a launch aims for before it slices reduced ranges: several per SM of any current GPU. A
// constant rather than the device's SM count, so that a result's bits do not depend on the GPU.
constexpr int64_t kTargetBlocks = 1024;
// The fewest elements per thread that are worth a slice of their own.
constexpr int64_t kMinPerThread = 32;
// Outputs from which a warp per output (rather than a block) keeps the GPU busy.
constexpr int64_t kWarpRowsEnough = 2048;
// The largest partial state of any op (ArgState<double>), for scratch sizing.
constexpr std::size_t kMaxStateBytes = 16;

template <typename V>
__device__ __forceinline__ bool is_nan(V v) {
  if constexpr (std::is_floating_point_v<V>) {
    return isnan(v);
  } else {
    return false;
  }
}

template <typename V>
__device__ __forceinline__ V lowest_value() {
  if constexpr (std::is_floating_point_v<V>) {
    return -std::numeric_limits<V>::infinity();
  } else {
    return std::numeric_limits<V>::lowest();
  }
}

template <typename V>
__device__ __forceinline__ V highest_value() {
  if constexpr (std::is_floating_point_v<V>) {
    return std::numeric_limits<V>::infinity();
  } else {
    return std::numeric_limits<V>::max();
  }
}

// Writes a result into element `off` of an output of any dtype, converted like the CPU's stores.
template <typename R>
__device__ __forceinline__ void store_as(void* base, int64_t off, DType dtype, R v) {
  switch (dtype) {
    case DType::f32:
      static_cast<float*>(base)[off] = convert<float>(v);
      break;
    case DType::f64:
      static_cast<double*>(base)[off] = convert<double>(v);
      break;
    case DType::bf16:
      static_cast<__nv_bfloat16*>(base)[off] = convert<__nv_bfloat16>(v);
      break;
    case DType::f16:
      static_cast<__half*>(base)[off] = convert<__half>(v);
      break;
    case DType::i32:
      static_cast<int32_t*>(base)[off] = convert<int32_t>(v);
      break;
    case DType::i64:
      static_cast<int64_t*>(base)[off] = convert<int64_t>(v);
      break;
    case DType::u8:
      static_cast<uint8_t*>(base)[off] = convert<uint8_t>(v);
      break;
    case DType::boolean:
      static_cast<bool*>(base)[off] = convert<bool>(v);
      break;
  }
}

// --- geometry ------------------------------------------------------------------------------------

struct Offsets {
  int64_t x = 0, out = 0;
};

__device__ __forceinline__ Offsets output_offsets(const ReduceGeometry& g, int64_t o) {
  Offsets r;
  if (g.kept_rank == 1) {  // the common case, without 64-bit divisions
    r.x = o * g.kept_x_strides[0];
    r.out = o * g.kept_out_strides[0];
    return r;
  }
  for (int d = g.kept_rank - 1; d >= 0; --d) {
    const int64_t s = g.kept_sizes[d];
    const int64_t i = o % s;
    o /= s;
    r.x += i * g.kept_x_strides[d];
    r.out += i * g.kept_out_strides[d];
  }
  return r;
}

__device__ __forceinline__ int64_t reduced_offset(const ReduceGeometry& g, int64_t i) {
  if (g.red_rank == 1) return i * g.red_x_strides[0];
  int64_t off = 0;
  for (int d = g.red_rank - 1; d >= 0; --d) {
    const int64_t s = g.red_sizes[d];
    off += (i % s) * g.red_x_strides[d];
    i /= s;
  }
  return off;
}

// --- ops -----------------------------------------------------------------------------------------
// Each op has a State with init / update (one element, its index in the reduced range and the
// op's per-output context) / merge (two states; `a` covers earlier indices when that matters) and
// write (the final state of output o, at element `oo` of the output).

struct NoCtx {};

struct OutputRef {
  void* data = nullptr;
  DType dtype = DType::f32;
};

// sum and mean (the double or int64 sum divided by the count on the store, as on the CPU).
template <typename T>
struct SumOp {
  using V = acc_t<T>;
  using State = wide_t<V>;
  OutputRef out;
  bool mean = false;
  double count = 0;  // 0 for an empty range: the mean is 0 / 0 = NaN, as PyTorch
  __device__ State init() const { return 0; }
  __device__ NoCtx ctx(int64_t) const { return {}; }
  __device__ void update(State& a, V v, int64_t, NoCtx) const { a += static_cast<State>(v); }
  __device__ void merge(State& a, State b) const { a += b; }
  __device__ void write(int64_t, int64_t oo, State a) const {
    if (mean) {
      store_as(out.data, oo, out.dtype, static_cast<double>(a) / count);
    } else {
      store_as(out.data, oo, out.dtype, a);
    }
  }
};

template <typename T>
struct ProdOp {
  using V = acc_t<T>;
  using State = wide_t<V>;
  OutputRef out;
  __device__ State init() const { return 1; }
  __device__ NoCtx ctx(int64_t) const { return {}; }
  __device__ void update(State& a, V v, int64_t, NoCtx) const { a *= static_cast<State>(v); }
  __device__ void merge(State& a, State b) const { a *= b; }
  __device__ void write(int64_t, int64_t oo, State a) const {
    store_as(out.data, oo, out.dtype, a);
  }
};

// max / min, propagating NaN (PyTorch's rule, the CPU's update). With `shift` set, the result of
// output o goes to shift[o] instead (logsumexp's first pass).
template <typename T, bool kMax>
struct ExtremeOp {
  using V = acc_t<T>;
  using State = V;
  OutputRef out;
  V* shift = nullptr;
  __device__ State init() const { return kMax ? lowest_value<V>() : highest_value<V>(); }
  __device__ NoCtx ctx(int64_t) const { return {}; }
  __device__ void update(State& a, V v, int64_t, NoCtx) const {
    if constexpr (kMax) {
      a = (a > v || is_nan(a)) ? a : v;
    } else {
      a = (a < v || is_nan(a)) ? a : v;
    }
  }
  __device__ void merge(State& a, State b) const { update(a, b, 0, {}); }
  __device__ void write(int64_t o, int64_t oo, State a) const {
    if (shift != nullptr) {
      shift[o] = a;
    } else {
      store_as(out.data, oo, out.dtype, a);
    }
  }
};

// logsumexp's second pass: the double sum of exp(x - max), with the max of the first pass as the
// context. A max that is not finite is the result itself (all -inf gives -inf, any +inf gives +inf,
// NaN stays NaN); otherwise max + log(sum), in double.
template <typename T>
struct SumExpOp {
  using V = acc_t<T>;
  using State = double;
  OutputRef out;
  const V* shift = nullptr;
  __device__ State init() const { return 0; }
  __device__ V ctx(int64_t o) const { return shift[o]; }
  __device__ void update(State& a, V v, int64_t, V m) const {
    a += static_cast<double>(exp_of(v - m));
  }
  __device__ void merge(State& a, State b) const { a += b; }
  __device__ void write(int64_t o, int64_t oo, State a) const {
    const auto m = static_cast<double>(shift[o]);
    store_as(out.data, oo, out.dtype, isfinite(m) ? m + log(a) : m);
  }
};

template <typename V>
struct ArgState {
  V value;
  int64_t index;  // -1: nothing seen yet
};

// Found by argument-dependent lookup from warp_allreduce.
template <typename V>
__device__ __forceinline__ ArgState<V> shuffle_xor(ArgState<V> s, int mask, int width) {
  return {::rw::cuda::shuffle_xor(s.value, mask, width),
          ::rw::cuda::shuffle_xor(s.index, mask, width)};
}

// First index of the extreme; a NaN counts as the extreme and the first NaN wins (the CPU's rule).
template <typename T, bool kMax>
struct ArgOp {
  using V = acc_t<T>;
  using State = ArgState<V>;
  int64_t* out = nullptr;
  __device__ State init() const { return {V{}, -1}; }
  __device__ NoCtx ctx(int64_t) const { return {}; }
  __device__ static bool better(V v, V best) {
    if (is_nan(best)) return false;
    if (is_nan(v)) return true;
    return kMax ? v > best : v < best;
  }
  __device__ void update(State& a, V v, int64_t i, NoCtx) const {
    if (a.index < 0 || better(v, a.value)) a = {v, i};
  }
  // States of other lanes and slices cover interleaved indices: ties go to the smaller index.
  __device__ void merge(State& a, State b) const {
    if (b.index < 0) return;
    const bool tie = a.value == b.value || (is_nan(a.value) && is_nan(b.value));
    if (a.index < 0 || better(b.value, a.value) || (tie && b.index < a.index)) a = b;
  }
  __device__ void write(int64_t, int64_t oo, State a) const { out[oo] = a.index < 0 ? 0 : a.index; }
};

// --- kernels -------------------------------------------------------------------------------------

struct Launch {
  int bx = 1, by = kBlock;  // bx * by == kBlock
  bool column = false;
  int64_t out_blocks = 1;  // gridDim.x
  int64_t slices = 1;      // gridDim.y: parts of the reduced range
  int64_t chunk = 0;       // reduced elements per slice
};

Launch plan_launch(const ReduceGeometry& g) {
  Launch L;
  L.column = g.column;
  int lanes = 0, outputs_per_block = 0;
  if (!g.column) {
    // A warp per output while there are outputs enough to fill the GPU with warps; the whole
    // block for a few long rows (which slices then spread over more blocks).
    if (g.n_red >= 1024 && g.n_out < kWarpRowsEnough) {
      L.bx = kBlock;
    } else if (g.n_red > 16) {
      L.bx = 32;
    } else {
      L.bx = next_pow2(std::max<int64_t>(g.n_red, 1));
    }
    L.by = kBlock / L.bx;
    lanes = L.bx;
    outputs_per_block = L.by;
  } else {
    L.bx = std::min(32, next_pow2(g.n_out));
    L.by = kBlock / L.bx;
    lanes = L.by;
    outputs_per_block = L.bx;
  }
  L.out_blocks = ceil_div(g.n_out, outputs_per_block);
  if (g.n_red == 0) {
    L.chunk = 0;
    return L;
  }
  int64_t slices = 1;
  if (L.out_blocks < kTargetBlocks) {
    slices = std::min({ceil_div(kTargetBlocks, L.out_blocks),
                       ceil_div(g.n_red, lanes * kMinPerThread), int64_t{65535}});
    slices = std::max<int64_t>(slices, 1);
  }
  L.chunk = ceil_div(g.n_red, slices);
  L.slices = ceil_div(g.n_red, L.chunk);
  return L;
}

template <typename Op, typename T>
__global__ void __launch_bounds__(kBlock)
    reduce_kernel(Op op, const T* __restrict__ x, ReduceGeometry g, Launch L,
                  typename Op::State* __restrict__ partial) {
  using State = typename Op::State;
  using V = typename Op::V;
  __shared__ State smem[kBlock];
  const int tid = static_cast<int>(threadIdx.x);
  const int tx = tid % L.bx, ty = tid / L.bx;
  const int lanes = L.column ? L.by : L.bx;
  const int lane = L.column ? ty : tx;
  const int64_t o =
      static_cast<int64_t>(blockIdx.x) * (L.column ? L.bx : L.by) + (L.column ? tx : ty);
  const int64_t rb = static_cast<int64_t>(blockIdx.y) * L.chunk;
  const int64_t re = std::min(g.n_red, rb + L.chunk);
  State s = op.init();
  Offsets off;
  if (o < g.n_out) {
    off = output_offsets(g, o);
    const auto c = op.ctx(o);
    const T* xo = x + off.x;
    int64_t r = rb + lane;
    // Four loads in flight per thread; the updates still run in index order.
    for (; r + 3 * lanes < re; r += 4 * lanes) {
      const V v0 = load(xo + reduced_offset(g, r));
      const V v1 = load(xo + reduced_offset(g, r + lanes));
      const V v2 = load(xo + reduced_offset(g, r + 2 * lanes));
      const V v3 = load(xo + reduced_offset(g, r + 3 * lanes));
      op.update(s, v0, r, c);
      op.update(s, v1, r + lanes, c);
      op.update(s, v2, r + 2 * lanes, c);
      op.update(s, v3, r + 3 * lanes, c);
    }
    for (; r < re; r += lanes) op.update(s, load(xo + reduced_offset(g, r)), r, c);
  }
  auto merge = [&op](State a, State b) {
    op.merge(a, b);
    return a;
  };
  if (L.column) {
    smem[tid] = s;
    __syncthreads();
    for (int h = L.by / 2; h > 0; h /= 2) {
      if (ty < h) smem[tid] = merge(smem[tid], smem[tid + h * L.bx]);
      __syncthreads();
    }
    s = smem[tid];
  } else if (L.bx <= 32) {
    s = warp_allreduce(s, L.bx, merge);
  } else {
    s = block_allreduce(s, merge, smem);
  }
  if (lane != 0 || o >= g.n_out) return;
  if (gridDim.y == 1) {
    op.write(o, off.out, s);
  } else {
    partial[static_cast<int64_t>(blockIdx.y) * g.n_out + o] = s;
  }
}

// Folds the slices' partial states of each output in slice order and writes the result.
template <typename Op>
__global__ void combine_kernel(Op op, ReduceGeometry g, int64_t slices,
                               const typename Op::State* __restrict__ partial) {
  RW_CUDA_GRID_STRIDE_LOOP(o, g.n_out) {
    typename Op::State s = partial[o];
    for (int64_t k = 1; k < slices; ++k) op.merge(s, partial[k * g.n_out + o]);
    op.write(o, output_offsets(g, o).out, s);
  }
}

template <typename Op, typename T>
void run(const Op& op, const T* x, const ReduceGeometry& g, const Launch& L, void* partial,
         cudaStream_t stream) {
  using State = typename Op::State;
  static_assert(sizeof(State) <= kMaxStateBytes);
  const dim3 grid(static_cast<unsigned>(L.out_blocks), static_cast<unsigned>(L.slices));
  reduce_kernel<<<grid, kBlock, 0, stream>>>(op, x, g, L, static_cast<State*>(partial));
  RW_CUDA_CHECK_LAUNCH();
  if (L.slices > 1) {
    combine_kernel<<<grid_for(g.n_out), kThreads, 0, stream>>>(op, g, L.slices,
                                                               static_cast<State*>(partial));
    RW_CUDA_CHECK_LAUNCH();
  }
}

std::size_t round_up16(std::size_t n) { return (n + 15) / 16 * 16; }

std::size_t partial_bytes(const ReduceGeometry& g) {
  const Launch L = plan_launch(g);
  return L.slices > 1 ? round_up16(static_cast<std::size_t>(L.slices * g.n_out) * kMaxStateBytes)
                      : 0;
}

// logsumexp keeps each output's max (at most 8 bytes) ahead of the partial states.
std::size_t shift_bytes(const ReduceGeometry& g) {
  return round_up16(static_cast<std::size_t>(g.n_out) * sizeof(double));
}

template <typename T>
void reduce_typed(ReduceOp op, const T* x, DType x_dtype, OutputRef out, const ReduceGeometry& g,
                  void* scratch, cudaStream_t stream) {
  const Launch L = plan_launch(g);
  switch (op) {
    case ReduceOp::sum:
      run(SumOp<T>{out}, x, g, L, scratch, stream);
      return;
    case ReduceOp::mean:
      run(SumOp<T>{out, true, static_cast<double>(g.n_red)}, x, g, L, scratch, stream);
      return;
    case ReduceOp::prod:
      run(ProdOp<T>{out}, x, g, L, scratch, stream);
      return;
    case ReduceOp::max:
      run(ExtremeOp<T, true>{out}, x, g, L, scratch, stream);
      return;
    case ReduceOp::min:
      run(ExtremeOp<T, false>{out}, x, g, L, scratch, stream);
      return;
    case ReduceOp::logsumexp:
      if constexpr (std::is_floating_point_v<acc_t<T>>) {
        // Two passes, as on the CPU: the max of each output, then the sum of exp(x - max).
        auto* shift = static_cast<acc_t<T>*>(scratch);
        void* partial = static_cast<char*>(scratch) + shift_bytes(g);
        run(ExtremeOp<T, true>{out, shift}, x, g, L, partial, stream);
        run(SumExpOp<T>{out, shift}, x, g, L, partial, stream);
      } else {
        unsupported_dtype("reduce (logsumexp)", x_dtype);
      }
      return;
  }
}

}  // namespace

std::size_t reduce_scratch_bytes(ReduceOp op, DType, const ReduceGeometry& g) {
  return (op == ReduceOp::logsumexp ? shift_bytes(g) : 0) + partial_bytes(g);
}

std::size_t arg_reduce_scratch_bytes(DType, const ReduceGeometry& g) { return partial_bytes(g); }

void launch_reduce(ReduceOp op, const void* x, DType x_dtype, void* out, DType out_dtype,
                   const ReduceGeometry& g, void* scratch, cudaStream_t stream) {
  if (g.n_out == 0) return;
  const OutputRef o{out, out_dtype};
  RW_CUDA_DISPATCH_ALL(x_dtype, T,
                       reduce_typed(op, static_cast<const T*>(x), x_dtype, o, g, scratch, stream));
}

void launch_arg_reduce(ArgReduceOp op, const void* x, DType x_dtype, int64_t* out,
                       const ReduceGeometry& g, void* scratch, cudaStream_t stream) {
  if (g.n_out == 0) return;
  const Launch L = plan_launch(g);
  RW_CUDA_DISPATCH_ALL(x_dtype, T, {
    const auto* px = static_cast<const T*>(x);
    if (op == ArgReduceOp::argmax) {
      run(ArgOp<T, true>{out}, px, g, L, scratch, stream);
    } else {
      run(ArgOp<T, false>{out}, px, g, L, scratch, stream);
    }
  });
}

}  // namespace rw::cuda
