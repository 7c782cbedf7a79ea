// Derivatives of the unary ops: dx = f(saved, dy), where saved is y = op(x) for exp, sqrt, rsqrt,
// reciprocal, tanh and sigmoid and x for the others (see elementwise_kernels.h). Formulas as the
// CPU backend's unary_backward_floating, in the same order (elementwise_math.cuh).
#include "backends/cuda/elementwise_kernels.h"
#include "backends/cuda/elementwise_map.cuh"
#include "backends/cuda/elementwise_math.cuh"

namespace rw::cuda {
namespace {

using namespace elementwise;

// Each functor maps (saved value s, incoming gradient g) in the compute type A to dx.
struct NegGrad {
  template <typename A>
  __device__ A operator()(A, A g) const {
    return -g;
  }
};
struct AbsGrad {  // x
  template <typename A>
  __device__ A operator()(A v, A g) const {
    return v > A(0) ? g : (v < A(0) ? -g : A(0));
  }
};
struct ZeroGrad {  // sign, pow_scalar with exponent 0 (not 0 * inf at x = 0)
  template <typename A>
  __device__ A operator()(A, A) const {
    return A(0);
  }
};
struct PassGrad {  // pow_scalar with exponent 1
  template <typename A>
  __device__ A operator()(A, A g) const {
    return g;
  }
};
struct ExpGrad {  // y
  template <typename A>
  __device__ A operator()(A r, A g) const {
    return g * r;
  }
};
struct LogGrad {  // x
  template <typename A>
  __device__ A operator()(A v, A g) const {
    return g / v;
  }
};
struct Log1pGrad {  // x
  template <typename A>
  __device__ A operator()(A v, A g) const {
    return g / (A(1) + v);
  }
};
struct SqrtGrad {  // y
  template <typename A>
  __device__ A operator()(A r, A g) const {
    return g * A(0.5) / r;
  }
};
struct RsqrtGrad {  // y
  template <typename A>
  __device__ A operator()(A r, A g) const {
    return g * A(-0.5) * r * r * r;
  }
};
struct SquareGrad {  // x (also pow_scalar with exponent 2)
  template <typename A>
  __device__ A operator()(A v, A g) const {
    return g * A(2) * v;
  }
};
struct ReciprocalGrad {  // y
  template <typename A>
  __device__ A operator()(A r, A g) const {
    return -g * r * r;
  }
};
struct SinGrad {  // x
  template <typename A>
  __device__ A operator()(A v, A g) const {
    return g * math::cos(v);
  }
};
struct CosGrad {  // x
  template <typename A>
  __device__ A operator()(A v, A g) const {
    return -g * math::sin(v);
  }
};
struct TanhGrad {  // y: g * (1 - r * r)
  template <typename A>
  __device__ A operator()(A r, A g) const {
    return g * math::sub_rn(A(1), math::mul_rn(r, r));
  }
};
struct SigmoidGrad {  // y
  template <typename A>
  __device__ A operator()(A r, A g) const {
    return g * r * (A(1) - r);
  }
};
struct ReluGrad {  // x
  template <typename A>
  __device__ A operator()(A v, A g) const {
    return v > A(0) ? g : A(0);
  }
};
struct GeluTanhGrad {  // x
  template <typename A>
  __device__ A operator()(A v, A g) const {
    return g * gelu_tanh_derivative(v);
  }
};
struct GeluErfGrad {  // x
  template <typename A>
  __device__ A operator()(A v, A g) const {
    return g * gelu_erf_derivative(v);
  }
};
struct ErfGrad {  // x: g * 2/sqrt(pi) * exp(-x^2)
  template <typename A>
  __device__ A operator()(A v, A g) const {
    return g * static_cast<A>(1.1283791670955126) * math::exp(-v * v);
  }
};
template <typename A>
struct PowScalarGrad {  // x: g * e * x^(e - 1)
  A e;
  __device__ A operator()(A v, A g) const { return g * e * math::pow(v, e - A(1)); }
};
template <typename A>
struct ClampGrad {  // x: the gradient passes where lo <= x <= hi (as PyTorch)
  A lo, hi;
  __device__ A operator()(A v, A g) const { return v >= lo && v <= hi ? g : A(0); }
};

template <typename T>
void unary_backward_floating(UnaryOp op, const TensorArg& saved, const TensorArg& dy,
                             const TensorArg& dx, UnaryParams p, cudaStream_t stream) {
  using A = acc_t<T>;
  auto run = [&](auto f) {
    launch_map<T>(stream, dx, Computed2<T, decltype(f)>{f}, input<T>(saved), input<T>(dy));
  };
  switch (op) {
    case UnaryOp::neg:
      return run(NegGrad{});
    case UnaryOp::abs:
      return run(AbsGrad{});
    case UnaryOp::sign:
      return run(ZeroGrad{});
    case UnaryOp::exp:
      return run(ExpGrad{});
    case UnaryOp::log:
      return run(LogGrad{});
    case UnaryOp::log1p:
      return run(Log1pGrad{});
    case UnaryOp::sqrt:
      return run(SqrtGrad{});
    case UnaryOp::rsqrt:
      return run(RsqrtGrad{});
    case UnaryOp::square:
      return run(SquareGrad{});
    case UnaryOp::reciprocal:
      return run(ReciprocalGrad{});
    case UnaryOp::sin:
      return run(SinGrad{});
    case UnaryOp::cos:
      return run(CosGrad{});
    case UnaryOp::tanh:
      return run(TanhGrad{});
    case UnaryOp::sigmoid:
      return run(SigmoidGrad{});
    case UnaryOp::relu:
      return run(ReluGrad{});
    case UnaryOp::gelu_tanh:
      return run(GeluTanhGrad{});
    case UnaryOp::gelu_erf:
      return run(GeluErfGrad{});
    case UnaryOp::erf:
      return run(ErfGrad{});
    case UnaryOp::pow_scalar:
      if (p.a == 0) return run(ZeroGrad{});
      if (p.a == 1) return run(PassGrad{});
      if (p.a == 2) return run(SquareGrad{});
      return run(PowScalarGrad<A>{static_cast<A>(p.a)});
    case UnaryOp::clamp:
      return run(ClampGrad<A>{static_cast<A>(p.a), static_cast<A>(p.b)});
    case UnaryOp::logical_not:
    case UnaryOp::isfinite:
      break;
  }
  unsupported_dtype("unary_backward (op has no derivative)", dx.dtype);
}

}  // namespace

void launch_unary_backward(UnaryOp op, const TensorArg& saved, const TensorArg& dy,
                           const TensorArg& dx, UnaryParams params, cudaStream_t stream) {
  if (dx.numel == 0) return;
  RW_CUDA_DISPATCH_FLOATING(dx.dtype, T,
                            unary_backward_floating<T>(op, saved, dy, dx, params, stream));
}

}  // namespace rw::cuda
