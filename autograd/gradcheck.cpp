#include "autograd/gradcheck.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>

#include "autograd/tape.h"
#include "core/philox.h"

namespace rw {
namespace {

// A wrong gradient found while computing the analytic side (shape or dtype): reported as a failed
// check, not as an error.
struct GradientMismatch {
  std::string message;
};

// Deterministic standard normals straight from Philox (Box-Muller), so gradcheck does not depend
// on the random ops it may be asked to check.
std::vector<double> normals(int64_t n, uint64_t seed, uint64_t stream) {
  std::vector<double> out(static_cast<std::size_t>(n));
  PhiloxState state{seed, stream, 0};
  for (int64_t i = 0; i < n; ++i) {
    PhiloxBlock b = philox_block(state, static_cast<uint64_t>(i / 4));
    int first = static_cast<int>(i % 4) & ~1;
    double r = std::sqrt(-2.0 * std::log(philox_uniform(b.w[first])));
    double t = 2.0 * std::numbers::pi * philox_uniform(b.w[first + 1]);
    out[static_cast<std::size_t>(i)] = i % 2 == 0 ? r * std::cos(t) : r * std::sin(t);
  }
  return out;
}

std::string element_name(int64_t flat, const Shape& shape) {
  std::vector<int64_t> c(shape.size(), 0);
  int64_t rem = flat;
  for (std::size_t d = shape.size(); d-- > 0;) {
    c[d] = shape[d] > 0 ? rem % shape[d] : 0;
    rem = shape[d] > 0 ? rem / shape[d] : 0;
  }
  return fmt::format("{} (flat {})", c, flat);
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

class Checker {
 public:
  Checker(const std::function<Tensor(const std::vector<Tensor>&)>& f,
          const std::vector<Tensor>& inputs, const GradcheckOptions& options)
      : f_(f), options_(options) {
    NoGradGuard no_grad;
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      const Tensor& in = inputs[i];
      if (!in.defined()) {  // an optional argument left out
        xs_.push_back(in);
        continue;
      }
      Tensor copy = in.detach().clone();  // contiguous, unaliased, no autograd history
      if (in.requires_grad()) {
        RW_CHECK(in.dtype() == DType::f64,
                 "gradcheck: input {} (shape {}) requires grad but has dtype {}; finite "
                 "differences need f64 inputs",
                 i, in.shape(), in.dtype());
        copy.requires_grad_();
        checked_.push_back(i);
      }
      xs_.push_back(copy);
    }
    RW_CHECK(!checked_.empty(), "gradcheck: none of the {} inputs requires grad", inputs.size());
  }

  GradcheckResult run() {
    Tensor y0 = evaluate_tensor();
    out_shape_ = y0.shape();
    const int64_t m = y0.numel();

    // One analytic pass with the random cotangent: checks every gradient's shape and dtype, and
    // gives the gradients the projections need.
    std::vector<double> u = normals(m, options_.seed, 0);
    std::vector<std::vector<double>> g = analytic(u);

    for (std::size_t c = 0; c < checked_.size(); ++c) {
      const std::size_t i = checked_[c];
      const int64_t n = xs_[i].numel();
      if (n * m <= options_.full_jacobian_max) {
        check_full(c, m);
      } else {
        check_projections(c, u, g[c]);
      }
    }
    GradcheckResult result;
    result.max_abs_error = max_abs_;
    result.max_rel_error = max_rel_;
    if (failures_ == 0) {
      result.ok = true;
      result.message =
          fmt::format("gradcheck: ok ({} comparisons, max abs error {:.3g}, max rel error {:.3g})",
                      compared_, max_abs_, max_rel_);
    } else {
      result.ok = false;
      result.message =
          fmt::format("{}; {} of {} comparisons failed (atol {}, rtol {}, eps {})", worst_message_,
                      failures_, compared_, options_.atol, options_.rtol, options_.eps);
    }
    return result;
  }

 private:
  Tensor evaluate_tensor() {
    NoGradGuard no_grad;
    Tensor y = f_(xs_);
    RW_CHECK(y.defined(), "gradcheck: f returned an undefined tensor");
    RW_CHECK(is_floating(y.dtype()),
             "gradcheck: f must return a floating tensor, got {} (shape {})", y.dtype(), y.shape());
    return y;
  }

  std::vector<double> evaluate() {
    Tensor y = evaluate_tensor();
    RW_CHECK(y.shape() == out_shape_,
             "gradcheck: f returned shape {} after returning {}: f must be a pure function of "
             "its inputs",
             y.shape(), out_shape_);
    return y.to_vector<double>();
  }

  // The gradient of <cotangent, f(x)> for each checked input (flattened), from a fresh forward on
  // an isolated tape.
  std::vector<std::vector<double>> analytic(const std::vector<double>& cotangent) {
    for (std::size_t i : checked_) xs_[i].zero_grad();
    std::vector<std::vector<double>> grads;
    {
      TapeScope scope;
      Tensor y = f_(xs_);
      RW_CHECK(y.defined() && y.shape() == out_shape_,
               "gradcheck: f returned shape {} with grad mode on but {} without",
               y.defined() ? fmt::format("{}", y.shape()) : "undefined", out_shape_);
      if (y.requires_grad()) {
        Tensor cot = from_vector<double>(cotangent, out_shape_, y.device());
        if (cot.dtype() != y.dtype()) cot = cot.to(y.dtype());
        backward(y, cot);
      }
    }
    for (std::size_t c = 0; c < checked_.size(); ++c) {
      const std::size_t i = checked_[c];
      const Tensor& x = xs_[i];
      Tensor gi = x.grad();
      if (!gi.defined()) {  // no path from this input to the output: a zero gradient
        grads.emplace_back(static_cast<std::size_t>(x.numel()), 0.0);
        continue;
      }
      if (gi.shape() != x.shape()) {
        throw GradientMismatch{fmt::format(
            "gradcheck: input {}: the analytic gradient has shape {} but the input has shape {}", i,
            gi.shape(), x.shape())};
      }
      if (gi.dtype() != x.dtype()) {
        throw GradientMismatch{fmt::format(
            "gradcheck: input {} (shape {}): the analytic gradient has dtype {} but the input "
            "has dtype {}",
            i, x.shape(), gi.dtype(), x.dtype())};
      }
      grads.push_back(gi.to_vector<double>());
      x.zero_grad();
    }
    return grads;
  }

  void compare(double analytic_value, double numeric_value, const std::string& where) {
    ++compared_;
    double err = std::fabs(analytic_value - numeric_value);
    double tol = options_.atol + options_.rtol * std::fabs(numeric_value);
    double rel = err / std::max({std::fabs(numeric_value), options_.atol, 1e-300});
    if (std::isnan(err)) err = rel = std::numeric_limits<double>::infinity();
    max_abs_ = std::max(max_abs_, err);
    max_rel_ = std::max(max_rel_, rel);
    if (err <= tol) return;
    ++failures_;
    double badness = err / std::max(tol, 1e-300);
    if (failures_ == 1 || badness > worst_badness_) {
      worst_badness_ = badness;
      worst_message_ =
          fmt::format("gradcheck: {}: analytic {:.10g} vs numeric {:.10g} (abs error {:.3g})",
                      where, analytic_value, numeric_value, err);
    }
  }

  // Whole Jacobian of output w.r.t. input checked_[c].
  void check_full(std::size_t c, int64_t m) {
    const std::size_t i = checked_[c];
    Tensor& x = xs_[i];
    const int64_t n = x.numel();
    if (n == 0 || m == 0) return;
    // Analytic rows: one backward per unit cotangent, shared by every input checked in full.
    if (rows_.empty()) {
      std::vector<double> unit(static_cast<std::size_t>(m), 0.0);
      for (int64_t j = 0; j < m; ++j) {
        unit[static_cast<std::size_t>(j)] = 1.0;
        rows_.push_back(analytic(unit));
        unit[static_cast<std::size_t>(j)] = 0.0;
      }
    }
    // Numeric columns: central differences, one input element at a time, in place.
    auto* p = x.data<double>();
    for (int64_t k = 0; k < n; ++k) {
      const double original = p[k];
      p[k] = original + options_.eps;
      x.storage()->bump_version();
      std::vector<double> plus = evaluate();
      p[k] = original - options_.eps;
      x.storage()->bump_version();
      std::vector<double> minus = evaluate();
      p[k] = original;
      x.storage()->bump_version();
      for (int64_t j = 0; j < m; ++j) {
        auto js = static_cast<std::size_t>(j);
        double numeric = (plus[js] - minus[js]) / (2.0 * options_.eps);
        compare(rows_[js][c][static_cast<std::size_t>(k)], numeric,
                fmt::format("input {} (shape {}), element {}, output element {} (shape {})", i,
                            x.shape(), element_name(k, x.shape()), element_name(j, out_shape_),
                            out_shape_));
      }
    }
  }

  // Random directional derivatives of <u, f> w.r.t. input checked_[c].
  void check_projections(std::size_t c, const std::vector<double>& u,
                         const std::vector<double>& grad) {
    const std::size_t i = checked_[c];
    Tensor& x = xs_[i];
    const int64_t n = x.numel();
    auto* p = x.data<double>();
    const std::vector<double> original(p, p + n);
    for (int k = 0; k < options_.num_projections; ++k) {
      // A stream per (input, projection), distinct from the cotangent's stream 0.
      std::vector<double> v = normals(n, options_.seed, 1 + i * 4096 + static_cast<uint64_t>(k));
      auto shifted = [&](double sign) {
        for (int64_t e = 0; e < n; ++e) {
          auto es = static_cast<std::size_t>(e);
          p[e] = original[es] + sign * options_.eps * v[es];
        }
        x.storage()->bump_version();
        return dot(u, evaluate());
      };
      double plus = shifted(1.0);
      double minus = shifted(-1.0);
      std::copy(original.begin(), original.end(), p);
      x.storage()->bump_version();
      compare(dot(grad, v), (plus - minus) / (2.0 * options_.eps),
              fmt::format("input {} (shape {}), projection {} of {} (random direction, output "
                          "shape {} reduced with a random cotangent)",
                          i, x.shape(), k, options_.num_projections, out_shape_));
    }
  }

  const std::function<Tensor(const std::vector<Tensor>&)>& f_;
  GradcheckOptions options_;
  std::vector<Tensor> xs_;
  std::vector<std::size_t> checked_;
  std::vector<std::vector<std::vector<double>>> rows_;  // [output element][checked input][element]
  Shape out_shape_;
  int64_t compared_ = 0;
  int64_t failures_ = 0;
  double max_abs_ = 0, max_rel_ = 0, worst_badness_ = 0;
  std::string worst_message_;
};

}  // namespace

GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                          const std::vector<Tensor>& inputs, GradcheckOptions options) {
  RW_CHECK(options.eps > 0, "gradcheck: eps must be positive, got {}", options.eps);
  Checker checker(f, inputs, options);
  try {
    return checker.run();
  } catch (const GradientMismatch& mismatch) {
    GradcheckResult result;
    result.ok = false;
    result.message = mismatch.message;
    result.max_abs_error = std::numeric_limits<double>::infinity();
    result.max_rel_error = std::numeric_limits<double>::infinity();
    return result;
  }
}

}  // namespace rw
