// Random kernels: one thread per Philox block (four elements), counter-based, so the numbers do not
// depend on the launch shape. Each formula is the CPU backend's (cpu_random.cpp) written with
// explicitly rounded operations (__dadd_rn, __dmul_rn), so nvcc cannot fuse a multiply-add that
// the CPU rounds twice. uniform, bernoulli and randint then match the CPU bit for bit. normal uses
// log, sin and cos, whose CUDA f64 versions are within 1-2 ulp of glibc's (not always correctly
// rounded), so f64 normals can differ from the CPU's in the last bits and, rarely, a narrower
// dtype's rounding of them by one unit.
#include <cmath>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/kernel_utils.cuh"
#include "backends/cuda/random_kernels.h"

namespace rw::cuda {
namespace {

constexpr double kPi = 3.141592653589793;  // std::numbers::pi

template <typename T>
inline constexpr bool is_floating_v = std::is_floating_point_v<T> || is_half_v<T>;

// The CPU's cast_to<T>(double): to bool is != 0, to bf16/f16 through f32, else static_cast.
template <typename T>
__device__ __forceinline__ T cast_to(double v) {
  if constexpr (std::is_same_v<T, bool>) {
    return v != 0;
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __float2bfloat16_rn(static_cast<float>(v));
  } else if constexpr (std::is_same_v<T, __half>) {
    return __float2half_rn(static_cast<float>(v));
  } else {
    return static_cast<T>(v);
  }
}

template <typename T>
__device__ __forceinline__ double as_double(T v) {
  if constexpr (is_half_v<T>) {
    return static_cast<double>(static_cast<float>(v));
  } else {
    return static_cast<double>(v);
  }
}

template <RandomKind kKind, typename T>
__device__ __forceinline__ T element(double u_or_z, double a, double b, double uniform_max) {
  if constexpr (kKind == RandomKind::uniform) {
    T v = cast_to<T>(__dadd_rn(a, __dmul_rn(__dsub_rn(b, a), u_or_z)));
    if constexpr (is_floating_v<T>) {
      if (as_double(v) > uniform_max) v = cast_to<T>(uniform_max);
    }
    return v;
  } else if constexpr (kKind == RandomKind::normal) {
    return cast_to<T>(__dadd_rn(a, __dmul_rn(b, u_or_z)));
  } else if constexpr (kKind == RandomKind::bernoulli) {
    return cast_to<T>(u_or_z < a ? 1.0 : 0.0);
  } else {
    const double v = __dadd_rn(a, floor(__dmul_rn(u_or_z, __dsub_rn(b, a))));
    const double last = __dsub_rn(b, 1.0);
    return cast_to<T>(last < v ? last : v);  // std::min(v, last)
  }
}

template <RandomKind kKind, typename T>
__global__ void random_kernel(PhiloxState state, double a, double b, double uniform_max, T* out,
                              int64_t n) {
  const int64_t blocks = (n + 3) / 4;
  RW_CUDA_GRID_STRIDE_LOOP(j, blocks) {
    const PhiloxBlock blk = philox_block(state, static_cast<uint64_t>(j));
    double v[4];
    for (int w = 0; w < 4; ++w) v[w] = philox_uniform(blk.w[w]);
    if constexpr (kKind == RandomKind::normal) {
      // Box-Muller on the word pairs (0, 1) and (2, 3).
      for (int p = 0; p < 4; p += 2) {
        const double r = sqrt(__dmul_rn(-2.0, log(v[p])));
        const double t = __dmul_rn(2.0 * kPi, v[p + 1]);
        v[p] = __dmul_rn(r, cos(t));
        v[p + 1] = __dmul_rn(r, sin(t));
      }
    }
    const int64_t first = 4 * j;
    const int count = n - first < 4 ? static_cast<int>(n - first) : 4;
    for (int w = 0; w < count; ++w) out[first + w] = element<kKind, T>(v[w], a, b, uniform_max);
  }
}

template <RandomKind kKind, typename T>
void launch_typed(PhiloxState state, double a, double b, double uniform_max, const TensorArg& out,
                  cudaStream_t stream) {
  const int64_t blocks = (out.numel + 3) / 4;
  random_kernel<kKind, T><<<grid_for(blocks), kThreads, 0, stream>>>(
      state, a, b, uniform_max, static_cast<T*>(out.data), out.numel);
  RW_CUDA_CHECK_LAUNCH();
}

template <typename T>
void launch_kind(RandomKind kind, PhiloxState state, double a, double b, double uniform_max,
                 const TensorArg& out, cudaStream_t stream) {
  switch (kind) {
    case RandomKind::uniform:
      return launch_typed<RandomKind::uniform, T>(state, a, b, uniform_max, out, stream);
    case RandomKind::normal:
      return launch_typed<RandomKind::normal, T>(state, a, b, uniform_max, out, stream);
    case RandomKind::bernoulli:
      return launch_typed<RandomKind::bernoulli, T>(state, a, b, uniform_max, out, stream);
    case RandomKind::randint:
      return launch_typed<RandomKind::randint, T>(state, a, b, uniform_max, out, stream);
  }
}

}  // namespace

void launch_random(RandomKind kind, PhiloxState state, double a, double b, double uniform_max,
                   const TensorArg& out, cudaStream_t stream) {
  if (out.numel == 0) return;
  RW_CUDA_DISPATCH_ALL(out.dtype, T, launch_kind<T>(kind, state, a, b, uniform_max, out, stream));
}

}  // namespace rw::cuda
