// rw::gradcheck: passes for a correct backward, fails (naming the input, the element or projection
// and both values) for a wrong one, in full-Jacobian and projection modes. The functions under test
// are written with raw loops and rw::record, so these tests depend on no op family.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/tape.h"
#include "core/tensor.h"
#include "test_util.h"

namespace rw {

using namespace rw::test;

namespace {

std::vector<double> values_of(const Tensor& t) { return t.contiguous().to_vector<double>(); }

// How the hand-written backward of `scaled_product` goes wrong.
struct Faults {
  double x_factor = 1.0;     // multiplies the gradient of x (1: correct)
  double w_factor = 1.0;     // multiplies the gradient of w
  bool flat_x_grad = false;  // returns x's gradient flattened to 1-D (wrong shape)
  int64_t bad_element = -1;  // doubles this element of x's gradient (its diagonal entry)
};

// y[i] = sin(x[i]) * w[i] (same shapes, f64), recorded with a hand-written backward.
Tensor scaled_product(const Tensor& x, const Tensor& w, Faults faults = {}) {
  std::vector<double> xv = values_of(x), wv = values_of(w), yv(xv.size());
  for (std::size_t i = 0; i < xv.size(); ++i) yv[i] = std::sin(xv[i]) * wv[i];
  Tensor y = from_vector<double>(yv, x.shape());
  if (needs_grad({&x, &w})) {
    record("scaled_product", {x, w}, y,
           [sx = SavedTensor(x), sw = SavedTensor(w), faults](std::span<const Tensor> g) {
             std::vector<double> gv = values_of(g[0]);
             std::vector<double> xs = values_of(sx.get("scaled_product"));
             std::vector<double> ws = values_of(sw.get("scaled_product"));
             std::vector<double> gx(gv.size()), gw(gv.size());
             for (std::size_t i = 0; i < gv.size(); ++i) {
               gx[i] = faults.x_factor * gv[i] * std::cos(xs[i]) * ws[i];
               gw[i] = faults.w_factor * gv[i] * std::sin(xs[i]);
             }
             if (faults.bad_element >= 0) {  // doubles one entry's gradient
               auto b = static_cast<std::size_t>(faults.bad_element);
               gx[b] += gv[b];
             }
             Shape shape = sx.get("scaled_product").shape();
             Shape x_shape = faults.flat_x_grad ? Shape{static_cast<int64_t>(gx.size())} : shape;
             return std::vector<Tensor>{from_vector<double>(gx, x_shape),
                                        from_vector<double>(gw, shape)};
           });
  }
  return y;
}

// s = sum(x[i] * x[i]) as a 0-dim output (a scalar loss).
Tensor sum_of_squares(const Tensor& x, double factor = 1.0) {
  std::vector<double> xv = values_of(x);
  double s = 0;
  for (double v : xv) s += v * v;
  Tensor y = from_vector<double>({s}, Shape{});
  if (needs_grad({&x})) {
    record("sum_of_squares", {x}, y, [sx = SavedTensor(x), factor](std::span<const Tensor> g) {
      double gs = g[0].item();
      std::vector<double> xs = values_of(sx.get("sum_of_squares"));
      for (double& v : xs) v = factor * 2.0 * v * gs;
      return std::vector<Tensor>{from_vector<double>(xs, sx.get("sum_of_squares").shape())};
    });
  }
  return y;
}

Tensor leaf(Shape shape, double start) {
  std::vector<double> v(static_cast<std::size_t>(shape_numel(shape)));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = start + 0.37 * static_cast<double>(i);
  Tensor t = from_vector<double>(v, std::move(shape));
  t.requires_grad_();
  return t;
}

GradcheckResult check(const Tensor& x, const Tensor& w, Faults faults,
                      GradcheckOptions options = {}) {
  return gradcheck(
      [faults](const std::vector<Tensor>& in) { return scaled_product(in[0], in[1], faults); },
      {x, w}, options);
}

}  // namespace

TEST_CASE("gradcheck: full Jacobian passes for a correct backward") {
  Tensor x = leaf({2, 3}, -1.0), w = leaf({2, 3}, 0.5);
  GradcheckResult r = check(x, w, {});
  CHECK_MESSAGE(r.ok, r.message);
  CHECK(r.max_abs_error < 1e-8);
  CHECK(contains(r.message, "ok"));
}

TEST_CASE("gradcheck: full Jacobian catches a wrong backward and names the input") {
  Tensor x = leaf({2, 3}, -1.0), w = leaf({2, 3}, 0.5);
  SUBCASE("wrong gradient of input 0") {
    GradcheckResult r = check(x, w, {.x_factor = 1.5});
    CHECK_FALSE(r.ok);
    CHECK_MESSAGE(contains(r.message, "input 0"), r.message);
    CHECK(contains(r.message, "analytic"));
    CHECK(contains(r.message, "numeric"));
    CHECK(r.max_abs_error > 1e-3);
  }
  SUBCASE("wrong gradient of input 1 only") {
    GradcheckResult r = check(x, w, {.w_factor = -1.0});
    CHECK_FALSE(r.ok);
    CHECK_MESSAGE(contains(r.message, "input 1"), r.message);
    CHECK_FALSE(contains(r.message, "input 0"));
  }
  SUBCASE("one wrong element is located") {
    GradcheckResult r = check(x, w, {.bad_element = 4});
    CHECK_FALSE(r.ok);
    // Element 4 of a [2, 3] input is [1, 1]; only that (diagonal) Jacobian entry is off.
    CHECK_MESSAGE(contains(r.message, "element [1, 1] (flat 4)"), r.message);
    CHECK_MESSAGE(contains(r.message, "output element [1, 1]"), r.message);
    CHECK_MESSAGE(contains(r.message, "; 1 of 72 comparisons failed"), r.message);
  }
}

TEST_CASE("gradcheck: projection mode for large inputs") {
  // 30 x 30 inputs and output: 900 * 900 entries, far above full_jacobian_max.
  Tensor x = leaf({30, 30}, -3.0), w = leaf({30, 30}, 1.0);
  SUBCASE("a correct backward passes") {
    GradcheckResult r = check(x, w, {});
    CHECK_MESSAGE(r.ok, r.message);
  }
  SUBCASE("a wrong backward fails and names the input and the projection") {
    GradcheckResult r = check(x, w, {.x_factor = 1.01});
    CHECK_FALSE(r.ok);
    CHECK_MESSAGE(contains(r.message, "input 0"), r.message);
    CHECK(contains(r.message, "projection"));
  }
  SUBCASE("one wrong element is still caught") {
    GradcheckResult r = check(x, w, {.bad_element = 123});
    CHECK_FALSE(r.ok);
    CHECK_MESSAGE(contains(r.message, "input 0"), r.message);
  }
  SUBCASE("forced on small inputs with full_jacobian_max = 0") {
    Tensor xs = leaf({2, 2}, 0.1), ws = leaf({2, 2}, 0.2);
    GradcheckOptions options{.full_jacobian_max = 0, .num_projections = 3};
    CHECK(check(xs, ws, {}, options).ok);
    GradcheckResult r = check(xs, ws, {.w_factor = 2.0}, options);
    CHECK_FALSE(r.ok);
    CHECK_MESSAGE(contains(r.message, "input 1"), r.message);
    CHECK(contains(r.message, "projection"));
  }
}

TEST_CASE("gradcheck: a scalar output") {
  Tensor x = leaf({3, 2}, -0.7);
  auto f = [](double factor) {
    return [factor](const std::vector<Tensor>& in) { return sum_of_squares(in[0], factor); };
  };
  CHECK(gradcheck(f(1.0), {x}).ok);
  GradcheckResult r = gradcheck(f(0.5), {x});
  CHECK_FALSE(r.ok);
  CHECK(contains(r.message, "input 0"));
  // Projection mode on the same function.
  CHECK(gradcheck(f(1.0), {x}, {.full_jacobian_max = 1}).ok);
  CHECK_FALSE(gradcheck(f(0.5), {x}, {.full_jacobian_max = 1}).ok);
}

TEST_CASE("gradcheck: a gradient of the wrong shape fails, naming the input and shapes") {
  Tensor x = leaf({2, 3}, -1.0), w = leaf({2, 3}, 0.5);
  GradcheckResult r = check(x, w, {.flat_x_grad = true});
  CHECK_FALSE(r.ok);
  CHECK_MESSAGE(contains(r.message, "input 0"), r.message);
  CHECK(contains(r.message, "[6]"));
  CHECK(contains(r.message, "[2, 3]"));
}

TEST_CASE("gradcheck: only inputs that require grad are checked") {
  Tensor x = leaf({2, 3}, -1.0);
  Tensor w = from_vector<double>({1, 2, 3, 4, 5, 6}, Shape{2, 3});  // a constant
  // w's gradient is wrong, but w does not require grad: nothing to report.
  CHECK(check(x, w, {.w_factor = 3.0}).ok);
  CHECK_FALSE(check(x, w, {.x_factor = 3.0}).ok);
  // A non-floating input rides along untouched.
  Tensor idx = from_vector<int64_t>({0, 1});
  auto f = [](const std::vector<Tensor>& in) { return scaled_product(in[0], in[0]); };
  CHECK(gradcheck(f, {x, idx}).ok);
}

TEST_CASE("gradcheck: an input the output does not depend on has a zero gradient") {
  Tensor x = leaf({2, 2}, 0.3), unused = leaf({3}, 1.0);
  auto f = [](const std::vector<Tensor>& in) { return scaled_product(in[0], in[0]); };
  GradcheckResult r = gradcheck(f, {x, unused});
  CHECK_MESSAGE(r.ok, r.message);
}

TEST_CASE("gradcheck: the caller's inputs are left alone") {
  Tensor x = leaf({2, 3}, -1.0), w = leaf({2, 3}, 0.5);
  std::vector<double> before = values_of(x);
  auto version = x.storage()->version();
  check(x, w, {.x_factor = 2.0});
  check(x, w, {});
  CHECK(values_of(x) == before);
  CHECK(x.storage()->version() == version);
  CHECK_FALSE(x.grad().defined());
  CHECK_FALSE(w.grad().defined());
  CHECK(x.requires_grad());
}

TEST_CASE("gradcheck: is deterministic") {
  Tensor x = leaf({30, 30}, -3.0), w = leaf({30, 30}, 1.0);
  GradcheckResult a = check(x, w, {.x_factor = 1.01}, {.seed = 5});
  GradcheckResult b = check(x, w, {.x_factor = 1.01}, {.seed = 5});
  CHECK(a.message == b.message);
  CHECK(a.max_abs_error == b.max_abs_error);
}

TEST_CASE("gradcheck: usage errors") {
  Tensor x = from_vector<double>({1, 2});
  auto f = [](const std::vector<Tensor>& in) { return in[0]; };
  SUBCASE("no input requires grad") {
    try {
      gradcheck(f, {x});
      FAIL("expected an rw::Error");
    } catch (const Error& e) {
      CHECK(contains(e.what(), "requires grad"));
    }
  }
  SUBCASE("an f32 input that requires grad") {
    Tensor x32 = from_vector<float>({1, 2});
    x32.requires_grad_();
    try {
      gradcheck(f, {x32});
      FAIL("expected an rw::Error");
    } catch (const Error& e) {
      CHECK(contains(e.what(), "input 0"));
      CHECK(contains(e.what(), "f64"));
    }
  }
  SUBCASE("the identity passes") {
    x.requires_grad_();
    CHECK(gradcheck(f, {x}).ok);
  }
}

}  // namespace rw
