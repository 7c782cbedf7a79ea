// Elementwise kernels: unary, unary_backward, binary and where.
//
// Every kernel is a per-element functor handed to a loop template that has a unit-stride fast
// path (which the compiler vectorises) and a strided fallback. bf16/f16 compute in float; integer
// dtypes compute in their own type. Large contiguous f32 transcendentals (exp, tanh, gelu, ...)
// go to oneDNN's JIT eltwise primitives, because libm calls do not vectorise.
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include <oneapi/dnnl/dnnl.hpp>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/dispatch.h"
#include "backends/cpu/onednn_cache.h"
#include "backends/cpu/strided_loop.h"

namespace rw {
namespace {

template <typename T>
inline constexpr bool is_half_v = std::is_same_v<T, bf16> || std::is_same_v<T, f16>;
// The type a kernel computes in for storage type T.
template <typename T>
using acc_t = std::conditional_t<is_half_v<T>, float, T>;

// out[i] = f(x[i]). out is usually contiguous; any layout works.
template <typename Out, typename In, typename F>
void map1(const Tensor& x, const Tensor& out, F f) {
  cpu::strided_loop<2>(out.shape(), {&out, &x},
                       [&f](std::array<char*, 2> p, int64_t n, std::array<int64_t, 2> s) {
                         auto* o = reinterpret_cast<Out*>(p[0]);
                         const auto* a = reinterpret_cast<const In*>(p[1]);
                         if (s[0] == sizeof(Out) && s[1] == sizeof(In)) {
                           for (int64_t i = 0; i < n; ++i) o[i] = f(a[i]);
                         } else if (s[0] == sizeof(Out) && s[1] == 0) {
                           const Out v = f(*a);
                           for (int64_t i = 0; i < n; ++i) o[i] = v;
                         } else {
                           for (int64_t i = 0; i < n; ++i) {
                             *reinterpret_cast<Out*>(p[0] + i * s[0]) =
                                 f(*reinterpret_cast<const In*>(p[1] + i * s[1]));
                           }
                         }
                       });
}

// out[i] = f(a[i], b[i]), with fast paths for the unit-stride and scalar-broadcast cases.
template <typename Out, typename In, typename F>
void map2(const Tensor& a, const Tensor& b, const Tensor& out, F f) {
  cpu::strided_loop<3>(out.shape(), {&out, &a, &b},
                       [&f](std::array<char*, 3> p, int64_t n, std::array<int64_t, 3> s) {
                         auto* o = reinterpret_cast<Out*>(p[0]);
                         const auto* x = reinterpret_cast<const In*>(p[1]);
                         const auto* y = reinterpret_cast<const In*>(p[2]);
                         constexpr auto kIn = static_cast<int64_t>(sizeof(In));
                         if (s[0] == sizeof(Out) && s[1] == kIn && s[2] == kIn) {
                           for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], y[i]);
                         } else if (s[0] == sizeof(Out) && s[1] == kIn && s[2] == 0) {
                           const In yv = *y;
                           for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], yv);
                         } else if (s[0] == sizeof(Out) && s[1] == 0 && s[2] == kIn) {
                           const In xv = *x;
                           for (int64_t i = 0; i < n; ++i) o[i] = f(xv, y[i]);
                         } else {
                           for (int64_t i = 0; i < n; ++i) {
                             *reinterpret_cast<Out*>(p[0] + i * s[0]) =
                                 f(*reinterpret_cast<const In*>(p[1] + i * s[1]),
                                   *reinterpret_cast<const In*>(p[2] + i * s[2]));
                           }
                         }
                       });
}

// --- scalar math ---------------------------------------------------------------------------------

template <typename A>
inline A gelu_tanh_f(A x) {
  const A k = static_cast<A>(0.7978845608028654);  // sqrt(2/pi)
  const A c = static_cast<A>(0.044715);
  return A(0.5) * x * (A(1) + std::tanh(k * (x + c * x * x * x)));
}
template <typename A>
inline A gelu_erf_f(A x) {
  return A(0.5) * x * (A(1) + std::erf(x * static_cast<A>(0.7071067811865476)));
}
template <typename A>
inline A gelu_tanh_grad(A x) {
  const A k = static_cast<A>(0.7978845608028654);
  const A c = static_cast<A>(0.044715);
  const A t = std::tanh(k * (x + c * x * x * x));
  return A(0.5) * (A(1) + t) + A(0.5) * x * (A(1) - t * t) * k * (A(1) + A(3) * c * x * x);
}
template <typename A>
inline A gelu_erf_grad(A x) {
  const A cdf = A(0.5) * (A(1) + std::erf(x * static_cast<A>(0.7071067811865476)));
  const A pdf = std::exp(A(-0.5) * x * x) * static_cast<A>(0.3989422804014327);  // 1/sqrt(2pi)
  return cdf + x * pdf;
}

// x^e for integers by repeated squaring; a negative exponent truncates 1/x^|e| like C.
template <typename T>
T int_pow(T base, int64_t e) {
  if (e < 0) {
    if constexpr (std::is_signed_v<T>) {
      if (base == T(-1)) return (e & 1) ? T(-1) : T(1);
    }
    return base == T(1) ? T(1) : T(0);  // 0^negative is undefined; 0 like an integer division
  }
  T result = 1;
  while (e > 0) {
    if (e & 1) result = static_cast<T>(result * base);
    base = static_cast<T>(base * base);
    e >>= 1;
  }
  return result;
}

// An integer bound from a double one (+-inf for none), saturated to T's range.
template <typename T>
T int_bound(double v) {
  if (v <= static_cast<double>(std::numeric_limits<T>::lowest())) {
    return std::numeric_limits<T>::lowest();
  }
  if (v >= static_cast<double>(std::numeric_limits<T>::max())) return std::numeric_limits<T>::max();
  return static_cast<T>(v);
}

template <typename T>
bool is_finite_value(T v) {
  if constexpr (std::is_floating_point_v<acc_t<T>>) {
    return std::isfinite(static_cast<acc_t<T>>(v));
  } else {
    return true;
  }
}

// --- unary ---------------------------------------------------------------------------------------

template <typename T>
void unary_floating(UnaryOp op, const Tensor& x, const Tensor& out, UnaryParams prm) {
  using A = acc_t<T>;
  auto run = [&](auto f) { map1<T, T>(x, out, [f](T v) { return static_cast<T>(f(A(v))); }); };
  switch (op) {
    case UnaryOp::neg:
      return run([](A v) { return -v; });
    case UnaryOp::abs:
      return run([](A v) { return std::abs(v); });
    case UnaryOp::sign:
      return run([](A v) { return v > A(0) ? A(1) : (v < A(0) ? A(-1) : v); });
    case UnaryOp::exp:
      return run([](A v) { return std::exp(v); });
    case UnaryOp::log:
      return run([](A v) { return std::log(v); });
    case UnaryOp::log1p:
      return run([](A v) { return std::log1p(v); });
    case UnaryOp::sqrt:
      return run([](A v) { return std::sqrt(v); });
    case UnaryOp::rsqrt:
      return run([](A v) { return A(1) / std::sqrt(v); });
    case UnaryOp::square:
      return run([](A v) { return v * v; });
    case UnaryOp::reciprocal:
      return run([](A v) { return A(1) / v; });
    case UnaryOp::sin:
      return run([](A v) { return std::sin(v); });
    case UnaryOp::cos:
      return run([](A v) { return std::cos(v); });
    case UnaryOp::tanh:
      return run([](A v) { return std::tanh(v); });
    case UnaryOp::sigmoid:
      return run([](A v) { return A(1) / (A(1) + std::exp(-v)); });
    case UnaryOp::relu:
      return run([](A v) { return std::max(v, A(0)); });  // NaN stays NaN
    case UnaryOp::gelu_tanh:
      return run([](A v) { return gelu_tanh_f(v); });
    case UnaryOp::gelu_erf:
      return run([](A v) { return gelu_erf_f(v); });
    case UnaryOp::erf:
      return run([](A v) { return std::erf(v); });
    case UnaryOp::pow_scalar: {
      const A e = static_cast<A>(prm.a);
      if (prm.a == 2) return run([](A v) { return v * v; });
      if (prm.a == 1) return run([](A v) { return v; });
      return run([e](A v) { return std::pow(v, e); });
    }
    case UnaryOp::clamp: {
      const A lo = static_cast<A>(prm.a), hi = static_cast<A>(prm.b);
      return run([lo, hi](A v) { return std::min(std::max(v, lo), hi); });  // NaN stays NaN
    }
    default:
      break;
  }
  throw Error(fmt::format("cpu unary: op {} is not defined for dtype {}", static_cast<int>(op),
                          out.dtype()));
}

template <typename T>
void unary_integral(UnaryOp op, const Tensor& x, const Tensor& out, UnaryParams prm) {
  auto run = [&](auto f) { map1<T, T>(x, out, f); };
  switch (op) {
    case UnaryOp::neg:
      return run([](T v) { return static_cast<T>(-v); });
    case UnaryOp::abs:
      if constexpr (std::is_signed_v<T>) return run([](T v) { return v < 0 ? T(-v) : v; });
      return run([](T v) { return v; });
    case UnaryOp::sign:
      return run([](T v) { return static_cast<T>((T(0) < v) - (v < T(0))); });
    case UnaryOp::square:
      return run([](T v) { return static_cast<T>(v * v); });
    case UnaryOp::relu:
      return run([](T v) { return v > T(0) ? v : T(0); });
    case UnaryOp::pow_scalar: {
      auto e = static_cast<int64_t>(prm.a);
      return run([e](T v) { return int_pow<T>(v, e); });
    }
    case UnaryOp::clamp: {
      const T lo = int_bound<T>(prm.a), hi = int_bound<T>(prm.b);
      return run([lo, hi](T v) { return std::min(std::max(v, lo), hi); });
    }
    default:
      break;
  }
  throw Error(fmt::format("cpu unary: op {} is not defined for dtype {}", static_cast<int>(op),
                          out.dtype()));
}

// --- unary backward ------------------------------------------------------------------------------

// dx[i] = f(x[i], y[i], dy[i]) over contiguous operands (x or y may be unused and undefined).
template <typename T, typename F>
void map_backward(const Tensor& x, const Tensor& y, const Tensor& dy, const Tensor& dx, F f) {
  using A = acc_t<T>;
  const int64_t n = dx.numel();
  const T* xp = x.defined() ? static_cast<const T*>(x.data_ptr()) : nullptr;
  const T* yp = y.defined() ? static_cast<const T*>(y.data_ptr()) : nullptr;
  const T* gp = static_cast<const T*>(dy.data_ptr());
  T* op = static_cast<T*>(dx.data_ptr());
  auto body = [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      op[i] = static_cast<T>(f(xp ? A(xp[i]) : A(0), yp ? A(yp[i]) : A(0), A(gp[i])));
    }
  };
  if (n < cpu::kParallelGrain || omp_in_parallel()) {
    body(0, n);
    return;
  }
#pragma omp parallel
  {
    int t = omp_get_thread_num(), nt = omp_get_num_threads();
    int64_t chunk = (n + nt - 1) / nt;
    int64_t b = std::min<int64_t>(n, t * chunk), e = std::min<int64_t>(n, b + chunk);
    body(b, e);
  }
}

template <typename T>
void unary_backward_floating(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& dy,
                             const Tensor& dx, UnaryParams prm) {
  using A = acc_t<T>;
  auto run = [&](auto f) { map_backward<T>(x, y, dy, dx, f); };
  switch (op) {
    case UnaryOp::neg:
      return run([](A, A, A g) { return -g; });
    case UnaryOp::abs:
      return run([](A v, A, A g) { return v > A(0) ? g : (v < A(0) ? -g : A(0)); });
    case UnaryOp::sign:
      return run([](A, A, A) { return A(0); });
    case UnaryOp::exp:
      return run([](A, A r, A g) { return g * r; });
    case UnaryOp::log:
      return run([](A v, A, A g) { return g / v; });
    case UnaryOp::log1p:
      return run([](A v, A, A g) { return g / (A(1) + v); });
    case UnaryOp::sqrt:
      return run([](A, A r, A g) { return g * A(0.5) / r; });
    case UnaryOp::rsqrt:
      return run([](A, A r, A g) { return g * A(-0.5) * r * r * r; });
    case UnaryOp::square:
      return run([](A v, A, A g) { return g * A(2) * v; });
    case UnaryOp::reciprocal:
      return run([](A, A r, A g) { return -g * r * r; });
    case UnaryOp::sin:
      return run([](A v, A, A g) { return g * std::cos(v); });
    case UnaryOp::cos:
      return run([](A v, A, A g) { return -g * std::sin(v); });
    case UnaryOp::tanh:
      return run([](A, A r, A g) { return g * (A(1) - r * r); });
    case UnaryOp::sigmoid:
      return run([](A, A r, A g) { return g * r * (A(1) - r); });
    case UnaryOp::relu:
      return run([](A v, A, A g) { return v > A(0) ? g : A(0); });
    case UnaryOp::gelu_tanh:
      return run([](A v, A, A g) { return g * gelu_tanh_grad(v); });
    case UnaryOp::gelu_erf:
      return run([](A v, A, A g) { return g * gelu_erf_grad(v); });
    case UnaryOp::erf:
      return run([](A v, A, A g) {
        return g * static_cast<A>(1.1283791670955126) * std::exp(-v * v);  // 2/sqrt(pi)
      });
    case UnaryOp::pow_scalar: {
      const A e = static_cast<A>(prm.a);
      if (prm.a == 0) return run([](A, A, A) { return A(0); });  // not 0 * inf at x = 0
      if (prm.a == 1) return run([](A, A, A g) { return g; });
      if (prm.a == 2) return run([](A v, A, A g) { return g * A(2) * v; });
      return run([e](A v, A, A g) { return g * e * std::pow(v, e - A(1)); });
    }
    case UnaryOp::clamp: {
      const A lo = static_cast<A>(prm.a), hi = static_cast<A>(prm.b);
      return run([lo, hi](A v, A, A g) { return v >= lo && v <= hi ? g : A(0); });
    }
    default:
      break;
  }
  throw Error(fmt::format("cpu unary_backward: op {} has no derivative", static_cast<int>(op)));
}

// --- binary --------------------------------------------------------------------------------------

template <typename T>
void binary_arith(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  using A = acc_t<T>;
  auto run = [&](auto f) {
    map2<T, T>(a, b, out, [f](T x, T y) { return static_cast<T>(f(A(x), A(y))); });
  };
  switch (op) {
    case BinaryOp::add:
      return run([](A x, A y) { return x + y; });
    case BinaryOp::sub:
      return run([](A x, A y) { return x - y; });
    case BinaryOp::mul:
      return run([](A x, A y) { return x * y; });
    case BinaryOp::div:
      if constexpr (std::is_integral_v<A>) {
        // The op layer promotes integer division to floating; this keeps the kernel total.
        return run([](A x, A y) { return y == A(0) ? A(0) : static_cast<A>(x / y); });
      } else {
        return run([](A x, A y) { return x / y; });
      }
    case BinaryOp::maximum:
      if constexpr (std::is_integral_v<A>) {
        return run([](A x, A y) { return std::max(x, y); });
      } else {
        return run([](A x, A y) { return x > y || x != x ? x : y; });  // NaN propagates
      }
    case BinaryOp::minimum:
      if constexpr (std::is_integral_v<A>) {
        return run([](A x, A y) { return std::min(x, y); });
      } else {
        return run([](A x, A y) { return x < y || x != x ? x : y; });
      }
    case BinaryOp::pow:
      if constexpr (std::is_integral_v<A>) {
        return run([](A x, A y) { return int_pow<A>(x, static_cast<int64_t>(y)); });
      } else {
        return run([](A x, A y) { return y == A(2) ? x * x : std::pow(x, y); });
      }
    default:
      break;
  }
  throw Error(fmt::format("cpu binary: op {} is not arithmetic", static_cast<int>(op)));
}

template <typename T>
void binary_compare(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  using A = acc_t<T>;
  auto run = [&](auto f) { map2<bool, T>(a, b, out, [f](T x, T y) { return f(A(x), A(y)); }); };
  switch (op) {
    case BinaryOp::eq:
      return run([](A x, A y) { return x == y; });
    case BinaryOp::ne:
      return run([](A x, A y) { return x != y; });
    case BinaryOp::lt:
      return run([](A x, A y) { return x < y; });
    case BinaryOp::le:
      return run([](A x, A y) { return x <= y; });
    case BinaryOp::gt:
      return run([](A x, A y) { return x > y; });
    case BinaryOp::ge:
      return run([](A x, A y) { return x >= y; });
    default:
      break;
  }
  throw Error(fmt::format("cpu binary: op {} is not a comparison", static_cast<int>(op)));
}

// --- oneDNN eltwise for large contiguous f32
// ------------------------------------------------------

// Below this many elements the plain loops win (no primitive lookup, no thread start-up).
constexpr int64_t kDnnlMinElements = 16384;
// Cache-key tags ("ELT0", "ELT1"), distinct from the other kernels' primitive kinds.
constexpr int64_t kEltwiseForwardKey = 0x454C5430;
constexpr int64_t kEltwiseBackwardKey = 0x454C5431;

// Only ops whose scalar loop does not vectorise (libm calls) are worth a primitive; undef for the
// rest. (A plain enum, not std::optional: GCC 12's UBSan misreads the optional's flag here.)
dnnl::algorithm dnnl_algorithm(UnaryOp op) {
  using alg = dnnl::algorithm;
  switch (op) {
    // Not exp (oneDNN 2.6 turns NaN into inf) nor log (errors of ~50 ulp).
    case UnaryOp::sqrt:
      return alg::eltwise_sqrt;
    case UnaryOp::tanh:
      return alg::eltwise_tanh;
    case UnaryOp::sigmoid:
      return alg::eltwise_logistic;
    case UnaryOp::gelu_tanh:
      return alg::eltwise_gelu_tanh;
    case UnaryOp::gelu_erf:
      return alg::eltwise_gelu_erf;
    default:
      return alg::undef;
  }
}

bool dnnl_eligible(std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts) {
    if (t->dtype() != DType::f32 || !t->is_contiguous()) return false;
  }
  return ts.begin()[0]->numel() >= kDnnlMinElements;
}

dnnl::memory::desc flat_f32(int64_t n) {
  return dnnl::memory::desc({n}, dnnl::memory::data_type::f32, dnnl::memory::format_tag::a);
}

dnnl::eltwise_forward::primitive_desc eltwise_forward_pd(dnnl::algorithm alg, int64_t n) {
  dnnl::eltwise_forward::desc d(dnnl::prop_kind::forward_training, alg, flat_f32(n));
  return dnnl::eltwise_forward::primitive_desc(d, cpu::dnnl_engine());
}

// Runs op on oneDNN when it is worth it; false leaves the work to the loops.
bool dnnl_unary(UnaryOp op, const Tensor& x, const Tensor& out, UnaryParams) {
  const dnnl::algorithm alg = dnnl_algorithm(op);
  if (alg == dnnl::algorithm::undef || !dnnl_eligible({&out, &x})) return false;
  const int64_t n = out.numel();
  cpu::PrimitiveKey key(kEltwiseForwardKey);
  key.add(static_cast<int64_t>(alg)).add(n);
  cpu::CachedEntry entry = cpu::cached_entry(key, [&] {
    cpu::CachedPrimitive built;
    auto pd = eltwise_forward_pd(alg, n);
    if (cpu::is_reference_impl(pd)) return built;  // remembered as "use the loops"
    built.primitive = dnnl::eltwise_forward(pd);
    built.descs = {flat_f32(n)};
    return built;
  });
  if (!entry->primitive) return false;
  const auto* md = &entry->descs[0];
  cpu::execute(entry->primitive,
               {{DNNL_ARG_SRC, md, x.data_ptr()}, {DNNL_ARG_DST, md, out.data_ptr()}});
  return true;
}

// The gelu derivatives are the expensive backward loops (erf/tanh per element); the others are
// plain arithmetic on y that the loops vectorise.
bool dnnl_unary_backward(UnaryOp op, const Tensor& x, const Tensor&, const Tensor& dy,
                         const Tensor& dx, UnaryParams) {
  if (op != UnaryOp::gelu_erf && op != UnaryOp::gelu_tanh) return false;
  if (!x.defined() || !dnnl_eligible({&dx, &x, &dy})) return false;
  const dnnl::algorithm alg = dnnl_algorithm(op);
  const int64_t n = dx.numel();
  cpu::PrimitiveKey key(kEltwiseBackwardKey);
  key.add(static_cast<int64_t>(alg)).add(n);
  cpu::CachedEntry entry = cpu::cached_entry(key, [&] {
    cpu::CachedPrimitive built;
    auto md = flat_f32(n);
    dnnl::eltwise_backward::desc d(alg, md, md);
    dnnl::eltwise_backward::primitive_desc pd(d, cpu::dnnl_engine(), eltwise_forward_pd(alg, n));
    if (cpu::is_reference_impl(pd)) return built;
    built.primitive = dnnl::eltwise_backward(pd);
    built.descs = {md};
    return built;
  });
  if (!entry->primitive) return false;
  const auto* md = &entry->descs[0];
  cpu::execute(entry->primitive, {{DNNL_ARG_SRC, md, x.data_ptr()},
                                  {DNNL_ARG_DIFF_DST, md, dy.data_ptr()},
                                  {DNNL_ARG_DIFF_SRC, md, dx.data_ptr()}});
  return true;
}

}  // namespace

void CpuBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out, UnaryParams params) {
  if (out.numel() == 0) return;
  if (op == UnaryOp::logical_not) {
    map1<bool, bool>(x, out, [](bool v) { return !v; });
    return;
  }
  if (op == UnaryOp::isfinite) {
    RW_DISPATCH_ALL(x.dtype(), "isfinite", [&] {
      map1<bool, scalar_t>(x, out, [](scalar_t v) { return is_finite_value(v); });
    });
    return;
  }
  if (dnnl_unary(op, x, out, params)) return;
  RW_DISPATCH_ALL(out.dtype(), "unary", [&] {
    if constexpr (std::is_floating_point_v<acc_t<scalar_t>>) {
      unary_floating<scalar_t>(op, x, out, params);
    } else if constexpr (!std::is_same_v<scalar_t, bool>) {
      RW_CHECK(!unary_is_float_only(op), "cpu unary: op {} needs a floating dtype, got {}",
               static_cast<int>(op), out.dtype());
      unary_integral<scalar_t>(op, x, out, params);
    } else {
      throw Error(fmt::format("cpu unary: op {} is not defined for bool", static_cast<int>(op)));
    }
  });
}

void CpuBackend::unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& dy,
                                const Tensor& dx, UnaryParams params) {
  if (dx.numel() == 0) return;
  if (dnnl_unary_backward(op, x, y, dy, dx, params)) return;
  RW_DISPATCH_ALL(dx.dtype(), "unary_backward", [&] {
    if constexpr (std::is_floating_point_v<acc_t<scalar_t>>) {
      unary_backward_floating<scalar_t>(op, x, y, dy, dx, params);
    } else {
      throw Error(fmt::format("cpu unary_backward: needs a floating dtype, got {}", dx.dtype()));
    }
  });
}

void CpuBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  if (out.numel() == 0) return;
  if (op == BinaryOp::logical_and) {
    map2<bool, bool>(a, b, out, [](bool x, bool y) { return x && y; });
    return;
  }
  if (op == BinaryOp::logical_or) {
    map2<bool, bool>(a, b, out, [](bool x, bool y) { return x || y; });
    return;
  }
  if (is_comparison(op)) {
    RW_DISPATCH_ALL(a.dtype(), "compare", [&] { binary_compare<scalar_t>(op, a, b, out); });
    return;
  }
  RW_DISPATCH_ALL(out.dtype(), "binary", [&] {
    if constexpr (std::is_same_v<scalar_t, bool>) {
      // maximum/minimum of bools are or/and; arithmetic on bool is rejected by the op layer.
      if (op == BinaryOp::maximum) {
        map2<bool, bool>(a, b, out, [](bool x, bool y) { return x || y; });
      } else if (op == BinaryOp::minimum) {
        map2<bool, bool>(a, b, out, [](bool x, bool y) { return x && y; });
      } else {
        throw Error(fmt::format("cpu binary: op {} is not defined for bool", static_cast<int>(op)));
      }
    } else {
      binary_arith<scalar_t>(op, a, b, out);
    }
  });
}

void CpuBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  if (out.numel() == 0) return;
  RW_DISPATCH_ALL(out.dtype(), "where", [&] {
    using T = scalar_t;
    cpu::strided_loop<4>(out.shape(), {&out, &cond, &a, &b},
                         [](std::array<char*, 4> p, int64_t n, std::array<int64_t, 4> s) {
                           auto* o = reinterpret_cast<T*>(p[0]);
                           const auto* c = reinterpret_cast<const bool*>(p[1]);
                           const auto* x = reinterpret_cast<const T*>(p[2]);
                           const auto* y = reinterpret_cast<const T*>(p[3]);
                           constexpr auto kT = static_cast<int64_t>(sizeof(T));
                           if (s[0] == kT && s[1] == 1 && s[2] == kT && s[3] == kT) {
                             for (int64_t i = 0; i < n; ++i) o[i] = c[i] ? x[i] : y[i];
                           } else if (s[0] == kT && s[1] == 1 && s[2] == kT && s[3] == 0) {
                             const T yv = *y;
                             for (int64_t i = 0; i < n; ++i) o[i] = c[i] ? x[i] : yv;
                           } else {
                             for (int64_t i = 0; i < n; ++i) {
                               bool ci = *reinterpret_cast<const bool*>(p[1] + i * s[1]);
                               *reinterpret_cast<T*>(p[0] + i * s[0]) =
                                   ci ? *reinterpret_cast<const T*>(p[2] + i * s[2])
                                      : *reinterpret_cast<const T*>(p[3] + i * s[3]);
                             }
                           }
                         });
  });
}

}  // namespace rw
