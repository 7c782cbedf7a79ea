// Binary elementwise kernels (arithmetic, comparisons, logical ops) and where. Formulas and
// NaN/signed-zero behaviour as the CPU backend's binary_arith / binary_compare: maximum and
// minimum propagate NaN, integer division by zero gives 0, integer arithmetic wraps.
#include "backends/cuda/elementwise_kernels.h"
#include "backends/cuda/elementwise_map.cuh"
#include "backends/cuda/elementwise_math.cuh"

namespace rw::cuda {
namespace {

using namespace elementwise;

// --- floating arithmetic (in the compute type A)
// ---------------------------------------------------
struct Add {
  template <typename A>
  __device__ A operator()(A x, A y) const {
    return x + y;
  }
};
struct Sub {
  template <typename A>
  __device__ A operator()(A x, A y) const {
    return x - y;
  }
};
struct Mul {
  template <typename A>
  __device__ A operator()(A x, A y) const {
    return x * y;
  }
};
struct Div {
  template <typename A>
  __device__ A operator()(A x, A y) const {
    return x / y;
  }
};
struct Maximum {  // a NaN in either operand propagates
  template <typename A>
  __device__ A operator()(A x, A y) const {
    return x > y || x != x ? x : y;
  }
};
struct Minimum {
  template <typename A>
  __device__ A operator()(A x, A y) const {
    return x < y || x != x ? x : y;
  }
};
struct Pow {  // x^2 is x * x (exact), as on the CPU
  template <typename A>
  __device__ A operator()(A x, A y) const {
    return y == A(2) ? x * x : math::pow(x, y);
  }
};

// --- integral arithmetic (in the type itself)
// ------------------------------------------------------
struct IntAdd {
  template <typename T>
  __device__ T operator()(T x, T y) const {
    return wrap_add(x, y);
  }
};
struct IntSub {
  template <typename T>
  __device__ T operator()(T x, T y) const {
    return wrap_sub(x, y);
  }
};
struct IntMul {
  template <typename T>
  __device__ T operator()(T x, T y) const {
    return wrap_mul(x, y);
  }
};
// The op layer promotes integer division to floating; this keeps the kernel total (x / 0 is 0).
struct IntDiv {
  template <typename T>
  __device__ T operator()(T x, T y) const {
    return y == T(0) ? T(0) : static_cast<T>(x / y);
  }
};
struct IntMaximum {
  template <typename T>
  __device__ T operator()(T x, T y) const {
    return std_max(x, y);
  }
};
struct IntMinimum {
  template <typename T>
  __device__ T operator()(T x, T y) const {
    return std_min(x, y);
  }
};
struct IntPow {  // a negative exponent truncates like C
  template <typename T>
  __device__ T operator()(T x, T y) const {
    return int_pow(x, static_cast<int64_t>(y));
  }
};

// --- comparisons and logical ops
// -------------------------------------------------------------------
struct Eq {
  template <typename A>
  __device__ bool operator()(A x, A y) const {
    return x == y;
  }
};
struct Ne {
  template <typename A>
  __device__ bool operator()(A x, A y) const {
    return x != y;
  }
};
struct Lt {
  template <typename A>
  __device__ bool operator()(A x, A y) const {
    return x < y;
  }
};
struct Le {
  template <typename A>
  __device__ bool operator()(A x, A y) const {
    return x <= y;
  }
};
struct Gt {
  template <typename A>
  __device__ bool operator()(A x, A y) const {
    return x > y;
  }
};
struct Ge {
  template <typename A>
  __device__ bool operator()(A x, A y) const {
    return x >= y;
  }
};
struct And {  // logical_and, and maximum/minimum's and on bool
  __device__ bool operator()(bool x, bool y) const { return x && y; }
};
struct Or {
  __device__ bool operator()(bool x, bool y) const { return x || y; }
};

template <typename T>
struct Select {
  __device__ T operator()(bool c, T a, T b) const { return c ? a : b; }
};

template <typename T>
void binary_floating(BinaryOp op, const TensorArg& a, const TensorArg& b, const TensorArg& out,
                     cudaStream_t stream) {
  auto run = [&](auto f) {
    launch_map<T>(stream, out, Computed2<T, decltype(f)>{f}, input<T>(a), input<T>(b));
  };
  switch (op) {
    case BinaryOp::add:
      return run(Add{});
    case BinaryOp::sub:
      return run(Sub{});
    case BinaryOp::mul:
      return run(Mul{});
    case BinaryOp::div:
      return run(Div{});
    case BinaryOp::maximum:
      return run(Maximum{});
    case BinaryOp::minimum:
      return run(Minimum{});
    case BinaryOp::pow:
      return run(Pow{});
    default:
      break;
  }
  unsupported_dtype("binary (op is not arithmetic)", out.dtype);
}

template <typename T>
void binary_integral(BinaryOp op, const TensorArg& a, const TensorArg& b, const TensorArg& out,
                     cudaStream_t stream) {
  auto run = [&](auto f) { launch_map<T>(stream, out, f, input<T>(a), input<T>(b)); };
  switch (op) {
    case BinaryOp::add:
      return run(IntAdd{});
    case BinaryOp::sub:
      return run(IntSub{});
    case BinaryOp::mul:
      return run(IntMul{});
    case BinaryOp::div:
      return run(IntDiv{});
    case BinaryOp::maximum:
      return run(IntMaximum{});
    case BinaryOp::minimum:
      return run(IntMinimum{});
    case BinaryOp::pow:
      return run(IntPow{});
    default:
      break;
  }
  unsupported_dtype("binary (op is not arithmetic)", out.dtype);
}

template <typename T>
void binary_compare(BinaryOp op, const TensorArg& a, const TensorArg& b, const TensorArg& out,
                    cudaStream_t stream) {
  auto run = [&](auto f) {
    launch_map<bool>(stream, out, Compared<T, decltype(f)>{f}, input<T>(a), input<T>(b));
  };
  switch (op) {
    case BinaryOp::eq:
      return run(Eq{});
    case BinaryOp::ne:
      return run(Ne{});
    case BinaryOp::lt:
      return run(Lt{});
    case BinaryOp::le:
      return run(Le{});
    case BinaryOp::gt:
      return run(Gt{});
    case BinaryOp::ge:
      return run(Ge{});
    default:
      break;
  }
  unsupported_dtype("binary (op is not a comparison)", a.dtype);
}

void binary_bool(BinaryOp op, const TensorArg& a, const TensorArg& b, const TensorArg& out,
                 cudaStream_t stream) {
  switch (op) {
    case BinaryOp::logical_and:
    case BinaryOp::minimum:
      return launch_map<bool>(stream, out, And{}, input<bool>(a), input<bool>(b));
    case BinaryOp::logical_or:
    case BinaryOp::maximum:
      return launch_map<bool>(stream, out, Or{}, input<bool>(a), input<bool>(b));
    default:
      break;
  }
  unsupported_dtype("binary (op not defined for bool)", out.dtype);
}

}  // namespace

void launch_binary(BinaryOp op, const TensorArg& a, const TensorArg& b, const TensorArg& out,
                   cudaStream_t stream) {
  if (out.numel == 0) return;
  if (op == BinaryOp::logical_and || op == BinaryOp::logical_or) {
    binary_bool(op, a, b, out, stream);
    return;
  }
  if (is_comparison(op)) {
    RW_CUDA_DISPATCH_ALL(a.dtype, T, binary_compare<T>(op, a, b, out, stream));
    return;
  }
  RW_CUDA_DISPATCH_ALL(out.dtype, T, {
    if constexpr (std::is_floating_point_v<acc_t<T>>) {
      binary_floating<T>(op, a, b, out, stream);
    } else if constexpr (!std::is_same_v<T, bool>) {
      binary_integral<T>(op, a, b, out, stream);
    } else {
      binary_bool(op, a, b, out, stream);
    }
  });
}

void launch_where(const TensorArg& cond, const TensorArg& a, const TensorArg& b,
                  const TensorArg& out, cudaStream_t stream) {
  if (out.numel == 0) return;
  RW_CUDA_DISPATCH_ALL(
      out.dtype, T,
      launch_map<T>(stream, out, Select<T>{}, input<bool>(cond), input<T>(a), input<T>(b)));
}

}  // namespace rw::cuda
