// Random tensors from the Philox stream, element for element as documented in core/philox.h, so
// every backend produces the same numbers: element i takes word i % 4 of block i / 4, computed in
// double and cast to the output dtype. Counter-based, so any thread computes any block.
//
// One detail beyond the header: a uniform sample is strictly below `high` in double, but the
// cast to a narrower dtype can round it up to `high` (f32 for u > 1 - 2^-25, bf16 far more often),
// so uniform results are clamped to the largest value of the output dtype below `high`. Other
// backends must do the same to match.
#include <omp.h>

#include <cmath>
#include <limits>
#include <numbers>
#include <type_traits>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/dispatch.h"
#include "backends/cpu/strided_loop.h"

namespace rw {
namespace {

template <typename T>
constexpr bool is_half_v = std::is_same_v<T, bf16> || std::is_same_v<T, f16>;

template <typename T>
T cast_to(double v) {
  if constexpr (std::is_same_v<T, bool>) {
    return v != 0;
  } else if constexpr (is_half_v<T>) {
    return T(static_cast<float>(v));
  } else {
    return static_cast<T>(v);
  }
}

template <typename T>
double as_double(T v) {
  if constexpr (is_half_v<T>) {
    return static_cast<float>(v);
  } else {
    return static_cast<double>(v);
  }
}

// The next half value towards -infinity (sign-magnitude bits).
template <typename T>
T half_step_down(T v) {
  T r = v;
  const uint16_t magnitude = v.bits & 0x7fffu;
  if (v.bits & 0x8000u) {
    r.bits = static_cast<uint16_t>(v.bits + 1);
  } else if (magnitude == 0) {
    r.bits = 0x8001u;  // the smallest negative subnormal
  } else {
    r.bits = static_cast<uint16_t>(v.bits - 1);
  }
  return r;
}

// The largest floating value of type T strictly below `high`.
template <typename T>
T largest_below(double high) {
  if constexpr (std::is_same_v<T, double>) {
    return std::nextafter(high, -std::numeric_limits<double>::infinity());
  } else if constexpr (std::is_same_v<T, float>) {
    auto f = static_cast<float>(high);
    while (static_cast<double>(f) >= high)
      f = std::nextafter(f, -std::numeric_limits<float>::infinity());
    return f;
  } else {
    T h(static_cast<float>(high));
    while (as_double(h) >= high) h = half_step_down(h);
    return h;
  }
}

template <typename T>
void fill_random(RandomKind kind, const PhiloxState& state, double a, double b, T* out, int64_t n) {
  const int64_t blocks = (n + 3) / 4;
  // Uniform samples of a floating dtype are kept below `high` after the cast (see the top).
  [[maybe_unused]] T uniform_max{};
  if constexpr (std::is_floating_point_v<T> || is_half_v<T>) {
    if (kind == RandomKind::uniform) uniform_max = largest_below<T>(b);
  }
  auto element = [&](double u_or_z) -> T {
    switch (kind) {
      case RandomKind::uniform: {
        T v = cast_to<T>(a + (b - a) * u_or_z);
        if constexpr (std::is_floating_point_v<T> || is_half_v<T>) {
          if (as_double(v) > as_double(uniform_max)) v = uniform_max;
        }
        return v;
      }
      case RandomKind::normal:
        return cast_to<T>(a + b * u_or_z);
      case RandomKind::bernoulli:
        return cast_to<T>(u_or_z < a ? 1.0 : 0.0);
      case RandomKind::randint:
        return cast_to<T>(std::min(a + std::floor(u_or_z * (b - a)), b - 1));
    }
    return T{};
  };
  const bool parallel = n >= cpu::kParallelGrain / 4 && !omp_in_parallel();
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t j = 0; j < blocks; ++j) {
    const PhiloxBlock blk = philox_block(state, static_cast<uint64_t>(j));
    double v[4];
    for (int w = 0; w < 4; ++w) v[w] = philox_uniform(blk.w[w]);
    if (kind == RandomKind::normal) {
      // Box-Muller on the word pairs (0, 1) and (2, 3).
      for (int p = 0; p < 4; p += 2) {
        const double r = std::sqrt(-2.0 * std::log(v[p]));
        const double t = 2.0 * std::numbers::pi * v[p + 1];
        v[p] = r * std::cos(t);
        v[p + 1] = r * std::sin(t);
      }
    }
    const int64_t first = 4 * j;
    const int count = static_cast<int>(std::min<int64_t>(4, n - first));
    for (int w = 0; w < count; ++w) out[first + w] = element(v[w]);
  }
}

}  // namespace

void CpuBackend::random(RandomKind kind, PhiloxState state, double a, double b, const Tensor& out) {
  const int64_t n = out.numel();
  if (n == 0) return;
  RW_DISPATCH_ALL(out.dtype(), "random", [&] {
    fill_random(kind, state, a, b, static_cast<scalar_t*>(out.data_ptr()), n);
  });
}

}  // namespace rw
