// The CUDA reductions, softmax and layer norm beyond the op table
// (tests/cuda/test_cuda_op_table.cpp runs every op on small tensors): the sizes that take each
// kernel layout (long rows split across blocks, many short rows, reductions over a non-innermost
// dim, strided rank-4 views), every floating dtype, integer and bool reductions, ties and NaNs in
// argmax/argmin, infinities in logsumexp and softmax, empty reductions, layer norm backward with
// many rows, and determinism. Every result is checked against the CPU backend on the same input
// (the inputs are made on the CPU, rounded once to their dtype, and moved to the GPU, so both
// backends see the same bits).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
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
constexpr DType kFloating[] = {DType::f32, DType::f64, DType::bf16, DType::f16};

// mean + scale * N(0, 1), seeded, rounded once to `dtype`.
Tensor random_tensor(const Shape& shape, DType dtype, uint64_t seed, double mean = 0,
                     double scale = 1) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> v(static_cast<std::size_t>(shape_numel(shape)));
  for (double& e : v) e = mean + scale * normal(gen);
  return from_vector<double>(v, shape).to(dtype);
}

// Integers drawn uniformly from [low, high], as `dtype`.
Tensor random_integers(const Shape& shape, DType dtype, uint64_t seed, int64_t low, int64_t high) {
  std::mt19937_64 gen(seed);
  std::uniform_int_distribution<int64_t> pick(low, high);
  std::vector<double> v(static_cast<std::size_t>(shape_numel(shape)));
  for (double& e : v) e = static_cast<double>(pick(gen));
  return from_vector<double>(v, shape).to(dtype);
}

// How closely a GPU result must match the CPU's: |gpu - cpu| <= rel * |cpu| + of_max * max|cpu|
// (the max over the finite CPU elements: sums that cancel to near zero are judged against the
// tensor's scale). NaN must meet NaN and an infinity the same infinity. {0, 0}: equal values.
struct Tol {
  double rel = 0;
  double of_max = 0;
};
constexpr Tol kExact{};

// About one unit in the last place of a result computed in more precision and then rounded, for
// each dtype; `f32` and `f64` are the caller's bounds for the two wide types.
Tol tol_for(DType dt, Tol f32, Tol f64) {
  switch (dt) {
    case DType::f64:
      return f64;
    case DType::f32:
      return f32;
    case DType::bf16:
      return {0x1p-7, 0x1p-9};
    case DType::f16:
      return {0x1p-10, 0x1p-12};
    default:
      return kExact;
  }
}

// "" when `gpu` (on cuda:0) matches `cpu` within `tol`; else what differs and where.
std::string compare(const Tensor& gpu, const Tensor& cpu, Tol tol) {
  if (gpu.device() != kGpu)
    return fmt::format("the result is on {}, expected cuda:0", gpu.device());
  if (gpu.dtype() != cpu.dtype()) {
    return fmt::format("dtype {} vs cpu {}", gpu.dtype(), cpu.dtype());
  }
  if (gpu.shape() != cpu.shape()) {
    return fmt::format("shape {} vs cpu {}", gpu.shape(), cpu.shape());
  }
  const std::vector<double> g = gpu.to_vector<double>(), c = cpu.to_vector<double>();
  double scale = 0;
  for (double v : c) {
    if (std::isfinite(v)) scale = std::max(scale, std::fabs(v));
  }
  int64_t bad = 0;
  std::string first;
  for (std::size_t i = 0; i < g.size(); ++i) {
    bool ok;
    if (std::isnan(c[i]) || std::isnan(g[i])) {
      ok = std::isnan(c[i]) && std::isnan(g[i]);
    } else if (std::isinf(c[i]) || std::isinf(g[i])) {
      ok = g[i] == c[i];
    } else {
      ok = std::fabs(g[i] - c[i]) <= tol.rel * std::fabs(c[i]) + tol.of_max * scale;
    }
    if (!ok && bad++ < 3) {
      first += fmt::format("; flat index {}: gpu {:.17g} vs cpu {:.17g}", i, g[i], c[i]);
    }
  }
  if (bad == 0) return "";
  return fmt::format(
      "{} of {} elements differ beyond {:g} * |cpu| + {:g} * {:g} (max |cpu|); "
      "dtype {}, shape {}{}",
      bad, g.size(), tol.rel, tol.of_max, scale, cpu.dtype(), cpu.shape(), first);
}

#define RW_CHECK_MATCH(gpu, cpu, tol, what)                                        \
  do {                                                                             \
    const std::string rw_m_ = compare((gpu), (cpu), (tol));                        \
    CHECK_MESSAGE(rw_m_.empty(), std::string(what) << " (gpu vs cpu): " << rw_m_); \
  } while (0)

// The raw bytes of a tensor, read back to the host.
std::vector<unsigned char> bytes_of(const Tensor& t) {
  Tensor host = t.to(Device::cpu()).contiguous();
  const auto* p = static_cast<const unsigned char*>(host.data_ptr());
  return {p, p + host.nbytes()};
}

#define RW_CHECK_SAME_BITS(a, b, what)                                                        \
  CHECK_MESSAGE(bytes_of(a) == bytes_of(b),                                                   \
                std::string(what) << ": two GPU runs on the same input differ in their bits " \
                                     "(the kernel is not deterministic)")

std::string dims_str(const std::vector<int64_t>& dims) { return fmt::format("{}", dims); }

// --- reduce
// ----------------------------------------------------------------------------------------

using ReduceFn = std::function<Tensor(const Tensor&, const std::vector<int64_t>&, bool)>;
struct ReduceCase {
  const char* name;
  ReduceFn fn;
  Tol f32, f64;
};

// Sums, means and products accumulate in double on both backends, so f32 results agree to their
// last bit or so; logsumexp's exp differs by an ulp or two between CUDA and glibc; max and min are
// exact.
const std::vector<ReduceCase>& reduce_cases() {
  static const std::vector<ReduceCase> cases = {
      {"sum",
       [](const Tensor& x, const auto& d, bool k) { return sum(x, d, k); },
       {1e-6, 1e-6},
       {1e-12, 1e-13}},
      {"mean",
       [](const Tensor& x, const auto& d, bool k) { return mean(x, d, k); },
       {1e-6, 1e-6},
       {1e-12, 1e-13}},
      {"prod",
       [](const Tensor& x, const auto& d, bool k) { return prod(x, d, k); },
       {1e-6, 0},
       {1e-12, 0}},
      {"max", [](const Tensor& x, const auto& d, bool k) { return max(x, d, k); }, kExact, kExact},
      {"min", [](const Tensor& x, const auto& d, bool k) { return min(x, d, k); }, kExact, kExact},
      {"logsumexp",
       [](const Tensor& x, const auto& d, bool k) { return logsumexp(x, d, k); },
       {2e-6, 1e-7},
       {1e-12, 1e-13}},
  };
  return cases;
}

TEST_CASE("cuda reduce: every op over single and several dims of a strided rank-4 view") {
  RW_REQUIRE_GPU();
  const std::vector<std::vector<int64_t>> dim_sets = {
      {0}, {1}, {2}, {3}, {0, 2}, {1, 3}, {0, 3}, {1, 2, 3}, {2, 3}, {0, 1, 2}, {0, 1, 2, 3}};
  // [3, 4, 5, 6] with no two dims mergeable: a permuted, sliced and step-sliced view.
  auto view = [](const Tensor& base) {
    return base.permute({2, 0, 1, 3}).slice(1, 0, 4).slice(2, 1, 6).slice(3, 0, 12, 2);
  };
  for (DType dt : kFloating) {
    // Values around 1 keep products of up to 360 elements well inside every dtype's range.
    const Tensor base = random_tensor({5, 8, 3, 13}, dt, 11, 1.0, 0.5);
    const Tensor xc = view(base), xg = view(base.to(kGpu));
    REQUIRE(xg.shape() == Shape{3, 4, 5, 6});
    REQUIRE_FALSE(xg.is_contiguous());
    for (const ReduceCase& rc : reduce_cases()) {
      for (const auto& dims : dim_sets) {
        for (bool keepdim : {false, true}) {
          RW_CHECK_MATCH(rc.fn(xg, dims, keepdim), rc.fn(xc, dims, keepdim),
                         tol_for(dt, rc.f32, rc.f64),
                         fmt::format("{} over dims {} (keepdim {}) of a strided {} [3, 4, 5, 6]",
                                     rc.name, dims_str(dims), keepdim, dt));
        }
      }
    }
    for (int64_t d = 0; d < 4; ++d) {
      RW_CHECK_MATCH(argmax(xg, d), argmax(xc, d), kExact,
                     fmt::format("argmax over dim {} of a strided {} view", d, dt));
      RW_CHECK_MATCH(argmin(xg, d), argmin(xc, d), kExact,
                     fmt::format("argmin over dim {} of a strided {} view", d, dt));
    }
  }
}

// Each shape exercises one launch layout of the reduce kernel.
struct ReduceShape {
  Shape shape;
  std::vector<int64_t> dims;
  const char* layout;
};
const std::vector<ReduceShape>& long_and_short_shapes() {
  static const std::vector<ReduceShape> shapes = {
      {{1 << 20}, {0}, "one long row, split across many blocks"},
      {{4, 1 << 18}, {1}, "a few long rows, split across blocks"},
      {{1 << 16, 7}, {1}, "many rows of 7 (sub-warp groups)"},
      {{1 << 15, 40}, {1}, "many rows of 40 (a warp per row)"},
      {{1 << 18, 3}, {0}, "3 outputs over a non-innermost dim of 2^18 (column, split)"},
      {{9, 1 << 16}, {0}, "65536 outputs over a non-innermost dim of 9 (column)"},
      {{64, 3, 500}, {0, 2}, "two reduced dims around a kept one"},
  };
  return shapes;
}

TEST_CASE("cuda reduce: very long rows and many short rows in every floating dtype") {
  RW_REQUIRE_GPU();
  uint64_t seed = 100;
  for (const ReduceShape& s : long_and_short_shapes()) {
    for (DType dt : kFloating) {
      const Tensor xc = random_tensor(s.shape, dt, ++seed);
      const Tensor xg = xc.to(kGpu);
      for (const ReduceCase& rc : reduce_cases()) {
        if (std::string(rc.name) == "prod") continue;  // products of 2^20 normals under/overflow
        RW_CHECK_MATCH(rc.fn(xg, s.dims, false), rc.fn(xc, s.dims, false),
                       tol_for(dt, rc.f32, rc.f64),
                       fmt::format("{} over dims {} of {} {} ({})", rc.name, dims_str(s.dims), dt,
                                   s.shape, s.layout));
      }
      if (s.dims.size() == 1) {
        RW_CHECK_MATCH(
            argmax(xg, s.dims[0]), argmax(xc, s.dims[0]), kExact,
            fmt::format("argmax over dim {} of {} {} ({})", s.dims[0], dt, s.shape, s.layout));
        RW_CHECK_MATCH(
            argmin(xg, s.dims[0]), argmin(xc, s.dims[0]), kExact,
            fmt::format("argmin over dim {} of {} {} ({})", s.dims[0], dt, s.shape, s.layout));
      }
    }
  }
}

TEST_CASE("cuda reduce: integer and bool reductions are exact") {
  RW_REQUIRE_GPU();
  for (DType dt : {DType::i32, DType::i64, DType::u8}) {
    const int64_t low = dt == DType::u8 ? 0 : -50;
    const Tensor xc = random_integers({300, 1000}, dt, 7, low, 50);
    const Tensor xg = xc.to(kGpu);
    for (int64_t d : {0, 1}) {
      const std::string where = fmt::format("over dim {} of {} [300, 1000]", d, dt);
      RW_CHECK_MATCH(sum(xg, {d}), sum(xc, {d}), kExact, "sum " + where);
      RW_CHECK_MATCH(max(xg, {d}), max(xc, {d}), kExact, "max " + where);
      RW_CHECK_MATCH(min(xg, {d}), min(xc, {d}), kExact, "min " + where);
      RW_CHECK_MATCH(argmax(xg, d), argmax(xc, d), kExact, "argmax " + where);
      RW_CHECK_MATCH(argmin(xg, d), argmin(xc, d), kExact, "argmin " + where);
    }
    RW_CHECK_MATCH(sum(xg, {}), sum(xc, {}), kExact, fmt::format("sum of all of {}", dt));
    const Tensor pc = random_integers({300, 9}, dt, 8, dt == DType::u8 ? 0 : -3, 3);
    RW_CHECK_MATCH(prod(pc.to(kGpu), {1}), prod(pc, {1}), kExact,
                   fmt::format("prod over rows of 9 of {}", dt));
  }
  const Tensor bc = gt(random_tensor({2000, 300}, DType::f32, 9), 0.5);
  const Tensor bg = bc.to(kGpu);
  for (int64_t d : {0, 1}) {
    const std::string where = fmt::format("over dim {} of bool [2000, 300]", d);
    RW_CHECK_MATCH(sum(bg, {d}), sum(bc, {d}), kExact, "sum (count) " + where);
    RW_CHECK_MATCH(max(bg, {d}), max(bc, {d}), kExact, "max (any) " + where);
    RW_CHECK_MATCH(min(bg, {d}), min(bc, {d}), kExact, "min (all) " + where);
    RW_CHECK_MATCH(argmax(bg, d), argmax(bc, d), kExact, "argmax " + where);
  }
}

TEST_CASE("cuda reduce: NaN, infinities and empty reductions as on the CPU") {
  RW_REQUIRE_GPU();
  // Row 0 holds a NaN, row 1 is all -inf, row 2 holds +inf, row 3 is finite.
  const std::vector<double> v = {1,    kNaN, 3, -kInf, 2, -kInf, -kInf, -kInf, -kInf, -kInf,
                                 kInf, 1,    2, 3,     4, 1,     2,     3,     4,     5};
  for (DType dt : kFloating) {
    const Tensor xc = from_vector<double>(v, Shape{4, 5}).to(dt);
    const Tensor xg = xc.to(kGpu);
    for (const ReduceCase& rc : reduce_cases()) {
      for (int64_t d : {0, 1}) {
        RW_CHECK_MATCH(
            rc.fn(xg, {d}, false), rc.fn(xc, {d}, false), tol_for(dt, rc.f32, rc.f64),
            fmt::format("{} over dim {} of {} rows with NaN and infinities", rc.name, d, dt));
      }
    }
    // The rules themselves, so that both backends cannot drift together.
    const std::vector<double> lse = logsumexp(xg, {1}).to_vector<double>();
    CHECK_MESSAGE(std::isnan(lse[0]), "logsumexp of a row with a NaN must be NaN, got " << lse[0]);
    CHECK_MESSAGE(lse[1] == -kInf, "logsumexp of an all -inf row must be -inf, got " << lse[1]);
    CHECK_MESSAGE(lse[2] == kInf, "logsumexp of a row with +inf must be +inf, got " << lse[2]);
    const std::vector<double> mx = max(xg, {1}).to_vector<double>();
    CHECK_MESSAGE(std::isnan(mx[0]), "max must propagate NaN, got " << mx[0]);
    CHECK_MESSAGE(mx[1] == -kInf, "max of an all -inf row must be -inf, got " << mx[1]);
    for (int64_t d : {0, 1}) {
      RW_CHECK_MATCH(argmax(xg, d), argmax(xc, d), kExact,
                     fmt::format("argmax over dim {} of {} rows with NaN and infinities", d, dt));
      RW_CHECK_MATCH(argmin(xg, d), argmin(xc, d), kExact,
                     fmt::format("argmin over dim {} of {} rows with NaN and infinities", d, dt));
    }
  }
  // Reductions over an extent-0 dim: the identity (sum 0, prod 1), mean 0 / 0 = NaN and logsumexp
  // -inf (the max of nothing).
  for (DType dt : {DType::f32, DType::f64}) {
    const Tensor ec = empty({3, 0, 4}, {.dtype = dt});
    const Tensor eg = empty({3, 0, 4}, {.dtype = dt, .device = kGpu});
    for (const char* name : {"sum", "mean", "prod", "logsumexp"}) {
      const ReduceCase& rc =
          *std::find_if(reduce_cases().begin(), reduce_cases().end(),
                        [&](const ReduceCase& c) { return c.name == std::string(name); });
      RW_CHECK_MATCH(rc.fn(eg, {1}, false), rc.fn(ec, {1}, false), kExact,
                     fmt::format("{} over an extent-0 dim of {} [3, 0, 4]", name, dt));
    }
    test::check_close(sum(eg, {1}), std::vector<double>(12, 0.0));
    test::check_close(prod(eg, {1}), std::vector<double>(12, 1.0));
    test::check_close(logsumexp(eg, {1}), std::vector<double>(12, -kInf));
    test::check_close(mean(eg, {1}), std::vector<double>(12, kNaN));
  }
}

// --- argmax / argmin
// ---------------------------------------------------------------------------------

TEST_CASE("cuda argmax/argmin: ties take the first index and the first NaN wins") {
  RW_REQUIRE_GPU();
  // Hand-made rows with their expected argmax and argmin.
  struct Row {
    std::vector<double> v;
    int64_t argmax, argmin;
  };
  const std::vector<Row> rows = {
      {{3, 1, 3, 2, 1}, 0, 1},
      {{2, 5, 1, 5, 1}, 1, 2},
      {{1, kNaN, 5, kNaN, 0}, 1, 1},
      {{-0.0, 0.0, -0.0, 0.0, 0.0}, 0, 0},
      {{-kInf, -kInf, 7, kInf, kInf}, 3, 0},
      {{4, 4, 4, 4, 4}, 0, 0},
  };
  std::vector<double> flat;
  for (const Row& r : rows) flat.insert(flat.end(), r.v.begin(), r.v.end());
  for (DType dt : kFloating) {
    const Tensor xc = from_vector<double>(flat, Shape{static_cast<int64_t>(rows.size()), 5}).to(dt);
    const Tensor xg = xc.to(kGpu);
    const std::string dts = fmt::format("{}", dt);
    const std::vector<int64_t> amax = argmax(xg, 1).to_vector<int64_t>();
    const std::vector<int64_t> amin = argmin(xg, 1).to_vector<int64_t>();
    for (std::size_t i = 0; i < rows.size(); ++i) {
      CHECK_MESSAGE(amax[i] == rows[i].argmax, dts << " row " << i << ": argmax " << amax[i]
                                                   << ", expected " << rows[i].argmax);
      CHECK_MESSAGE(amin[i] == rows[i].argmin, dts << " row " << i << ": argmin " << amin[i]
                                                   << ", expected " << rows[i].argmin);
    }
    RW_CHECK_MATCH(argmax(xg, 1), argmax(xc, 1), kExact, fmt::format("argmax of {} rows", dt));
    RW_CHECK_MATCH(argmin(xg, 1), argmin(xc, 1), kExact, fmt::format("argmin of {} rows", dt));
  }
  // One long row (split across blocks): ties far apart, then NaNs far apart.
  for (DType dt : kFloating) {
    const std::string dts = fmt::format("{}", dt);
    std::vector<double> v(1 << 20, 0.0);
    for (std::size_t i : {900000u, 1000u, 500000u}) v[i] = 7;
    for (std::size_t i : {800000u, 2000u, 600000u}) v[i] = -7;
    const Tensor xg = from_vector<double>(v).to(dt).to(kGpu);
    CHECK_MESSAGE(argmax(xg).item<int64_t>() == 1000, dts << " long row: argmax of three tied 7s");
    CHECK_MESSAGE(argmin(xg).item<int64_t>() == 2000, dts << " long row: argmin of three tied -7s");
    v[700000] = kNaN;
    v[300000] = kNaN;
    const Tensor ng = from_vector<double>(v).to(dt).to(kGpu);
    CHECK_MESSAGE(argmax(ng).item<int64_t>() == 300000, dts << " long row: argmax, first NaN");
    CHECK_MESSAGE(argmin(ng).item<int64_t>() == 300000, dts << " long row: argmin, first NaN");
  }
  // Many ties and a few NaNs along non-innermost and innermost dims, against the CPU.
  for (DType dt : kFloating) {
    Tensor xc = random_integers({5000, 33}, DType::f64, 21, 0, 3);
    xc = where(ge(random_tensor({5000, 33}, DType::f64, 22), -2.8), xc, kNaN).to(dt);
    const Tensor xg = xc.to(kGpu);
    for (int64_t d : {0, 1}) {
      RW_CHECK_MATCH(argmax(xg, d), argmax(xc, d), kExact,
                     fmt::format("argmax over dim {} of {} [5000, 33] with ties and NaNs", d, dt));
      RW_CHECK_MATCH(argmin(xg, d), argmin(xc, d), kExact,
                     fmt::format("argmin over dim {} of {} [5000, 33] with ties and NaNs", d, dt));
    }
  }
}

// --- cumsum --------------------------------------------------------------------------------------

TEST_CASE("cuda cumsum: long rows, many short rows and non-innermost dims") {
  RW_REQUIRE_GPU();
  struct ScanCase {
    Shape shape;
    int64_t dim;
  };
  // One long row and long non-innermost dims with few lines are cut into segments (summed first,
  // then scanned from their offsets); the others scan each line whole.
  const std::vector<ScanCase> cases = {
      {{1 << 20}, 0},  {{2, 100000}, 1}, {{3000, 5}, 0}, {{20000, 3}, 0}, {{1000, 37}, 1},
      {{64, 5000}, 1}, {{300, 7, 9}, 1}, {{7, 300}, 0},  {{1}, 0},
  };
  uint64_t seed = 300;
  for (const ScanCase& c : cases) {
    // Both accumulate in double (the GPU in a different order): f32 and half results agree to
    // their rounding, f64 ones to a few ulp of the running sums' scale.
    for (DType dt : kFloating) {
      const Tensor xc = random_tensor(c.shape, dt, ++seed);
      RW_CHECK_MATCH(cumsum(xc.to(kGpu), c.dim), cumsum(xc, c.dim),
                     tol_for(dt, {1e-6, 1e-7}, {1e-12, 1e-12}),
                     fmt::format("cumsum along dim {} of {} {}", c.dim, dt, c.shape));
    }
    for (DType dt : {DType::i32, DType::i64, DType::boolean}) {
      const Tensor xc = random_integers(c.shape, dt, ++seed, dt == DType::boolean ? 0 : -1000,
                                        dt == DType::boolean ? 1 : 1000);
      const Tensor g = cumsum(xc.to(kGpu), c.dim);
      CHECK(g.dtype() == DType::i64);
      RW_CHECK_MATCH(g, cumsum(xc, c.dim), kExact,
                     fmt::format("cumsum along dim {} of {} {}", c.dim, dt, c.shape));
    }
  }
}

// --- softmax -------------------------------------------------------------------------------------

// Forward through the op layer; backward through the backend directly, from the CPU's y, so that a
// difference points at one kernel.
void check_softmax(SoftmaxKind kind, const Tensor& xc, int64_t dim, Tol tol,
                   const std::string& what, bool backward = true) {
  const bool log = kind == SoftmaxKind::log_softmax;
  const char* name = log ? "log_softmax" : "softmax";
  const Tensor xg = xc.to(kGpu);
  const Tensor yc = log ? log_softmax(xc, dim) : softmax(xc, dim);
  RW_CHECK_MATCH(log ? log_softmax(xg, dim) : softmax(xg, dim), yc, tol,
                 fmt::format("{} {}", name, what));
  if (!backward) return;
  const Tensor dyc = random_tensor(xc.shape(), xc.dtype(), 77);
  const int64_t d = dim < 0 ? dim + xc.dim() : dim;
  Tensor dxc = empty(xc.shape(), options_of(xc));
  backend_for(Device::cpu()).softmax_backward(kind, yc, dyc, d, dxc);
  Tensor dxg = empty(xc.shape(), {.dtype = xc.dtype(), .device = kGpu});
  backend_for(kGpu).softmax_backward(kind, yc.to(kGpu), dyc.to(kGpu), d, dxg);
  RW_CHECK_MATCH(dxg, dxc, tol, fmt::format("{} backward {}", name, what));
}

// f32 runs on oneDNN on the CPU and in f32 on the GPU, with sums in different orders.
constexpr Tol kSoftmaxF32{2e-5, 1e-6};
constexpr Tol kSoftmaxF64{1e-12, 1e-13};

TEST_CASE("cuda softmax: any dim, long rows, short rows, every floating dtype") {
  RW_REQUIRE_GPU();
  struct SoftmaxShape {
    Shape shape;
    std::vector<int64_t> dims;
  };
  const std::vector<SoftmaxShape> shapes = {
      {{2, 3, 4, 5}, {0, 1, 2, 3}},  // every dim of a rank-4 tensor
      {{4, 300, 5}, {1}},            // a middle dim with a small inner stride
      {{10, 1000}, {0, 1}},          // across 1000 columns; rows of 1000 (a warp per row)
      {{50, 2000}, {1}},             // rows of 2000 (a block of 256 per row)
      {{3, 20000}, {1}},             // rows of 20000 (a block of 1024 per row)
      {{2, 5000, 3}, {1}},           // a long non-innermost dim
      {{4000, 10}, {1}},             // many short rows
  };
  uint64_t seed = 500;
  for (const SoftmaxShape& s : shapes) {
    for (DType dt : kFloating) {
      const Tensor xc = random_tensor(s.shape, dt, ++seed, 0, 3);
      for (int64_t dim : s.dims) {
        for (SoftmaxKind kind : {SoftmaxKind::softmax, SoftmaxKind::log_softmax}) {
          check_softmax(kind, xc, dim, tol_for(dt, kSoftmaxF32, kSoftmaxF64),
                        fmt::format("along dim {} of {} {}", dim, dt, s.shape));
        }
      }
    }
  }
}

TEST_CASE("cuda softmax: -inf entries and an all -inf row as on the CPU, and NaN and +inf rows") {
  RW_REQUIRE_GPU();
  // Row 0 has -inf entries, row 1 is all -inf (NaN everywhere, as PyTorch and the CPU), row 2 is
  // plain.
  const std::vector<double> inf_rows = {1,     -kInf, 2,   -kInf, 3, -kInf, -kInf, -kInf,
                                        -kInf, -kInf, 0.5, -1,    2, 0,     1};
  // A NaN or a +inf makes the whole row NaN (exp(NaN - max), exp(inf - inf)), as on the CPU in
  // f64 and for f32 columns. The CPU's f32 rows (oneDNN) give NaN at that entry and 0 elsewhere
  // instead, so these rows are compared with the CPU in f64 only and checked against the rule.
  const std::vector<double> nan_rows = {kNaN, 1, 2, 3, 4, kInf, 1, 2, 3, 4};
  for (DType dt : kFloating) {
    const std::string dts = fmt::format("{}", dt);
    const Tensor rows = from_vector<double>(inf_rows, Shape{3, 5}).to(dt);
    const Tensor bad = from_vector<double>(nan_rows, Shape{2, 5}).to(dt);
    const Tensor finite_rows =
        from_vector<double>({1, -kInf, 2, -kInf, 3, 0.5, -1, 2, 0, 1}, Shape{2, 5}).to(dt);
    const Tol tol = tol_for(dt, kSoftmaxF32, kSoftmaxF64);
    // Backward from the all -inf row's NaN y is compared in f64 only: the CPU's f32 rows
    // (oneDNN) turn log_softmax's exp(NaN) into inf there.
    const bool all_backward = dt == DType::f64;
    for (SoftmaxKind kind : {SoftmaxKind::softmax, SoftmaxKind::log_softmax}) {
      check_softmax(kind, rows, 1, tol, fmt::format("of {} rows with -inf entries", dt),
                    all_backward);
      // The same rows as columns: the softmax dim is then not the innermost one.
      check_softmax(kind, rows.mT().contiguous(), 0, tol,
                    fmt::format("of {} columns with -inf entries", dt), all_backward);
      check_softmax(kind, finite_rows, 1, tol,
                    fmt::format("of {} rows with -inf entries (not all)", dt));
      check_softmax(kind, finite_rows.mT().contiguous(), 0, tol,
                    fmt::format("of {} columns with -inf entries (not all)", dt));
      if (dt == DType::f64) {
        check_softmax(kind, bad, 1, tol, "of f64 rows with a NaN or +inf");
        check_softmax(kind, bad.mT().contiguous(), 0, tol, "of f64 columns with a NaN or +inf");
      }
      const bool log = kind == SoftmaxKind::log_softmax;
      for (int64_t dim : {1, 0}) {
        const Tensor xg = dim == 1 ? bad.to(kGpu) : bad.mT().contiguous().to(kGpu);
        for (double e : (log ? log_softmax(xg, dim) : softmax(xg, dim)).to_vector<double>()) {
          CHECK_MESSAGE(std::isnan(e), dts << (log ? " log_softmax" : " softmax") << " along dim "
                                           << dim << " of a row with a NaN or +inf: " << e
                                           << ", expected NaN everywhere");
        }
      }
    }
    // -inf entries of a row with finite ones give exactly 0 (log: -inf).
    const std::vector<double> y = softmax(rows.to(kGpu), 1).to_vector<double>();
    const std::vector<double> ly = log_softmax(rows.to(kGpu), 1).to_vector<double>();
    for (std::size_t i : {1u, 3u}) {
      CHECK_MESSAGE(y[i] == 0.0, dts << " softmax of a -inf entry: " << y[i] << ", expected 0");
      CHECK_MESSAGE(ly[i] == -kInf,
                    dts << " log_softmax of a -inf entry: " << ly[i] << ", expected -inf");
    }
  }
}

// --- layer norm ----------------------------------------------------------------------------------

struct LayerNormResult {
  Tensor out, mean, rstd, dx, dweight, dbias;
};

// Forward and backward through the backend of `device`, on copies of the given CPU tensors.
LayerNormResult run_layer_norm(Device device, const Tensor& x, const Tensor& w, const Tensor& b,
                               const Tensor& dy, double eps) {
  Backend& backend = backend_for(device);
  const DType dt = x.dtype();
  const DType stat_dt = dt == DType::f64 ? DType::f64 : DType::f32;
  const int64_t rows = x.size(0), D = x.size(1);
  auto on = [&](const Tensor& t) { return t.defined() ? t.to(device) : Tensor(); };
  const Tensor X = on(x), W = on(w), B = on(b), DY = on(dy);
  LayerNormResult r;
  r.out = empty(x.shape(), {.dtype = dt, .device = device});
  r.mean = empty({rows}, {.dtype = stat_dt, .device = device});
  r.rstd = empty({rows}, {.dtype = stat_dt, .device = device});
  backend.layer_norm(X, W, B, eps, r.out, r.mean, r.rstd);
  r.dx = empty(x.shape(), {.dtype = dt, .device = device});
  if (w.defined()) r.dweight = empty({D}, {.dtype = dt, .device = device});
  if (b.defined()) r.dbias = empty({D}, {.dtype = dt, .device = device});
  backend.layer_norm_backward(DY, X, W, r.mean, r.rstd, r.dx, r.dweight, r.dbias);
  return r;
}

TEST_CASE("cuda layer_norm: forward and backward match the CPU for every row length") {
  RW_REQUIRE_GPU();
  struct LnShape {
    int64_t rows, D;
  };
  // D not a multiple of 32, D at and past the warp / block switch, D = 4096, and many rows (the
  // parameter gradients then sum over several row chunks).
  const std::vector<LnShape> shapes = {{64, 7},    {64, 33},   {32, 100},  {16, 1000}, {16, 1025},
                                       {64, 4096}, {4, 10000}, {5000, 64}, {3000, 257}};
  uint64_t seed = 700;
  for (const LnShape& s : shapes) {
    for (DType dt : kFloating) {
      // A mean far from zero checks the two-pass variance.
      const Tensor x = random_tensor({s.rows, s.D}, dt, ++seed, 3.0, 2.0);
      const Tensor w = random_tensor({s.D}, dt, ++seed, 1.0, 0.5);
      const Tensor b = random_tensor({s.D}, dt, ++seed);
      const Tensor dy = random_tensor({s.rows, s.D}, dt, ++seed);
      const Tol tol = tol_for(dt, {1e-5, 1e-5}, {1e-10, 1e-10});
      for (int params = 0; params < 3; ++params) {
        const Tensor W = params >= 1 ? w : Tensor(), B = params == 2 ? b : Tensor();
        const std::string what = fmt::format("layer_norm of {} [{}, {}] ({})", dt, s.rows, s.D,
                                             params == 0   ? "no weight or bias"
                                             : params == 1 ? "weight"
                                                           : "weight and bias");
        const LayerNormResult g = run_layer_norm(kGpu, x, W, B, dy, 1e-5);
        const LayerNormResult c = run_layer_norm(Device::cpu(), x, W, B, dy, 1e-5);
        // The statistics are f32 for every dtype but f64 (half types compute in f32).
        const Tol stat_tol = dt == DType::f64 ? Tol{1e-10, 1e-10} : Tol{1e-5, 1e-5};
        RW_CHECK_MATCH(g.out, c.out, tol, what + ": out");
        RW_CHECK_MATCH(g.mean, c.mean, stat_tol, what + ": mean");
        RW_CHECK_MATCH(g.rstd, c.rstd, stat_tol, what + ": rstd");
        RW_CHECK_MATCH(g.dx, c.dx, tol, what + ": dx");
        if (W.defined()) RW_CHECK_MATCH(g.dweight, c.dweight, tol, what + ": dweight");
        if (B.defined()) RW_CHECK_MATCH(g.dbias, c.dbias, tol, what + ": dbias");
      }
    }
  }
}

TEST_CASE("cuda layer_norm: through the op layer on a rank-3 input") {
  RW_REQUIRE_GPU();
  const Tensor x = random_tensor({4, 50, 96}, DType::f64, 801, -1.0, 3.0);
  const Tensor w = random_tensor({96}, DType::f64, 802, 1.0, 0.3);
  const Tensor b = random_tensor({96}, DType::f64, 803);
  RW_CHECK_MATCH(layer_norm(x.to(kGpu), w.to(kGpu), b.to(kGpu), 1e-6), layer_norm(x, w, b, 1e-6),
                 (Tol{1e-10, 1e-10}), "layer_norm of f64 [4, 50, 96] through the op layer");
}

// --- determinism
// -----------------------------------------------------------------------------------

TEST_CASE("cuda reductions, softmax and layer norm are deterministic run to run") {
  RW_REQUIRE_GPU();
  const Tensor long_row = random_tensor({1 << 22}, DType::f32, 901).to(kGpu);
  const Tensor tall = random_tensor({1 << 16, 64}, DType::f32, 902).to(kGpu);
  const Tensor wide = random_tensor({64, 5000}, DType::f64, 903).to(kGpu);
  auto twice = [](const std::function<Tensor()>& f, const char* what) {
    const Tensor a = f(), b = f();
    RW_CHECK_SAME_BITS(a, b, what);
  };
  twice([&] { return sum(long_row, {0}); }, "sum of 2^22 f32 (split across blocks)");
  twice([&] { return mean(tall, {0}); }, "mean over dim 0 of [2^16, 64] (column, split)");
  twice([&] { return logsumexp(long_row, {0}); }, "logsumexp of 2^22 f32");
  twice([&] { return argmax(tall, 0); }, "argmax over dim 0 of [2^16, 64]");
  twice([&] { return cumsum(wide, 1); }, "cumsum of f64 rows of 5000");
  twice([&] { return cumsum(long_row, 0); }, "cumsum of 2^22 f32 (segmented)");
  twice([&] { return cumsum(tall, 0); }, "cumsum over dim 0 of [2^16, 64] (segmented columns)");
  twice([&] { return softmax(wide, 1); }, "softmax of f64 rows of 5000");
  twice([&] { return log_softmax(tall, 0); }, "log_softmax over dim 0 of [2^16, 64]");
  const Tensor x = random_tensor({4096, 1024}, DType::f32, 904);
  const Tensor w = random_tensor({1024}, DType::f32, 905, 1.0, 0.5);
  const Tensor b = random_tensor({1024}, DType::f32, 906);
  const Tensor dy = random_tensor({4096, 1024}, DType::f32, 907);
  const LayerNormResult r1 = run_layer_norm(kGpu, x, w, b, dy, 1e-5);
  const LayerNormResult r2 = run_layer_norm(kGpu, x, w, b, dy, 1e-5);
  RW_CHECK_SAME_BITS(r1.out, r2.out, "layer_norm out [4096, 1024]");
  RW_CHECK_SAME_BITS(r1.rstd, r2.rstd, "layer_norm rstd [4096, 1024]");
  RW_CHECK_SAME_BITS(r1.dx, r2.dx, "layer_norm dx [4096, 1024]");
  RW_CHECK_SAME_BITS(r1.dweight, r2.dweight, "layer_norm dweight over 4096 rows");
  RW_CHECK_SAME_BITS(r1.dbias, r2.dbias, "layer_norm dbias over 4096 rows");
}

}  // namespace
}  // namespace rw
