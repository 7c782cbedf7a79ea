// The cases of the op table (see op_table.h). Shapes are small so the whole table, with full
// Jacobians for tiny inputs, runs in seconds. Inputs avoid the points where an op is not
// differentiable: no ties for max/min/sort (Gen::distinct), no zeros for abs/sign/relu/divisors
// (Gen::away_from_zero), positive bases for log/sqrt/pow, clamp bounds between generated values.
#include "ops/op_table.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <set>

#include "core/ops.h"
#include "core/philox.h"

namespace rw::testing {
namespace {

using V = const std::vector<Tensor>&;
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// --- input specs -------------------------------------------------------------------------------

InputSpec normal(Shape s, Layout l = Layout::contiguous) {
  return {.shape = std::move(s), .gen = Gen::normal, .layout = l};
}
InputSpec away(Shape s, Layout l = Layout::contiguous) {
  return {.shape = std::move(s), .gen = Gen::away_from_zero, .layout = l};
}
InputSpec distinct(Shape s, Layout l = Layout::contiguous) {
  return {.shape = std::move(s), .gen = Gen::distinct, .layout = l};
}
// Integer values in [0, high) in `dtype` (nullopt: the run's floating dtype, with ties).
InputSpec index(Shape s, int64_t high, std::optional<DType> dtype = DType::i64,
                Layout l = Layout::contiguous) {
  return {.shape = std::move(s), .gen = Gen::index, .dtype = dtype, .high = high, .layout = l};
}
InputSpec boolean(Shape s, Layout l = Layout::contiguous) {
  return {.shape = std::move(s), .gen = Gen::boolean, .dtype = DType::boolean, .layout = l};
}
InputSpec fixed(Shape s, std::vector<double> values, std::optional<DType> dtype = std::nullopt) {
  return {.shape = std::move(s), .gen = Gen::fixed, .dtype = dtype, .values = std::move(values)};
}
// A 0-dim input whose only use is to tell a factory the run's floating dtype.
InputSpec dtype_carrier() { return {.shape = {}, .gen = Gen::normal, .requires_grad = false}; }

TensorOptions like(const Tensor& t) { return options_of(t); }

// --- value generation --------------------------------------------------------------------------

// FNV-1a: a seed from the case name that does not change when other cases are added.
uint64_t name_seed(std::string_view name) {
  uint64_t h = 1469598103934665603ull;
  for (char ch : name) {
    h ^= static_cast<unsigned char>(ch);
    h *= 1099511628211ull;
  }
  return h;
}

class Draws {
 public:
  Draws(uint64_t seed, uint64_t stream) : state_{seed, stream, 0} {}
  double uniform() {  // in (0, 1)
    if (word_ == 4) {
      block_ = philox_block(state_, next_block_++);
      word_ = 0;
    }
    return philox_uniform(block_.w[word_++]);
  }
  double normal() {
    double r = std::sqrt(-2.0 * std::log(uniform()));
    return r * std::cos(2.0 * std::numbers::pi * uniform());
  }

 private:
  PhiloxState state_;
  PhiloxBlock block_{};
  uint64_t next_block_ = 0;
  int word_ = 4;
};

std::vector<double> generate(const InputSpec& spec, uint64_t seed, uint64_t stream) {
  const auto n = static_cast<std::size_t>(shape_numel(spec.shape));
  Draws draws(seed, stream);
  std::vector<double> v(n);
  switch (spec.gen) {
    case Gen::normal:
      for (double& x : v) x = draws.normal();
      break;
    case Gen::positive:
      for (double& x : v) x = 0.5 + 1.5 * draws.uniform();
      break;
    case Gen::away_from_zero:
      for (double& x : v) {
        double sign = draws.uniform() < 0.5 ? -1.0 : 1.0;
        x = sign * (0.3 + 1.2 * draws.uniform());
      }
      break;
    case Gen::unit_interval:
      for (double& x : v) x = 0.05 + 0.9 * draws.uniform();
      break;
    case Gen::distinct: {
      // Evenly spaced values, shuffled by sorting random keys: gaps of 4/n, far above eps.
      std::vector<std::pair<double, std::size_t>> keys(n);
      for (std::size_t i = 0; i < n; ++i) keys[i] = {draws.uniform(), i};
      std::sort(keys.begin(), keys.end());
      for (std::size_t i = 0; i < n; ++i) {
        v[keys[i].second] = -2.0 + 4.0 * (static_cast<double>(i) + 0.5) / static_cast<double>(n);
      }
      break;
    }
    case Gen::index:
      for (double& x : v) {
        x = std::min(std::floor(draws.uniform() * static_cast<double>(spec.high)),
                     static_cast<double>(spec.high - 1));
      }
      break;
    case Gen::boolean:
      for (double& x : v) x = draws.uniform() < 0.5 ? 1.0 : 0.0;
      break;
    case Gen::fixed:
      RW_CHECK(spec.values.size() == n, "op table: {} fixed values for shape {}",
               spec.values.size(), spec.shape);
      v = spec.values;
      break;
  }
  // Rounded through f32 so the f32 and f64 runs see exactly the same numbers.
  for (double& x : v) x = static_cast<double>(static_cast<float>(x));
  return v;
}

// --- the cases ---------------------------------------------------------------------------------

class Table {
 public:
  OpCase& def(std::string name, std::vector<InputSpec> inputs, OpFn fn) {
    cases_.push_back({.name = std::move(name), .inputs = std::move(inputs), .fn = std::move(fn)});
    return cases_.back();
  }
  // A forward-only case (no gradient: integer/bool outputs, random ops, in-place ops).
  OpCase& fwd(std::string name, std::vector<InputSpec> inputs, OpFn fn) {
    OpCase& c = def(std::move(name), std::move(inputs), std::move(fn));
    c.differentiable = false;
    return c;
  }
  std::vector<OpCase> take() { return std::move(cases_); }

 private:
  std::vector<OpCase> cases_;
};

void elementwise_cases(Table& t) {
  struct Unary {
    const char* name;
    OpFn fn;
    Gen gen;
  };
  const std::vector<Unary> unaries = {
      {"neg", [](V x) { return rw::neg(x[0]); }, Gen::normal},
      {"abs", [](V x) { return rw::abs(x[0]); }, Gen::away_from_zero},
      {"sign", [](V x) { return rw::sign(x[0]); }, Gen::away_from_zero},
      {"exp", [](V x) { return rw::exp(x[0]); }, Gen::normal},
      {"log", [](V x) { return rw::log(x[0]); }, Gen::positive},
      {"log1p", [](V x) { return rw::log1p(x[0]); }, Gen::unit_interval},
      {"sqrt", [](V x) { return rw::sqrt(x[0]); }, Gen::positive},
      {"rsqrt", [](V x) { return rw::rsqrt(x[0]); }, Gen::positive},
      {"square", [](V x) { return rw::square(x[0]); }, Gen::normal},
      {"reciprocal", [](V x) { return rw::reciprocal(x[0]); }, Gen::away_from_zero},
      {"sin", [](V x) { return rw::sin(x[0]); }, Gen::normal},
      {"cos", [](V x) { return rw::cos(x[0]); }, Gen::normal},
      {"tanh", [](V x) { return rw::tanh(x[0]); }, Gen::normal},
      {"sigmoid", [](V x) { return rw::sigmoid(x[0]); }, Gen::normal},
      {"relu", [](V x) { return rw::relu(x[0]); }, Gen::away_from_zero},
      {"erf", [](V x) { return rw::erf(x[0]); }, Gen::normal},
      {"gelu_erf", [](V x) { return rw::gelu(x[0]); }, Gen::normal},
      {"gelu_tanh", [](V x) { return rw::gelu(x[0], GeluApprox::tanh); }, Gen::normal},
      {"clamp_both", [](V x) { return rw::clamp(x[0], -0.5, 0.7); }, Gen::normal},
      {"clamp_min", [](V x) { return rw::clamp(x[0], -0.5, std::nullopt); }, Gen::normal},
      {"clamp_max", [](V x) { return rw::clamp(x[0], std::nullopt, 0.7); }, Gen::normal},
      {"pow_scalar_2", [](V x) { return rw::pow(x[0], 2.0); }, Gen::normal},
      {"pow_scalar_3", [](V x) { return rw::pow(x[0], 3.0); }, Gen::normal},
      {"pow_scalar_0", [](V x) { return rw::pow(x[0], 0.0); }, Gen::normal},
      {"pow_scalar_half", [](V x) { return rw::pow(x[0], 0.5); }, Gen::positive},
      {"pow_scalar_neg", [](V x) { return rw::pow(x[0], -1.5); }, Gen::positive},
      {"add_scalar", [](V x) { return rw::add(x[0], 2.5); }, Gen::normal},
      {"sub_scalar", [](V x) { return rw::sub(x[0], 2.5); }, Gen::normal},
      {"rsub_scalar", [](V x) { return rw::rsub(x[0], 2.5); }, Gen::normal},
      {"mul_scalar", [](V x) { return rw::mul(x[0], -1.5); }, Gen::normal},
      {"div_scalar", [](V x) { return rw::div(x[0], 0.7); }, Gen::normal},
      {"rdiv_scalar", [](V x) { return rw::rdiv(x[0], 1.3); }, Gen::away_from_zero},
      {"maximum_scalar", [](V x) { return rw::maximum(x[0], 0.2); }, Gen::normal},
      {"minimum_scalar", [](V x) { return rw::minimum(x[0], -0.1); }, Gen::normal},
  };
  for (const Unary& u : unaries) {
    std::string base = fmt::format("elementwise/{}", u.name);
    t.def(base + "/contiguous", {{.shape = {3, 4}, .gen = u.gen}}, u.fn);
    t.def(base + "/transposed", {{.shape = {4, 3}, .gen = u.gen, .layout = Layout::transposed}},
          u.fn);
    t.def(base + "/strided", {{.shape = {2, 5}, .gen = u.gen, .layout = Layout::strided}}, u.fn);
    t.def(base + "/scalar", {{.shape = {}, .gen = u.gen}}, u.fn);
    t.def(base + "/zero_size", {{.shape = {0, 3}, .gen = u.gen}}, u.fn);
  }
  // Through an expand view: the gradient sums over the broadcast copies.
  t.def("elementwise/exp/expanded_input", {normal({1, 3})}, [](V x) {
    return rw::exp(x[0].expand({4, 3}));
  });

  struct Binary {
    const char* name;
    OpFn fn;
    Gen a, b;
  };
  const std::vector<Binary> binaries = {
      {"add", [](V x) { return rw::add(x[0], x[1]); }, Gen::normal, Gen::normal},
      {"sub", [](V x) { return rw::sub(x[0], x[1]); }, Gen::normal, Gen::normal},
      {"mul", [](V x) { return rw::mul(x[0], x[1]); }, Gen::normal, Gen::normal},
      {"div", [](V x) { return rw::div(x[0], x[1]); }, Gen::normal, Gen::away_from_zero},
      {"maximum", [](V x) { return rw::maximum(x[0], x[1]); }, Gen::normal, Gen::normal},
      {"minimum", [](V x) { return rw::minimum(x[0], x[1]); }, Gen::normal, Gen::normal},
      {"pow", [](V x) { return rw::pow(x[0], x[1]); }, Gen::positive, Gen::normal},
  };
  for (const Binary& b : binaries) {
    std::string base = fmt::format("elementwise/{}", b.name);
    t.def(base + "/same_shape", {{.shape = {3, 4}, .gen = b.a}, {.shape = {3, 4}, .gen = b.b}},
          b.fn);
    t.def(base + "/broadcast_both", {{.shape = {3, 1}, .gen = b.a}, {.shape = {1, 4}, .gen = b.b}},
          b.fn);
    t.def(base + "/broadcast_rank", {{.shape = {2, 3, 4}, .gen = b.a}, {.shape = {4}, .gen = b.b}},
          b.fn);
    t.def(base + "/broadcast_first", {{.shape = {3}, .gen = b.a}, {.shape = {2, 3}, .gen = b.b}},
          b.fn);
    t.def(base + "/transposed",
          {{.shape = {4, 3}, .gen = b.a, .layout = Layout::transposed},
           {.shape = {4, 3}, .gen = b.b, .layout = Layout::strided}},
          b.fn);
    t.def(base + "/scalar_tensor", {{.shape = {}, .gen = b.a}, {.shape = {2, 3}, .gen = b.b}},
          b.fn);
    t.def(base + "/zero_size", {{.shape = {0, 4}, .gen = b.a}, {.shape = {1, 4}, .gen = b.b}},
          b.fn);
  }
  t.def("elementwise/mul/same_input", {normal({3, 4})}, [](V x) { return rw::mul(x[0], x[0]); });

  // Operators.
  t.def("elementwise/operators/tensor_tensor", {normal({3, 4}), normal({4}), away({3, 1})},
        [](V x) { return ((x[0] + x[1]) - x[0] * x[1]) / x[2] + (-x[1]); });
  t.def("elementwise/operators/tensor_scalar", {away({3, 4})}, [](V x) {
    return (x[0] + 1.5) * 2.0 - 0.5 + x[0] / 4.0 + (2.0 + x[0]) + (1.0 - x[0]) + 3.0 * x[0] +
           (2.0 / x[0]);
  });

  // Type promotion (forward only: integer operands).
  t.fwd("elementwise/add/int_plus_float", {index({3, 4}, 10), normal({3, 4})},
        [](V x) { return rw::add(x[0], x[1]); });
  t.fwd("elementwise/add/int_int", {index({3, 4}, 100), index({4}, 100)},
        [](V x) { return rw::add(x[0], x[1]); });
  t.fwd("elementwise/mul/int_int32", {index({3, 4}, 100, DType::i32), index({3, 4}, 100)},
        [](V x) { return rw::mul(x[0], x[1]); });
  t.fwd("elementwise/mul/int_times_fraction", {index({3, 4}, 10)},
        [](V x) { return rw::mul(x[0], 2.5); });
  t.fwd("elementwise/add/int_plus_integer_scalar", {index({3, 4}, 10)},
        [](V x) { return rw::add(x[0], 3.0); });
  t.fwd("elementwise/neg/int", {index({5}, 10)}, [](V x) { return rw::neg(x[0]); });
  t.fwd("elementwise/abs/int", {fixed({4}, {-3, 0, 2, -7}, DType::i64)},
        [](V x) { return rw::abs(x[0]); });
  t.fwd("elementwise/maximum/int", {index({3, 4}, 10), index({3, 4}, 10)},
        [](V x) { return rw::maximum(x[0], x[1]); });
  t.fwd("elementwise/sub/bool_to_float", {boolean({3, 4}), normal({3, 4})},
        [](V x) { return rw::sub(x[1], x[0].to(x[1].dtype())); });

  // where.
  t.def("elementwise/where/same_shape", {boolean({3, 4}), normal({3, 4}), normal({3, 4})},
        [](V x) { return rw::where(x[0], x[1], x[2]); });
  t.def("elementwise/where/broadcast", {boolean({3, 1}), normal({1, 4}), normal({3, 4})},
        [](V x) { return rw::where(x[0], x[1], x[2]); });
  t.def("elementwise/where/broadcast_cond", {boolean({4}), normal({2, 3, 1}), normal({3, 4})},
        [](V x) { return rw::where(x[0], x[1], x[2]); });
  t.def("elementwise/where/scalar_other", {boolean({3, 4}), normal({3, 4}, Layout::transposed)},
        [](V x) { return rw::where(x[0], x[1], -1.5); });
  t.def("elementwise/where/zero_size", {boolean({0, 4}), normal({0, 4}), normal({4})},
        [](V x) { return rw::where(x[0], x[1], x[2]); });

  // Comparisons (integer-valued floats, so ties happen).
  struct Compare {
    const char* name;
    OpFn tensor_fn, scalar_fn;
  };
  const std::vector<Compare> compares = {
      {"eq", [](V x) { return rw::eq(x[0], x[1]); }, [](V x) { return rw::eq(x[0], 1.0); }},
      {"ne", [](V x) { return rw::ne(x[0], x[1]); }, [](V x) { return rw::ne(x[0], 1.0); }},
      {"lt", [](V x) { return rw::lt(x[0], x[1]); }, [](V x) { return rw::lt(x[0], 1.0); }},
      {"le", [](V x) { return rw::le(x[0], x[1]); }, [](V x) { return rw::le(x[0], 1.0); }},
      {"gt", [](V x) { return rw::gt(x[0], x[1]); }, [](V x) { return rw::gt(x[0], 1.0); }},
      {"ge", [](V x) { return rw::ge(x[0], x[1]); }, [](V x) { return rw::ge(x[0], 1.0); }},
  };
  for (const Compare& c : compares) {
    std::string base = fmt::format("elementwise/{}", c.name);
    t.fwd(base + "/tensor", {index({3, 4}, 3, std::nullopt), index({3, 4}, 3, std::nullopt)},
          c.tensor_fn);
    t.fwd(base + "/broadcast",
          {index({3, 1}, 3, std::nullopt), index({4}, 3, std::nullopt, Layout::strided)},
          c.tensor_fn);
    t.fwd(base + "/int", {index({3, 4}, 3), index({3, 4}, 3)}, c.tensor_fn);
    t.fwd(base + "/scalar", {index({3, 4}, 3, std::nullopt, Layout::transposed)}, c.scalar_fn);
    t.fwd(base + "/nan", {fixed({4}, {kNaN, 1, kInf, -kInf}), fixed({4}, {kNaN, kNaN, kInf, 1})},
          c.tensor_fn);
  }
  t.fwd("elementwise/logical_and/bool", {boolean({3, 4}), boolean({4})},
        [](V x) { return rw::logical_and(x[0], x[1]); });
  t.fwd("elementwise/logical_or/bool", {boolean({3, 4}), boolean({3, 1})},
        [](V x) { return rw::logical_or(x[0], x[1]); });
  t.fwd("elementwise/logical_not/bool", {boolean({3, 4}, Layout::transposed)},
        [](V x) { return rw::logical_not(x[0]); });
  t.fwd("elementwise/isfinite/float", {fixed({6}, {1, kInf, -kInf, kNaN, 0, -2})},
        [](V x) { return rw::isfinite(x[0]); });

  // In-place forms: applied to a clone (so the inputs stay as generated).
  t.fwd("elementwise/add_/tensor_alpha", {normal({3, 4}), normal({4})}, [](V x) {
    Tensor y = x[0].clone();
    rw::add_(y, x[1], 0.5);
    return y;
  });
  t.fwd("elementwise/sub_/tensor", {normal({3, 4}), normal({3, 4}, Layout::transposed)}, [](V x) {
    Tensor y = x[0].clone();
    rw::sub_(y, x[1]);
    return y;
  });
  t.fwd("elementwise/mul_/tensor", {normal({3, 4}), normal({3, 1})}, [](V x) {
    Tensor y = x[0].clone();
    rw::mul_(y, x[1]);
    return y;
  });
  t.fwd("elementwise/div_/tensor", {normal({3, 4}), away({3, 4})}, [](V x) {
    Tensor y = x[0].clone();
    rw::div_(y, x[1]);
    return y;
  });
  t.fwd("elementwise/add_/scalar", {normal({3, 4})}, [](V x) {
    Tensor y = x[0].clone();
    rw::add_(y, 1.25);
    return y;
  });
  t.fwd("elementwise/mul_/scalar", {normal({3, 4})}, [](V x) {
    Tensor y = x[0].clone();
    rw::mul_(y, -3.0);
    return y;
  });
  t.fwd("elementwise/clamp_/both", {normal({3, 4})}, [](V x) {
    Tensor y = x[0].clone();
    rw::clamp_(y, -0.3, 0.4);
    return y;
  });
  t.fwd("elementwise/copy_/broadcast", {normal({3, 4}), normal({4}, Layout::strided)}, [](V x) {
    Tensor y = x[0].clone();
    rw::copy_(y, x[1]);
    return y;
  });
  t.fwd("elementwise/copy_/convert_int", {normal({3, 4}), index({3, 4}, 7)}, [](V x) {
    Tensor y = x[0].clone();
    rw::copy_(y, x[1]);
    return y;
  });
  t.fwd("elementwise/copy_/into_transposed_view", {normal({3, 4}), normal({4, 3})}, [](V x) {
    Tensor y = x[0].clone();
    rw::copy_(y.transpose(0, 1), x[1]);
    return y;
  });
  t.fwd("elementwise/fill_/value", {normal({3, 4})}, [](V x) {
    Tensor y = x[0].clone();
    rw::fill_(y, 2.5);
    return y;
  });
  t.fwd("elementwise/zero_/value", {normal({3, 4})}, [](V x) {
    Tensor y = x[0].clone();
    rw::zero_(y);
    return y;
  });
}

void reduce_cases(Table& t) {
  struct Reduce {
    const char* name;
    std::function<Tensor(const Tensor&, std::vector<int64_t>, bool)> fn;
    Gen gen;
  };
  const std::vector<Reduce> reductions = {
      {"sum", [](const Tensor& x, std::vector<int64_t> d, bool k) { return rw::sum(x, d, k); },
       Gen::normal},
      {"mean", [](const Tensor& x, std::vector<int64_t> d, bool k) { return rw::mean(x, d, k); },
       Gen::normal},
      {"max", [](const Tensor& x, std::vector<int64_t> d, bool k) { return rw::max(x, d, k); },
       Gen::distinct},
      {"min", [](const Tensor& x, std::vector<int64_t> d, bool k) { return rw::min(x, d, k); },
       Gen::distinct},
      {"prod", [](const Tensor& x, std::vector<int64_t> d, bool k) { return rw::prod(x, d, k); },
       Gen::away_from_zero},
      {"logsumexp",
       [](const Tensor& x, std::vector<int64_t> d, bool k) { return rw::logsumexp(x, d, k); },
       Gen::normal},
      {"var", [](const Tensor& x, std::vector<int64_t> d, bool k) { return rw::var(x, d, k); },
       Gen::normal},
  };
  for (const Reduce& r : reductions) {
    std::string base = fmt::format("reduce/{}", r.name);
    auto fn = r.fn;
    t.def(base + "/all", {{.shape = {3, 4}, .gen = r.gen}},
          [fn](V x) { return fn(x[0], {}, false); });
    t.def(base + "/all_keepdim", {{.shape = {3, 4}, .gen = r.gen}},
          [fn](V x) { return fn(x[0], {}, true); });
    t.def(base + "/dim0", {{.shape = {3, 4}, .gen = r.gen}},
          [fn](V x) { return fn(x[0], {0}, false); });
    t.def(base + "/dim_last_keepdim", {{.shape = {3, 4}, .gen = r.gen}},
          [fn](V x) { return fn(x[0], {-1}, true); });
    t.def(base + "/dims_0_2", {{.shape = {2, 3, 4}, .gen = r.gen}}, [fn](V x) {
      return fn(x[0], {0, 2}, false);
    });
    t.def(base + "/dims_2_0_keepdim", {{.shape = {2, 3, 4}, .gen = r.gen}}, [fn](V x) {
      return fn(x[0], {2, 0}, true);
    });
    t.def(base + "/transposed", {{.shape = {4, 3}, .gen = r.gen, .layout = Layout::transposed}},
          [fn](V x) { return fn(x[0], {1}, false); });
    t.def(base + "/strided_middle", {{.shape = {2, 3, 4}, .gen = r.gen, .layout = Layout::strided}},
          [fn](V x) { return fn(x[0], {1}, false); });
    // var over one element divides by zero (NaN, as PyTorch): not a gradcheck point.
    if (std::string_view(r.name) != "var") {
      t.def(base + "/size_one_dim", {{.shape = {3, 1}, .gen = r.gen}},
            [fn](V x) { return fn(x[0], {1}, false); });
      t.def(base + "/scalar_input", {{.shape = {}, .gen = r.gen}},
            [fn](V x) { return fn(x[0], {}, false); });
    }
    t.def(base + "/zero_size_kept_dim", {{.shape = {0, 3}, .gen = r.gen}},
          [fn](V x) { return fn(x[0], {1}, false); });
  }
  t.def("reduce/sum/zero_size_reduced", {normal({0, 3})}, [](V x) { return rw::sum(x[0], {0}); });
  t.def("reduce/prod/zero_size_reduced", {normal({0, 3})}, [](V x) { return rw::prod(x[0], {0}); });
  t.fwd("reduce/sum/int", {index({3, 4}, 50)}, [](V x) { return rw::sum(x[0], {1}); });
  t.fwd("reduce/max/ties", {index({3, 4}, 3, std::nullopt)},
        [](V x) { return rw::max(x[0], {1}); });
  t.fwd("reduce/min/int", {index({3, 4}, 50)}, [](V x) { return rw::min(x[0], {0}); });
  t.def("reduce/var/correction0", {normal({3, 4})},
        [](V x) { return rw::var(x[0], {1}, false, 0); });
  t.def("reduce/var/correction2_keepdim", {normal({2, 3, 4})}, [](V x) {
    return rw::var(x[0], {0, 2}, true, 2);
  });
  t.def("reduce/logsumexp/large_values", {normal({3, 4})},
        [](V x) { return rw::logsumexp(rw::mul(x[0], 40.0), {1}); });
  t.fwd("reduce/logsumexp/infinities", {fixed({3, 2}, {-kInf, -kInf, kInf, 1.0, -kInf, 2.0})},
        [](V x) { return rw::logsumexp(x[0], {1}); });

  for (const char* name : {"argmax", "argmin"}) {
    bool is_max = std::string_view(name) == "argmax";
    auto arg = [is_max](const Tensor& x, std::optional<int64_t> d, bool k) {
      return is_max ? rw::argmax(x, d, k) : rw::argmin(x, d, k);
    };
    std::string base = fmt::format("reduce/{}", name);
    t.fwd(base + "/flattened", {distinct({3, 4})},
          [arg](V x) { return arg(x[0], std::nullopt, false); });
    t.fwd(base + "/dim1", {distinct({3, 4})}, [arg](V x) { return arg(x[0], 1, false); });
    t.fwd(base + "/dim0_keepdim", {distinct({3, 4}, Layout::transposed)},
          [arg](V x) { return arg(x[0], 0, true); });
    t.fwd(base + "/ties_first", {index({4, 6}, 3, std::nullopt)},
          [arg](V x) { return arg(x[0], -1, false); });
    t.fwd(base + "/int", {index({4, 6}, 5)}, [arg](V x) { return arg(x[0], 1, false); });
    t.fwd(base + "/3d_middle", {distinct({2, 3, 4}, Layout::strided)},
          [arg](V x) { return arg(x[0], 1, false); });
  }

  t.def("reduce/cumsum/dim0", {normal({3, 4})}, [](V x) { return rw::cumsum(x[0], 0); });
  t.def("reduce/cumsum/dim_last", {normal({3, 4})}, [](V x) { return rw::cumsum(x[0], -1); });
  t.def("reduce/cumsum/transposed", {normal({4, 3}, Layout::transposed)},
        [](V x) { return rw::cumsum(x[0], 1); });
  t.def("reduce/cumsum/3d_middle", {normal({2, 3, 4}, Layout::strided)},
        [](V x) { return rw::cumsum(x[0], 1); });
  t.def("reduce/cumsum/zero_size", {normal({0, 4})}, [](V x) { return rw::cumsum(x[0], 1); });
  t.fwd("reduce/cumsum/int", {index({3, 4}, 9)}, [](V x) { return rw::cumsum(x[0], 1); });

  t.def("reduce/sum_to/leading_and_inner", {normal({2, 3, 4})}, [](V x) {
    return rw::sum_to(x[0], {3, 1});
  });
  t.def("reduce/sum_to/leading", {normal({2, 3, 4})}, [](V x) { return rw::sum_to(x[0], {4}); });
  t.def("reduce/sum_to/scalar", {normal({2, 3})}, [](V x) { return rw::sum_to(x[0], {}); });
  t.def("reduce/sum_to/same", {normal({2, 3})}, [](V x) { return rw::sum_to(x[0], {2, 3}); });
}

void linalg_cases(Table& t) {
  auto mm = [](V x) { return rw::matmul(x[0], x[1]); };
  t.def("linalg/matmul/2d", {normal({3, 4}), normal({4, 5})}, mm);
  t.def("linalg/matmul/batched", {normal({2, 3, 4}), normal({2, 4, 5})}, mm);
  t.def("linalg/matmul/broadcast_batch", {normal({2, 1, 3, 4}), normal({3, 4, 2})}, mm);
  t.def("linalg/matmul/batched_times_2d", {normal({2, 3, 4}), normal({4, 5})}, mm);
  t.def("linalg/matmul/2d_times_batched", {normal({3, 4}), normal({2, 4, 5})}, mm);
  t.def("linalg/matmul/vector_matrix", {normal({4}), normal({4, 5})}, mm);
  t.def("linalg/matmul/matrix_vector", {normal({3, 4}), normal({4})}, mm);
  t.def("linalg/matmul/vector_vector", {normal({4}), normal({4})}, mm);
  t.def("linalg/matmul/batched_vector", {normal({2, 3, 4}), normal({4})}, mm);
  t.def("linalg/matmul/vector_batched", {normal({4}), normal({2, 4, 3})}, mm);
  t.def("linalg/matmul/transposed_a", {normal({3, 4}, Layout::transposed), normal({4, 5})}, mm);
  t.def("linalg/matmul/transposed_b", {normal({3, 4}), normal({4, 5}, Layout::transposed)}, mm);
  t.def("linalg/matmul/transposed_both",
        {normal({2, 3, 4}, Layout::transposed), normal({2, 4, 5}, Layout::transposed)}, mm);
  t.def("linalg/matmul/strided", {normal({3, 4}, Layout::strided), normal({4, 5}, Layout::strided)},
        mm);
  t.def("linalg/matmul/mT_view", {normal({5, 4}), normal({2, 3, 5})},
        [](V x) { return rw::matmul(x[0].mT(), x[1].mT().mT().transpose(-1, -2)); });
  t.def("linalg/matmul/expanded_operand", {normal({1, 3, 4}), normal({2, 4, 5})}, [](V x) {
    return rw::matmul(x[0].expand({2, 3, 4}), x[1]);
  });
  t.def("linalg/matmul/zero_k", {normal({3, 0}), normal({0, 2})}, mm);
  t.def("linalg/matmul/zero_m", {normal({0, 4}), normal({4, 2})}, mm);
  t.def("linalg/matmul/zero_batch", {normal({0, 3, 4}), normal({4, 2})}, mm);
  t.def("linalg/matmul/larger", {normal({2, 17, 33}), normal({33, 9})}, mm).tol_f32 = 1e-4;

  auto lin = [](V x) { return rw::linear(x[0], x[1], x.size() > 2 ? x[2] : Tensor()); };
  t.def("linalg/linear/bias", {normal({3, 4}), normal({5, 4}), normal({5})}, lin);
  t.def("linalg/linear/no_bias", {normal({3, 4}), normal({5, 4})}, lin);
  t.def("linalg/linear/3d_input", {normal({2, 3, 4}), normal({5, 4}), normal({5})}, lin);
  t.def("linalg/linear/1d_input", {normal({4}), normal({5, 4}), normal({5})}, lin);
  t.def("linalg/linear/transposed_weight",
        {normal({3, 4}, Layout::strided), normal({5, 4}, Layout::transposed), normal({5})}, lin);
  t.def("linalg/linear/zero_rows", {normal({0, 4}), normal({5, 4}), normal({5})}, lin);
}

void nn_cases(Table& t) {
  for (const char* name : {"softmax", "log_softmax"}) {
    bool log = std::string_view(name) == "log_softmax";
    auto sm = [log](const Tensor& x, int64_t d) {
      return log ? rw::log_softmax(x, d) : rw::softmax(x, d);
    };
    std::string base = fmt::format("nn/{}", name);
    t.def(base + "/last_dim", {normal({3, 5})}, [sm](V x) { return sm(x[0], -1); });
    t.def(base + "/dim0", {normal({3, 5})}, [sm](V x) { return sm(x[0], 0); });
    t.def(base + "/3d_middle", {normal({2, 3, 4})}, [sm](V x) { return sm(x[0], 1); });
    t.def(base + "/transposed", {normal({4, 3}, Layout::transposed)},
          [sm](V x) { return sm(x[0], -1); });
    t.def(base + "/large_values", {normal({3, 4})},
          [sm](V x) { return sm(rw::mul(x[0], 50.0), 1); });
    t.def(base + "/1d", {normal({6})}, [sm](V x) { return sm(x[0], 0); });
    t.def(base + "/zero_size", {normal({0, 5})}, [sm](V x) { return sm(x[0], -1); });
    t.fwd(base + "/minus_inf", {fixed({2, 3}, {0, -kInf, 1, -kInf, 2, 3})},
          [sm](V x) { return sm(x[0], -1); });
  }

  auto ln = [](V x) {
    return rw::layer_norm(x[0], x.size() > 1 ? x[1] : Tensor(), x.size() > 2 ? x[2] : Tensor());
  };
  t.def("nn/layer_norm/weight_bias", {normal({3, 6}), normal({6}), normal({6})}, ln);
  t.def("nn/layer_norm/plain", {normal({3, 6})}, ln);
  t.def("nn/layer_norm/weight_only", {normal({3, 6}), normal({6})}, ln);
  t.def("nn/layer_norm/bias_only", {normal({3, 6}), normal({6})},
        [](V x) { return rw::layer_norm(x[0], Tensor(), x[1]); });
  t.def("nn/layer_norm/3d", {normal({2, 3, 5}), normal({5}), normal({5})}, ln);
  t.def("nn/layer_norm/transposed", {normal({6, 3}, Layout::transposed), normal({3}), normal({3})},
        ln);
  t.def("nn/layer_norm/eps", {normal({3, 4})},
        [](V x) { return rw::layer_norm(x[0], Tensor(), Tensor(), 0.5); });
  t.def("nn/layer_norm/1d", {normal({7}), normal({7}), normal({7})}, ln);
  t.def("nn/layer_norm/zero_rows", {normal({0, 4}), normal({4}), normal({4})}, ln);

  // cross_entropy: target -100 is ignored by default.
  auto ce = [](Reduction r, int64_t ignore = -100) {
    return [r, ignore](V x) { return rw::cross_entropy(x[0], x[1], ignore, r); };
  };
  std::vector<InputSpec> ce_inputs = {normal({4, 5}), fixed({4}, {1, -100, 4, 0}, DType::i64)};
  t.def("nn/cross_entropy/mean_ignored", ce_inputs, ce(Reduction::mean));
  t.def("nn/cross_entropy/sum_ignored", ce_inputs, ce(Reduction::sum));
  t.def("nn/cross_entropy/none_ignored", ce_inputs, ce(Reduction::none));
  t.def("nn/cross_entropy/custom_ignore_index",
        {normal({4, 5}), fixed({4}, {2, 3, 2, 0}, DType::i64)}, ce(Reduction::mean, 2));
  t.def("nn/cross_entropy/3d", {normal({2, 3, 5}), index({2, 3}, 5)}, ce(Reduction::mean));
  t.def("nn/cross_entropy/3d_none", {normal({2, 3, 5}), index({2, 3}, 5)}, ce(Reduction::none));
  t.def("nn/cross_entropy/all_ignored",
        {normal({3, 4}), fixed({3}, {-100, -100, -100}, DType::i64)}, ce(Reduction::mean));
  t.def("nn/cross_entropy/transposed_logits", {normal({5, 4}, Layout::transposed), index({5}, 4)},
        ce(Reduction::mean));
  t.def("nn/cross_entropy/large_logits", {normal({3, 4}), index({3}, 4)},
        [](V x) { return rw::cross_entropy(rw::mul(x[0], 60.0), x[1]); });
  t.def("nn/cross_entropy/i32_targets", {normal({4, 5}), index({4}, 5, DType::i32)},
        ce(Reduction::sum));

  // dropout with fixed states: the mask is a pure function of the state.
  t.def("nn/dropout/p0.3", {normal({4, 5})}, [](V x) {
    return rw::dropout(x[0], 0.3, PhiloxState{7, 1, 0});
  });
  t.def("nn/dropout/p0", {normal({3, 4})}, [](V x) {
    return rw::dropout(x[0], 0.0, PhiloxState{7, 1, 0});
  });
  t.def("nn/dropout/p0.5_strided", {normal({2, 3, 4}, Layout::strided)}, [](V x) {
    return rw::dropout(x[0], 0.5, PhiloxState{11, 0, 5});
  });
  t.def("nn/dropout/zero_size", {normal({0, 4})}, [](V x) {
    return rw::dropout(x[0], 0.5, PhiloxState{11, 0, 5});
  });
}

void indexing_cases(Table& t) {
  t.def("indexing/gather/dim1", {normal({3, 4}), index({3, 2}, 4)},
        [](V x) { return rw::gather(x[0], 1, x[1]); });
  t.def("indexing/gather/dim0_repeats", {normal({3, 4}), index({5, 4}, 3)},
        [](V x) { return rw::gather(x[0], 0, x[1]); });
  t.def("indexing/gather/smaller_index", {normal({3, 4}), index({2, 6}, 4)},
        [](V x) { return rw::gather(x[0], 1, x[1]); });
  t.def("indexing/gather/3d_transposed",
        {normal({2, 4, 3}, Layout::transposed), index({2, 3, 3}, 4)},
        [](V x) { return rw::gather(x[0], -2, x[1]); });
  t.def("indexing/gather/i32_index", {normal({3, 4}), index({3, 4}, 4, DType::i32)},
        [](V x) { return rw::gather(x[0], 1, x[1]); });
  t.def("indexing/gather/zero_size", {normal({3, 4}), index({3, 0}, 4)},
        [](V x) { return rw::gather(x[0], 1, x[1]); });

  t.def("indexing/scatter_add/dim1_repeats", {normal({3, 4}), index({3, 6}, 4), normal({3, 6})},
        [](V x) { return rw::scatter_add(x[0], 1, x[1], x[2]); });
  t.def("indexing/scatter_add/dim0", {normal({3, 4}), index({5, 4}, 3), normal({5, 4})},
        [](V x) { return rw::scatter_add(x[0], 0, x[1], x[2]); });
  t.def("indexing/scatter_add/src_larger", {normal({3, 4}), index({2, 3}, 4), normal({3, 5})},
        [](V x) { return rw::scatter_add(x[0], 1, x[1], x[2]); });
  t.def("indexing/scatter_add/strided",
        {normal({3, 4}, Layout::transposed), index({3, 2}, 4), normal({3, 2}, Layout::strided)},
        [](V x) { return rw::scatter_add(x[0], 1, x[1], x[2]); });

  t.def("indexing/index_select/dim0_repeats",
        {normal({4, 3}), fixed({5}, {3, 0, 3, 1, 2}, DType::i64)},
        [](V x) { return rw::index_select(x[0], 0, x[1]); });
  t.def("indexing/index_select/dim1", {normal({3, 4}, Layout::transposed), index({3}, 4)},
        [](V x) { return rw::index_select(x[0], 1, x[1]); });
  t.def("indexing/index_select/3d_middle_i32", {normal({2, 4, 3}), index({6}, 4, DType::i32)},
        [](V x) { return rw::index_select(x[0], 1, x[1]); });
  t.def("indexing/index_select/empty_index", {normal({4, 3}), index({0}, 4)},
        [](V x) { return rw::index_select(x[0], 0, x[1]); });

  t.def("indexing/embedding/2d_indices", {normal({6, 4}), index({2, 3}, 6)},
        [](V x) { return rw::embedding(x[0], x[1]); });
  t.def("indexing/embedding/repeats", {normal({3, 5}), fixed({4}, {2, 2, 0, 2}, DType::i64)},
        [](V x) { return rw::embedding(x[0], x[1]); });
  t.def("indexing/embedding/scalar_index", {normal({3, 5}), fixed({}, {1}, DType::i64)},
        [](V x) { return rw::embedding(x[0], x[1]); });

  t.fwd("indexing/one_hot/f32", {index({2, 3}, 5), dtype_carrier()},
        [](V x) { return rw::one_hot(x[0], 5, x[1].dtype()); });
  t.fwd("indexing/one_hot/i64", {index({4}, 3)},
        [](V x) { return rw::one_hot(x[0], 3, DType::i64); });
  t.fwd("indexing/one_hot/default_dtype", {index({4}, 3)},
        [](V x) { return rw::one_hot(x[0], 4); });

  auto values = [](int64_t dim, bool desc) {
    return [dim, desc](V x) { return rw::sort(x[0], dim, desc).first; };
  };
  auto indices = [](int64_t dim, bool desc) {
    return [dim, desc](V x) { return rw::sort(x[0], dim, desc).second; };
  };
  t.def("indexing/sort/values_last_dim", {distinct({3, 5})}, values(-1, false));
  t.def("indexing/sort/values_descending", {distinct({3, 5})}, values(-1, true));
  t.def("indexing/sort/values_dim0", {distinct({4, 3}, Layout::transposed)}, values(0, false));
  t.def("indexing/sort/values_3d_middle", {distinct({2, 4, 3})}, values(1, true));
  t.fwd("indexing/sort/indices", {distinct({3, 5})}, indices(-1, false));
  t.fwd("indexing/sort/indices_ties_stable", {index({3, 8}, 3, std::nullopt)}, indices(-1, false));
  t.fwd("indexing/sort/indices_ties_descending", {index({3, 8}, 3, std::nullopt)},
        indices(1, true));
  t.fwd("indexing/sort/int_keys", {index({2, 9}, 4)}, values(1, false));
  t.fwd("indexing/sort/int_indices", {index({2, 9}, 4)}, indices(1, true));
  t.fwd("indexing/sort/nan_last", {fixed({6}, {1, kNaN, -2, kInf, kNaN, 0})}, values(0, false));
  t.fwd("indexing/sort/nan_first_descending", {fixed({6}, {1, kNaN, -2, kInf, kNaN, 0})},
        indices(0, true));
  t.fwd("indexing/argsort/ascending", {index({3, 6}, 4, std::nullopt)},
        [](V x) { return rw::argsort(x[0]); });
  t.fwd("indexing/argsort/descending_dim0", {distinct({5, 3}, Layout::strided)},
        [](V x) { return rw::argsort(x[0], 0, true); });
}

void shape_cases(Table& t) {
  t.def("shape/concat/dim0", {normal({2, 3}), normal({1, 3}), normal({3, 3})}, [](V x) {
    return rw::concat({x[0], x[1], x[2]}, 0);
  });
  t.def("shape/concat/dim_last", {normal({2, 3}), normal({2, 1}, Layout::strided), normal({2, 2})},
        [](V x) {
          return rw::concat({x[0], x[1], x[2]}, -1);
        });
  t.def("shape/concat/zero_size_piece", {normal({2, 3}), normal({0, 3})}, [](V x) {
    return rw::concat({x[0], x[1]}, 0);
  });
  t.def("shape/concat/transposed", {normal({3, 2}, Layout::transposed), normal({3, 2})}, [](V x) {
    return rw::concat({x[0], x[1]}, 1);
  });
  t.def("shape/concat/single", {normal({2, 3})}, [](V x) { return rw::concat({x[0]}, 1); });
  t.fwd("shape/concat/int", {index({2, 3}, 9), index({1, 3}, 9)}, [](V x) {
    return rw::concat({x[0], x[1]}, 0);
  });

  t.def("shape/stack/dim0", {normal({2, 3}), normal({2, 3})}, [](V x) {
    return rw::stack({x[0], x[1]}, 0);
  });
  t.def("shape/stack/dim_last",
        {normal({2, 3}), normal({2, 3}, Layout::transposed), normal({2, 3})}, [](V x) {
          return rw::stack({x[0], x[1], x[2]}, -1);
        });
  t.def("shape/stack/middle", {normal({2, 3}), normal({2, 3})}, [](V x) {
    return rw::stack({x[0], x[1]}, 1);
  });

  for (int piece : {0, 1, 2}) {
    t.def(fmt::format("shape/split/piece{}", piece), {normal({7, 3})},
          [piece](V x) { return rw::split(x[0], 3, 0)[static_cast<std::size_t>(piece)]; });
    t.def(fmt::format("shape/chunk/piece{}", piece), {normal({3, 8})},
          [piece](V x) { return rw::chunk(x[0], 3, 1)[static_cast<std::size_t>(piece)]; });
  }
  t.def("shape/split/sum_of_pieces", {normal({2, 6})}, [](V x) {
    auto parts = rw::split(x[0], 2, -1);
    return rw::add(rw::mul(parts[0], 2.0), rw::mul(parts[2], parts[1]));
  });

  t.def("shape/pad/last_dim", {normal({2, 3})}, [](V x) { return rw::pad(x[0], {1, 2}); });
  t.def("shape/pad/last_two_value", {normal({2, 3})}, [](V x) {
    return rw::pad(x[0], {0, 1, 2, 1}, -1.5);
  });
  t.def("shape/pad/crop", {normal({3, 5})}, [](V x) { return rw::pad(x[0], {-1, 1, 1, -2}); });
  t.def("shape/pad/3d_transposed", {normal({2, 4, 3}, Layout::transposed)}, [](V x) {
    return rw::pad(x[0], {1, 0, 0, 2, 1, 1});
  });

  t.def("shape/roll/positive", {normal({3, 5})}, [](V x) { return rw::roll(x[0], 2, 1); });
  t.def("shape/roll/negative", {normal({3, 5})}, [](V x) { return rw::roll(x[0], -1, 0); });
  t.def("shape/roll/beyond_extent", {normal({4, 3}, Layout::transposed)},
        [](V x) { return rw::roll(x[0], 7, -1); });
  t.def("shape/roll/zero_shift", {normal({2, 3})}, [](V x) { return rw::roll(x[0], 0, 1); });

  for (int64_t k : {0, 1, -1}) {
    t.def(fmt::format("shape/tril/k{}", k), {normal({4, 5})},
          [k](V x) { return rw::tril(x[0], k); });
    t.def(fmt::format("shape/triu/k{}", k), {normal({4, 5})},
          [k](V x) { return rw::triu(x[0], k); });
  }
  t.def("shape/tril/batched_transposed", {normal({2, 4, 3}, Layout::transposed)},
        [](V x) { return rw::tril(x[0]); });
  t.def("shape/triu/batched", {normal({2, 3, 4})}, [](V x) { return rw::triu(x[0], 2); });
  t.fwd("shape/tril_mask/square", {}, [](V) { return rw::tril_mask(4, 4); });
  t.fwd("shape/tril_mask/offset", {}, [](V) { return rw::tril_mask(3, 5, 1); });
  t.fwd("shape/triu_mask/offset", {}, [](V) { return rw::triu_mask(4, 3, -1); });
  t.fwd("shape/triu_mask/square", {}, [](V) { return rw::triu_mask(3, 3); });
}

// The differentiable Tensor views and copies (core/tensor.h).
void view_cases(Table& t) {
  t.def("view/reshape/contiguous", {normal({2, 6})}, [](V x) { return x[0].reshape({3, -1}); });
  t.def("view/reshape/copy_needed", {normal({4, 3}, Layout::transposed)},
        [](V x) { return x[0].reshape({12}); });
  t.def("view/view/split_dim", {normal({2, 6})}, [](V x) { return x[0].view({2, 2, 3}); });
  t.def("view/transpose/2d", {normal({3, 4})}, [](V x) { return x[0].transpose(0, 1); });
  t.def("view/transpose/3d", {normal({2, 3, 4})}, [](V x) { return x[0].transpose(0, 2); });
  t.def("view/mT/batched", {normal({2, 3, 4})}, [](V x) { return x[0].mT(); });
  t.def("view/permute/3d", {normal({2, 3, 4})}, [](V x) { return x[0].permute({1, 2, 0}); });
  t.def("view/narrow/dim1", {normal({3, 5})}, [](V x) { return x[0].narrow(1, 1, 3); });
  t.def("view/narrow/negative_start", {normal({4, 3})}, [](V x) { return x[0].narrow(0, -2, 2); });
  t.def("view/slice/step", {normal({3, 7})}, [](V x) { return x[0].slice(1, 1, 7, 2); });
  t.def("view/slice/negative", {normal({5, 2})}, [](V x) { return x[0].slice(0, -3, -1); });
  t.def("view/select/dim0", {normal({3, 4})}, [](V x) { return x[0].select(0, 1); });
  t.def("view/select/negative", {normal({2, 3, 4}, Layout::transposed)},
        [](V x) { return x[0].select(-1, -1); });
  t.def("view/expand/leading", {normal({3})}, [](V x) { return x[0].expand({2, 3}); });
  t.def("view/expand/inner", {normal({3, 1})}, [](V x) { return x[0].expand({2, -1, 4}); });
  t.def("view/broadcast_to/basic", {normal({1, 4})}, [](V x) { return x[0].broadcast_to({3, 4}); });
  t.def("view/squeeze/all", {normal({1, 3, 1, 2})}, [](V x) { return x[0].squeeze(); });
  t.def("view/squeeze/dim", {normal({3, 1, 2})}, [](V x) { return x[0].squeeze(1); });
  t.def("view/unsqueeze/middle", {normal({3, 2})}, [](V x) { return x[0].unsqueeze(1); });
  t.def("view/unsqueeze/last", {normal({3, 2})}, [](V x) { return x[0].unsqueeze(-1); });
  t.def("view/flatten/all", {normal({2, 3, 2})}, [](V x) { return x[0].flatten(); });
  t.def("view/flatten/range", {normal({2, 3, 2}, Layout::strided)},
        [](V x) { return x[0].flatten(1, 2); });
  t.def("view/contiguous/transposed", {normal({3, 4}, Layout::transposed)},
        [](V x) { return x[0].contiguous(); });
  t.def("view/clone/strided", {normal({3, 4}, Layout::strided)}, [](V x) { return x[0].clone(); });
  t.def("view/chain/views_then_op", {normal({2, 3, 4})}, [](V x) {
    return rw::mul(x[0].permute({2, 0, 1}).narrow(0, 1, 2).reshape({2, 6}), 3.0);
  });
  // to(dtype): a round trip through f32 is not smooth at f64 precision, so its gradcheck takes a
  // large step and a loose tolerance.
  {
    OpCase& c = t.def("view/to/f32_round_trip", {normal({3, 4})},
                      [](V x) { return x[0].to(DType::f32).to(x[0].dtype()); });
    c.grad_options.eps = 1e-2;
    c.grad_options.atol = 1e-5;
    c.grad_options.rtol = 1e-4;
  }
  t.def("view/to/f64", {normal({3, 4})}, [](V x) { return rw::mul(x[0].to(DType::f64), 2.0); });
  t.fwd("view/to/bf16", {normal({3, 4})}, [](V x) { return x[0].to(DType::bf16); }).tol_f32 = 1e-2;
  t.fwd("view/to/f16", {normal({3, 4})}, [](V x) { return x[0].to(DType::f16); }).tol_f32 = 1e-3;
  t.fwd("view/to/i64_truncates", {fixed({4}, {1.5, -1.5, 2.75, -0.25})},
        [](V x) { return x[0].to(DType::i64); });
  t.fwd("view/to/bool", {fixed({4}, {0, 1, -0.5, 0})}, [](V x) { return x[0].to(DType::boolean); });
  t.fwd("view/to/from_int", {index({3, 4}, 100)}, [](V x) { return x[0].to(DType::f32); });
  t.fwd("view/detach/value", {normal({3, 4})}, [](V x) { return x[0].detach(); });
}

// Factories and random ops (forward only; random ops take fixed Philox states, so the CPU and the
// reference backends must produce the same numbers).
void factory_cases(Table& t) {
  t.fwd("random/rand/state", {dtype_carrier()}, [](V x) {
    return rw::rand({3, 5}, PhiloxState{1, 2, 3}, like(x[0]));
  });
  t.fwd("random/randn/state", {dtype_carrier()}, [](V x) {
    return rw::randn({4, 3}, PhiloxState{5, 0, 0}, like(x[0]));
  });
  t.fwd("random/randn/odd_count", {dtype_carrier()}, [](V x) {
    return rw::randn({7}, PhiloxState{5, 1, 9}, like(x[0]));
  });
  t.fwd("random/uniform/state", {dtype_carrier()}, [](V x) {
    return rw::uniform({2, 7}, -3.0, 0.5, PhiloxState{9, 9, 9}, like(x[0]));
  });
  t.fwd("random/normal/state", {dtype_carrier()}, [](V x) {
    return rw::normal({9}, 2.0, 0.25, PhiloxState{3, 1, 0}, like(x[0]));
  });
  t.fwd("random/bernoulli/state", {dtype_carrier()}, [](V x) {
    return rw::bernoulli({5, 4}, 0.3, PhiloxState{4, 4, 4}, like(x[0]));
  });
  t.fwd("random/randint/state", {}, [](V) {
    return rw::randint(-3, 7, {4, 5}, PhiloxState{2, 0, 1});
  });
  t.fwd("random/randint/i32", {}, [](V) {
    return rw::randint(0, 1000, {11}, PhiloxState{2, 3, 0}, {.dtype = DType::i32});
  });
  t.fwd("random/rand/generator", {dtype_carrier()}, [](V x) {
    Generator gen(42);
    Tensor a = rw::rand({2, 3}, gen, like(x[0]));
    return rw::add(a, rw::randn({2, 3}, gen, like(x[0])));  // the second draw continues the stream
  });
  t.fwd("random/uniform/generator", {dtype_carrier()}, [](V x) {
    Generator gen(7, 3);
    return rw::uniform({6}, 1.0, 2.0, gen, like(x[0]));
  });
  t.fwd("random/normal/generator", {dtype_carrier()}, [](V x) {
    Generator gen(8);
    return rw::normal({5}, -1.0, 3.0, gen, like(x[0]));
  });
  t.fwd("random/bernoulli/generator", {dtype_carrier()}, [](V x) {
    Generator gen(9);
    return rw::bernoulli({10}, 0.7, gen, like(x[0]));
  });
  t.fwd("random/randint/generator", {}, [](V) {
    Generator gen(10);
    return rw::randint(5, 9, {3, 3}, gen);
  });

  t.fwd("factory/arange/float", {dtype_carrier()},
        [](V x) { return rw::arange(-1.0, 2.0, 0.25, like(x[0])); });
  t.fwd("factory/arange/int", {}, [](V) { return rw::arange(int64_t{7}); });
  t.fwd("factory/full/value", {dtype_carrier()}, [](V x) {
    return rw::full({2, 3}, -2.5, like(x[0]));
  });
  t.fwd("factory/zeros_like/value", {normal({2, 3})}, [](V x) { return rw::zeros_like(x[0]); });
  t.fwd("factory/ones_like/value", {normal({2, 3})}, [](V x) { return rw::ones_like(x[0]); });
}

// bf16 / f16 inputs (the CPU computes in f32 and rounds, the reference in double): forward only,
// with a tolerance of about one unit in the last place of the half type.
void half_cases(Table& t) {
  for (DType dt : {DType::bf16, DType::f16}) {
    const double tol = dt == DType::bf16 ? 2e-2 : 4e-3;
    auto h = [dt](Shape s, Gen gen = Gen::normal) {
      return InputSpec{.shape = std::move(s), .gen = gen, .dtype = dt};
    };
    auto def = [&](const std::string& op, std::vector<InputSpec> in, OpFn fn) {
      t.fwd(fmt::format("{}/{}", op, dtype_name(dt)), std::move(in), std::move(fn)).tol_f32 = tol;
    };
    def("elementwise/add", {h({3, 4}), h({4})}, [](V x) { return rw::add(x[0], x[1]); });
    def("elementwise/mul_scalar", {h({3, 4})}, [](V x) { return rw::mul(x[0], 1.5); });
    def("elementwise/div", {h({3, 4}), h({3, 4}, Gen::away_from_zero)},
        [](V x) { return rw::div(x[0], x[1]); });
    def("elementwise/exp", {h({3, 4})}, [](V x) { return rw::exp(x[0]); });
    def("elementwise/gelu_tanh", {h({3, 4})}, [](V x) { return rw::gelu(x[0], GeluApprox::tanh); });
    def("elementwise/where", {boolean({3, 4}), h({3, 4}), h({3, 4})},
        [](V x) { return rw::where(x[0], x[1], x[2]); });
    def("elementwise/lt", {h({3, 4}), h({3, 4})}, [](V x) { return rw::lt(x[0], x[1]); });
    def("reduce/sum", {h({3, 4})}, [](V x) { return rw::sum(x[0], {1}); });
    def("reduce/mean_all", {h({3, 4})}, [](V x) { return rw::mean(x[0]); });
    def("reduce/max", {h({3, 4}, Gen::distinct)}, [](V x) { return rw::max(x[0], {0}); });
    def("reduce/argmax", {h({3, 4}, Gen::distinct)}, [](V x) { return rw::argmax(x[0], 1); });
    def("reduce/cumsum", {h({3, 4})}, [](V x) { return rw::cumsum(x[0], 1); });
    def("linalg/matmul", {h({3, 4}), h({4, 5})}, [](V x) { return rw::matmul(x[0], x[1]); });
    def("linalg/linear", {h({3, 4}), h({5, 4}), h({5})},
        [](V x) { return rw::linear(x[0], x[1], x[2]); });
    def("nn/softmax", {h({3, 5})}, [](V x) { return rw::softmax(x[0], -1); });
    def("nn/log_softmax", {h({3, 5})}, [](V x) { return rw::log_softmax(x[0], 0); });
    def("nn/layer_norm", {h({3, 6}), h({6}), h({6})},
        [](V x) { return rw::layer_norm(x[0], x[1], x[2]); });
    def("nn/cross_entropy", {h({4, 5}), index({4}, 5)},
        [](V x) { return rw::cross_entropy(x[0], x[1]); });
    def("indexing/gather", {h({3, 4}), index({3, 2}, 4)},
        [](V x) { return rw::gather(x[0], 1, x[1]); });
    def("indexing/embedding", {h({5, 3}), index({4}, 5)},
        [](V x) { return rw::embedding(x[0], x[1]); });
    def("indexing/sort", {h({3, 6}, Gen::distinct)}, [](V x) { return rw::sort(x[0]).first; });
    def("shape/concat", {h({2, 3}), h({1, 3})}, [](V x) { return rw::concat({x[0], x[1]}); });
    def("view/to_f32", {h({3, 4})}, [](V x) { return x[0].to(DType::f32); });
    def("random/randn", {}, [dt](V) {
      return rw::randn({3, 5}, PhiloxState{1, 1, 1}, {.dtype = dt});
    });
    def("random/uniform", {}, [dt](V) {
      return rw::uniform({64}, 0.0, 1.0, PhiloxState{2, 1, 1}, {.dtype = dt});
    });
  }
}

// Sizes past the CPU backend's parallel grain and oneDNN's blocking, so its threaded and
// vectorised paths are the ones compared (gradchecks use projections here).
void large_cases(Table& t) {
  t.def("elementwise/add/large_broadcast", {normal({300, 130}), normal({130})},
        [](V x) { return rw::add(x[0], x[1]); });
  t.def("elementwise/gelu_tanh/large", {normal({40000})},
        [](V x) { return rw::gelu(x[0], GeluApprox::tanh); });
  t.def("elementwise/exp/large_transposed", {normal({200, 190}, Layout::transposed)},
        [](V x) { return rw::exp(x[0]); });
  t.def("elementwise/where/large", {boolean({200, 180}), normal({200, 180}), normal({180})},
        [](V x) { return rw::where(x[0], x[1], x[2]); });
  t.def("reduce/sum/large_rows", {normal({300, 130})}, [](V x) {
     return rw::sum(x[0], {1});
   }).tol_f32 = 1e-4;
  t.def("reduce/sum/large_cols", {normal({300, 130})}, [](V x) {
     return rw::sum(x[0], {0});
   }).tol_f32 = 1e-4;
  t.def("reduce/sum/large_all", {normal({40000})}, [](V x) { return rw::sum(x[0]); }).tol_f32 =
      1e-4;
  t.def("reduce/max/large", {distinct({300, 130})}, [](V x) { return rw::max(x[0], {1}); });
  t.def("reduce/logsumexp/large", {normal({130, 300})},
        [](V x) { return rw::logsumexp(x[0], {1}); });
  t.fwd("reduce/argmax/large", {distinct({300, 130})}, [](V x) { return rw::argmax(x[0], 0); });
  t.def("reduce/cumsum/large", {normal({64, 600})}, [](V x) {
     return rw::cumsum(x[0], 1);
   }).tol_f32 = 1e-4;
  t.def("linalg/matmul/large_batched", {normal({2, 64, 96}), normal({96, 80})}, [](V x) {
     return rw::matmul(x[0], x[1]);
   }).tol_f32 = 1e-4;
  t.def("linalg/matmul/large_transposed", {normal({64, 96}, Layout::transposed), normal({96, 70})},
        [](V x) { return rw::matmul(x[0], x[1]); })
      .tol_f32 = 1e-4;
  t.def("linalg/linear/large", {normal({2, 50, 64}), normal({96, 64}), normal({96})}, [](V x) {
     return rw::linear(x[0], x[1], x[2]);
   }).tol_f32 = 1e-4;
  t.def("nn/softmax/large", {normal({64, 700})}, [](V x) { return rw::softmax(x[0], -1); });
  t.def("nn/log_softmax/large_dim0", {normal({500, 70})},
        [](V x) { return rw::log_softmax(x[0], 0); });
  t.def("nn/layer_norm/large", {normal({200, 192}), normal({192}), normal({192})},
        [](V x) { return rw::layer_norm(x[0], x[1], x[2]); });
  t.def("nn/cross_entropy/large", {normal({256, 300}), index({256}, 300)},
        [](V x) { return rw::cross_entropy(x[0], x[1]); });
  t.def("nn/dropout/large", {normal({200, 200})}, [](V x) {
    return rw::dropout(x[0], 0.1, PhiloxState{3, 3, 3});
  });
  t.def("indexing/gather/large", {normal({100, 400}), index({100, 300}, 400)},
        [](V x) { return rw::gather(x[0], 1, x[1]); });
  t.def("indexing/embedding/large", {normal({1000, 64}), index({16, 40}, 1000)},
        [](V x) { return rw::embedding(x[0], x[1]); });
  t.def("indexing/sort/large", {distinct({8, 5000})}, [](V x) { return rw::sort(x[0]).first; });
  t.fwd("indexing/argsort/large_ties", {index({8, 5000}, 50, std::nullopt)},
        [](V x) { return rw::argsort(x[0], -1, true); });
  t.fwd("random/randn/large", {dtype_carrier()}, [](V x) {
    return rw::randn({50001}, PhiloxState{6, 2, 7}, like(x[0]));
  });
  t.fwd("random/bernoulli/large", {dtype_carrier()}, [](V x) {
    return rw::bernoulli({50001}, 0.25, PhiloxState{6, 2, 7}, like(x[0]));
  });
}

// Chains of ops, as a model uses them.
void composite_cases(Table& t) {
  t.def("nn/composite/mlp_loss",
        {normal({4, 6}), normal({8, 6}), normal({8}), normal({5, 8}), index({4}, 5)}, [](V x) {
          Tensor h = rw::gelu(rw::linear(x[0], x[1], x[2]));
          return rw::cross_entropy(rw::linear(h, x[3]), x[4]);
        });
  t.def("nn/composite/attention", {normal({2, 3, 4}), normal({2, 3, 4}), normal({2, 3, 4})},
        [](V x) {
          Tensor scores = rw::mul(rw::matmul(x[0], x[1].mT()), 0.5);
          Tensor masked = rw::where(rw::tril_mask(3, 3), scores, -1e9);
          return rw::matmul(rw::softmax(masked, -1), x[2]);
        });
  t.def("nn/composite/residual_layer_norm",
        {normal({3, 5}), normal({5, 5}), normal({5}), normal({5})}, [](V x) {
          Tensor y = rw::add(x[0], rw::relu(rw::matmul(x[0], x[1])));
          return rw::layer_norm(y, x[2], x[3]);
        });
}

}  // namespace

const std::vector<OpCase>& op_cases() {
  static const std::vector<OpCase> cases = [] {
    Table t;
    elementwise_cases(t);
    reduce_cases(t);
    linalg_cases(t);
    nn_cases(t);
    indexing_cases(t);
    shape_cases(t);
    view_cases(t);
    factory_cases(t);
    half_cases(t);
    large_cases(t);
    composite_cases(t);
    return t.take();
  }();
  return cases;
}

const std::vector<std::string>& op_families() {
  static const std::vector<std::string> families = {
      "elementwise", "reduce", "linalg", "nn", "indexing", "shape", "view", "random", "factory"};
  return families;
}

std::string_view family_of(const OpCase& c) {
  std::string_view name = c.name;
  return name.substr(0, name.find('/'));
}

std::vector<Tensor> make_inputs(const OpCase& c, DType float_dtype, bool requires_grad) {
  std::vector<Tensor> inputs;
  const uint64_t seed = name_seed(c.name);
  for (std::size_t i = 0; i < c.inputs.size(); ++i) {
    const InputSpec& spec = c.inputs[i];
    std::vector<double> values = generate(spec, seed, i);
    DType dt = spec.dtype.value_or(float_dtype);
    Tensor x = from_vector<double>(values, spec.shape).to(dt);
    if (requires_grad && spec.requires_grad && !spec.dtype.has_value()) x.requires_grad_();
    inputs.push_back(x);
  }
  return inputs;
}

Tensor apply_layout(const Tensor& x, Layout layout) {
  if (layout == Layout::transposed && x.dim() >= 2) {
    return x.transpose(-1, -2).contiguous().transpose(-1, -2);
  }
  if (layout == Layout::contiguous || x.dim() == 0) return x;
  // Strided: x sits at the even positions of a buffer twice as long in the last dim.
  Shape doubled = x.shape();
  doubled.push_back(2);
  return x.unsqueeze(-1).expand(doubled).contiguous().select(-1, 0);
}

OpFn with_layouts(const OpCase& c) {
  std::vector<Layout> layouts;
  for (const InputSpec& s : c.inputs) layouts.push_back(s.layout);
  return [fn = c.fn, layouts](V x) {
    std::vector<Tensor> laid;
    for (std::size_t i = 0; i < x.size(); ++i) {
      laid.push_back(i < layouts.size() && x[i].defined() ? apply_layout(x[i], layouts[i]) : x[i]);
    }
    return fn(laid);
  };
}

}  // namespace rw::testing
