#pragma once
// The loops every elementwise kernel runs: out[i] = f(in_0[i], in_1[i], ...) over the row-major
// linear index i of the output's shape. Two kernels per functor:
//   - map_contiguous: every operand contiguous and aligned to its vector size, or a broadcast
//     scalar (x * 2.0 reaches the kernel as a stride-0 view); each thread loads and stores kVec
//     consecutive elements as one 16-byte (or narrower) access;
//   - map_strided: any layout. Each operand is read through an Indexer (dims merged by the host
//     side's arg()), or directly when it is contiguous or a broadcast scalar (the choice is per
//     operand and uniform across the grid, so the branch costs nothing). Positions below 2^31
//     are decomposed with 32-bit division, several times cheaper on the GPU than 64-bit.
// Functors receive the operands' storage values and return the output's storage value; they
// convert to the compute type themselves (elementwise_math.cuh). Included by .cu files only.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/kernel_utils.cuh"

namespace rw::cuda::elementwise {

// The most blocks a launch uses: several waves on any current GPU (an H100 holds 132 SMs x 8
// blocks of 256 threads at once). Larger tensors loop inside the kernel (grid-stride), which
// amortises each thread's setup over several elements.
inline constexpr int64_t kMaxBlocks = 4096;

inline unsigned blocks_for(int64_t work) {
  return static_cast<unsigned>(
      std::clamp<int64_t>((work + kThreads - 1) / kThreads, 1, kMaxBlocks));
}

// --- operands ------------------------------------------------------------------------------------

enum class Access : uint8_t {
  contiguous,  // element i is data[i]
  scalar,      // every element is data[0] (a 0-dim tensor or a fully broadcast view)
  strided,     // element i is at the Indexer's offset of i
};

inline Access access_of(const TensorArg& t) {
  if (t.contiguous) return Access::contiguous;
  bool all_zero = true;
  for (int d = 0; d < t.rank; ++d) all_zero = all_zero && t.strides[d] == 0;
  return all_zero ? Access::scalar : Access::strided;
}

// Offset of the element at linear index i; I is uint32_t when the tensor has < 2^31 elements.
// The outermost dim needs no modulo: i is below the element count.
template <typename I>
__device__ __forceinline__ int64_t offset_at(const Indexer& ix, I i) {
  int64_t off = 0;
  for (int d = ix.rank - 1; d > 0; --d) {
    const auto size = static_cast<I>(ix.sizes[d]);
    off += static_cast<int64_t>(i % size) * ix.strides[d];
    i /= size;
  }
  if (ix.rank > 0) off += static_cast<int64_t>(i) * ix.strides[0];
  return off;
}

// An input of element type T, read at linear index i.
template <typename T>
struct Operand {
  const T* data;
  Access access;
  Indexer index;

  explicit Operand(const TensorArg& t)
      : data(static_cast<const T*>(t.data)), access(access_of(t)), index(t) {}

  template <typename I>
  __device__ __forceinline__ T at(I i) const {
    if (access == Access::contiguous) return data[i];
    if (access == Access::scalar) return data[0];
    return data[offset_at(index, i)];
  }
};

// The output, written at linear index i (contiguous in practice; any non-overlapping layout works).
template <typename T>
struct OutOperand {
  T* data;
  bool contiguous;
  Indexer index;

  explicit OutOperand(const TensorArg& t)
      : data(static_cast<T*>(t.data)), contiguous(t.contiguous), index(t) {}

  template <typename I>
  __device__ __forceinline__ T& at(I i) const {
    return contiguous ? data[i] : data[offset_at(index, i)];
  }
};

// A TensorArg tagged with the element type the kernel reads it as.
template <typename T>
struct Input {
  const TensorArg& arg;
};
template <typename T>
Input<T> input(const TensorArg& t) {
  return {t};
}

// --- vectors -------------------------------------------------------------------------------------

// N consecutive elements, aligned so that loading one is a single instruction.
template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

// Elements per thread on the vector path: 16 bytes of the widest operand.
template <typename Out, typename... In>
inline constexpr int kVec = static_cast<int>(16 / std::max({sizeof(Out), sizeof(In)...}));

// An input of the vector path: contiguous, or one value read for every element.
template <typename T>
struct VecInput {
  const T* data;
  bool scalar;

  template <int N>
  __device__ __forceinline__ Pack<T, N> pack_at(int64_t base) const {
    if (!scalar) return *reinterpret_cast<const Pack<T, N>*>(data + base);
    Pack<T, N> p;
    const T v = data[0];
#pragma unroll
    for (int k = 0; k < N; ++k) p.v[k] = v;
    return p;
  }
  __device__ __forceinline__ T at(int64_t i) const { return data[scalar ? 0 : i]; }
};

template <int N, typename Out, typename F, typename... In>
__device__ __forceinline__ Pack<Out, N> apply_pack(const F& f, const Pack<In, N>&... in) {
  Pack<Out, N> out;
#pragma unroll
  for (int k = 0; k < N; ++k) out.v[k] = f(in.v[k]...);
  return out;
}

template <typename T>
bool aligned_to(const void* p, int n) {
  return reinterpret_cast<uintptr_t>(p) % (sizeof(T) * static_cast<std::size_t>(n)) == 0;
}

// --- kernels -------------------------------------------------------------------------------------

template <int N, typename Out, typename F, typename... In>
__global__ void map_contiguous(Out* out, int64_t n, F f, VecInput<In>... in) {
  const int64_t packs = n / N;
  RW_CUDA_GRID_STRIDE_LOOP(p, packs) {
    const int64_t base = p * N;
    *reinterpret_cast<Pack<Out, N>*>(out + base) =
        apply_pack<N, Out>(f, in.template pack_at<N>(base)...);
  }
  // The last n % N elements, one per thread.
  const int64_t done = packs * N;
  RW_CUDA_GRID_STRIDE_LOOP(j, n - done) { out[done + j] = f(in.at(done + j)...); }
}

template <typename Out, typename F, typename... In>
__global__ void map_strided(OutOperand<Out> out, int64_t n, F f, Operand<In>... in) {
  if (n <= INT32_MAX) {
    RW_CUDA_GRID_STRIDE_LOOP(i, n) {
      const auto i32 = static_cast<uint32_t>(i);
      out.at(i32) = f(in.at(i32)...);
    }
  } else {
    RW_CUDA_GRID_STRIDE_LOOP(i, n) { out.at(i) = f(in.at(i)...); }
  }
}

// Runs out[i] = f(in[i]...) on `stream` (out.numel() elements; nothing for none).
template <typename Out, typename F, typename... In>
void launch_map(cudaStream_t stream, const TensorArg& out, F f, Input<In>... in) {
  const int64_t n = out.numel;
  if (n == 0) return;
  constexpr int N = kVec<Out, In...>;
  [[maybe_unused]] auto vectorisable = [](const TensorArg& t, auto element) {
    using T = decltype(element);
    return (t.contiguous && aligned_to<T>(t.data, N)) || access_of(t) == Access::scalar;
  };
  const bool vector =
      out.contiguous && aligned_to<Out>(out.data, N) && (vectorisable(in.arg, In{}) && ...);
  if (vector) {
    map_contiguous<N><<<blocks_for((n + N - 1) / N), kThreads, 0, stream>>>(
        static_cast<Out*>(out.data), n, f,
        VecInput<In>{static_cast<const In*>(in.arg.data), access_of(in.arg) == Access::scalar}...);
  } else {
    map_strided<<<blocks_for(n), kThreads, 0, stream>>>(OutOperand<Out>(out), n, f,
                                                        Operand<In>(in.arg)...);
  }
  RW_CUDA_CHECK_LAUNCH();
}

}  // namespace rw::cuda::elementwise
