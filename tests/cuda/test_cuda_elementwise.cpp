// The CUDA elementwise kernels (unary, unary_backward, binary, where) beyond the op table: sizes
// that take the grid-stride loops, broadcasting at ranks 4-6, bf16/f16 rounding, NaN and
// infinities, bool results, strided and misaligned inputs, integer semantics, in-place writes and
// errors. Every check runs the same inputs through the CPU backend and compares: bit for bit where
// both compute with correctly rounded operations (arithmetic, sqrt, division, comparisons,
// selections), within a few ulp where libm functions differ (exp, tanh, erf, ...).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "core/ops.h"
#include "cuda/cuda_test_util.h"
#include "test_util.h"

namespace rw {
namespace {

constexpr Device kGpu = Device::cuda(0);
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// How closely a GPU result must match the CPU's.
struct Tol {
  // 0: bit-for-bit values (NaN matches NaN, a zero needs the CPU's sign). Else finite values
  // match when |gpu - cpu| <= rel * (1 + |cpu|): near zero the bound is absolute, since formulas
  // like gelu's 1 + erf(x) cancel and turn an ulp of difference in erf into many of the result.
  double rel = 0;
  // The largest fraction of elements allowed to differ at all (within `rel`): half results of
  // libm functions may round the other way where the f32 values differ in their last bits.
  double max_fraction_differing = 1;
};
constexpr Tol kExact{};
// libm functions in f32: CUDA's are within 2-4 ulp of glibc's (oneDNN's for large tensors).
constexpr Tol kF32Libm{.rel = 1e-6};
constexpr Tol kF64Libm{.rel = 1e-13};
// One unit in the last place of the half type, for at most 2% of the elements.
Tol half_libm(DType dt) {
  return {.rel = dt == DType::bf16 ? 0x1p-7 : 0x1p-10, .max_fraction_differing = 0.02};
}

// "" when `gpu` (on cuda:0) matches `cpu` under `tol`; else the first differences.
std::string compare(const Tensor& gpu, const Tensor& cpu, Tol tol) {
  if (gpu.device() != kGpu)
    return fmt::format("the result is on {}, expected cuda:0", gpu.device());
  if (gpu.dtype() != cpu.dtype())
    return fmt::format("dtype {} vs cpu {}", gpu.dtype(), cpu.dtype());
  if (gpu.shape() != cpu.shape())
    return fmt::format("shape {} vs cpu {}", gpu.shape(), cpu.shape());
  std::vector<double> g = gpu.to_vector<double>(), w = cpu.to_vector<double>();
  std::string report;
  int64_t differing = 0, bad = 0;
  for (std::size_t i = 0; i < g.size(); ++i) {
    const bool both_nan = std::isnan(g[i]) && std::isnan(w[i]);
    const bool identical = both_nan || (g[i] == w[i] && std::signbit(g[i]) == std::signbit(w[i]));
    if (identical) continue;
    ++differing;
    const bool finite = std::isfinite(g[i]) && std::isfinite(w[i]);
    const bool close =
        tol.rel > 0 && finite && std::fabs(g[i] - w[i]) <= tol.rel * (1.0 + std::fabs(w[i]));
    if (!close && bad++ < 3) {
      report += fmt::format("; at flat index {}: gpu {:.17g} vs cpu {:.17g}", i, g[i], w[i]);
    }
  }
  const auto allowed =
      static_cast<int64_t>(tol.max_fraction_differing * static_cast<double>(g.size()));
  if (bad == 0 && differing <= allowed) return "";
  return fmt::format(
      "{} of {} elements differ ({} beyond tolerance {:g} * (1 + |cpu|), {} allowed to "
      "differ at all; dtype {}, shape {}){}",
      differing, g.size(), bad, tol.rel, allowed, cpu.dtype(), cpu.shape(), report);
}

#define RW_CHECK_MATCH(gpu, cpu, tol, what)                                        \
  do {                                                                             \
    const std::string rw_m_ = compare((gpu), (cpu), (tol));                        \
    CHECK_MESSAGE(rw_m_.empty(), std::string(what) << " (gpu vs cpu): " << rw_m_); \
  } while (0)

// Runs `f` on the CPU inputs and on copies moved to the GPU; returns {gpu result, cpu result}.
template <typename F>
std::pair<Tensor, Tensor> both(F f, const std::vector<Tensor>& cpu_inputs) {
  std::vector<Tensor> gpu_inputs;
  for (const Tensor& x : cpu_inputs) gpu_inputs.push_back(x.to(kGpu));
  return {f(gpu_inputs), f(cpu_inputs)};
}

using V = const std::vector<Tensor>&;

Tensor normal(Shape shape, uint64_t seed, DType dt = DType::f32) {
  return randn(std::move(shape), PhiloxState{seed, 11, 0}, {.dtype = DType::f64}).to(dt);
}
Tensor positive(Shape shape, uint64_t seed, DType dt = DType::f32) {  // in [0.25, 2.25)
  return uniform(std::move(shape), 0.25, 2.25, PhiloxState{seed, 12, 0}, {.dtype = DType::f64})
      .to(dt);
}
Tensor mask(Shape shape, uint64_t seed) {
  return lt(rand(std::move(shape), PhiloxState{seed, 13, 0}), 0.5);
}
// x * factor in `dt` (integer dtypes truncate): spreads normal values over a few integers.
Tensor scaled(const Tensor& x, double factor, DType dt) { return mul(x, factor).to(dt); }
// x with its first elements replaced by `head` (points where derivatives switch: 0, bounds).
Tensor with_head(const Tensor& x, const std::vector<double>& head) {
  std::vector<double> v = x.to_vector<double>();
  for (std::size_t i = 0; i < head.size() && i < v.size(); ++i) v[i] = head[i];
  return from_vector<double>(v, x.shape()).to(x.dtype());
}

struct NamedUnary {
  const char* name;
  Tensor (*fn)(const Tensor&);
  bool libm;  // computed with a libm function (not correctly rounded): compared within ulps
};

// Every floating unary op, on inputs where it is defined (the callers pick the values).
const std::vector<NamedUnary>& unary_ops() {
  static const std::vector<NamedUnary> ops = {
      {"neg", [](const Tensor& x) { return neg(x); }, false},
      {"abs", [](const Tensor& x) { return abs(x); }, false},
      {"sign", [](const Tensor& x) { return sign(x); }, false},
      {"exp", [](const Tensor& x) { return exp(x); }, true},
      {"log", [](const Tensor& x) { return log(x); }, true},
      {"log1p", [](const Tensor& x) { return log1p(x); }, true},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, false},
      {"rsqrt", [](const Tensor& x) { return rsqrt(x); }, false},
      {"square", [](const Tensor& x) { return square(x); }, false},
      {"reciprocal", [](const Tensor& x) { return reciprocal(x); }, false},
      {"sin", [](const Tensor& x) { return sin(x); }, true},
      {"cos", [](const Tensor& x) { return cos(x); }, true},
      {"tanh", [](const Tensor& x) { return tanh(x); }, true},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, true},
      {"relu", [](const Tensor& x) { return relu(x); }, false},
      {"erf", [](const Tensor& x) { return erf(x); }, true},
      {"gelu_erf", [](const Tensor& x) { return gelu(x); }, true},
      {"gelu_tanh", [](const Tensor& x) { return gelu(x, GeluApprox::tanh); }, true},
      {"pow_2", [](const Tensor& x) { return pow(x, 2.0); }, false},
      {"pow_1", [](const Tensor& x) { return pow(x, 1.0); }, false},
      {"pow_0", [](const Tensor& x) { return pow(x, 0.0); }, true},
      {"pow_half", [](const Tensor& x) { return pow(x, 0.5); }, true},
      {"pow_-1.5", [](const Tensor& x) { return pow(x, -1.5); }, true},
      {"pow_3", [](const Tensor& x) { return pow(x, 3.0); }, true},
      {"clamp", [](const Tensor& x) { return clamp(x, -0.5, 0.7); }, false},
      {"clamp_min", [](const Tensor& x) { return clamp(x, -0.5, std::nullopt); }, false},
      {"clamp_max", [](const Tensor& x) { return clamp(x, std::nullopt, 0.7); }, false},
  };
  return ops;
}

Tol libm_tol(DType dt) {
  if (dt == DType::f64) return kF64Libm;
  if (dt == DType::f32) return kF32Libm;
  return half_libm(dt);
}

}  // namespace

TEST_CASE("cuda elementwise: large tensors take the grid-stride loops") {
  RW_REQUIRE_GPU();
  // Past the 4096 blocks * 256 threads a launch uses (elementwise_map.cuh) even at 4 (f32) or 8
  // (bf16) elements per thread, and of odd sizes, so the vector loop, its tail and the strided
  // loop all go round more than once.
  const int64_t n = (int64_t{1} << 22) + 5;
  const std::vector<Tensor> in = {normal({n}, 1), normal({n}, 2), mask({n}, 3)};
  auto [add_g, add_c] = both([](V x) { return add(x[0], x[1]); }, in);
  RW_CHECK_MATCH(add_g, add_c, kExact, "add, f32 contiguous");
  auto [exp_g, exp_c] = both([](V x) { return exp(x[0]); }, in);
  RW_CHECK_MATCH(exp_g, exp_c, kF32Libm, "exp, f32 contiguous");
  auto [where_g, where_c] = both([](V x) { return where(x[2], x[0], x[1]); }, in);
  RW_CHECK_MATCH(where_g, where_c, kExact, "where, f32 contiguous");
  auto [lt_g, lt_c] = both([](V x) { return lt(x[0], x[1]); }, in);
  RW_CHECK_MATCH(lt_g, lt_c, kExact, "lt, f32 -> bool contiguous");

  const int64_t nh = (int64_t{1} << 23) + 3;
  const std::vector<Tensor> half = {normal({nh}, 4, DType::bf16), normal({nh}, 5, DType::bf16)};
  auto [mul_g, mul_c] = both([](V x) { return mul(x[0], x[1]); }, half);
  RW_CHECK_MATCH(mul_g, mul_c, kExact, "mul, bf16 contiguous");

  // Strided: a transposed view, read through the Indexer.
  const std::vector<Tensor> t = {normal({1025, 1031}, 6), normal({1031, 1025}, 7)};
  auto [tr_g, tr_c] = both([](V x) { return sub(x[0], x[1].transpose(0, 1)); }, t);
  RW_CHECK_MATCH(tr_g, tr_c, kExact, "sub, f32 with a transposed operand");
  auto [tanh_g, tanh_c] = both([](V x) { return tanh(x[1].transpose(0, 1)); }, t);
  RW_CHECK_MATCH(tanh_g, tanh_c, kF32Libm, "tanh, f32 transposed input");
}

TEST_CASE("cuda elementwise: broadcasting at ranks 4 to 6") {
  RW_REQUIRE_GPU();
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{2, 1, 3, 1}, {1, 4, 1, 5}},
      {{2, 3, 1, 4, 1}, {1, 1, 5, 1, 3}},
      {{2, 1, 2, 1, 3, 1}, {1, 3, 1, 2, 1, 4}},
      {{3, 1, 1, 1, 1, 2}, {}},   // against a 0-dim tensor
      {{4, 1, 3, 1}, {2, 3, 1}},  // different ranks
  };
  for (const auto& [sa, sb] : shapes) {
    const std::string where_ = fmt::format("shapes {} and {}", sa, sb);
    for (DType dt : {DType::f32, DType::f64, DType::i64}) {
      CAPTURE(dtype_name(dt));
      const std::vector<Tensor> in = {scaled(normal(sa, 10, DType::f64), 5.0, dt),
                                      scaled(normal(sb, 11, DType::f64), 5.0, dt)};
      auto [add_g, add_c] = both([](V x) { return add(x[0], x[1]); }, in);
      RW_CHECK_MATCH(add_g, add_c, kExact, "add, " + where_);
      auto [mul_g, mul_c] = both([](V x) { return mul(x[0], x[1]); }, in);
      RW_CHECK_MATCH(mul_g, mul_c, kExact, "mul, " + where_);
      auto [max_g, max_c] = both([](V x) { return maximum(x[0], x[1]); }, in);
      RW_CHECK_MATCH(max_g, max_c, kExact, "maximum, " + where_);
      auto [ge_g, ge_c] = both([](V x) { return ge(x[0], x[1]); }, in);
      RW_CHECK_MATCH(ge_g, ge_c, kExact, "ge, " + where_);
    }
    const std::vector<Tensor> in = {positive(sa, 12), normal(sb, 13)};
    auto [pow_g, pow_c] = both([](V x) { return pow(x[0], x[1]); }, in);
    RW_CHECK_MATCH(pow_g, pow_c, kF32Libm, "pow, " + where_);
    const std::vector<Tensor> w = {mask(sb, 14), normal(sa, 15), normal({1}, 16)};
    auto [where_g, where_c] = both([](V x) { return where(x[0], x[1], x[2]); }, w);
    RW_CHECK_MATCH(where_g, where_c, kExact, "where, cond " + where_);
  }
}

TEST_CASE("cuda elementwise: bf16 and f16 compute in f32 and round once, like the CPU") {
  RW_REQUIRE_GPU();
  for (DType dt : {DType::bf16, DType::f16}) {
    CAPTURE(dtype_name(dt));
    const int64_t n = 4099;
    // x over the ops' domain: normal for most, positive for log/sqrt/pow.
    const Tensor x = normal({n}, 20, dt), xp = positive({n}, 21, dt);
    for (const NamedUnary& op : unary_ops()) {
      const std::string name = op.name;
      const bool needs_positive = name.starts_with("log") ||
                                  name.find("sqrt") != std::string::npos ||
                                  name.starts_with("pow_") || name == "reciprocal";
      auto [g, c] = both([&](V v) { return op.fn(v[0]); }, {needs_positive ? xp : x});
      RW_CHECK_MATCH(g, c, op.libm ? half_libm(dt) : kExact, fmt::format("{} {}", name, dt));
    }
    const std::vector<Tensor> in = {x, xp, mask({n}, 22)};
    using Fn = Tensor (*)(V);
    const std::vector<std::pair<const char*, Fn>> exact = {
        {"add", [](V v) { return add(v[0], v[1]); }},
        {"sub", [](V v) { return sub(v[0], v[1]); }},
        {"mul", [](V v) { return mul(v[0], v[1]); }},
        {"div", [](V v) { return div(v[0], v[1]); }},
        {"maximum", [](V v) { return maximum(v[0], v[1]); }},
        {"minimum", [](V v) { return minimum(v[0], v[1]); }},
        {"mul_scalar", [](V v) { return mul(v[0], 1.7); }},
        {"pow_tensor_2", [](V v) { return pow(v[0], full_like(v[0], 2.0)); }},
        {"where", [](V v) { return where(v[2], v[0], v[1]); }},
        {"lt", [](V v) { return lt(v[0], v[1]); }},
        {"eq", [](V v) { return eq(v[0], v[0]); }},
        {"isfinite", [](V v) { return isfinite(div(v[0], v[0])); }},
    };
    for (const auto& [name, fn] : exact) {
      auto [g, c] = both(fn, in);
      RW_CHECK_MATCH(g, c, kExact, fmt::format("{} {}", name, dt));
    }
    auto [g, c] = both([](V v) { return pow(v[1], v[0]); }, in);
    RW_CHECK_MATCH(g, c, half_libm(dt), fmt::format("pow {}", dt));
  }
}

TEST_CASE("cuda elementwise: NaN, infinities and signed zeros behave as on the CPU") {
  RW_REQUIRE_GPU();
  const std::vector<double> special = {kNaN, kInf,  -kInf,  0.0,  -0.0, 1.0,   -1.0, 0.5,
                                       -2.0, 1e-30, -1e-30, 1e30, 88.8, -88.8, 3e38, -0.7};
  for (DType dt : {DType::f32, DType::f64}) {
    CAPTURE(dtype_name(dt));
    const Tensor x = from_vector<double>(special).to(dt);
    for (const NamedUnary& op : unary_ops()) {
      auto [g, c] = both([&](V v) { return op.fn(v[0]); }, {x});
      RW_CHECK_MATCH(g, c, op.libm ? libm_tol(dt) : kExact, fmt::format("{} {}", op.name, dt));
    }
    // Clamp bounds at +-inf are no bound; NaN stays NaN.
    auto [cl_g, cl_c] = both([](V v) { return clamp(v[0], -kInf, 2.0); }, {x});
    RW_CHECK_MATCH(cl_g, cl_c, kExact, fmt::format("clamp(-inf, 2) {}", dt));
    // Every pair of special values through the binary ops.
    const auto m = static_cast<int64_t>(special.size());
    const std::vector<Tensor> pair = {x.reshape({m, 1}), x.reshape({1, m})};
    using Fn = Tensor (*)(V);
    const std::vector<std::pair<const char*, Fn>> exact = {
        {"add", [](V v) { return add(v[0], v[1]); }},
        {"sub", [](V v) { return sub(v[0], v[1]); }},
        {"mul", [](V v) { return mul(v[0], v[1]); }},
        {"div", [](V v) { return div(v[0], v[1]); }},
        {"maximum", [](V v) { return maximum(v[0], v[1]); }},
        {"minimum", [](V v) { return minimum(v[0], v[1]); }},
        {"eq", [](V v) { return eq(v[0], v[1]); }},
        {"ne", [](V v) { return ne(v[0], v[1]); }},
        {"le", [](V v) { return le(v[0], v[1]); }},
        {"gt", [](V v) { return gt(v[0], v[1]); }},
        {"isfinite", [](V v) { return isfinite(add(v[0], v[1])); }},
    };
    for (const auto& [name, fn] : exact) {
      auto [g, c] = both(fn, pair);
      RW_CHECK_MATCH(g, c, kExact, fmt::format("{} {} of special values", name, dt));
    }
    auto [pow_g, pow_c] = both([](V v) { return pow(v[0], v[1]); }, pair);
    RW_CHECK_MATCH(pow_g, pow_c, libm_tol(dt), fmt::format("pow {} of special values", dt));
  }
}

TEST_CASE("cuda elementwise: bool results and logical ops") {
  RW_REQUIRE_GPU();
  const Tensor a = mask({5, 7}, 30), b = mask({7}, 31);
  auto [and_g, and_c] = both([](V v) { return logical_and(v[0], v[1]); }, {a, b});
  RW_CHECK_MATCH(and_g, and_c, kExact, "logical_and, broadcast");
  auto [or_g, or_c] = both(
      [](V v) {
        return logical_or(v[0].transpose(0, 1), v[1].reshape({7, 1}));
      },
      {a, b});
  RW_CHECK_MATCH(or_g, or_c, kExact, "logical_or, transposed and broadcast");
  auto [not_g, not_c] = both([](V v) { return logical_not(v[0].transpose(0, 1)); }, {a});
  RW_CHECK_MATCH(not_g, not_c, kExact, "logical_not, transposed");
  auto [eqb_g, eqb_c] = both([](V v) { return eq(v[0], v[1]); }, {a, b});
  RW_CHECK_MATCH(eqb_g, eqb_c, kExact, "eq of bools");
  CHECK(eqb_g.dtype() == DType::boolean);

  // isfinite of an integer tensor is all true; of floats, false exactly at NaN and +-inf.
  const Tensor ints = from_vector<int64_t>({-5, 0, 7}).to(DType::i32);
  auto [fi_g, fi_c] = both([](V v) { return isfinite(v[0]); }, {ints});
  RW_CHECK_MATCH(fi_g, fi_c, kExact, "isfinite of i32");
  CHECK(fi_g.to_vector<double>() == std::vector<double>{1, 1, 1});
  const Tensor halfs = from_vector<double>({1, kInf, kNaN, -kInf, 65504}).to(DType::f16);
  auto [fh_g, fh_c] = both([](V v) { return isfinite(v[0]); }, {halfs});
  RW_CHECK_MATCH(fh_g, fh_c, kExact, "isfinite of f16");
  CHECK(fh_g.to_vector<double>() == std::vector<double>{1, 0, 0, 0, 1});

  // Comparisons of every dtype give bool.
  for (DType dt :
       {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::i64, DType::u8}) {
    CAPTURE(dtype_name(dt));
    const std::vector<Tensor> in = {scaled(positive({4, 6}, 32, DType::f64), 3.0, dt),
                                    scaled(positive({6}, 33, DType::f64), 3.0, dt)};
    auto [g, c] = both([](V v) { return le(v[0], v[1]); }, in);
    RW_CHECK_MATCH(g, c, kExact, fmt::format("le {}", dt));
  }

  // maximum / minimum of bools are or / and (a direct backend call: the op layer keeps
  // arithmetic off bool).
  Backend& gb = backend_for(kGpu);
  Tensor out = empty({5, 7}, {.dtype = DType::boolean, .device = kGpu});
  const Tensor ag = a.to(kGpu), bg = b.to(kGpu).expand({5, 7});
  gb.binary(BinaryOp::maximum, ag, bg, out);
  RW_CHECK_MATCH(out, logical_or(a, b), kExact, "binary maximum of bools");
  gb.binary(BinaryOp::minimum, ag, bg, out);
  RW_CHECK_MATCH(out, logical_and(a, b), kExact, "binary minimum of bools");
}

TEST_CASE("cuda elementwise: strided, narrowed and misaligned inputs") {
  RW_REQUIRE_GPU();
  const std::vector<Tensor> in = {normal({6, 7, 5}, 40), normal({5, 6, 7}, 41), mask({7, 6}, 42)};
  using Fn = Tensor (*)(V);
  const std::vector<std::tuple<const char*, Fn, bool>> cases = {
      {"permuted + permuted",
       [](V v) {
         return add(v[0].permute({2, 0, 1}), v[1]);
       },
       false},
      {"narrowed * sliced",
       [](V v) {
         return mul(v[0].narrow(1, 2, 4), v[1].permute({1, 2, 0}).slice(1, 0, 7, 2));
       },
       false},
      {"neg of a selected, expanded row",
       [](V v) {
         return neg(v[0].select(1, 3).unsqueeze(0).expand({4, 6, 5}));
       },
       false},
      {"exp of a narrowed transpose", [](V v) { return exp(v[0].transpose(0, 2).narrow(0, 1, 3)); },
       true},
      {"where with a transposed cond",
       [](V v) {
         return where(v[2].transpose(0, 1), v[0].select(2, 0),
                      v[1].permute({0, 2, 1}).select(0, 4).transpose(0, 1));
       },
       false},
      {"clamp of a reversed-stride view",
       [](V v) {
         return clamp(v[0].permute({2, 1, 0}), -0.3, 0.4);
       },
       false},
  };
  for (const auto& [name, fn, libm] : cases) {
    auto [g, c] = both(fn, in);
    RW_CHECK_MATCH(g, c, libm ? kF32Libm : kExact, name);
  }
  // A contiguous view that starts one element in: not aligned for vector loads, so the scalar
  // path runs; every dtype width.
  for (DType dt : {DType::f64, DType::f32, DType::bf16, DType::u8, DType::boolean}) {
    CAPTURE(dtype_name(dt));
    const int64_t n = 1001;
    auto values = [&](uint64_t seed) {
      return dt == DType::boolean ? mask({n}, seed)
                                  : scaled(positive({n}, seed, DType::f64), 3.0, dt);
    };
    const std::vector<Tensor> flat = {values(43), values(44)};
    auto [g, c] =
        both([](V v) { return eq(v[0].narrow(0, 1, 999), v[1].narrow(0, 2, 999)); }, flat);
    RW_CHECK_MATCH(g, c, kExact, fmt::format("eq of offset views {}", dt));
    if (dt != DType::boolean) {
      auto [mg, mc] =
          both([](V v) { return maximum(v[0].narrow(0, 1, 999), v[1].narrow(0, 0, 999)); }, flat);
      RW_CHECK_MATCH(mg, mc, kExact, fmt::format("maximum of offset views {}", dt));
    }
  }
}

TEST_CASE("cuda elementwise: integer ops compute in their own type, like the CPU backend") {
  RW_REQUIRE_GPU();
  Backend& gb = backend_for(kGpu);
  Backend& cb = backend_for(Device::cpu());
  const std::vector<double> values = {-7, -3, -1, 0, 1, 2, 3, 100, 127, -128, 200, 255};
  for (DType dt : {DType::i32, DType::i64, DType::u8}) {
    CAPTURE(dtype_name(dt));
    const Tensor x = from_vector<double>(values).to(dt);
    const Tensor xg = x.to(kGpu);
    auto unary_both = [&](UnaryOp op, UnaryParams p, const char* what) {
      Tensor og = empty(x.shape(), {.dtype = dt, .device = kGpu});
      Tensor oc = empty(x.shape(), {.dtype = dt});
      gb.unary(op, xg, og, p);
      cb.unary(op, x, oc, p);
      RW_CHECK_MATCH(og, oc, kExact, fmt::format("{} {}", what, dt));
    };
    unary_both(UnaryOp::neg, {}, "neg");
    unary_both(UnaryOp::abs, {}, "abs");
    unary_both(UnaryOp::sign, {}, "sign");
    unary_both(UnaryOp::square, {}, "square (wrapping)");
    unary_both(UnaryOp::relu, {}, "relu");
    unary_both(UnaryOp::pow_scalar, {.a = 3}, "pow 3 (wrapping)");
    unary_both(UnaryOp::pow_scalar, {.a = -1}, "pow -1 (truncating)");
    unary_both(UnaryOp::pow_scalar, {.a = 0}, "pow 0");
    unary_both(UnaryOp::clamp, {.a = -kInf, .b = 5}, "clamp(-inf, 5)");
    unary_both(UnaryOp::clamp, {.a = -3, .b = kInf}, "clamp(-3, inf)");
    unary_both(UnaryOp::clamp, {.a = -1e30, .b = 1e30}, "clamp(-1e30, 1e30) (saturated bounds)");

    // Every pair of values through the binary ops (division by zero gives 0).
    const auto m = static_cast<int64_t>(values.size());
    const Tensor a = x.reshape({m, 1}).expand({m, m}), b = x.reshape({1, m}).expand({m, m});
    auto binary_both = [&](BinaryOp op, const Tensor& l, const Tensor& r, const char* what) {
      const DType out_dt = is_comparison(op) ? DType::boolean : dt;
      Tensor og = empty(l.shape(), {.dtype = out_dt, .device = kGpu});
      Tensor oc = empty(l.shape(), {.dtype = out_dt});
      gb.binary(op, l.to(kGpu), r.to(kGpu), og);
      cb.binary(op, l, r, oc);
      RW_CHECK_MATCH(og, oc, kExact, fmt::format("{} {}", what, dt));
    };
    binary_both(BinaryOp::add, a, b, "add (wrapping)");
    binary_both(BinaryOp::sub, a, b, "sub (wrapping)");
    binary_both(BinaryOp::mul, a, b, "mul (wrapping)");
    binary_both(BinaryOp::div, a, b, "div (truncating, x / 0 = 0)");
    binary_both(BinaryOp::maximum, a, b, "maximum");
    binary_both(BinaryOp::minimum, a, b, "minimum");
    binary_both(BinaryOp::lt, a, b, "lt");
    binary_both(BinaryOp::eq, a, b, "eq");
    // Small exponents only: the CPU's signed overflow in larger powers is undefined behaviour.
    const Tensor e = from_vector<double>({-3, -1, 0, 1, 2, 3}).to(dt).reshape({1, 6});
    binary_both(BinaryOp::pow, x.reshape({m, 1}).expand({m, 6}), e.expand({m, 6}),
                "pow (negative exponents truncate)");
  }
}

TEST_CASE("cuda elementwise: unary_backward matches the CPU backend") {
  RW_REQUIRE_GPU();
  Backend& gb = backend_for(kGpu);
  Backend& cb = backend_for(Device::cpu());
  struct Grad {
    const char* name;
    UnaryOp op;
    UnaryParams params;
    bool from_y;  // the derivative reads y = op(x) (else x)
    bool libm;
  };
  const std::vector<Grad> grads = {
      {"neg", UnaryOp::neg, {}, false, false},
      {"abs", UnaryOp::abs, {}, false, false},
      {"sign", UnaryOp::sign, {}, false, false},
      {"exp", UnaryOp::exp, {}, true, false},
      {"log", UnaryOp::log, {}, false, false},
      {"log1p", UnaryOp::log1p, {}, false, false},
      {"sqrt", UnaryOp::sqrt, {}, true, false},
      {"rsqrt", UnaryOp::rsqrt, {}, true, false},
      {"square", UnaryOp::square, {}, false, false},
      {"reciprocal", UnaryOp::reciprocal, {}, true, false},
      {"sin", UnaryOp::sin, {}, false, true},
      {"cos", UnaryOp::cos, {}, false, true},
      {"tanh", UnaryOp::tanh, {}, true, false},
      {"sigmoid", UnaryOp::sigmoid, {}, true, false},
      {"relu", UnaryOp::relu, {}, false, false},
      {"gelu_tanh", UnaryOp::gelu_tanh, {}, false, true},
      {"gelu_erf", UnaryOp::gelu_erf, {}, false, true},
      {"erf", UnaryOp::erf, {}, false, true},
      {"pow 0", UnaryOp::pow_scalar, {.a = 0}, false, false},
      {"pow 1", UnaryOp::pow_scalar, {.a = 1}, false, false},
      {"pow 2", UnaryOp::pow_scalar, {.a = 2}, false, false},
      {"pow 3.5", UnaryOp::pow_scalar, {.a = 3.5}, false, true},
      {"clamp", UnaryOp::clamp, {.a = -0.5, .b = 0.5}, false, false},
      {"clamp(-inf, 0.5)", UnaryOp::clamp, {.a = -kInf, .b = 0.5}, false, false},
  };
  for (DType dt : {DType::f32, DType::f64, DType::bf16}) {
    CAPTURE(dtype_name(dt));
    const int64_t n = 2053;
    // Positive inputs keep log, sqrt and pow in their domains; the rest see both signs, including
    // the clamp bounds and 0 exactly.
    const Tensor signed_x = with_head(normal({n}, 50, dt), {0.0, -0.0, -0.5, 0.5, 1.0, -1.0});
    const Tensor positive_x = positive({n}, 51, dt);
    const Tensor dy = normal({n}, 52, dt);
    for (const Grad& g : grads) {
      const std::string name = g.name;
      const bool needs_positive =
          name == "log" || name == "sqrt" || name == "rsqrt" || name.starts_with("pow");
      const Tensor x = needs_positive ? positive_x : signed_x;
      Tensor y = empty({n}, {.dtype = dt});
      cb.unary(g.op, x, y, g.params);
      const Tensor saved_x = g.from_y ? Tensor() : x, saved_y = g.from_y ? y : Tensor();
      Tensor dx_c = empty({n}, {.dtype = dt});
      cb.unary_backward(g.op, saved_x, saved_y, dy, dx_c, g.params);
      Tensor dx_g = empty({n}, {.dtype = dt, .device = kGpu});
      gb.unary_backward(g.op, saved_x.defined() ? saved_x.to(kGpu) : Tensor(),
                        saved_y.defined() ? saved_y.to(kGpu) : Tensor(), dy.to(kGpu), dx_g,
                        g.params);
      RW_CHECK_MATCH(dx_g, dx_c, g.libm ? libm_tol(dt) : kExact,
                     fmt::format("{} backward {}", name, dt));
    }
  }
}

TEST_CASE("cuda elementwise: in-place ops write over their own operand") {
  RW_REQUIRE_GPU();
  const Tensor x = normal({64, 33}, 60), other = normal({33}, 61);
  Tensor xg = x.clone().to(kGpu), xc = x.clone();
  add_(xg, other.to(kGpu), 0.5);
  add_(xc, other, 0.5);
  RW_CHECK_MATCH(xg, xc, kExact, "add_ into a contiguous tensor");
  // A transposed self goes through a temporary.
  Tensor tg = x.clone().to(kGpu).transpose(0, 1), tc = x.clone().transpose(0, 1);
  mul_(tg, -1.25);
  mul_(tc, -1.25);
  RW_CHECK_MATCH(tg.contiguous(), tc.contiguous(), kExact, "mul_ into a transposed view");
  clamp_(tg, -0.2, 0.3);
  clamp_(tc, -0.2, 0.3);
  RW_CHECK_MATCH(tg.contiguous(), tc.contiguous(), kExact, "clamp_ into a transposed view");
}

TEST_CASE("cuda elementwise: errors name the op and the offending dtype or layout") {
  RW_REQUIRE_GPU();
  Backend& gb = backend_for(kGpu);
  const Tensor ints = zeros({4}, {.dtype = DType::i64, .device = kGpu});
  std::string m = test::error_message([&] { gb.unary(UnaryOp::exp, ints, ints, {}); });
  CHECK_MESSAGE(test::contains(m, "cuda unary: op exp needs a floating dtype, got i64"), m);
  const Tensor bools = zeros({4}, {.dtype = DType::boolean, .device = kGpu});
  m = test::error_message([&] { gb.unary(UnaryOp::neg, bools, bools, {}); });
  CHECK_MESSAGE(test::contains(m, "cuda unary: op neg is not defined for bool"), m);
  m = test::error_message([&] { gb.binary(BinaryOp::add, bools, bools, bools); });
  CHECK_MESSAGE(test::contains(m, "cuda binary: op add is not defined for bool"), m);
  const Tensor floats = zeros({4}, {.dtype = DType::f32, .device = kGpu});
  m = test::error_message(
      [&] { gb.unary_backward(UnaryOp::tanh, floats, Tensor(), floats, floats, {}); });
  CHECK_MESSAGE(test::contains(m,
                               "op tanh computes its derivative from y = tanh(x), which was "
                               "not given"),
                m);
  m = test::error_message(
      [&] { gb.unary_backward(UnaryOp::abs, Tensor(), floats, floats, floats, {}); });
  CHECK_MESSAGE(test::contains(m, "op abs computes its derivative from x, which was not given"), m);
  m = test::error_message([&] { gb.unary_backward(UnaryOp::exp, Tensor(), ints, ints, ints, {}); });
  CHECK_MESSAGE(test::contains(m, "cuda unary_backward: needs a floating dtype, got i64"), m);
  // A view whose 11 dims cannot merge (every stride out of row-major order).
  Shape shape(11, 2);
  std::vector<int64_t> reversed(11);
  for (int64_t d = 0; d < 11; ++d) reversed[static_cast<std::size_t>(d)] = 10 - d;
  const Tensor deep = zeros(shape, {.dtype = DType::f32, .device = kGpu}).permute(reversed);
  m = test::error_message([&] { (void)exp(deep); });
  CHECK_MESSAGE(test::contains(m, "exp (cuda): a view of shape"), m);
  CHECK_MESSAGE(test::contains(m, "needs 11 dims after merging; at most 10 are supported"), m);
}

}  // namespace rw
