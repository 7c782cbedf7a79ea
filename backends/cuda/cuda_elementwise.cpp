// Host side of the CUDA elementwise kernels (unary, unary_backward, binary, where): checks that the
// dtype combination is one the kernels define (with the CPU backend's errors), turns Tensors into
// TensorArgs and launches on the device's stream. The kernels are in elementwise_*.cu.
#include <string>

#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_context.h"
#include "backends/cuda/elementwise_kernels.h"
#include "core/error.h"

namespace rw::cuda {
namespace {

const char* unary_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::neg:
      return "neg";
    case UnaryOp::abs:
      return "abs";
    case UnaryOp::sign:
      return "sign";
    case UnaryOp::exp:
      return "exp";
    case UnaryOp::log:
      return "log";
    case UnaryOp::log1p:
      return "log1p";
    case UnaryOp::sqrt:
      return "sqrt";
    case UnaryOp::rsqrt:
      return "rsqrt";
    case UnaryOp::square:
      return "square";
    case UnaryOp::reciprocal:
      return "reciprocal";
    case UnaryOp::sin:
      return "sin";
    case UnaryOp::cos:
      return "cos";
    case UnaryOp::tanh:
      return "tanh";
    case UnaryOp::sigmoid:
      return "sigmoid";
    case UnaryOp::relu:
      return "relu";
    case UnaryOp::gelu_tanh:
      return "gelu_tanh";
    case UnaryOp::gelu_erf:
      return "gelu_erf";
    case UnaryOp::erf:
      return "erf";
    case UnaryOp::pow_scalar:
      return "pow_scalar";
    case UnaryOp::clamp:
      return "clamp";
    case UnaryOp::logical_not:
      return "logical_not";
    case UnaryOp::isfinite:
      return "isfinite";
  }
  return "unknown unary op";
}

const char* binary_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::add:
      return "add";
    case BinaryOp::sub:
      return "sub";
    case BinaryOp::mul:
      return "mul";
    case BinaryOp::div:
      return "div";
    case BinaryOp::maximum:
      return "maximum";
    case BinaryOp::minimum:
      return "minimum";
    case BinaryOp::pow:
      return "pow";
    case BinaryOp::eq:
      return "eq";
    case BinaryOp::ne:
      return "ne";
    case BinaryOp::lt:
      return "lt";
    case BinaryOp::le:
      return "le";
    case BinaryOp::gt:
      return "gt";
    case BinaryOp::ge:
      return "ge";
    case BinaryOp::logical_and:
      return "logical_and";
    case BinaryOp::logical_or:
      return "logical_or";
  }
  return "unknown binary op";
}

void check_same_dtype(const char* what, const char* op, const Tensor& t, DType want) {
  RW_CHECK(t.dtype() == want, "cuda {} {}: operand of dtype {} where {} is expected", what, op,
           t.dtype(), want);
}

}  // namespace

void CudaBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out, UnaryParams params) {
  if (out.numel() == 0) return;
  const char* name = unary_name(op);
  if (op == UnaryOp::logical_not) {
    check_same_dtype("unary", name, x, DType::boolean);
    check_same_dtype("unary", name, out, DType::boolean);
  } else if (op == UnaryOp::isfinite) {
    check_same_dtype("unary", name, out, DType::boolean);
  } else {
    const DType dt = out.dtype();
    RW_CHECK(dt != DType::boolean, "cuda unary: op {} is not defined for bool", name);
    RW_CHECK(is_floating(dt) || !unary_is_float_only(op),
             "cuda unary: op {} needs a floating dtype, got {}", name, dt);
    check_same_dtype("unary", name, x, dt);
  }
  DeviceGuard guard(device_);
  launch_unary(op, arg(x, name), arg(out, name), params, stream(device_));
}

void CudaBackend::unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& dy,
                                 const Tensor& dx, UnaryParams params) {
  if (dx.numel() == 0) return;
  const char* name = unary_name(op);
  RW_CHECK(is_floating(dx.dtype()), "cuda unary_backward: needs a floating dtype, got {}",
           dx.dtype());
  RW_CHECK(op != UnaryOp::logical_not && op != UnaryOp::isfinite,
           "cuda unary_backward: op {} has no derivative", name);
  // What the derivative reads; the op layer saves exactly that (backend.h).
  Tensor saved;
  if (unary_backward_uses_output(op)) {
    RW_CHECK(y.defined(),
             "cuda unary_backward: op {} computes its derivative from y = {}(x), "
             "which was not given",
             name, name);
    saved = y;
  } else if (op == UnaryOp::neg || op == UnaryOp::sign) {
    saved = dy;  // not read
  } else {
    RW_CHECK(x.defined(),
             "cuda unary_backward: op {} computes its derivative from x, which was "
             "not given",
             name);
    saved = x;
  }
  check_same_dtype("unary_backward", name, saved, dx.dtype());
  check_same_dtype("unary_backward", name, dy, dx.dtype());
  DeviceGuard guard(device_);
  launch_unary_backward(op, arg(saved, name), arg(dy, name), arg(dx, name), params,
                        stream(device_));
}

void CudaBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  if (out.numel() == 0) return;
  const char* name = binary_name(op);
  check_same_dtype("binary", name, b, a.dtype());
  if (op == BinaryOp::logical_and || op == BinaryOp::logical_or) {
    check_same_dtype("binary", name, a, DType::boolean);
    check_same_dtype("binary", name, out, DType::boolean);
  } else if (is_comparison(op)) {
    check_same_dtype("binary", name, out, DType::boolean);
  } else {
    check_same_dtype("binary", name, a, out.dtype());
    RW_CHECK(out.dtype() != DType::boolean || op == BinaryOp::maximum || op == BinaryOp::minimum,
             "cuda binary: op {} is not defined for bool", name);
  }
  DeviceGuard guard(device_);
  launch_binary(op, arg(a, name), arg(b, name), arg(out, name), stream(device_));
}

void CudaBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  if (out.numel() == 0) return;
  check_same_dtype("where", "cond", cond, DType::boolean);
  check_same_dtype("where", "a", a, out.dtype());
  check_same_dtype("where", "b", b, out.dtype());
  DeviceGuard guard(device_);
  launch_where(arg(cond, "where"), arg(a, "where"), arg(b, "where"), arg(out, "where"),
               stream(device_));
}

}  // namespace rw::cuda
