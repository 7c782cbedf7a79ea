// Runs the op table (op_table.h): for every case, the forward against the float64 reference
// backend, gradcheck, and the CPU backend's analytic gradient against the reference's. One test
// case per family, one SUBCASE per op case; every failure message starts with the case name.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <numbers>
#include <set>

#include "autograd/gradcheck.h"
#include "backends/reference/reference_backend.h"
#include "core/ops.h"
#include "ops/op_table.h"

namespace rw::testing {
namespace {

// Forward of the f64 CPU backend against the reference: both compute in double, so they agree to
// rounding.
constexpr double kTolF64 = 1e-9;
// Analytic gradients (f64) of the CPU backend against the reference's.
constexpr double kTolGrad = 1e-8;

// "" when `got` matches `want`; else what differs. Floating values match when both are NaN, or
// |got - want| <= tol * (1 + |want|); others must be equal and of the same dtype.
std::string mismatch(const Tensor& got, const Tensor& want, double tol) {
  if (got.shape() != want.shape()) {
    return fmt::format("shape {} vs reference {}", got.shape(), want.shape());
  }
  if (is_floating(got.dtype()) != is_floating(want.dtype()) ||
      (!is_floating(want.dtype()) && got.dtype() != want.dtype())) {
    return fmt::format("dtype {} vs reference {}", got.dtype(), want.dtype());
  }
  std::vector<double> g = got.to_vector<double>(), w = want.to_vector<double>();
  int64_t bad = 0, first = -1;
  for (std::size_t i = 0; i < g.size(); ++i) {
    bool same = std::isnan(g[i]) && std::isnan(w[i]);
    if (!same) {
      same = is_floating(want.dtype())
                 ? (g[i] == w[i] || std::fabs(g[i] - w[i]) <= tol * (1.0 + std::fabs(w[i])))
                 : g[i] == w[i];
    }
    if (!same) {
      if (bad++ == 0) first = static_cast<int64_t>(i);
    }
  }
  if (bad == 0) return "";
  auto f = static_cast<std::size_t>(first);
  return fmt::format(
      "{} of {} elements differ; first at flat index {}: {:.9g} vs reference {:.9g} "
      "(tolerance {:.1g}, shape {})",
      bad, g.size(), first, g[f], w[f], tol, want.shape());
}

// Runs `body` on the reference backend when `reference`, else on the CPU backend.
template <typename F>
auto on_backend(bool reference, F&& body) {
  std::unique_ptr<BackendOverride> route;
  if (reference) route = std::make_unique<BackendOverride>(DeviceType::cpu, reference_backend());
  return body();
}

void check_forward(const OpCase& c) {
  const OpFn fn = with_layouts(c);
  Tensor ref = on_backend(true, [&] { return fn(make_inputs(c, DType::f64, false)); });
  Tensor cpu64 = on_backend(false, [&] { return fn(make_inputs(c, DType::f64, false)); });
  std::vector<Tensor> inputs32 = make_inputs(c, DType::f32, false);
  Tensor cpu32 = on_backend(false, [&] { return fn(inputs32); });
  // An op must not write into its inputs.
  std::vector<Tensor> fresh = make_inputs(c, DType::f32, false);
  for (std::size_t i = 0; i < fresh.size(); ++i) {
    std::string m = mismatch(inputs32[i], fresh[i], 0.0);
    CHECK_MESSAGE(m.empty(), c.name << ": forward modified input " << i << ": " << m);
  }
  REQUIRE_MESSAGE(ref.defined(), c.name << ": the reference run returned an undefined tensor");
  CHECK_MESSAGE(cpu64.dtype() == ref.dtype(),
                c.name << ": forward f64: cpu dtype " << dtype_name(cpu64.dtype())
                       << " vs reference " << dtype_name(ref.dtype()));
  std::string m64 = mismatch(cpu64, ref, kTolF64);
  CHECK_MESSAGE(m64.empty(), c.name << ": forward f64 (cpu vs reference): " << m64);
  std::string m32 = mismatch(cpu32, ref, c.tol_f32);
  CHECK_MESSAGE(m32.empty(), c.name << ": forward f32 (cpu f32 vs reference f64): " << m32);
  if (is_floating(ref.dtype()) && ref.dtype() == DType::f64) {
    // A floating result computed from f32 inputs stays f32 (no silent widening), unless the case
    // converts explicitly (then the f64 run could not tell the difference anyway).
    bool converts = c.name.find("/to/") != std::string::npos;
    if (!converts) {
      CHECK_MESSAGE(cpu32.dtype() == DType::f32,
                    c.name << ": forward f32 returned dtype " << dtype_name(cpu32.dtype()));
    }
  }
}

bool any_requires_grad(const std::vector<Tensor>& xs) {
  return std::any_of(xs.begin(), xs.end(),
                     [](const Tensor& x) { return x.defined() && x.requires_grad(); });
}

void check_gradcheck(const OpCase& c) {
  std::vector<Tensor> inputs = make_inputs(c, DType::f64, true);
  REQUIRE_MESSAGE(any_requires_grad(inputs),
                  c.name << ": a differentiable case needs a floating input (table error)");
  GradcheckResult r = gradcheck(with_layouts(c), inputs, c.grad_options);
  CHECK_MESSAGE(r.ok, c.name << ": " << r.message);
}

// The gradients of <cotangent, fn(inputs)> w.r.t. each input (undefined where none).
std::vector<Tensor> analytic_grads(const OpCase& c, bool reference) {
  return on_backend(reference, [&] {
    std::vector<Tensor> inputs = make_inputs(c, DType::f64, true);
    {
      TapeScope scope;
      Tensor y = with_layouts(c)(inputs);
      if (y.requires_grad()) {
        std::vector<double> cot(static_cast<std::size_t>(y.numel()));
        for (std::size_t i = 0; i < cot.size(); ++i) cot[i] = std::sin(1.7 * i + 0.3);
        backward(y, from_vector<double>(cot, y.shape()).to(y.dtype()));
      }
    }
    std::vector<Tensor> grads;
    for (const Tensor& x : inputs) grads.push_back(x.requires_grad() ? x.grad() : Tensor());
    return grads;
  });
}

void check_grad_vs_reference(const OpCase& c) {
  std::vector<Tensor> cpu = analytic_grads(c, false);
  std::vector<Tensor> ref = analytic_grads(c, true);
  for (std::size_t i = 0; i < cpu.size(); ++i) {
    if (!cpu[i].defined() && !ref[i].defined()) continue;
    // An input that got no gradient counts as a zero gradient.
    Tensor g = cpu[i].defined() ? cpu[i] : zeros_like(ref[i]);
    Tensor w = ref[i].defined() ? ref[i] : zeros_like(cpu[i]);
    std::string m = mismatch(g, w, kTolGrad);
    CHECK_MESSAGE(m.empty(), c.name << ": gradient of input " << i
                                    << " (cpu backend vs reference backend): " << m);
  }
}

// Each part runs on its own, so one failure (or a stub throwing "not implemented") does not hide
// the others; exceptions become failures naming the case.
template <typename F>
void part(const OpCase& c, const char* what, F&& body) {
  try {
    body();
  } catch (const std::exception& e) {
    FAIL_CHECK(c.name << ": " << std::string(what) << " threw: " << std::string(e.what()));
  }
}

void run_case(const OpCase& c) {
  part(c, "forward", [&] { check_forward(c); });
  if (!c.differentiable) return;
  part(c, "gradcheck", [&] { check_gradcheck(c); });
  part(c, "gradient vs reference", [&] { check_grad_vs_reference(c); });
}

void run_family(const std::string& family) {
  int count = 0;
  for (const OpCase& c : op_cases()) {
    if (family_of(c) != family) continue;
    ++count;
    SUBCASE(c.name.c_str()) { run_case(c); }
  }
  CHECK_MESSAGE(count > 0, "op table: no case in family " << family);
}

}  // namespace

TEST_CASE("op_table: cases are well formed") {
  std::set<std::string> names;
  const auto& families = op_families();
  for (const OpCase& c : op_cases()) {
    CHECK_MESSAGE(names.insert(c.name).second, c.name << ": duplicate case name");
    CHECK_MESSAGE(std::find(families.begin(), families.end(), family_of(c)) != families.end(),
                  c.name << ": family " << std::string(family_of(c)) << " has no test case");
    CHECK_MESSAGE(static_cast<bool>(c.fn), c.name << ": no function");
    if (c.differentiable) {
      bool floating = std::any_of(c.inputs.begin(), c.inputs.end(), [](const InputSpec& s) {
        return !s.dtype.has_value() && s.requires_grad;
      });
      CHECK_MESSAGE(floating, c.name << ": differentiable but no input is gradchecked");
    }
  }
  CHECK(names.size() > 300);
}

TEST_CASE("op_table: elementwise") { run_family("elementwise"); }
TEST_CASE("op_table: reduce") { run_family("reduce"); }
TEST_CASE("op_table: linalg") { run_family("linalg"); }
TEST_CASE("op_table: nn") { run_family("nn"); }
TEST_CASE("op_table: indexing") { run_family("indexing"); }
TEST_CASE("op_table: shape") { run_family("shape"); }
TEST_CASE("op_table: view") { run_family("view"); }
TEST_CASE("op_table: random") { run_family("random"); }
TEST_CASE("op_table: factory") { run_family("factory"); }

// The oracle itself, on hand-computed values (direct backend calls, no op layer).
TEST_CASE("reference backend: hand-computed values") {
  Backend& ref = reference_backend();
  CHECK(std::string(ref.name()) == "reference");

  SUBCASE("softmax and log_softmax") {
    Tensor x = from_vector<double>({0.0, std::log(2.0)}, Shape{1, 2});
    Tensor y = empty({1, 2}, {.dtype = DType::f64});
    ref.softmax(SoftmaxKind::softmax, x, 1, y);
    auto v = y.to_vector<double>();
    CHECK(v[0] == doctest::Approx(1.0 / 3).epsilon(1e-14));
    CHECK(v[1] == doctest::Approx(2.0 / 3).epsilon(1e-14));
    ref.softmax(SoftmaxKind::log_softmax, x, 1, y);
    v = y.to_vector<double>();
    CHECK(v[0] == doctest::Approx(std::log(1.0 / 3)).epsilon(1e-14));
  }

  SUBCASE("reduce keepdim layout, strided input") {
    // x = [[1, 2, 3], [4, 5, 6]] read through its transpose.
    Tensor base = from_vector<float>({1, 4, 2, 5, 3, 6}, Shape{3, 2});
    Tensor x = base.transpose(0, 1);
    Tensor rows = empty({2, 1}, {.dtype = DType::f32});
    ref.reduce(ReduceOp::sum, x, rows);
    CHECK(rows.to_vector<float>() == std::vector<float>{6, 15});
    Tensor cols = empty({1, 3}, {.dtype = DType::f64});
    ref.reduce(ReduceOp::max, x, cols);
    CHECK(cols.to_vector<double>() == std::vector<double>{4, 5, 6});
    Tensor all = empty({1, 1}, {.dtype = DType::f64});
    ref.reduce(ReduceOp::logsumexp, x, all);
    double lse =
        std::log(std::exp(1) + std::exp(2) + std::exp(3) + std::exp(4) + std::exp(5) + std::exp(6));
    CHECK(all.item() == doctest::Approx(lse).epsilon(1e-14));
  }

  SUBCASE("argmax takes the first extreme") {
    Tensor x = from_vector<double>({1, 3, 3, 0}, Shape{1, 4});
    Tensor out = empty({1, 1}, {.dtype = DType::i64});
    ref.arg_reduce(ArgReduceOp::argmax, x, 1, out);
    CHECK(out.item<int64_t>() == 1);
  }

  SUBCASE("sort is stable with NaNs last (first when descending)") {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    Tensor x = from_vector<double>({2, nan, 1, 2, 1});
    Tensor values = empty({5}, {.dtype = DType::f64});
    Tensor indices = empty({5}, {.dtype = DType::i64});
    ref.sort(x, 0, false, values, indices);
    CHECK(indices.to_vector<int64_t>() == std::vector<int64_t>{2, 4, 0, 3, 1});
    ref.sort(x, 0, true, values, indices);
    CHECK(indices.to_vector<int64_t>() == std::vector<int64_t>{1, 0, 3, 2, 4});
    CHECK(std::isnan(values.to_vector<double>()[0]));
  }

  SUBCASE("matmul broadcasts batch dims and adds the bias") {
    Tensor a = from_vector<double>({1, 2, 3, 4}, Shape{1, 2, 2});              // [[1, 2], [3, 4]]
    Tensor b = from_vector<double>({1, 0, 0, 1, 2, 0, 0, 2}, Shape{2, 2, 2});  // I, 2I
    Tensor bias = from_vector<double>({10, 20});
    Tensor out = empty({2, 2, 2}, {.dtype = DType::f64});
    ref.matmul(a, b, bias, out);
    CHECK(out.to_vector<double>() == std::vector<double>{11, 22, 13, 24, 12, 24, 16, 28});
  }

  SUBCASE("layer_norm writes mean and rstd") {
    Tensor x = from_vector<double>({1, 3}, Shape{1, 2});
    Tensor out = empty({1, 2}, {.dtype = DType::f64});
    Tensor mean = empty({1}, {.dtype = DType::f64}), rstd = empty({1}, {.dtype = DType::f64});
    ref.layer_norm(x, Tensor(), Tensor(), 0.0, out, mean, rstd);
    CHECK(mean.item() == 2.0);
    CHECK(rstd.item() == doctest::Approx(1.0).epsilon(1e-14));
    CHECK(out.to_vector<double>() == std::vector<double>{-1, 1});
  }

  SUBCASE("gather and scatter_add along dim 1") {
    Tensor x = from_vector<double>({1, 2, 3, 4, 5, 6}, Shape{2, 3});
    Tensor index = from_vector<int64_t>({2, 0, 1, 1}, Shape{2, 2});
    Tensor out = empty({2, 2}, {.dtype = DType::f64});
    ref.gather(x, 1, index, out);
    CHECK(out.to_vector<double>() == std::vector<double>{3, 1, 5, 5});
    Tensor dst = zeros({2, 3}, {.dtype = DType::f64});
    ref.scatter_add(dst, 1, index, out);
    CHECK(dst.to_vector<double>() == std::vector<double>{1, 0, 3, 0, 10, 0});
  }

  SUBCASE("random follows the Philox mapping") {
    // Known answer of core/philox.h: counter 0, key 0 -> 6627e8d5 e169c58d bc57ac4c 9b00dbd8.
    const uint32_t words[4] = {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u};
    Tensor out = empty({4}, {.dtype = DType::f64});
    ref.random(RandomKind::uniform, PhiloxState{0, 0, 0}, 0.0, 1.0, out);
    auto v = out.to_vector<double>();
    for (int i = 0; i < 4; ++i) CHECK(v[i] == (words[i] + 0.5) / 4294967296.0);
    ref.random(RandomKind::normal, PhiloxState{0, 0, 0}, 0.0, 1.0, out);
    v = out.to_vector<double>();
    double r = std::sqrt(-2 * std::log((words[0] + 0.5) / 4294967296.0));
    double t = 2 * std::numbers::pi * ((words[1] + 0.5) / 4294967296.0);
    CHECK(v[0] == doctest::Approx(r * std::cos(t)).epsilon(1e-15));
    CHECK(v[1] == doctest::Approx(r * std::sin(t)).epsilon(1e-15));
  }

  SUBCASE("unary_backward from y alone") {
    Tensor y = from_vector<double>({0.5});
    Tensor dy = from_vector<double>({2.0});
    Tensor dx = empty({1}, {.dtype = DType::f64});
    ref.unary_backward(UnaryOp::tanh, Tensor(), y, dy, dx, {});
    CHECK(dx.item() == doctest::Approx(2.0 * (1 - 0.25)));
  }
}

}  // namespace rw::testing

namespace rw::testing {

// What the op layer does not show directly: the statistics layer_norm saves for backward.
TEST_CASE("reference backend: layer_norm statistics match the cpu backend") {
  for (DType dt : {DType::f32, DType::f64}) {
    CAPTURE(dtype_name(dt));
    std::vector<double> xv(5 * 7), wv(7), bv(7), dyv(5 * 7);
    for (std::size_t i = 0; i < xv.size(); ++i) {
      xv[i] = std::sin(0.7 * static_cast<double>(i)) * 2.0 + 0.1 * static_cast<double>(i % 3);
      dyv[i] = std::cos(1.3 * static_cast<double>(i));
    }
    for (std::size_t i = 0; i < wv.size(); ++i) {
      wv[i] = 0.5 + 0.1 * static_cast<double>(i);
      bv[i] = -0.2 * static_cast<double>(i);
    }
    Tensor x = from_vector<double>(xv, Shape{5, 7}).to(dt);
    Tensor w = from_vector<double>(wv).to(dt), b = from_vector<double>(bv).to(dt);
    Tensor dy = from_vector<double>(dyv, Shape{5, 7}).to(dt);
    auto run = [&](Backend& be) {
      Tensor out = empty({5, 7}, {.dtype = dt}), mean = empty({5}, {.dtype = dt}),
             rstd = empty({5}, {.dtype = dt});
      be.layer_norm(x, w, b, 1e-5, out, mean, rstd);
      Tensor dx = empty({5, 7}, {.dtype = dt}), dw = empty({7}, {.dtype = dt}),
             db = empty({7}, {.dtype = dt});
      be.layer_norm_backward(dy, x, w, mean, rstd, dx, dw, db);
      return std::vector<Tensor>{out, mean, rstd, dx, dw, db};
    };
    std::vector<Tensor> cpu = run(backend_for(Device::cpu()));
    std::vector<Tensor> ref = run(reference_backend());
    const char* names[] = {"out", "mean", "rstd", "dx", "dweight", "dbias"};
    const double tol = dt == DType::f32 ? 1e-5 : 1e-12;
    for (std::size_t i = 0; i < cpu.size(); ++i) {
      std::string m = mismatch(cpu[i], ref[i], tol);
      CHECK_MESSAGE(m.empty(), names[i] << ": " << m);
    }
  }
}

}  // namespace rw::testing
