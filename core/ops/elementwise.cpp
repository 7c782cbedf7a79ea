// Elementwise ops: validation, broadcasting, type promotion, backend calls and backward rules.
//
// Dtype rules (PyTorch-like, kept small):
// - arithmetic (add, sub, mul, div, pow, neg, abs, ...) rejects a bool result: bool + bool is an
//   error, while a bool mask times a float tensor promotes to the float dtype;
// - div is true division: integral / integral gives f32;
// - unary math (exp, log, tanh, ...) on an integral tensor gives f32;
// - a scalar does not promote a floating tensor (x_f32 * 2.0 stays f32); an integral tensor with a
//   non-integer scalar gives f32 (detail::scalar_result_dtype);
// - comparisons compare in the promoted dtype and return bool; logical ops take bool only.
//
// Forward kernels run on detached operands, so the conversions and broadcast views made here
// record nothing: only the op's own node goes on the tape.
#include "core/ops/elementwise.h"

#include <cmath>
#include <limits>

#include "autograd/tape.h"
#include "core/ops/op_utils.h"
#include "core/ops/reduce.h"

namespace rw {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// x cut from autograd, converted to dtype and broadcast to shape: what a kernel reads.
Tensor operand(const Tensor& x, DType dtype, const Shape& shape) {
  Tensor t = x.detach();
  if (t.dtype() != dtype) t = t.to(dtype);
  return t.expand(shape);
}

// A scalar as a broadcast 0-dim tensor of `dtype`.
Tensor scalar_operand(double value, DType dtype, Device device, const Shape& shape) {
  return full({}, value, {.dtype = dtype, .device = device}).expand(shape);
}

bool is_integer_value(double v) { return std::isfinite(v) && std::nearbyint(v) == v; }

// What a backward rule needs to know about an input without keeping its data.
struct InputInfo {
  Shape shape;
  DType dtype;
  bool needs;
  explicit InputInfo(const Tensor& t)
      : shape(t.shape()), dtype(t.dtype()), needs(t.requires_grad()) {}
};

// A gradient reduced to an input's shape and cast to its dtype; undefined if it needs none.
Tensor grad_for(const Tensor& g, const InputInfo& in) {
  if (!in.needs) return Tensor();
  Tensor r = g.shape() == in.shape ? g : sum_to(g, in.shape);
  return r.dtype() == in.dtype ? r : r.to(in.dtype);
}

void check_pair(const char* op, const Tensor& a, const Tensor& b) {
  detail::check_defined(op, a, "a");
  detail::check_defined(op, b, "b");
  detail::check_same_device(op, a, b);
}

void check_not_bool(const char* op, DType dtype, const Tensor& a, const Tensor* b = nullptr) {
  if (dtype != DType::boolean) return;
  if (b != nullptr) {
    throw Error(fmt::format(
        "{}: arithmetic on bool tensors is not supported (shapes {} and {}); convert with "
        ".to(dtype) first, or use logical_and / logical_or",
        op, a.shape(), b->shape()));
  }
  throw Error(fmt::format(
      "{}: arithmetic on a bool tensor is not supported (shape {}); convert with .to(dtype) first",
      op, a.shape()));
}

struct BinarySetup {
  Shape shape;
  DType dtype;  // the promoted (compute) dtype
};

BinarySetup setup_binary(const char* op, const Tensor& a, const Tensor& b) {
  check_pair(op, a, b);
  return {broadcast_shapes(op, a.shape(), b.shape()), promote_types(a.dtype(), b.dtype())};
}

// out = op(a, b) computed in `compute`, written as `out_dtype`.
Tensor run_binary(BinaryOp op, const Tensor& a, const Tensor& b, DType compute, DType out_dtype,
                  const Shape& shape) {
  Tensor out = empty(shape, {.dtype = out_dtype, .device = a.device()});
  if (out.numel() > 0) {
    detail::backend_of(a).binary(op, operand(a, compute, shape), operand(b, compute, shape), out);
  }
  return out;
}

// out = op(x, s) (or op(s, x) when `reversed`) with s a scalar, computed in `dtype`.
Tensor run_scalar(BinaryOp op, const Tensor& x, double s, DType dtype, DType out_dtype,
                  bool reversed = false) {
  const Shape& shape = x.shape();
  Tensor out = empty(shape, {.dtype = out_dtype, .device = x.device()});
  if (out.numel() > 0) {
    Tensor xo = operand(x, dtype, shape);
    Tensor so = scalar_operand(s, dtype, x.device(), shape);
    detail::backend_of(x).binary(op, reversed ? so : xo, reversed ? xo : so, out);
  }
  return out;
}

// Weight of `a` in the gradient of maximum/minimum: 1 where a wins, 0.5 on ties, 0 elsewhere.
Tensor winner_weight(const Tensor& wins, const Tensor& ties, DType dtype) {
  return add(wins.to(dtype), mul(ties.to(dtype), 0.5));
}

// --- unary ---------------------------------------------------------------------------------------

enum class UnaryKind {
  math,        // floating result; an integral input gives f32
  arithmetic,  // keeps an integral dtype; bool is rejected
};

// out = op(x) in `dtype`, with the backward through Backend::unary_backward.
Tensor run_unary(const char* name, UnaryOp op, const Tensor& x, DType dtype, UnaryParams params) {
  Tensor out = empty(x.shape(), {.dtype = dtype, .device = x.device()});
  if (out.numel() > 0) detail::backend_of(x).unary(op, operand(x, dtype, x.shape()), out, params);
  if (needs_grad({&x}) && is_floating(dtype)) {
    bool from_output = unary_backward_uses_output(op);
    // Save only what the derivative reads: the input, or the output for exp/tanh/...
    SavedTensor saved = from_output ? SavedTensor(out) : SavedTensor(x);
    record(name, {x}, out,
           [name, op, params, from_output, saved, in = InputInfo(x),
            dtype](std::span<const Tensor> g) -> std::vector<Tensor> {
             const Tensor& s = saved.get(name);
             Tensor sv = s.dtype() == dtype ? s.contiguous() : s.to(dtype).contiguous();
             Tensor dy = g[0].dtype() == dtype ? g[0].contiguous() : g[0].to(dtype).contiguous();
             Tensor dx = empty(dy.shape(), {.dtype = dtype, .device = dy.device()});
             if (dx.numel() > 0) {
               detail::backend_of(dy).unary_backward(op, from_output ? Tensor() : sv,
                                                     from_output ? sv : Tensor(), dy, dx, params);
             }
             return {grad_for(dx, in)};
           });
  }
  return out;
}

Tensor unary_op(const char* name, UnaryOp op, UnaryKind kind, const Tensor& x,
                UnaryParams params = {}) {
  detail::check_defined(name, x, "x");
  DType dtype = x.dtype();
  if (kind == UnaryKind::math) {
    if (!is_floating(dtype)) dtype = DType::f32;
  } else {
    check_not_bool(name, dtype, x);
  }
  return run_unary(name, op, x, dtype, params);
}

// --- in place ------------------------------------------------------------------------------------

// Shared checks of every in-place op: self is writable, and no gradient is silently lost.
void check_inplace_target(const char* op, const Tensor& self) {
  detail::check_defined(op, self, "self");
  detail::check_inplace(op, self);
  for (int64_t d = 0; d < self.dim(); ++d) {
    RW_CHECK(self.strides()[d] != 0 || self.shape()[d] <= 1,
             "{}: self (shape {}, strides {}) is a broadcast view whose elements share memory; "
             "write into a contiguous tensor instead",
             op, self.shape(), self.strides());
  }
}

void check_inplace_other(const char* op, const Tensor& self, const Tensor& other) {
  detail::check_defined(op, other, "other");
  detail::check_same_device(op, self, other);
  RW_CHECK(!(grad_mode_enabled() && other.requires_grad()),
           "{}: an in-place op is not recorded for autograd, so the gradient of `other` (shape {}) "
           "would be lost; run it under rw::NoGradGuard or use the out-of-place op",
           op, other.shape());
  Shape shape = broadcast_shapes(op, self.shape(), other.shape());
  RW_CHECK(shape == self.shape(),
           "{}: other of shape {} does not broadcast to self's shape {} (the result would have "
           "shape {})",
           op, other.shape(), self.shape(), shape);
}

// The in-place result keeps self's dtype: refuse results that self cannot hold.
void check_inplace_dtype(const char* op, const Tensor& self, DType result) {
  check_not_bool(op, self.dtype(), self);
  RW_CHECK(is_floating(self.dtype()) || !is_floating(result),
           "{}: the result has dtype {}, which cannot be written into self of dtype {}", op, result,
           self.dtype());
}

// other (a same-device tensor) as a kernel operand for writing into self: converted to self's
// dtype, broadcast, and copied when it shares memory with self in a different layout.
Tensor inplace_operand(const Tensor& self, const Tensor& other) {
  Tensor o = operand(other, self.dtype(), self.shape());
  bool same_layout = o.offset() == self.offset() && o.strides() == self.strides();
  if (o.storage() == self.storage() && !same_layout) o = o.clone();
  return o;
}

// Writes `compute(target)` into self, directly when self is contiguous (elementwise kernels may
// write over the operand they read), else through a temporary; then bumps the version.
template <typename F>
void write_inplace(const Tensor& self, F compute) {
  if (self.numel() > 0) {
    Tensor s = self.detach();
    if (s.is_contiguous()) {
      compute(s, s);
    } else {
      Tensor tmp = empty(s.shape(), options_of(s));
      compute(s, tmp);
      detail::backend_of(s).copy(tmp, s);
    }
  }
  self.storage()->bump_version();
}

const Tensor& binary_inplace(const char* op, BinaryOp bop, const Tensor& self,
                             const Tensor& other) {
  check_inplace_target(op, self);
  check_inplace_other(op, self, other);
  check_inplace_dtype(op, self, promote_types(self.dtype(), other.dtype()));
  Tensor o = inplace_operand(self, other);
  write_inplace(self, [&](const Tensor& s, const Tensor& out) {
    detail::backend_of(s).binary(bop, s, o, out);
  });
  return self;
}

const Tensor& scalar_inplace(const char* op, BinaryOp bop, const Tensor& self, double value) {
  check_inplace_target(op, self);
  check_inplace_dtype(op, self, detail::scalar_result_dtype(self, value));
  write_inplace(self, [&](const Tensor& s, const Tensor& out) {
    Tensor v = scalar_operand(value, s.dtype(), s.device(), s.shape());
    detail::backend_of(s).binary(bop, s, v, out);
  });
  return self;
}

// Clamp bounds as UnaryParams (+-inf for a missing bound).
UnaryParams clamp_params(const char* op, std::optional<double> lo, std::optional<double> hi) {
  RW_CHECK(lo.has_value() || hi.has_value(), "{}: at least one of min and max must be given", op);
  return {.a = lo.value_or(-kInf), .b = hi.value_or(kInf)};
}

bool clamp_needs_floating(std::optional<double> lo, std::optional<double> hi) {
  return (lo && !is_integer_value(*lo) && std::isfinite(*lo)) ||
         (hi && !is_integer_value(*hi) && std::isfinite(*hi));
}

}  // namespace

// --- binary tensor-tensor ------------------------------------------------------------------------

Tensor add(const Tensor& a, const Tensor& b) {
  auto [shape, dt] = setup_binary("add", a, b);
  check_not_bool("add", dt, a, &b);
  Tensor out = run_binary(BinaryOp::add, a, b, dt, dt, shape);
  if (needs_grad({&a, &b})) {
    record(
        "add", {a, b}, out,
        [ia = InputInfo(a), ib = InputInfo(b)](std::span<const Tensor> g) -> std::vector<Tensor> {
          return {grad_for(g[0], ia), grad_for(g[0], ib)};
        });
  }
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  auto [shape, dt] = setup_binary("sub", a, b);
  check_not_bool("sub", dt, a, &b);
  Tensor out = run_binary(BinaryOp::sub, a, b, dt, dt, shape);
  if (needs_grad({&a, &b})) {
    record(
        "sub", {a, b}, out,
        [ia = InputInfo(a), ib = InputInfo(b)](std::span<const Tensor> g) -> std::vector<Tensor> {
          return {grad_for(g[0], ia), ib.needs ? grad_for(neg(g[0]), ib) : Tensor()};
        });
  }
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  auto [shape, dt] = setup_binary("mul", a, b);
  check_not_bool("mul", dt, a, &b);
  Tensor out = run_binary(BinaryOp::mul, a, b, dt, dt, shape);
  if (needs_grad({&a, &b})) {
    InputInfo ia(a), ib(b);
    // Each input is saved only for the other's gradient.
    record("mul", {a, b}, out,
           [ia, ib, sa = ib.needs ? SavedTensor(a) : SavedTensor(),
            sb = ia.needs ? SavedTensor(b)
                          : SavedTensor()](std::span<const Tensor> g) -> std::vector<Tensor> {
             Tensor ga = ia.needs ? grad_for(mul(g[0], sb.get("mul")), ia) : Tensor();
             Tensor gb = ib.needs ? grad_for(mul(g[0], sa.get("mul")), ib) : Tensor();
             return {ga, gb};
           });
  }
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  auto [shape, dt] = setup_binary("div", a, b);
  check_not_bool("div", dt, a, &b);
  if (!is_floating(dt)) dt = DType::f32;  // true division
  Tensor out = run_binary(BinaryOp::div, a, b, dt, dt, shape);
  if (needs_grad({&a, &b})) {
    InputInfo ia(a), ib(b);
    record("div", {a, b}, out,
           [ia, ib, sa = ib.needs ? SavedTensor(a) : SavedTensor(),
            sb = SavedTensor(b)](std::span<const Tensor> g) -> std::vector<Tensor> {
             const Tensor& bv = sb.get("div");
             Tensor ga = ia.needs ? grad_for(div(g[0], bv), ia) : Tensor();
             Tensor gb;
             if (ib.needs) gb = grad_for(neg(div(mul(g[0], sa.get("div")), square(bv))), ib);
             return {ga, gb};
           });
  }
  return out;
}

namespace {

Tensor extremum(const char* name, BinaryOp op, const Tensor& a, const Tensor& b) {
  auto [shape, dt] = setup_binary(name, a, b);
  Tensor out = run_binary(op, a, b, dt, dt, shape);
  if (needs_grad({&a, &b})) {
    bool is_max = op == BinaryOp::maximum;
    record(name, {a, b}, out,
           [name, is_max, ia = InputInfo(a), ib = InputInfo(b), sa = SavedTensor(a),
            sb = SavedTensor(b)](std::span<const Tensor> g) -> std::vector<Tensor> {
             const Tensor& av = sa.get(name);
             const Tensor& bv = sb.get(name);
             Tensor w = winner_weight(is_max ? gt(av, bv) : lt(av, bv), eq(av, bv), g[0].dtype());
             Tensor ga = mul(g[0], w);
             return {grad_for(ga, ia), ib.needs ? grad_for(sub(g[0], ga), ib) : Tensor()};
           });
  }
  return out;
}

Tensor scalar_extremum(const char* name, BinaryOp op, const Tensor& a, double b) {
  detail::check_defined(name, a, "a");
  DType dt = detail::scalar_result_dtype(a, b);
  Tensor out = run_scalar(op, a, b, dt, dt);
  if (needs_grad({&a})) {
    bool is_max = op == BinaryOp::maximum;
    record(name, {a}, out,
           [name, is_max, b, ia = InputInfo(a),
            sa = SavedTensor(a)](std::span<const Tensor> g) -> std::vector<Tensor> {
             const Tensor& av = sa.get(name);
             Tensor w = winner_weight(is_max ? gt(av, b) : lt(av, b), eq(av, b), g[0].dtype());
             return {grad_for(mul(g[0], w), ia)};
           });
  }
  return out;
}

}  // namespace

Tensor maximum(const Tensor& a, const Tensor& b) {
  return extremum("maximum", BinaryOp::maximum, a, b);
}
Tensor minimum(const Tensor& a, const Tensor& b) {
  return extremum("minimum", BinaryOp::minimum, a, b);
}

Tensor pow(const Tensor& a, const Tensor& b) {
  auto [shape, dt] = setup_binary("pow", a, b);
  check_not_bool("pow", dt, a, &b);
  Tensor out = run_binary(BinaryOp::pow, a, b, dt, dt, shape);
  if (needs_grad({&a, &b})) {
    InputInfo ia(a), ib(b);
    record("pow", {a, b}, out,
           [ia, ib, sa = SavedTensor(a), sb = SavedTensor(b),
            so = ib.needs ? SavedTensor(out)
                          : SavedTensor()](std::span<const Tensor> g) -> std::vector<Tensor> {
             const Tensor& av = sa.get("pow");
             const Tensor& bv = sb.get("pow");
             Tensor ga, gb;
             if (ia.needs) {
               // b a^(b-1), defined as 0 where b == 0 (also at a == 0).
               Tensor d = mul(mul(g[0], bv), pow(av, sub(bv, 1.0)));
               ga = grad_for(where(ne(bv, 0.0), d, 0.0), ia);
             }
             if (ib.needs) {
               // a^b log a, defined as 0 where a == 0 and b >= 0 (the limit).
               Tensor d = mul(so.get("pow"), log(av));
               Tensor zero = logical_and(eq(av, 0.0), ge(bv, 0.0));
               gb = grad_for(mul(g[0], where(logical_not(zero), d, 0.0)), ib);
             }
             return {ga, gb};
           });
  }
  return out;
}

// --- binary tensor-scalar ------------------------------------------------------------------------

namespace {

// x op s with a gradient g -> scale * g (scale 1 when no scaling is needed).
Tensor scalar_linear(const char* name, BinaryOp op, const Tensor& x, double s, double scale,
                     bool reversed, bool true_division = false) {
  detail::check_defined(name, x, "a");
  check_not_bool(name, x.dtype(), x);
  DType dt = detail::scalar_result_dtype(x, s);
  if (true_division && !is_floating(dt)) dt = DType::f32;
  Tensor out = run_scalar(op, x, s, dt, dt, reversed);
  if (needs_grad({&x})) {
    record(name, {x}, out,
           [scale, ix = InputInfo(x)](std::span<const Tensor> g) -> std::vector<Tensor> {
             return {grad_for(scale == 1 ? g[0] : mul(g[0], scale), ix)};
           });
  }
  return out;
}

}  // namespace

Tensor add(const Tensor& a, double b) {
  return scalar_linear("add", BinaryOp::add, a, b, 1, false);
}
Tensor sub(const Tensor& a, double b) {
  return scalar_linear("sub", BinaryOp::sub, a, b, 1, false);
}
Tensor rsub(const Tensor& a, double b) {
  return scalar_linear("rsub", BinaryOp::sub, a, b, -1, true);
}
Tensor mul(const Tensor& a, double b) {
  return scalar_linear("mul", BinaryOp::mul, a, b, b, false);
}
Tensor div(const Tensor& a, double b) {
  return scalar_linear("div", BinaryOp::div, a, b, 1 / b, false, true);
}

Tensor rdiv(const Tensor& a, double b) {
  detail::check_defined("rdiv", a, "a");
  check_not_bool("rdiv", a.dtype(), a);
  DType dt = is_floating(a.dtype()) ? a.dtype() : DType::f32;
  Tensor out = run_scalar(BinaryOp::div, a, b, dt, dt, /*reversed=*/true);
  if (needs_grad({&a})) {
    // d(b/a)/da = -b / a^2
    record("rdiv", {a}, out,
           [b, ia = InputInfo(a),
            sa = SavedTensor(a)](std::span<const Tensor> g) -> std::vector<Tensor> {
             return {grad_for(mul(div(g[0], square(sa.get("rdiv"))), -b), ia)};
           });
  }
  return out;
}

Tensor pow(const Tensor& a, double exponent) {
  detail::check_defined("pow", a, "a");
  check_not_bool("pow", a.dtype(), a);
  DType dt = a.dtype();
  // An integral tensor keeps its dtype only for a non-negative integer exponent.
  if (!is_floating(dt) && !(is_integer_value(exponent) && exponent >= 0)) dt = DType::f32;
  return run_unary("pow", UnaryOp::pow_scalar, a, dt, {.a = exponent});
}

Tensor maximum(const Tensor& a, double b) {
  return scalar_extremum("maximum", BinaryOp::maximum, a, b);
}
Tensor minimum(const Tensor& a, double b) {
  return scalar_extremum("minimum", BinaryOp::minimum, a, b);
}

// --- unary ---------------------------------------------------------------------------------------

Tensor neg(const Tensor& x) { return unary_op("neg", UnaryOp::neg, UnaryKind::arithmetic, x); }
Tensor abs(const Tensor& x) { return unary_op("abs", UnaryOp::abs, UnaryKind::arithmetic, x); }
Tensor sign(const Tensor& x) { return unary_op("sign", UnaryOp::sign, UnaryKind::arithmetic, x); }
Tensor exp(const Tensor& x) { return unary_op("exp", UnaryOp::exp, UnaryKind::math, x); }
Tensor log(const Tensor& x) { return unary_op("log", UnaryOp::log, UnaryKind::math, x); }
Tensor log1p(const Tensor& x) { return unary_op("log1p", UnaryOp::log1p, UnaryKind::math, x); }
Tensor sqrt(const Tensor& x) { return unary_op("sqrt", UnaryOp::sqrt, UnaryKind::math, x); }
Tensor rsqrt(const Tensor& x) { return unary_op("rsqrt", UnaryOp::rsqrt, UnaryKind::math, x); }
Tensor square(const Tensor& x) {
  return unary_op("square", UnaryOp::square, UnaryKind::arithmetic, x);
}
Tensor reciprocal(const Tensor& x) {
  return unary_op("reciprocal", UnaryOp::reciprocal, UnaryKind::math, x);
}
Tensor sin(const Tensor& x) { return unary_op("sin", UnaryOp::sin, UnaryKind::math, x); }
Tensor cos(const Tensor& x) { return unary_op("cos", UnaryOp::cos, UnaryKind::math, x); }
Tensor tanh(const Tensor& x) { return unary_op("tanh", UnaryOp::tanh, UnaryKind::math, x); }
Tensor sigmoid(const Tensor& x) {
  return unary_op("sigmoid", UnaryOp::sigmoid, UnaryKind::math, x);
}
Tensor relu(const Tensor& x) { return unary_op("relu", UnaryOp::relu, UnaryKind::arithmetic, x); }
Tensor erf(const Tensor& x) { return unary_op("erf", UnaryOp::erf, UnaryKind::math, x); }

Tensor gelu(const Tensor& x, GeluApprox approximate) {
  return approximate == GeluApprox::tanh ? unary_op("gelu", UnaryOp::gelu_tanh, UnaryKind::math, x)
                                         : unary_op("gelu", UnaryOp::gelu_erf, UnaryKind::math, x);
}

Tensor clamp(const Tensor& x, std::optional<double> min, std::optional<double> max) {
  detail::check_defined("clamp", x, "x");
  check_not_bool("clamp", x.dtype(), x);
  UnaryParams params = clamp_params("clamp", min, max);
  DType dt = x.dtype();
  if (!is_floating(dt) && clamp_needs_floating(min, max)) dt = DType::f32;
  return run_unary("clamp", UnaryOp::clamp, x, dt, params);
}

// --- where ---------------------------------------------------------------------------------------

namespace {

Tensor where_impl(const Tensor& cond, const Tensor& a, const Tensor& b, DType dt,
                  const Shape& shape) {
  Tensor out = empty(shape, {.dtype = dt, .device = a.device()});
  if (out.numel() > 0) {
    detail::backend_of(a).where(operand(cond, DType::boolean, shape), operand(a, dt, shape),
                                operand(b, dt, shape), out);
  }
  if (needs_grad({&a, &b})) {
    record("where", {cond, a, b}, out,
           [ia = InputInfo(a), ib = InputInfo(b),
            sc = SavedTensor(cond)](std::span<const Tensor> g) -> std::vector<Tensor> {
             const Tensor& c = sc.get("where");
             Tensor ga = ia.needs ? grad_for(where(c, g[0], 0.0), ia) : Tensor();
             Tensor gb = ib.needs ? grad_for(where(logical_not(c), g[0], 0.0), ib) : Tensor();
             return {Tensor(), ga, gb};
           });
  }
  return out;
}

void check_cond(const Tensor& cond, const Tensor& a) {
  detail::check_defined("where", cond, "cond");
  detail::check_dtype("where", cond, DType::boolean, "cond");
  detail::check_same_device("where", cond, a);
}

}  // namespace

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_pair("where", a, b);
  check_cond(cond, a);
  Shape shape = broadcast_shapes("where", cond.shape(), a.shape());
  shape = broadcast_shapes("where", shape, b.shape());
  return where_impl(cond, a, b, promote_types(a.dtype(), b.dtype()), shape);
}

Tensor where(const Tensor& cond, const Tensor& a, double b) {
  detail::check_defined("where", a, "a");
  check_cond(cond, a);
  DType dt = detail::scalar_result_dtype(a, b);
  Tensor bt = full({}, b, {.dtype = dt, .device = a.device()});
  return where_impl(cond, a, bt, dt, broadcast_shapes("where", cond.shape(), a.shape()));
}

// --- comparisons and logical ops -----------------------------------------------------------------

namespace {

Tensor compare(const char* name, BinaryOp op, const Tensor& a, const Tensor& b) {
  auto [shape, dt] = setup_binary(name, a, b);
  return run_binary(op, a, b, dt, DType::boolean, shape);
}

Tensor compare(const char* name, BinaryOp op, const Tensor& a, double b) {
  detail::check_defined(name, a, "a");
  return run_scalar(op, a, b, detail::scalar_result_dtype(a, b), DType::boolean);
}

}  // namespace

Tensor eq(const Tensor& a, const Tensor& b) { return compare("eq", BinaryOp::eq, a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return compare("ne", BinaryOp::ne, a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return compare("lt", BinaryOp::lt, a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return compare("le", BinaryOp::le, a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return compare("gt", BinaryOp::gt, a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return compare("ge", BinaryOp::ge, a, b); }
Tensor eq(const Tensor& a, double b) { return compare("eq", BinaryOp::eq, a, b); }
Tensor ne(const Tensor& a, double b) { return compare("ne", BinaryOp::ne, a, b); }
Tensor lt(const Tensor& a, double b) { return compare("lt", BinaryOp::lt, a, b); }
Tensor le(const Tensor& a, double b) { return compare("le", BinaryOp::le, a, b); }
Tensor gt(const Tensor& a, double b) { return compare("gt", BinaryOp::gt, a, b); }
Tensor ge(const Tensor& a, double b) { return compare("ge", BinaryOp::ge, a, b); }

namespace {

Tensor logical(const char* name, BinaryOp op, const Tensor& a, const Tensor& b) {
  auto [shape, dt] = setup_binary(name, a, b);
  detail::check_dtype(name, a, DType::boolean, "a");
  detail::check_dtype(name, b, DType::boolean, "b");
  return run_binary(op, a, b, DType::boolean, DType::boolean, shape);
}

}  // namespace

Tensor logical_and(const Tensor& a, const Tensor& b) {
  return logical("logical_and", BinaryOp::logical_and, a, b);
}
Tensor logical_or(const Tensor& a, const Tensor& b) {
  return logical("logical_or", BinaryOp::logical_or, a, b);
}

Tensor logical_not(const Tensor& x) {
  detail::check_defined("logical_not", x, "x");
  detail::check_dtype("logical_not", x, DType::boolean, "x");
  Tensor out = empty(x.shape(), {.dtype = DType::boolean, .device = x.device()});
  if (out.numel() > 0) detail::backend_of(x).unary(UnaryOp::logical_not, x.detach(), out, {});
  return out;
}

Tensor isfinite(const Tensor& x) {
  detail::check_defined("isfinite", x, "x");
  Tensor out = empty(x.shape(), {.dtype = DType::boolean, .device = x.device()});
  if (out.numel() > 0) detail::backend_of(x).unary(UnaryOp::isfinite, x.detach(), out, {});
  return out;
}

// --- in place ------------------------------------------------------------------------------------

const Tensor& add_(const Tensor& self, const Tensor& other, double alpha) {
  if (alpha == 1) return binary_inplace("add_", BinaryOp::add, self, other);
  check_inplace_target("add_", self);
  check_inplace_other("add_", self, other);
  check_inplace_dtype("add_", self, promote_types(self.dtype(), other.dtype()));
  RW_CHECK(is_floating(self.dtype()) || is_integer_value(alpha),
           "add_: alpha {} is not an integer, so the result cannot be written into self of dtype "
           "{}",
           alpha, self.dtype());
  Tensor scaled = empty(self.shape(), options_of(self));
  if (self.numel() > 0) {
    Tensor v = scalar_operand(alpha, self.dtype(), self.device(), self.shape());
    detail::backend_of(self).binary(BinaryOp::mul, operand(other, self.dtype(), self.shape()), v,
                                    scaled);
  }
  write_inplace(self, [&](const Tensor& s, const Tensor& out) {
    detail::backend_of(s).binary(BinaryOp::add, s, scaled, out);
  });
  return self;
}

const Tensor& sub_(const Tensor& self, const Tensor& other) {
  return binary_inplace("sub_", BinaryOp::sub, self, other);
}
const Tensor& mul_(const Tensor& self, const Tensor& other) {
  return binary_inplace("mul_", BinaryOp::mul, self, other);
}
const Tensor& div_(const Tensor& self, const Tensor& other) {
  detail::check_defined("div_", self, "self");
  RW_CHECK(is_floating(self.dtype()),
           "div_: true division gives a floating result, which cannot be written into self of "
           "dtype {}",
           self.dtype());
  return binary_inplace("div_", BinaryOp::div, self, other);
}
const Tensor& add_(const Tensor& self, double other) {
  return scalar_inplace("add_", BinaryOp::add, self, other);
}
const Tensor& mul_(const Tensor& self, double other) {
  return scalar_inplace("mul_", BinaryOp::mul, self, other);
}

const Tensor& clamp_(const Tensor& self, std::optional<double> min, std::optional<double> max) {
  check_inplace_target("clamp_", self);
  check_not_bool("clamp_", self.dtype(), self);
  UnaryParams params = clamp_params("clamp_", min, max);
  if (!is_floating(self.dtype())) {
    // An integer lies in [a, b] exactly when it lies in [ceil a, floor b].
    params.a = std::ceil(params.a);
    params.b = std::floor(params.b);
  }
  write_inplace(self, [&](const Tensor& s, const Tensor& out) {
    detail::backend_of(s).unary(UnaryOp::clamp, s, out, params);
  });
  return self;
}

const Tensor& copy_(const Tensor& self, const Tensor& src) {
  check_inplace_target("copy_", self);
  detail::check_defined("copy_", src, "src");
  RW_CHECK(!(grad_mode_enabled() && src.requires_grad()),
           "copy_: an in-place op is not recorded for autograd, so the gradient of src (shape {}) "
           "would be lost; run it under rw::NoGradGuard or use the out-of-place op",
           src.shape());
  Shape shape = broadcast_shapes("copy_", self.shape(), src.shape());
  RW_CHECK(shape == self.shape(), "copy_: src of shape {} does not broadcast to self's shape {}",
           src.shape(), self.shape());
  if (self.numel() > 0) {
    Tensor s = src.detach();
    if (s.device() != self.device()) s = s.to(self.device());  // the transfer, then a local copy
    // Overlapping memory would be read after being written: copy it out first.
    if (s.storage() == self.storage()) s = s.clone();
    detail::backend_of(self).copy(s.expand(shape), self.detach());
  }
  self.storage()->bump_version();
  return self;
}

namespace {

const Tensor& fill_impl(const char* op, const Tensor& self, double value) {
  check_inplace_target(op, self);
  if (self.numel() > 0) detail::backend_of(self).fill(self.detach(), value);
  self.storage()->bump_version();
  return self;
}

}  // namespace

const Tensor& fill_(const Tensor& self, double value) { return fill_impl("fill_", self, value); }
const Tensor& zero_(const Tensor& self) { return fill_impl("zero_", self, 0); }

// --- operators -----------------------------------------------------------------------------------

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& x) { return neg(x); }
Tensor operator+(const Tensor& a, double b) { return add(a, b); }
Tensor operator-(const Tensor& a, double b) { return sub(a, b); }
Tensor operator*(const Tensor& a, double b) { return mul(a, b); }
Tensor operator/(const Tensor& a, double b) { return div(a, b); }
Tensor operator+(double a, const Tensor& b) { return add(b, a); }
Tensor operator-(double a, const Tensor& b) { return rsub(b, a); }
Tensor operator*(double a, const Tensor& b) { return mul(b, a); }
Tensor operator/(double a, const Tensor& b) { return rdiv(b, a); }

}  // namespace rw
