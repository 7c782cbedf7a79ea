#pragma once
// The op table: one list of cases drives every correctness check of the op layer (ggml's
// test-backend-ops, PyTorch's OpInfo). Each case is a function of a few generated inputs; the
// runner (test_op_table.cpp) checks, for every case,
//   (a) forward: the CPU backend in f32 and in f64 against the float64 reference backend on the
//       same values (integer and bool outputs exactly);
//   (b) for differentiable cases, rw::gradcheck in f64 on the CPU backend;
//   (c) for differentiable cases, the CPU backend's analytic gradient against the reference's.
// A new op gets its checks by adding cases here.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "autograd/gradcheck.h"
#include "core/tensor.h"

namespace rw::testing {

// How input values are generated (deterministically, from the case name and input position).
enum class Gen : uint8_t {
  normal,          // N(0, 1)
  positive,        // in [0.5, 2]: log, sqrt, rsqrt, pow bases
  away_from_zero,  // |x| in [0.3, 1.5], either sign: abs, sign, relu, divisors
  unit_interval,   // in [0.05, 0.95]
  distinct,        // a shuffle of evenly spaced values in (-2, 2): no ties (max, min, sort)
  index,           // integers in [0, high) (any dtype; floats hold integer values: ties)
  boolean,         // true or false, about half each
  fixed,           // InputSpec::values, as given
};

// The memory layout an input reaches the op with. Values are the same; only strides differ, and the
// layout is built with differentiable views so gradchecks go through it too.
enum class Layout : uint8_t {
  contiguous,
  transposed,  // the last two dims are transposed in memory (rank >= 2)
  strided,     // every other element of a twice-as-long buffer along the last dim
};

struct InputSpec {
  Shape shape = {};
  Gen gen = Gen::normal;
  // nullopt: the run's floating dtype (f32 in the CPU forward check, f64 in the reference and
  // gradient checks). Set: this fixed dtype in every run (i64 indices, bool masks, ...).
  std::optional<DType> dtype = std::nullopt;
  int64_t high = 0;                 // Gen::index: values in [0, high)
  std::vector<double> values = {};  // Gen::fixed
  Layout layout = Layout::contiguous;
  bool requires_grad = true;  // floating inputs of differentiable cases are gradchecked
};

using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;

struct OpCase {
  std::string name;  // "family/op/variant"; the family picks the test case that runs it
  std::vector<InputSpec> inputs;
  OpFn fn;
  bool differentiable = true;
  // Forward f32 (CPU) vs f64 (reference): |cpu - ref| <= tol_f32 * (1 + |ref|).
  double tol_f32 = 1e-5;
  GradcheckOptions grad_options = {};
};

// Every case, in a fixed order. Names are unique.
const std::vector<OpCase>& op_cases();
// The families the runner has a test case for; every case's family is one of them.
const std::vector<std::string>& op_families();
std::string_view family_of(const OpCase& c);

// The case's inputs in `float_dtype` (for the floating specs), contiguous and without layouts:
// identical values for every float_dtype (generated in double and rounded through f32). When
// `requires_grad`, the floating inputs whose spec asks for it require grad.
std::vector<Tensor> make_inputs(const OpCase& c, DType float_dtype, bool requires_grad);
// The case's function with its input layouts applied first (what every check runs).
OpFn with_layouts(const OpCase& c);
// x in `layout`, same values, built from differentiable views and copies.
Tensor apply_layout(const Tensor& x, Layout layout);

}  // namespace rw::testing
