// The float64 reference backend (see reference_backend.h). Deliberately naive: every element is
// addressed through its coordinates and strides, read as a double (int64 for exact integer data
// movement), computed in double and converted on the store.
#include "backends/reference/reference_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numbers>
#include <vector>

#include "core/half.h"

namespace rw {
namespace {

using Coord = std::vector<int64_t>;

// --- element access ----------------------------------------------------------------------------

char* ptr_at(const Tensor& t, const Coord& c) {
  int64_t off = 0;
  for (std::size_t d = 0; d < c.size(); ++d) off += c[d] * t.strides()[d];
  return static_cast<char*>(t.data_ptr()) + off * static_cast<int64_t>(dtype_size(t.dtype()));
}

// Coordinates of the i-th element of `shape` in row-major order.
Coord unravel(int64_t i, const Shape& shape) {
  Coord c(shape.size(), 0);
  for (std::size_t d = shape.size(); d-- > 0;) {
    c[d] = i % shape[d];
    i /= shape[d];
  }
  return c;
}

// Unaligned-safe element access (views may start anywhere in a storage).
template <typename T>
T load(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename T>
void store(char* p, T v) {
  std::memcpy(p, &v, sizeof v);
}

double read(const char* p, DType dt) {
  switch (dt) {
    case DType::f32:
      return load<float>(p);
    case DType::f64:
      return load<double>(p);
    case DType::bf16:
      return static_cast<float>(load<bf16>(p));
    case DType::f16:
      return static_cast<float>(load<f16>(p));
    case DType::i32:
      return load<int32_t>(p);
    case DType::i64:
      return static_cast<double>(load<int64_t>(p));
    case DType::u8:
      return load<uint8_t>(p);
    case DType::boolean:
      return load<uint8_t>(p) != 0 ? 1.0 : 0.0;
  }
  throw Error(fmt::format("reference: unsupported dtype {}", dt));
}

// Floating -> integral conversion truncates toward zero, as a C++ cast (NaN gives 0).
int64_t to_int(double v) {
  if (std::isnan(v)) return 0;
  // Out-of-range values saturate (a plain cast would be undefined behaviour).
  if (v >= 9223372036854775807.0) return std::numeric_limits<int64_t>::max();
  if (v <= -9223372036854775808.0) return std::numeric_limits<int64_t>::min();
  return static_cast<int64_t>(v);
}

void write(char* p, DType dt, double v) {
  switch (dt) {
    case DType::f32:
      return store(p, static_cast<float>(v));
    case DType::f64:
      return store(p, v);
    case DType::bf16:
      return store(p, bf16(static_cast<float>(v)));
    case DType::f16:
      return store(p, f16(static_cast<float>(v)));
    case DType::i32:
      return store(p, static_cast<int32_t>(to_int(v)));
    case DType::i64:
      return store(p, to_int(v));
    case DType::u8:
      return store(p, static_cast<uint8_t>(to_int(v)));
    case DType::boolean:
      return store(p, v != 0);
  }
  throw Error(fmt::format("reference: unsupported dtype {}", dt));
}

// Exact integer access (an i64 above 2^53 does not survive a trip through double).
int64_t read_int(const char* p, DType dt) {
  switch (dt) {
    case DType::i32:
      return load<int32_t>(p);
    case DType::i64:
      return load<int64_t>(p);
    default:
      return to_int(read(p, dt));
  }
}

void write_int(char* p, DType dt, int64_t v) {
  switch (dt) {
    case DType::i32:
      return store(p, static_cast<int32_t>(v));
    case DType::i64:
      return store(p, v);
    case DType::u8:
      return store(p, static_cast<uint8_t>(v));
    case DType::boolean:
      return store(p, v != 0);
    default:
      return write(p, dt, static_cast<double>(v));
  }
}

double get(const Tensor& t, const Coord& c) { return read(ptr_at(t, c), t.dtype()); }
void set(const Tensor& t, const Coord& c, double v) { write(ptr_at(t, c), t.dtype(), v); }
double get_linear(const Tensor& t, int64_t i) { return get(t, unravel(i, t.shape())); }
void set_linear(const Tensor& t, int64_t i, double v) { set(t, unravel(i, t.shape()), v); }
int64_t get_index(const Tensor& t, const Coord& c) { return read_int(ptr_at(t, c), t.dtype()); }

// dst[dc] = src[sc], exact between integral dtypes.
void move_element(const Tensor& src, const Coord& sc, const Tensor& dst, const Coord& dc) {
  if (is_integral(src.dtype()) && is_integral(dst.dtype())) {
    write_int(ptr_at(dst, dc), dst.dtype(), read_int(ptr_at(src, sc), src.dtype()));
  } else {
    set(dst, dc, get(src, sc));
  }
}

// A 0-dim tensor seen as 1-D [1]: ops that take a dim treat a scalar as one element along dim 0.
Tensor lift(const Tensor& t) {
  if (!t.defined() || t.dim() > 0) return t;
  Tensor v = t.detach();  // a fresh impl sharing storage: reshaping it leaves t alone
  v.impl().shape = {1};
  v.impl().strides = {1};
  return v;
}

// Calls f(coord) for every element of `shape` in row-major order.
template <typename F>
void for_each_coord(const Shape& shape, F&& f) {
  int64_t n = shape_numel(shape);
  Coord c(shape.size(), 0);
  for (int64_t i = 0; i < n; ++i) {
    f(c);
    for (std::size_t d = shape.size(); d-- > 0;) {
      if (++c[d] < shape[d]) break;
      c[d] = 0;
    }
  }
}

// `shape` with extent 1 at dim: the "outer" positions of a reduction along dim.
Shape with_unit_dim(Shape shape, int64_t dim) {
  shape[dim] = 1;
  return shape;
}

// --- scalar math -------------------------------------------------------------------------------

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kGeluTanhK = 0.7978845608028654;  // sqrt(2 / pi)
constexpr double kGeluTanhC = 0.044715;

double normal_cdf(double x) { return 0.5 * (1.0 + std::erf(x / std::numbers::sqrt2)); }
double normal_pdf(double x) { return std::exp(-0.5 * x * x) / std::sqrt(2.0 * std::numbers::pi); }
double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double sign_of(double x) {
  if (std::isnan(x)) return x;
  return x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0);
}

double unary_value(UnaryOp op, double x, UnaryParams p) {
  switch (op) {
    case UnaryOp::neg:
      return -x;
    case UnaryOp::abs:
      return std::fabs(x);
    case UnaryOp::sign:
      return sign_of(x);
    case UnaryOp::exp:
      return std::exp(x);
    case UnaryOp::log:
      return std::log(x);
    case UnaryOp::log1p:
      return std::log1p(x);
    case UnaryOp::sqrt:
      return std::sqrt(x);
    case UnaryOp::rsqrt:
      return 1.0 / std::sqrt(x);
    case UnaryOp::square:
      return x * x;
    case UnaryOp::reciprocal:
      return 1.0 / x;
    case UnaryOp::sin:
      return std::sin(x);
    case UnaryOp::cos:
      return std::cos(x);
    case UnaryOp::tanh:
      return std::tanh(x);
    case UnaryOp::sigmoid:
      return sigmoid(x);
    case UnaryOp::relu:
      return std::isnan(x) ? x : (x > 0 ? x : 0.0);
    case UnaryOp::gelu_tanh:
      return 0.5 * x * (1.0 + std::tanh(kGeluTanhK * (x + kGeluTanhC * x * x * x)));
    case UnaryOp::gelu_erf:
      return x * normal_cdf(x);
    case UnaryOp::erf:
      return std::erf(x);
    case UnaryOp::pow_scalar:
      return std::pow(x, p.a);
    case UnaryOp::clamp:
      return std::isnan(x) ? x : std::min(std::max(x, p.a), p.b);
    case UnaryOp::logical_not:
      return x == 0 ? 1.0 : 0.0;
    case UnaryOp::isfinite:
      return std::isfinite(x) ? 1.0 : 0.0;
  }
  throw Error("reference unary: unknown op");
}

// d op(x) / dx from x.
double unary_derivative(UnaryOp op, double x, UnaryParams p) {
  switch (op) {
    case UnaryOp::neg:
      return -1.0;
    case UnaryOp::abs:
      return sign_of(x);
    case UnaryOp::sign:
      return 0.0;
    case UnaryOp::exp:
      return std::exp(x);
    case UnaryOp::log:
      return 1.0 / x;
    case UnaryOp::log1p:
      return 1.0 / (1.0 + x);
    case UnaryOp::sqrt:
      return 0.5 / std::sqrt(x);
    case UnaryOp::rsqrt:
      return -0.5 / (x * std::sqrt(x));
    case UnaryOp::square:
      return 2.0 * x;
    case UnaryOp::reciprocal:
      return -1.0 / (x * x);
    case UnaryOp::sin:
      return std::cos(x);
    case UnaryOp::cos:
      return -std::sin(x);
    case UnaryOp::tanh: {
      double t = std::tanh(x);
      return 1.0 - t * t;
    }
    case UnaryOp::sigmoid: {
      double s = sigmoid(x);
      return s * (1.0 - s);
    }
    case UnaryOp::relu:
      return x > 0 ? 1.0 : 0.0;
    case UnaryOp::gelu_tanh: {
      double t = std::tanh(kGeluTanhK * (x + kGeluTanhC * x * x * x));
      return 0.5 * (1.0 + t) +
             0.5 * x * (1.0 - t * t) * kGeluTanhK * (1.0 + 3.0 * kGeluTanhC * x * x);
    }
    case UnaryOp::gelu_erf:
      return normal_cdf(x) + x * normal_pdf(x);
    case UnaryOp::erf:
      return 2.0 / std::sqrt(std::numbers::pi) * std::exp(-x * x);
    case UnaryOp::pow_scalar:
      return p.a == 0 ? 0.0 : p.a * std::pow(x, p.a - 1.0);
    case UnaryOp::clamp:  // as PyTorch: the gradient passes where min <= x <= max
      return x >= p.a && x <= p.b ? 1.0 : 0.0;
    case UnaryOp::logical_not:
    case UnaryOp::isfinite:
      break;
  }
  throw Error("reference unary_backward: the op has no derivative");
}

// d op(x) / dx from y = op(x), for the ops whose backward may be given y alone.
double unary_derivative_from_y(UnaryOp op, double y) {
  switch (op) {
    case UnaryOp::exp:
      return y;
    case UnaryOp::sqrt:
      return 0.5 / y;
    case UnaryOp::rsqrt:
      return -0.5 * y * y * y;
    case UnaryOp::reciprocal:
      return -y * y;
    case UnaryOp::tanh:
      return 1.0 - y * y;
    case UnaryOp::sigmoid:
      return y * (1.0 - y);
    case UnaryOp::relu:
      return y > 0 ? 1.0 : 0.0;
    case UnaryOp::neg:
      return -1.0;
    default:
      break;
  }
  throw Error("reference unary_backward: x is undefined and the derivative needs it");
}

double binary_value(BinaryOp op, double a, double b) {
  switch (op) {
    case BinaryOp::add:
      return a + b;
    case BinaryOp::sub:
      return a - b;
    case BinaryOp::mul:
      return a * b;
    case BinaryOp::div:
      return a / b;
    case BinaryOp::maximum:  // NaN propagates, as PyTorch
      return std::isnan(a) || std::isnan(b) ? kNaN : std::max(a, b);
    case BinaryOp::minimum:
      return std::isnan(a) || std::isnan(b) ? kNaN : std::min(a, b);
    case BinaryOp::pow:
      return std::pow(a, b);
    case BinaryOp::eq:
      return a == b;
    case BinaryOp::ne:
      return a != b;
    case BinaryOp::lt:
      return a < b;
    case BinaryOp::le:
      return a <= b;
    case BinaryOp::gt:
      return a > b;
    case BinaryOp::ge:
      return a >= b;
    case BinaryOp::logical_and:
      return a != 0 && b != 0;
    case BinaryOp::logical_or:
      return a != 0 || b != 0;
  }
  throw Error("reference binary: unknown op");
}

// Integer division and the like must not go through double; only the exact ops do.
bool exact_integer_op(BinaryOp op) {
  return op == BinaryOp::add || op == BinaryOp::sub || op == BinaryOp::mul ||
         op == BinaryOp::maximum || op == BinaryOp::minimum || is_comparison(op);
}

int64_t binary_int_value(BinaryOp op, int64_t a, int64_t b) {
  switch (op) {
    case BinaryOp::add:
      return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
    case BinaryOp::sub:
      return static_cast<int64_t>(static_cast<uint64_t>(a) - static_cast<uint64_t>(b));
    case BinaryOp::mul:
      return static_cast<int64_t>(static_cast<uint64_t>(a) * static_cast<uint64_t>(b));
    case BinaryOp::maximum:
      return std::max(a, b);
    case BinaryOp::minimum:
      return std::min(a, b);
    case BinaryOp::eq:
      return a == b;
    case BinaryOp::ne:
      return a != b;
    case BinaryOp::lt:
      return a < b;
    case BinaryOp::le:
      return a <= b;
    case BinaryOp::gt:
      return a > b;
    case BinaryOp::ge:
      return a >= b;
    default:
      break;
  }
  throw Error("reference binary: not an exact integer op");
}

}  // namespace

// --- copy, fill, arange --------------------------------------------------------------------------

void ReferenceBackend::copy(const Tensor& src, const Tensor& dst) {
  for_each_coord(dst.shape(), [&](const Coord& c) { move_element(src, c, dst, c); });
}

void ReferenceBackend::fill(const Tensor& dst, double value) {
  for_each_coord(dst.shape(), [&](const Coord& c) { set(dst, c, value); });
}

void ReferenceBackend::arange(const Tensor& out, double start, double step) {
  for (int64_t i = 0; i < out.numel(); ++i) {
    set_linear(out, i, start + static_cast<double>(i) * step);
  }
}

// --- elementwise ---------------------------------------------------------------------------------

void ReferenceBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out, UnaryParams params) {
  for_each_coord(out.shape(),
                 [&](const Coord& c) { set(out, c, unary_value(op, get(x, c), params)); });
}

void ReferenceBackend::unary_backward(UnaryOp op, const Tensor& x, const Tensor& y,
                                      const Tensor& dy, const Tensor& dx, UnaryParams params) {
  for_each_coord(dx.shape(), [&](const Coord& c) {
    double d = x.defined() ? unary_derivative(op, get(x, c), params)
                           : unary_derivative_from_y(op, get(y, c));
    set(dx, c, get(dy, c) * d);
  });
}

void ReferenceBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  bool integral = is_integral(a.dtype()) && is_integral(b.dtype()) && exact_integer_op(op);
  for_each_coord(out.shape(), [&](const Coord& c) {
    if (integral) {
      write_int(ptr_at(out, c), out.dtype(),
                binary_int_value(op, get_index(a, c), get_index(b, c)));
    } else {
      set(out, c, binary_value(op, get(a, c), get(b, c)));
    }
  });
}

void ReferenceBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b,
                             const Tensor& out) {
  for_each_coord(out.shape(),
                 [&](const Coord& c) { move_element(get(cond, c) != 0 ? a : b, c, out, c); });
}

// --- reductions ----------------------------------------------------------------------------------

void ReferenceBackend::reduce(ReduceOp op, const Tensor& x, const Tensor& out) {
  const Shape& xs = x.shape();
  const int64_t rank = x.dim();
  // The number of x elements folded into each output element.
  int64_t count = 1;
  for (int64_t d = 0; d < rank; ++d) {
    if (out.shape()[d] == 1) count *= xs[d];
  }
  auto out_coord = [&](const Coord& c) {
    Coord oc = c;
    for (int64_t d = 0; d < rank; ++d) {
      if (out.shape()[d] == 1) oc[d] = 0;
    }
    return oc;
  };
  // Accumulators in double, one per output element (indexed by out's row-major position).
  const int64_t n_out = out.numel();
  double init = 0;
  switch (op) {
    case ReduceOp::sum:
    case ReduceOp::mean:
      init = 0;
      break;
    case ReduceOp::prod:
      init = 1;
      break;
    case ReduceOp::max:
    case ReduceOp::logsumexp:
      init = -kInf;
      break;
    case ReduceOp::min:
      init = kInf;
      break;
  }
  std::vector<double> acc(static_cast<std::size_t>(n_out), init);
  auto linear_of = [&](const Coord& oc) {
    int64_t i = 0;
    for (int64_t d = 0; d < rank; ++d) i = i * out.shape()[d] + oc[d];
    return static_cast<std::size_t>(i);
  };
  // Pass 1: sum / prod / max / min (logsumexp starts with the max, for stability).
  for_each_coord(xs, [&](const Coord& c) {
    double v = get(x, c);
    double& a = acc[linear_of(out_coord(c))];
    switch (op) {
      case ReduceOp::sum:
      case ReduceOp::mean:
        a += v;
        break;
      case ReduceOp::prod:
        a *= v;
        break;
      case ReduceOp::max:
      case ReduceOp::logsumexp:
        if (std::isnan(v) || v > a) a = std::isnan(a) ? a : v;
        break;
      case ReduceOp::min:
        if (std::isnan(v) || v < a) a = std::isnan(a) ? a : v;
        break;
    }
  });
  if (op == ReduceOp::logsumexp) {
    std::vector<double> sum_exp(acc.size(), 0.0);
    for_each_coord(xs, [&](const Coord& c) {
      std::size_t i = linear_of(out_coord(c));
      if (std::isfinite(acc[i])) sum_exp[i] += std::exp(get(x, c) - acc[i]);
    });
    // A row whose max is +-inf or NaN (or that is empty: -inf) keeps it as the result.
    for (std::size_t i = 0; i < acc.size(); ++i) {
      if (std::isfinite(acc[i])) acc[i] += std::log(sum_exp[i]);
    }
  }
  if (op == ReduceOp::mean) {
    for (double& a : acc) a /= static_cast<double>(count);
  }
  for (int64_t i = 0; i < n_out; ++i) set_linear(out, i, acc[static_cast<std::size_t>(i)]);
}

void ReferenceBackend::arg_reduce(ArgReduceOp op, const Tensor& x_, int64_t dim,
                                  const Tensor& out_) {
  const Tensor x = lift(x_), out = lift(out_);
  const int64_t n = x.shape()[dim];
  for_each_coord(with_unit_dim(x.shape(), dim), [&](const Coord& oc) {
    Coord c = oc;
    int64_t best_i = 0;
    double best = n > 0 ? get(x, c) : 0.0;
    // The first NaN counts as the extreme (as PyTorch); otherwise the first strict extreme.
    for (int64_t j = 1; j < n && !std::isnan(best); ++j) {
      c[dim] = j;
      double v = get(x, c);
      bool better = std::isnan(v) || (op == ArgReduceOp::argmax ? v > best : v < best);
      if (better) {
        best = v;
        best_i = j;
      }
    }
    write_int(ptr_at(out, oc), out.dtype(), best_i);
  });
}

void ReferenceBackend::cumsum(const Tensor& x_, int64_t dim, const Tensor& out_) {
  const Tensor x = lift(x_), out = lift(out_);
  const int64_t n = x.shape()[dim];
  for_each_coord(with_unit_dim(x.shape(), dim), [&](const Coord& oc) {
    Coord c = oc;
    double running = 0;
    for (int64_t j = 0; j < n; ++j) {
      c[dim] = j;
      running += get(x, c);
      set(out, c, running);
    }
  });
}

// --- matmul --------------------------------------------------------------------------------------

void ReferenceBackend::matmul(const Tensor& a, const Tensor& b, const Tensor& bias,
                              const Tensor& out) {
  const int64_t rank = out.dim();
  const int64_t k_extent = a.shape()[rank - 1];
  for_each_coord(out.shape(), [&](const Coord& oc) {
    Coord ac = oc, bc = oc;
    for (int64_t d = 0; d < rank - 2; ++d) {  // broadcast batch dims read index 0
      if (a.shape()[d] == 1) ac[d] = 0;
      if (b.shape()[d] == 1) bc[d] = 0;
    }
    double s = 0;
    for (int64_t k = 0; k < k_extent; ++k) {
      ac[rank - 1] = k;
      bc[rank - 2] = k;
      s += get(a, ac) * get(b, bc);
    }
    if (bias.defined()) s += get(bias, {oc[rank - 1]});
    set(out, oc, s);
  });
}

// --- softmax -------------------------------------------------------------------------------------

void ReferenceBackend::softmax(SoftmaxKind kind, const Tensor& x_, int64_t dim,
                               const Tensor& out_) {
  const Tensor x = lift(x_), out = lift(out_);
  const int64_t n = x.shape()[dim];
  for_each_coord(with_unit_dim(x.shape(), dim), [&](const Coord& oc) {
    Coord c = oc;
    double m = -kInf;
    for (int64_t j = 0; j < n; ++j) {
      c[dim] = j;
      m = std::max(m, get(x, c));
    }
    double s = 0;
    for (int64_t j = 0; j < n; ++j) {
      c[dim] = j;
      s += std::exp(get(x, c) - m);
    }
    for (int64_t j = 0; j < n; ++j) {
      c[dim] = j;
      double z = get(x, c) - m;
      set(out, c, kind == SoftmaxKind::softmax ? std::exp(z) / s : z - std::log(s));
    }
  });
}

void ReferenceBackend::softmax_backward(SoftmaxKind kind, const Tensor& y_, const Tensor& dy_,
                                        int64_t dim, const Tensor& dx_) {
  const Tensor y = lift(y_), dy = lift(dy_), dx = lift(dx_);
  const int64_t n = y.shape()[dim];
  for_each_coord(with_unit_dim(y.shape(), dim), [&](const Coord& oc) {
    Coord c = oc;
    // softmax: dx = y * (dy - sum(dy * y)); log_softmax: dx = dy - exp(y) * sum(dy).
    double s = 0;
    for (int64_t j = 0; j < n; ++j) {
      c[dim] = j;
      s += kind == SoftmaxKind::softmax ? get(dy, c) * get(y, c) : get(dy, c);
    }
    for (int64_t j = 0; j < n; ++j) {
      c[dim] = j;
      double yv = get(y, c), g = get(dy, c);
      set(dx, c, kind == SoftmaxKind::softmax ? yv * (g - s) : g - std::exp(yv) * s);
    }
  });
}

// --- layer norm ----------------------------------------------------------------------------------

void ReferenceBackend::layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                  double eps, const Tensor& out, const Tensor& mean,
                                  const Tensor& rstd) {
  const int64_t d_extent = x.shape().back();
  const int64_t rows = mean.numel();
  for (int64_t r = 0; r < rows; ++r) {
    auto at = [&](int64_t i) { return get_linear(x, r * d_extent + i); };
    double mu = 0;
    for (int64_t i = 0; i < d_extent; ++i) mu += at(i);
    mu /= static_cast<double>(d_extent);
    double var = 0;
    for (int64_t i = 0; i < d_extent; ++i) var += (at(i) - mu) * (at(i) - mu);
    var /= static_cast<double>(d_extent);  // biased, as every layer norm
    double rs = 1.0 / std::sqrt(var + eps);
    for (int64_t i = 0; i < d_extent; ++i) {
      double y = (at(i) - mu) * rs;
      if (weight.defined()) y *= get(weight, {i});
      if (bias.defined()) y += get(bias, {i});
      set_linear(out, r * d_extent + i, y);
    }
    set_linear(mean, r, mu);
    set_linear(rstd, r, rs);
  }
}

void ReferenceBackend::layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                           const Tensor& mean, const Tensor& rstd, const Tensor& dx,
                                           const Tensor& dweight, const Tensor& dbias) {
  const int64_t d_extent = x.shape().back();
  const int64_t rows = mean.numel();
  std::vector<double> dw(static_cast<std::size_t>(d_extent), 0.0);
  std::vector<double> db(static_cast<std::size_t>(d_extent), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    double mu = get_linear(mean, r), rs = get_linear(rstd, r);
    std::vector<double> xhat(static_cast<std::size_t>(d_extent)), g(xhat.size());
    double mean_g = 0, mean_gx = 0;
    for (int64_t i = 0; i < d_extent; ++i) {
      auto k = static_cast<std::size_t>(i);
      double dyv = get_linear(dy, r * d_extent + i);
      xhat[k] = (get_linear(x, r * d_extent + i) - mu) * rs;
      g[k] = weight.defined() ? dyv * get(weight, {i}) : dyv;
      mean_g += g[k];
      mean_gx += g[k] * xhat[k];
      dw[k] += dyv * xhat[k];
      db[k] += dyv;
    }
    mean_g /= static_cast<double>(d_extent);
    mean_gx /= static_cast<double>(d_extent);
    if (dx.defined()) {
      for (int64_t i = 0; i < d_extent; ++i) {
        auto k = static_cast<std::size_t>(i);
        set_linear(dx, r * d_extent + i, rs * (g[k] - mean_g - xhat[k] * mean_gx));
      }
    }
  }
  for (int64_t i = 0; i < d_extent; ++i) {
    if (dweight.defined()) set(dweight, {i}, dw[static_cast<std::size_t>(i)]);
    if (dbias.defined()) set(dbias, {i}, db[static_cast<std::size_t>(i)]);
  }
}

// --- indexing ------------------------------------------------------------------------------------

void ReferenceBackend::gather(const Tensor& x_, int64_t dim, const Tensor& index_,
                              const Tensor& out_) {
  const Tensor x = lift(x_), index = lift(index_), out = lift(out_);
  for_each_coord(index.shape(), [&](const Coord& c) {
    Coord xc = c;
    xc[dim] = get_index(index, c);
    move_element(x, xc, out, c);
  });
}

void ReferenceBackend::scatter_add(const Tensor& dst_, int64_t dim, const Tensor& index_,
                                   const Tensor& src_) {
  const Tensor dst = lift(dst_), index = lift(index_), src = lift(src_);
  for_each_coord(index.shape(), [&](const Coord& c) {
    Coord dc = c;
    dc[dim] = get_index(index, c);
    set(dst, dc, get(dst, dc) + get(src, c));
  });
}

void ReferenceBackend::index_select(const Tensor& x_, int64_t dim, const Tensor& index_,
                                    const Tensor& out_) {
  const Tensor x = lift(x_), index = lift(index_), out = lift(out_);
  for_each_coord(out.shape(), [&](const Coord& c) {
    Coord xc = c;
    xc[dim] = get_index(index, {c[dim]});
    move_element(x, xc, out, c);
  });
}

void ReferenceBackend::index_add(const Tensor& dst_, int64_t dim, const Tensor& index_,
                                 const Tensor& src_) {
  const Tensor dst = lift(dst_), index = lift(index_), src = lift(src_);
  for_each_coord(src.shape(), [&](const Coord& c) {
    Coord dc = c;
    dc[dim] = get_index(index, {c[dim]});
    set(dst, dc, get(dst, dc) + get(src, c));
  });
}

namespace {

// Stable sort of one line with NaNs last (ascending) or first (descending); Key is double for
// floating data and int64_t for integral data (exact).
template <typename Key>
void sort_line(const Tensor& x, const Coord& oc, int64_t dim, bool descending, const Tensor& values,
               const Tensor& indices) {
  const int64_t n = x.shape()[dim];
  std::vector<std::pair<Key, int64_t>> line;
  Coord c = oc;
  for (int64_t j = 0; j < n; ++j) {
    c[dim] = j;
    if constexpr (std::is_same_v<Key, double>) {
      line.emplace_back(get(x, c), j);
    } else {
      line.emplace_back(get_index(x, c), j);
    }
  }
  auto is_nan = [](Key k) {
    if constexpr (std::is_same_v<Key, double>) {
      return std::isnan(k);
    } else {
      return false;
    }
  };
  std::stable_sort(line.begin(), line.end(), [&](const auto& p, const auto& q) {
    if (is_nan(p.first) || is_nan(q.first)) {
      // A NaN is the largest key: last ascending, first descending.
      return descending ? is_nan(p.first) && !is_nan(q.first) : !is_nan(p.first) && is_nan(q.first);
    }
    return descending ? p.first > q.first : p.first < q.first;
  });
  for (int64_t j = 0; j < n; ++j) {
    c[dim] = j;
    Coord src = oc;
    src[dim] = line[static_cast<std::size_t>(j)].second;
    move_element(x, src, values, c);
    write_int(ptr_at(indices, c), indices.dtype(), line[static_cast<std::size_t>(j)].second);
  }
}

}  // namespace

void ReferenceBackend::sort(const Tensor& x_, int64_t dim, bool descending, const Tensor& values_,
                            const Tensor& indices_) {
  const Tensor x = lift(x_), values = lift(values_), indices = lift(indices_);
  for_each_coord(with_unit_dim(x.shape(), dim), [&](const Coord& oc) {
    if (is_integral(x.dtype())) {
      sort_line<int64_t>(x, oc, dim, descending, values, indices);
    } else {
      sort_line<double>(x, oc, dim, descending, values, indices);
    }
  });
}

// --- random --------------------------------------------------------------------------------------

namespace {

// Uniform samples are strictly below `high`, but the store into a narrow dtype can round one up to
// `high`: step it down to the largest value of the dtype below `high` (as core/philox.h's users
// agree, see backends/cpu/cpu_random.cpp).
void keep_below(const Tensor& out, const Coord& c, double high) {
  char* p = ptr_at(out, c);
  while (read(p, out.dtype()) >= high) {
    switch (out.dtype()) {
      case DType::f32: {
        float f;
        std::memcpy(&f, p, sizeof f);
        f = std::nextafter(f, -std::numeric_limits<float>::infinity());
        std::memcpy(p, &f, sizeof f);
        break;
      }
      case DType::f64: {
        double d;
        std::memcpy(&d, p, sizeof d);
        d = std::nextafter(d, -kInf);
        std::memcpy(p, &d, sizeof d);
        break;
      }
      default: {  // bf16 / f16: the next value down in sign-magnitude bits
        uint16_t bits;
        std::memcpy(&bits, p, sizeof bits);
        if ((bits & 0x8000u) != 0) {
          ++bits;
        } else if ((bits & 0x7fffu) == 0) {
          bits = 0x8001u;
        } else {
          --bits;
        }
        std::memcpy(p, &bits, sizeof bits);
        break;
      }
    }
  }
}

}  // namespace

void ReferenceBackend::random(RandomKind kind, PhiloxState state, double a, double b,
                              const Tensor& out) {
  // The mapping of core/philox.h: element i takes word i % 4 of block i / 4.
  for (int64_t i = 0; i < out.numel(); ++i) {
    PhiloxBlock block = philox_block(state, static_cast<uint64_t>(i / 4));
    const int word = static_cast<int>(i % 4);
    const double u = philox_uniform(block.w[word]);
    double v = 0;
    switch (kind) {
      case RandomKind::uniform:
        v = a + (b - a) * u;
        break;
      case RandomKind::normal: {
        // Box-Muller on the word pair (0, 1) or (2, 3): the even word gives r cos(t), the odd
        // one r sin(t), with r from the pair's first word and t from its second.
        const int first = word & ~1;
        double r = std::sqrt(-2.0 * std::log(philox_uniform(block.w[first])));
        double t = 2.0 * std::numbers::pi * philox_uniform(block.w[first + 1]);
        v = a + b * (word % 2 == 0 ? r * std::cos(t) : r * std::sin(t));
        break;
      }
      case RandomKind::bernoulli:
        v = u < a ? 1.0 : 0.0;
        break;
      case RandomKind::randint: {
        // floor(u * range) lands in [0, range) because u < 1.
        double range = b - a;
        v = a + std::min(std::floor(u * range), range - 1);
        break;
      }
    }
    Coord c = unravel(i, out.shape());
    set(out, c, v);
    if (kind == RandomKind::uniform && is_floating(out.dtype())) keep_below(out, c, b);
  }
}

Backend& reference_backend() {
  static ReferenceBackend backend;
  return backend;
}

}  // namespace rw
