#pragma once
// Scalar math of the elementwise kernels, written to give the CPU backend's results
// (backends/cpu/cpu_elementwise.cpp):
//   - the same formulas, evaluated in the same order and in the same type (acc_t: f32 for
//     bf16/f16, the dtype itself otherwise);
//   - no fused multiply-add where the CPU has none: nvcc contracts a * b + c into one fma by
//     default, which rounds once instead of twice, so every product that feeds a sum goes
//     through mul_rn/add_rn/sub_rn (intrinsics that are never contracted). The CPU is built with
//     -std=c++20, under which GCC does not contract either;
//   - math functions are CUDA's correctly rounded sqrt and division and its libm (exp, log,
//     tanh, erf, pow, ...: within a few ulp of glibc's, so those agree to rounding, not bit for
//     bit).
// Included by .cu files only.
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "backends/cuda/kernel_utils.cuh"

namespace rw::cuda::elementwise {

// --- math functions, overloaded for the two compute types ----------------------------------------
namespace math {
#define RW_CUDA_MATH_1(name, float_fn, double_fn)                          \
  __device__ __forceinline__ float name(float v) { return ::float_fn(v); } \
  __device__ __forceinline__ double name(double v) { return ::double_fn(v); }
RW_CUDA_MATH_1(exp, expf, exp)
RW_CUDA_MATH_1(log, logf, log)
RW_CUDA_MATH_1(log1p, log1pf, log1p)
RW_CUDA_MATH_1(sqrt, sqrtf, sqrt)
RW_CUDA_MATH_1(sin, sinf, sin)
RW_CUDA_MATH_1(cos, cosf, cos)
RW_CUDA_MATH_1(tanh, tanhf, tanh)
RW_CUDA_MATH_1(erf, erff, erf)
RW_CUDA_MATH_1(fabs, fabsf, fabs)
#undef RW_CUDA_MATH_1
__device__ __forceinline__ float pow(float b, float e) { return ::powf(b, e); }
__device__ __forceinline__ double pow(double b, double e) { return ::pow(b, e); }
__device__ __forceinline__ bool isfinite(float v) { return ::isfinite(v); }
__device__ __forceinline__ bool isfinite(double v) { return ::isfinite(v); }

// Rounded products and sums that are never fused into an fma.
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ double sub_rn(double a, double b) { return __dsub_rn(a, b); }
}  // namespace math

// --- std::min / std::max, whose argument order decides NaN and signed-zero results ---------------
template <typename A>
__device__ __forceinline__ A std_max(A a, A b) {
  return (a < b) ? b : a;
}
template <typename A>
__device__ __forceinline__ A std_min(A a, A b) {
  return (b < a) ? b : a;
}

// --- gelu (the CPU's gelu_tanh_f, gelu_erf_f and their derivatives, term for term) ---------------
template <typename A>
__device__ __forceinline__ A gelu_tanh_inner(A x) {  // tanh(k * (x + c * x * x * x))
  const A k = static_cast<A>(0.7978845608028654);    // sqrt(2/pi)
  const A c = static_cast<A>(0.044715);
  return math::tanh(k * math::add_rn(x, math::mul_rn(c * x * x, x)));
}

template <typename A>
__device__ __forceinline__ A gelu_tanh_value(A x) {
  return A(0.5) * x * (A(1) + gelu_tanh_inner(x));
}

template <typename A>
__device__ __forceinline__ A gelu_erf_value(A x) {
  return A(0.5) * x * (A(1) + math::erf(x * static_cast<A>(0.7071067811865476)));
}

template <typename A>
__device__ __forceinline__ A gelu_tanh_derivative(A x) {
  using math::add_rn;
  using math::mul_rn;
  using math::sub_rn;
  const A k = static_cast<A>(0.7978845608028654);
  const A c = static_cast<A>(0.044715);
  const A t = gelu_tanh_inner(x);
  // 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * c * x * x)
  const A left = A(0.5) * (A(1) + t);
  const A right =
      A(0.5) * x * sub_rn(A(1), mul_rn(t, t)) * k * add_rn(A(1), mul_rn(A(3) * c * x, x));
  return add_rn(left, right);
}

template <typename A>
__device__ __forceinline__ A gelu_erf_derivative(A x) {
  const A cdf = A(0.5) * (A(1) + math::erf(x * static_cast<A>(0.7071067811865476)));
  const A pdf = math::exp(A(-0.5) * x * x) * static_cast<A>(0.3989422804014327);  // 1/sqrt(2pi)
  return math::add_rn(cdf, math::mul_rn(x, pdf));
}

// --- integers
// --------------------------------------------------------------------------------------

// Products that wrap like the CPU's (two's complement, via unsigned arithmetic: no signed
// overflow). Narrow types promote to int first, as in C.
template <typename T>
__device__ __forceinline__ T wrap_mul(T a, T b) {
  if constexpr (sizeof(T) >= sizeof(int)) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(a) * static_cast<U>(b));
  } else {
    return static_cast<T>(a * b);
  }
}
template <typename T>
__device__ __forceinline__ T wrap_add(T a, T b) {
  if constexpr (sizeof(T) >= sizeof(int)) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(a) + static_cast<U>(b));
  } else {
    return static_cast<T>(a + b);
  }
}
template <typename T>
__device__ __forceinline__ T wrap_sub(T a, T b) {
  if constexpr (sizeof(T) >= sizeof(int)) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(a) - static_cast<U>(b));
  } else {
    return static_cast<T>(a - b);
  }
}
template <typename T>
__device__ __forceinline__ T wrap_neg(T a) {
  return wrap_sub(T(0), a);
}

// base^e by repeated squaring; a negative exponent truncates 1/base^|e| like C (0^negative
// gives 0, like an integer division would not).
template <typename T>
__device__ __forceinline__ T int_pow(T base, int64_t e) {
  if (e < 0) {
    if constexpr (std::is_signed_v<T>) {
      if (base == T(-1)) return (e & 1) ? T(-1) : T(1);
    }
    return base == T(1) ? T(1) : T(0);
  }
  T result = 1;
  while (e > 0) {
    if (e & 1) result = wrap_mul(result, base);
    base = wrap_mul(base, base);
    e >>= 1;
  }
  return result;
}

// --- adapters from storage types to compute types
// --------------------------------------------------

// T(op(A(v))): a floating unary op computed in acc_t<T>.
template <typename T, typename Op>
struct Computed1 {
  Op op;
  __device__ __forceinline__ T operator()(T v) const {
    return convert<T>(op(convert<acc_t<T>>(v)));
  }
};

// T(op(A(a), A(b))).
template <typename T, typename Op>
struct Computed2 {
  Op op;
  __device__ __forceinline__ T operator()(T a, T b) const {
    return convert<T>(op(convert<acc_t<T>>(a), convert<acc_t<T>>(b)));
  }
};

// bool(op(A(a), A(b))): comparisons, in the compute type like the CPU's.
template <typename T, typename Op>
struct Compared {
  Op op;
  __device__ __forceinline__ bool operator()(T a, T b) const {
    return op(convert<acc_t<T>>(a), convert<acc_t<T>>(b));
  }
};

}  // namespace rw::cuda::elementwise
