#pragma once
// The op enums of the Backend interface (backend.h), in a header of their own that includes no
// tensor or fmt code, so CUDA kernels compiled by nvcc can switch on them too.
#include <cstdint>

namespace rw {

enum class UnaryOp : uint8_t {
  neg,
  abs,
  sign,
  exp,
  log,
  log1p,
  sqrt,
  rsqrt,
  square,
  reciprocal,
  sin,
  cos,
  tanh,
  sigmoid,
  relu,
  gelu_tanh,
  gelu_erf,
  erf,
  pow_scalar,   // x^p, p = params.a
  clamp,        // clamp(x, params.a, params.b); use +-inf for a missing bound
  logical_not,  // output bool
  isfinite,     // output bool
};
// The unary ops whose derivative a backend computes from y = op(x) alone: for these the op layer
// saves y for unary_backward, for every other op x (backend.h).
constexpr bool unary_backward_uses_output(UnaryOp op) {
  switch (op) {
    case UnaryOp::exp:
    case UnaryOp::sqrt:
    case UnaryOp::rsqrt:
    case UnaryOp::reciprocal:
    case UnaryOp::tanh:
    case UnaryOp::sigmoid:
      return true;
    default:
      return false;
  }
}

// The unary ops that exist only for floating dtypes; the others also have integer kernels
// (logical_not and isfinite take bool and any dtype respectively).
constexpr bool unary_is_float_only(UnaryOp op) {
  switch (op) {
    case UnaryOp::neg:
    case UnaryOp::abs:
    case UnaryOp::sign:
    case UnaryOp::square:
    case UnaryOp::relu:
    case UnaryOp::pow_scalar:
    case UnaryOp::clamp:
    case UnaryOp::logical_not:
    case UnaryOp::isfinite:
      return false;
    default:
      return true;
  }
}

struct UnaryParams {
  double a = 0;
  double b = 0;
};

enum class BinaryOp : uint8_t {
  add,
  sub,
  mul,
  div,
  maximum,
  minimum,
  pow,
  eq,
  ne,
  lt,
  le,
  gt,
  ge,  // output bool
  logical_and,
  logical_or,  // bool inputs and output
};
bool is_comparison(BinaryOp op);

// Reductions: `out` has x's rank with each reduced dim of extent 1 (keepdim layout); the reduced
// dims are those where out's extent is 1 and x's is not (or both are 1: no-op).
enum class ReduceOp : uint8_t { sum, mean, max, min, prod, logsumexp };
enum class ArgReduceOp : uint8_t { argmax, argmin };  // first index of the extreme; out is i64

enum class SoftmaxKind : uint8_t { softmax, log_softmax };
enum class RandomKind : uint8_t {
  uniform,    // U[a, b)
  normal,     // N(mean a, std b), Box-Muller
  bernoulli,  // 1 with probability a, else 0
  randint,    // integers in [a, b)
};

}  // namespace rw
