// Runs the op table (tests/ops/op_table.h) on the GPU against the CPU backend. For every case:
//   (a) forward, in f64 and in f32: the case's inputs are moved to cuda:0 and the case runs there;
//       its result must be on cuda:0, of the CPU run's dtype and shape, and match the CPU backend's
//       f64 result (f64 within kTolF64 relative; f32 and half results within the case's tol_f32;
//       integer and bool results exactly). The GPU inputs must come out unchanged;
//   (b) for differentiable cases, the analytic f64 gradients on cuda:0 against the CPU backend's,
//       within kTolGrad, for the CPU runner's cotangent.
// One test case per family, one SUBCASE per op case; every failure message starts with the case
// name, and an exception in one case fails that case only. A few cases cannot run on the GPU by
// construction; cpu_only_cases() lists them with the reason, and each is checked to still behave
// as listed, so the list cannot go stale. Each family ends with a one-line summary.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/ops.h"
#include "cuda/cuda_test_util.h"
#include "ops/op_table.h"
#include "test_util.h"

namespace rw::testing {
namespace {

constexpr Device kGpu = Device::cuda(0);

// f64 forward, GPU against CPU: both compute in double, so they agree to rounding (CUDA's libm is
// within a few ulp of glibc's). No case has needed a looser tolerance so far; if one does, give it
// an entry in kF64Tolerances rather than loosening this.
constexpr double kTolF64 = 1e-9;
// Analytic f64 gradients, GPU against CPU.
constexpr double kTolGrad = 1e-8;

// Per-case exceptions to kTolF64, each with its reason (matched by case-name prefix).
struct ToleranceOverride {
  std::string_view name_prefix;
  double tol;
  std::string_view reason;
};
const std::vector<ToleranceOverride> kF64Tolerances = {
    // (none: every case meets kTolF64)
};

double f64_tolerance(const OpCase& c) {
  for (const ToleranceOverride& o : kF64Tolerances) {
    if (c.name.starts_with(o.name_prefix)) return o.tol;
  }
  return kTolF64;
}

// --- cases that cannot run on the GPU ------------------------------------------------------------

enum class CpuOnly {
  device_mismatch,  // the case builds a CPU tensor itself and mixes it with its (GPU) inputs
  cpu_result,       // the case has no input to take a device from: it makes its result on the CPU
};

struct CpuOnlyCase {
  std::string_view name;
  CpuOnly kind;
  std::string_view reason;
};

const std::vector<CpuOnlyCase>& cpu_only_cases() {
  static const std::vector<CpuOnlyCase> cases = {
      {"nn/composite/attention", CpuOnly::device_mismatch,
       "masks its scores with rw::tril_mask(3, 3), which is made on the CPU"},
      {"random/randint/state", CpuOnly::cpu_result, "rw::randint with default options"},
      {"random/randint/i32", CpuOnly::cpu_result, "rw::randint with a dtype only"},
      {"random/randint/generator", CpuOnly::cpu_result, "rw::randint with default options"},
      {"factory/arange/int", CpuOnly::cpu_result, "rw::arange(7) with default options"},
      {"shape/tril_mask/square", CpuOnly::cpu_result, "rw::tril_mask has no device argument"},
      {"shape/tril_mask/offset", CpuOnly::cpu_result, "rw::tril_mask has no device argument"},
      {"shape/triu_mask/offset", CpuOnly::cpu_result, "rw::triu_mask has no device argument"},
      {"shape/triu_mask/square", CpuOnly::cpu_result, "rw::triu_mask has no device argument"},
      {"random/randn/bf16", CpuOnly::cpu_result, "rw::randn with a dtype only"},
      {"random/uniform/bf16", CpuOnly::cpu_result, "rw::uniform with a dtype only"},
      {"random/randn/f16", CpuOnly::cpu_result, "rw::randn with a dtype only"},
      {"random/uniform/f16", CpuOnly::cpu_result, "rw::uniform with a dtype only"},
  };
  return cases;
}

const CpuOnlyCase* find_cpu_only(const OpCase& c) {
  for (const CpuOnlyCase& e : cpu_only_cases()) {
    if (e.name == c.name) return &e;
  }
  return nullptr;
}

// The message of the op layer's cross-device check (core/ops/op_utils.cpp).
bool is_device_mismatch(const std::string& message) {
  return test::contains(message, "tensors are on different devices");
}

// --- comparisons ---------------------------------------------------------------------------------

// "" when `got` (the GPU's) matches `want` (the CPU's); else what differs. `got` must be on the
// GPU and of want's shape; floating values match when both are NaN, or
// |got - want| <= tol * (1 + |want|) (got may be narrower than want: an f32 result against the
// CPU's f64 one); others must be equal and of the same dtype.
std::string mismatch(const Tensor& got, const Tensor& want, double tol) {
  if (got.device() != kGpu) return fmt::format("result is on {}, expected {}", got.device(), kGpu);
  if (got.shape() != want.shape())
    return fmt::format("shape {} vs cpu {}", got.shape(), want.shape());
  const bool floating = is_floating(want.dtype());
  if (is_floating(got.dtype()) != floating || (!floating && got.dtype() != want.dtype())) {
    return fmt::format("dtype {} vs cpu {}", got.dtype(), want.dtype());
  }
  std::vector<double> g = got.to_vector<double>(), w = want.to_vector<double>();
  int64_t bad = 0, first = -1;
  for (std::size_t i = 0; i < g.size(); ++i) {
    bool same = (std::isnan(g[i]) && std::isnan(w[i])) || g[i] == w[i];
    if (!same && floating) same = std::fabs(g[i] - w[i]) <= tol * (1.0 + std::fabs(w[i]));
    if (!same && bad++ == 0) first = static_cast<int64_t>(i);
  }
  if (bad == 0) return "";
  auto f = static_cast<std::size_t>(first);
  return fmt::format(
      "{} of {} elements differ; first at flat index {}: gpu {:.17g} vs cpu {:.17g} (gpu dtype "
      "{}, cpu dtype {}, shape {}, tolerance {:.1g} relative)",
      bad, g.size(), first, g[f], w[f], got.dtype(), want.dtype(), want.shape(),
      floating ? tol : 0.0);
}

// The case's result on the CPU backend (inputs as generated, on the CPU).
Tensor cpu_forward(const OpCase& c, DType float_dtype) {
  return with_layouts(c)(make_inputs(c, float_dtype, false));
}

// Inputs moved to the GPU as leaves, keeping requires_grad.
std::vector<Tensor> to_gpu(const std::vector<Tensor>& inputs) {
  std::vector<Tensor> out;
  for (const Tensor& x : inputs) {
    Tensor g = x.to(kGpu).detach();
    if (x.requires_grad()) g.requires_grad_();
    out.push_back(g);
  }
  return out;
}

// What happened to one case; a case passes when nothing failed.
struct Outcome {
  bool failed = false;
};

void expect(Outcome& o, bool ok, const OpCase& c, const std::string& message) {
  if (!ok) o.failed = true;
  CHECK_MESSAGE(ok, c.name << ": " << message);
}

// Each part runs on its own, so one failure (or a kernel family that is not implemented yet) does
// not hide the others; exceptions become failures naming the case.
template <typename F>
void part(Outcome& o, const OpCase& c, const char* what, F&& body) {
  try {
    body();
  } catch (const std::exception& e) {
    o.failed = true;
    const std::string m = e.what();
    if (is_device_mismatch(m)) {
      FAIL_CHECK(c.name << ": " << std::string(what) << " hit a device mismatch: " << m
                        << " -- an op made a CPU tensor from GPU inputs (an op-layer bug), or the "
                           "case builds CPU tensors itself (then list it in cpu_only_cases() with "
                           "the reason)");
    } else {
      FAIL_CHECK(c.name << ": " << std::string(what) << " threw: " << m);
    }
  }
}

// --- (a) forward ---------------------------------------------------------------------------------

void check_forward(Outcome& o, const OpCase& c) {
  const OpFn fn = with_layouts(c);
  const Tensor cpu64 = cpu_forward(c, DType::f64);
  for (DType dt : {DType::f64, DType::f32}) {
    const std::string run = fmt::format("forward {}", dtype_name(dt));
    std::vector<Tensor> inputs = to_gpu(make_inputs(c, dt, false));
    const Tensor gpu = fn(inputs);
    if (!gpu.defined()) {
      expect(o, false, c, run + ": the GPU run returned an undefined tensor");
      continue;
    }
    // The CPU's dtype in the same run (cases may convert, or have inputs of fixed dtypes).
    const DType cpu_dtype = dt == DType::f64 ? cpu64.dtype() : cpu_forward(c, dt).dtype();
    expect(o, gpu.dtype() == cpu_dtype, c,
           fmt::format("{}: gpu dtype {} vs cpu {}", run, gpu.dtype(), cpu_dtype));
    // Values against the CPU's f64 result: f64 to rounding, anything narrower to the case's f32
    // tolerance (about one unit in the last place for the half cases).
    const double tol = gpu.dtype() == DType::f64 ? f64_tolerance(c) : c.tol_f32;
    const std::string m = mismatch(gpu, cpu64, tol);
    expect(o, m.empty(), c, run + " (gpu vs cpu f64): " + m);
    // An op must not write into its inputs.
    std::vector<Tensor> fresh = make_inputs(c, dt, false);
    for (std::size_t i = 0; i < fresh.size(); ++i) {
      std::vector<double> now = inputs[i].to_vector<double>(), was = fresh[i].to_vector<double>();
      bool same = now.size() == was.size();
      for (std::size_t k = 0; same && k < now.size(); ++k) {
        same = now[k] == was[k] || (std::isnan(now[k]) && std::isnan(was[k]));
      }
      expect(o, same, c, fmt::format("{}: the GPU run modified input {}", run, i));
    }
  }
}

// --- (b) gradients -------------------------------------------------------------------------------

// The f64 gradients of <cotangent, fn(inputs)> w.r.t. each input (undefined where none), with the
// inputs on `device`; the cotangent is the CPU runner's.
std::vector<Tensor> analytic_grads(const OpCase& c, Device device) {
  std::vector<Tensor> inputs = make_inputs(c, DType::f64, true);
  if (device != Device::cpu()) inputs = to_gpu(inputs);
  {
    TapeScope scope;
    Tensor y = with_layouts(c)(inputs);
    if (y.requires_grad()) {
      std::vector<double> cot(static_cast<std::size_t>(y.numel()));
      for (std::size_t i = 0; i < cot.size(); ++i) cot[i] = std::sin(1.7 * i + 0.3);
      backward(y, from_vector<double>(cot, y.shape()).to(y.dtype()).to(y.device()));
    }
  }
  std::vector<Tensor> grads;
  for (const Tensor& x : inputs) grads.push_back(x.requires_grad() ? x.grad() : Tensor());
  return grads;
}

void check_gradients(Outcome& o, const OpCase& c) {
  std::vector<Tensor> cpu = analytic_grads(c, Device::cpu());
  std::vector<Tensor> gpu = analytic_grads(c, kGpu);
  for (std::size_t i = 0; i < cpu.size(); ++i) {
    if (!cpu[i].defined() && !gpu[i].defined()) continue;
    // An input that got no gradient counts as a zero gradient.
    Tensor g = gpu[i].defined() ? gpu[i] : zeros_like(cpu[i]).to(kGpu);
    Tensor w = cpu[i].defined() ? cpu[i] : zeros_like(gpu[i]).to(Device::cpu());
    expect(o, g.dtype() == w.dtype(), c,
           fmt::format("gradient of input {}: gpu dtype {} vs cpu {}", i, g.dtype(), w.dtype()));
    std::string m = mismatch(g, w, kTolGrad);
    expect(o, m.empty(), c, fmt::format("gradient of input {} (gpu vs cpu): {}", i, m));
  }
}

// --- listed CPU-only cases -----------------------------------------------------------------------

// A listed case must still fail (or make a CPU result) exactly as its entry says; otherwise the
// entry is stale and the case should be checked like the others.
void check_cpu_only(Outcome& o, const OpCase& c, const CpuOnlyCase& entry) {
  const std::string listed = fmt::format("listed in cpu_only_cases() ({})", entry.reason);
  try {
    Tensor y = with_layouts(c)(to_gpu(make_inputs(c, DType::f64, false)));
    if (entry.kind == CpuOnly::device_mismatch) {
      expect(o, false, c,
             listed +
                 " as failing with a device mismatch, but it ran on the GPU; remove the "
                 "entry so the case is checked");
    } else {
      expect(o, y.defined() && y.device() == Device::cpu(), c,
             listed + " as making its result on the CPU, but the result is on " +
                 (y.defined() ? y.device().str() : std::string("(undefined)")) +
                 "; remove the entry so the case is checked");
    }
  } catch (const std::exception& e) {
    const bool as_listed = entry.kind == CpuOnly::device_mismatch && is_device_mismatch(e.what());
    expect(o, as_listed, c, listed + ", but it threw: " + std::string(e.what()));
  }
}

// --- families ------------------------------------------------------------------------------------

struct FamilySummary {
  int run = 0, passed = 0, cpu_only = 0, cpu_only_as_listed = 0;
};

void run_case(const OpCase& c, FamilySummary& summary) {
  Outcome o;
  if (const CpuOnlyCase* entry = find_cpu_only(c)) {
    check_cpu_only(o, c, *entry);
    ++summary.cpu_only;
    if (!o.failed) ++summary.cpu_only_as_listed;
    return;
  }
  ++summary.run;
  part(o, c, "forward", [&] { check_forward(o, c); });
  if (c.differentiable) part(o, c, "gradient", [&] { check_gradients(o, c); });
  if (!o.failed) ++summary.passed;
}

void run_family(const std::string& family) {
  // doctest enters the test case once per SUBCASE, so the counts live across those passes; the
  // summary is printed after the family's last case.
  static std::map<std::string, FamilySummary> summaries;
  const OpCase* last = nullptr;
  for (const OpCase& c : op_cases()) {
    if (family_of(c) == family) last = &c;
  }
  REQUIRE_MESSAGE(last != nullptr, "op table: no case in family " << family);
  for (const OpCase& c : op_cases()) {
    if (family_of(c) != family) continue;
    SUBCASE(c.name.c_str()) {
      FamilySummary& s = summaries[family];
      run_case(c, s);
      if (&c == last) {
        MESSAGE("cuda op table, family "
                << family << ": " << s.run << " cases run on the GPU, " << s.passed << " passed, "
                << s.run - s.passed << " failed; " << s.cpu_only_as_listed << " of " << s.cpu_only
                << " CPU-only cases behaved as listed");
        s = {};
      }
    }
  }
}

}  // namespace

TEST_CASE("cuda op_table: the CPU-only list and the tolerance table name existing cases") {
  std::set<std::string_view> names;
  for (const OpCase& c : op_cases()) names.insert(c.name);
  std::set<std::string_view> listed;
  for (const CpuOnlyCase& e : cpu_only_cases()) {
    CHECK_MESSAGE(names.count(e.name) == 1,
                  e.name << ": listed in cpu_only_cases() but not in the op table");
    CHECK_MESSAGE(listed.insert(e.name).second, e.name << ": listed twice in cpu_only_cases()");
    CHECK_MESSAGE(!e.reason.empty(), e.name << ": listed without a reason");
  }
  // A case without inputs has no device to run on, so it must be listed.
  for (const OpCase& c : op_cases()) {
    if (!c.inputs.empty()) continue;
    const CpuOnlyCase* entry = find_cpu_only(c);
    CHECK_MESSAGE((entry != nullptr && entry->kind == CpuOnly::cpu_result),
                  c.name << ": has no inputs, so it makes its result on the CPU; list it in "
                            "cpu_only_cases() as CpuOnly::cpu_result");
  }
  for (const ToleranceOverride& t : kF64Tolerances) {
    bool matches = std::any_of(names.begin(), names.end(),
                               [&](std::string_view n) { return n.starts_with(t.name_prefix); });
    CHECK_MESSAGE(matches, t.name_prefix << ": a tolerance override that matches no case");
  }
}

TEST_CASE("cuda op_table: elementwise") {
  RW_REQUIRE_GPU();
  run_family("elementwise");
}
TEST_CASE("cuda op_table: reduce") {
  RW_REQUIRE_GPU();
  run_family("reduce");
}
TEST_CASE("cuda op_table: linalg") {
  RW_REQUIRE_GPU();
  run_family("linalg");
}
TEST_CASE("cuda op_table: nn") {
  RW_REQUIRE_GPU();
  run_family("nn");
}
TEST_CASE("cuda op_table: indexing") {
  RW_REQUIRE_GPU();
  run_family("indexing");
}
TEST_CASE("cuda op_table: shape") {
  RW_REQUIRE_GPU();
  run_family("shape");
}
TEST_CASE("cuda op_table: view") {
  RW_REQUIRE_GPU();
  run_family("view");
}
TEST_CASE("cuda op_table: random") {
  RW_REQUIRE_GPU();
  run_family("random");
}
TEST_CASE("cuda op_table: factory") {
  RW_REQUIRE_GPU();
  run_family("factory");
}

}  // namespace rw::testing
