// Unary elementwise kernels: out = op(x). One functor per op (on the compute type A), mapped by
// the loops of elementwise_map.cuh; formulas and NaN/signed-zero behaviour as the CPU backend's
// unary_floating / unary_integral.
#include <limits>

#include "backends/cuda/elementwise_kernels.h"
#include "backends/cuda/elementwise_map.cuh"
#include "backends/cuda/elementwise_math.cuh"

namespace rw::cuda {
namespace {

using namespace elementwise;

// --- floating ops
// ------------------------------------------------------------------------------------
struct Neg {
  template <typename A>
  __device__ A operator()(A v) const {
    return -v;
  }
};
struct Abs {
  template <typename A>
  __device__ A operator()(A v) const {
    return math::fabs(v);
  }
};
struct Sign {  // NaN stays NaN, -0 stays -0
  template <typename A>
  __device__ A operator()(A v) const {
    return v > A(0) ? A(1) : (v < A(0) ? A(-1) : v);
  }
};
struct Exp {
  template <typename A>
  __device__ A operator()(A v) const {
    return math::exp(v);
  }
};
struct Log {
  template <typename A>
  __device__ A operator()(A v) const {
    return math::log(v);
  }
};
struct Log1p {
  template <typename A>
  __device__ A operator()(A v) const {
    return math::log1p(v);
  }
};
struct Sqrt {
  template <typename A>
  __device__ A operator()(A v) const {
    return math::sqrt(v);
  }
};
struct Rsqrt {  // 1 / sqrt, both correctly rounded (not the approximate rsqrt instruction)
  template <typename A>
  __device__ A operator()(A v) const {
    return A(1) / math::sqrt(v);
  }
};
struct Square {
  template <typename A>
  __device__ A operator()(A v) const {
    return v * v;
  }
};
struct Identity {
  template <typename A>
  __device__ A operator()(A v) const {
    return v;
  }
};
struct Reciprocal {
  template <typename A>
  __device__ A operator()(A v) const {
    return A(1) / v;
  }
};
struct Sin {
  template <typename A>
  __device__ A operator()(A v) const {
    return math::sin(v);
  }
};
struct Cos {
  template <typename A>
  __device__ A operator()(A v) const {
    return math::cos(v);
  }
};
struct Tanh {
  template <typename A>
  __device__ A operator()(A v) const {
    return math::tanh(v);
  }
};
struct Sigmoid {
  template <typename A>
  __device__ A operator()(A v) const {
    return A(1) / (A(1) + math::exp(-v));
  }
};
struct Relu {  // std::max(v, 0): NaN stays NaN, -0 stays -0
  template <typename A>
  __device__ A operator()(A v) const {
    return std_max(v, A(0));
  }
};
struct GeluTanh {
  template <typename A>
  __device__ A operator()(A v) const {
    return gelu_tanh_value(v);
  }
};
struct GeluErf {
  template <typename A>
  __device__ A operator()(A v) const {
    return gelu_erf_value(v);
  }
};
struct Erf {
  template <typename A>
  __device__ A operator()(A v) const {
    return math::erf(v);
  }
};
template <typename A>
struct PowScalar {
  A e;
  __device__ A operator()(A v) const { return math::pow(v, e); }
};
template <typename A>
struct Clamp {  // std::min(std::max(v, lo), hi): NaN stays NaN; +-inf bounds are no bound
  A lo, hi;
  __device__ A operator()(A v) const { return std_min(std_max(v, lo), hi); }
};

template <typename T>
void unary_floating(UnaryOp op, const TensorArg& x, const TensorArg& out, UnaryParams p,
                    cudaStream_t stream) {
  using A = acc_t<T>;
  auto run = [&](auto f) { launch_map<T>(stream, out, Computed1<T, decltype(f)>{f}, input<T>(x)); };
  switch (op) {
    case UnaryOp::neg:
      return run(Neg{});
    case UnaryOp::abs:
      return run(Abs{});
    case UnaryOp::sign:
      return run(Sign{});
    case UnaryOp::exp:
      return run(Exp{});
    case UnaryOp::log:
      return run(Log{});
    case UnaryOp::log1p:
      return run(Log1p{});
    case UnaryOp::sqrt:
      return run(Sqrt{});
    case UnaryOp::rsqrt:
      return run(Rsqrt{});
    case UnaryOp::square:
      return run(Square{});
    case UnaryOp::reciprocal:
      return run(Reciprocal{});
    case UnaryOp::sin:
      return run(Sin{});
    case UnaryOp::cos:
      return run(Cos{});
    case UnaryOp::tanh:
      return run(Tanh{});
    case UnaryOp::sigmoid:
      return run(Sigmoid{});
    case UnaryOp::relu:
      return run(Relu{});
    case UnaryOp::gelu_tanh:
      return run(GeluTanh{});
    case UnaryOp::gelu_erf:
      return run(GeluErf{});
    case UnaryOp::erf:
      return run(Erf{});
    case UnaryOp::pow_scalar:
      // The CPU's special cases: x^2 is x * x (exact), x^1 is x.
      if (p.a == 2) return run(Square{});
      if (p.a == 1) return run(Identity{});
      return run(PowScalar<A>{static_cast<A>(p.a)});
    case UnaryOp::clamp:
      return run(Clamp<A>{static_cast<A>(p.a), static_cast<A>(p.b)});
    case UnaryOp::logical_not:
    case UnaryOp::isfinite:
      break;
  }
  unsupported_dtype("unary (op not defined for this dtype)", out.dtype);
}

// --- integral ops (i32, i64, u8): computed in the type itself, wrapping
// ----------------------------
struct IntNeg {
  template <typename T>
  __device__ T operator()(T v) const {
    return wrap_neg(v);
  }
};
struct IntAbs {
  template <typename T>
  __device__ T operator()(T v) const {
    if constexpr (std::is_signed_v<T>) return v < 0 ? wrap_neg(v) : v;
    return v;
  }
};
struct IntSign {
  template <typename T>
  __device__ T operator()(T v) const {
    if constexpr (std::is_signed_v<T>) return static_cast<T>((T(0) < v) - (v < T(0)));
    return static_cast<T>(v > T(0));
  }
};
struct IntSquare {
  template <typename T>
  __device__ T operator()(T v) const {
    return wrap_mul(v, v);
  }
};
struct IntRelu {
  template <typename T>
  __device__ T operator()(T v) const {
    return v > T(0) ? v : T(0);
  }
};
template <typename T>
struct IntPow {
  int64_t e;
  __device__ T operator()(T v) const { return int_pow(v, e); }
};
template <typename T>
struct IntClamp {
  T lo, hi;
  __device__ T operator()(T v) const { return std_min(std_max(v, lo), hi); }
};

// An integer bound from a double one (+-inf for none), saturated to T's range like the CPU's.
template <typename T>
T int_bound(double v) {
  if (v <= static_cast<double>(std::numeric_limits<T>::lowest())) {
    return std::numeric_limits<T>::lowest();
  }
  if (v >= static_cast<double>(std::numeric_limits<T>::max())) return std::numeric_limits<T>::max();
  return static_cast<T>(v);
}

template <typename T>
void unary_integral(UnaryOp op, const TensorArg& x, const TensorArg& out, UnaryParams p,
                    cudaStream_t stream) {
  auto run = [&](auto f) { launch_map<T>(stream, out, f, input<T>(x)); };
  switch (op) {
    case UnaryOp::neg:
      return run(IntNeg{});
    case UnaryOp::abs:
      return run(IntAbs{});
    case UnaryOp::sign:
      return run(IntSign{});
    case UnaryOp::square:
      return run(IntSquare{});
    case UnaryOp::relu:
      return run(IntRelu{});
    case UnaryOp::pow_scalar:
      return run(IntPow<T>{static_cast<int64_t>(p.a)});
    case UnaryOp::clamp:
      return run(IntClamp<T>{int_bound<T>(p.a), int_bound<T>(p.b)});
    default:
      break;
  }
  unsupported_dtype("unary (op needs a floating dtype)", out.dtype);
}

// --- bool results --------------------------------------------------------------------------------
struct LogicalNot {
  __device__ bool operator()(bool v) const { return !v; }
};
template <typename T>
struct IsFinite {
  __device__ bool operator()(T v) const {
    if constexpr (std::is_floating_point_v<acc_t<T>>) {
      return math::isfinite(convert<acc_t<T>>(v));
    } else {
      return true;
    }
  }
};

}  // namespace

void launch_unary(UnaryOp op, const TensorArg& x, const TensorArg& out, UnaryParams params,
                  cudaStream_t stream) {
  if (out.numel == 0) return;
  if (op == UnaryOp::logical_not) {
    elementwise::launch_map<bool>(stream, out, LogicalNot{}, elementwise::input<bool>(x));
    return;
  }
  if (op == UnaryOp::isfinite) {
    RW_CUDA_DISPATCH_ALL(
        x.dtype, T,
        elementwise::launch_map<bool>(stream, out, IsFinite<T>{}, elementwise::input<T>(x)));
    return;
  }
  RW_CUDA_DISPATCH_ALL(out.dtype, T, {
    if constexpr (std::is_floating_point_v<acc_t<T>>) {
      unary_floating<T>(op, x, out, params, stream);
    } else if constexpr (!std::is_same_v<T, bool>) {
      unary_integral<T>(op, x, out, params, stream);
    } else {
      unsupported_dtype("unary (op not defined for bool)", out.dtype);
    }
  });
}

}  // namespace rw::cuda
