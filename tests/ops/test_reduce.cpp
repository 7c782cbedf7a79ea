// Reductions: values (keepdim, negative and multiple dims, strided and broadcast inputs, every
// parallel loop shape of the CPU kernel), dtypes, empty reductions, accuracy, error messages and
// a few backward values. (Finite-difference gradchecks of every op live in the op table.)
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/ops.h"
#include "test_util.h"

namespace rw {

using namespace rw::test;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

void check_ints(const Tensor& t, const std::vector<int64_t>& expected) {
  CHECK(t.to_vector<int64_t>() == expected);
}

// Deterministic values in [-1, 1).
std::vector<float> random_values(int64_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

// Folds a row-major [a, b, c] buffer over the dims flagged in `reduce` with `combine` (in double,
// from `init`): the reference for the kernel's loop shapes. Output is row-major over the kept dims.
template <typename F>
std::vector<double> naive_fold3(const std::vector<float>& v, int64_t a, int64_t b, int64_t c,
                                std::array<bool, 3> reduce, double init, F combine) {
  int64_t oa = reduce[0] ? 1 : a, ob = reduce[1] ? 1 : b, oc = reduce[2] ? 1 : c;
  std::vector<double> out(static_cast<std::size_t>(oa * ob * oc), init);
  for (int64_t i = 0; i < a; ++i) {
    for (int64_t j = 0; j < b; ++j) {
      for (int64_t k = 0; k < c; ++k) {
        int64_t o = ((reduce[0] ? 0 : i) * ob + (reduce[1] ? 0 : j)) * oc + (reduce[2] ? 0 : k);
        double& acc = out[static_cast<std::size_t>(o)];
        acc = combine(acc, static_cast<double>(v[static_cast<std::size_t>((i * b + j) * c + k)]));
      }
    }
  }
  return out;
}

std::vector<double> naive_sum3(const std::vector<float>& v, int64_t a, int64_t b, int64_t c,
                               std::array<bool, 3> reduce) {
  return naive_fold3(v, a, b, c, reduce, 0.0, [](double x, double y) { return x + y; });
}

// --- values
// ----------------------------------------------------------------------------------------

TEST_CASE("reduce: sum over all, single, negative and multiple dims, with keepdim") {
  Tensor x = f32({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor all = sum(x);
  CHECK(all.shape() == Shape{});
  check_close(all, {21});
  check_close(sum(x, {0}), {5, 7, 9});
  check_close(sum(x, {1}), {6, 15});
  Tensor kd = sum(x, {-1}, true);
  CHECK(kd.shape() == Shape{2, 1});
  check_close(kd, {6, 15});
  Tensor both = sum(x, {1, 0}, true);
  CHECK(both.shape() == Shape{1, 1});
  check_close(both, {21});
  CHECK(sum(x, {0}).dtype() == DType::f32);
  // A 0-d tensor reduces to itself.
  check_close(sum(scalar_tensor(2.5)), {2.5});
}

TEST_CASE("reduce: mean, prod, max, min, logsumexp values") {
  Tensor x = f64({1, -2, 3, 4, 0.5, -6}, {2, 3});
  check_close(mean(x, {1}), {2.0 / 3, -0.5});
  check_close(mean(x), {0.0833333333333333});
  check_close(prod(x, {1}), {-6, -12});
  check_close(max(x, {1}), {3, 4});
  check_close(min(x, {0}), {1, -2, -6});
  check_close(max(x), {4});
  check_close(logsumexp(x, {1}), {std::log(std::exp(1) + std::exp(-2) + std::exp(3)),
                                  std::log(std::exp(4) + std::exp(0.5) + std::exp(-6))});
}

TEST_CASE("reduce: logsumexp is stable for large values and gives -inf for an all -inf row") {
  Tensor x = f32({1000, 1000, -1000, -1000, -INFINITY, -INFINITY}, {3, 2});
  check_close(logsumexp(x, {1}), {1000 + std::log(2.0), -1000 + std::log(2.0), -kInf}, 1e-6);
  check_close(logsumexp(f32({INFINITY, 1}, {2})), {kInf});
  // Integers promote to f32, as torch.logsumexp.
  Tensor li = logsumexp(i64({0, 0}, {2}));
  CHECK(li.dtype() == DType::f32);
  check_close(li, {std::log(2.0)});
}

TEST_CASE("reduce: max and min propagate NaN") {
  Tensor x = f32({1, NAN, 3, 4, 5, 6}, {2, 3});
  check_close(max(x, {1}), {kNaN, 6});
  check_close(min(x, {0}), {1, kNaN, 3});
  check_close(sum(x, {1}), {kNaN, 15});
}

TEST_CASE("reduce: non-contiguous inputs (transposed, sliced, broadcast)") {
  Tensor x = f32({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor t = x.transpose(0, 1);  // [3, 2], strides [1, 3]
  check_close(sum(t, {0}), {6, 15});
  check_close(sum(t, {1}), {5, 7, 9});
  check_close(max(t, {1}), {4, 5, 6});
  Tensor s = f32({1, 2, 3, 4, 5, 6, 7, 8}, {2, 4}).slice(1, 0, 4, 2);  // [[1,3],[5,7]]
  check_close(sum(s, {1}), {4, 12});
  check_close(prod(s, {0}), {5, 21});
  Tensor e = f32({1, 2, 3}, {3}).expand({4, 3});  // stride 0 along dim 0
  check_close(sum(e, {0}), {4, 8, 12});
  check_close(sum(e), {24});
  check_close(mean(e, {1}), {2, 2, 2, 2});
}

TEST_CASE("reduce: every loop shape of the CPU kernel matches a double reference") {
  struct Case {
    int64_t a, b, c;
    std::array<bool, 3> reduce;
  };
  // Row and column shapes, parallel over outputs and over the reduced range, non-adjacent dims.
  std::vector<Case> cases = {
      {64, 512, 3, {false, true, false}},   // column, small inner kept dim
      {3, 70000, 1, {false, true, false}},  // row, few outputs: split reduced range
      {70000, 3, 1, {true, false, false}},  // column, few outputs: split reduced range
      {256, 300, 1, {false, true, false}},  // row, many outputs
      {300, 256, 1, {true, false, false}},  // column, many outputs
      {40, 50, 60, {true, false, true}},    // non-adjacent reduced dims
      {40, 50, 60, {false, true, true}},    // coalesced inner dims
      {40, 50, 60, {true, true, true}},     // everything
      {1000, 2, 40, {true, false, false}},  // few outputs along a strided column
  };
  unsigned seed = 1;
  for (const Case& c : cases) {
    CAPTURE(c.a);
    CAPTURE(c.b);
    CAPTURE(c.c);
    std::vector<float> v = random_values(c.a * c.b * c.c, seed++);
    Tensor x = f32(v, {c.a, c.b, c.c});
    std::vector<int64_t> dims;
    for (int64_t d = 0; d < 3; ++d) {
      if (c.reduce[static_cast<std::size_t>(d)]) dims.push_back(d);
    }
    check_close(sum(x, dims, true), naive_sum3(v, c.a, c.b, c.c, c.reduce), 1e-5);
    // The same data read through a permuted (non-contiguous) view.
    Tensor xp = x.permute({2, 0, 1});
    std::vector<int64_t> pdims;
    for (int64_t d : dims) pdims.push_back((d + 1) % 3);
    Tensor r = sum(xp, pdims, true).permute({1, 2, 0}).contiguous();
    check_close(r, naive_sum3(v, c.a, c.b, c.c, c.reduce), 1e-5);
    // f64, and max / argmax-free extremes through the generic (non-blocked) loops.
    check_close(sum(x.to(DType::f64), dims, true), naive_sum3(v, c.a, c.b, c.c, c.reduce), 1e-12);
    check_close(max(xp, pdims, true).permute({1, 2, 0}).contiguous(),
                naive_fold3(v, c.a, c.b, c.c, c.reduce, -kInf,
                            [](double x, double y) { return std::max(x, y); }),
                0);
    check_close(min(x, dims, true),
                naive_fold3(v, c.a, c.b, c.c, c.reduce, kInf,
                            [](double x, double y) { return std::min(x, y); }),
                0);
  }
}

TEST_CASE("reduce: a 1e6-element f32 sum is accurate, along rows and columns") {
  const int64_t n = 1000000;
  // 0.1f is inexact and every addition rounds the same way, the worst case for accumulation: a
  // naive f32 running sum ends near 100958 (1% off). Within 3e-7 relative is ~2 f32 ulps.
  Tensor x = full({n}, 0.1, {.dtype = DType::f32});
  const double expected = static_cast<double>(0.1f) * n;
  const double tol = 3e-7 * expected;
  CHECK(std::abs(sum(x).item<double>() - expected) < tol);
  CHECK(std::abs(sum(sum(x.view({1000, 1000}), {0})).item<double>() - expected) < tol);
  CHECK(std::abs(mean(x).item<double>() - static_cast<double>(0.1f)) < 3e-7 * 0.1);
  // Columns of 1e6 rows (the split-reduced-range path).
  Tensor cols = full({n, 2}, 0.1, {.dtype = DType::f32});
  for (double v : sum(cols, {0}).to_vector<double>()) CHECK(std::abs(v - expected) < tol);
  // Random values against a double reference.
  std::vector<float> r = random_values(n, 7);
  double ref = 0;
  for (float v : r) ref += v;
  CHECK(std::abs(sum(f32(r, {n})).item<double>() - ref) < 1e-3);
  CHECK(std::abs(sum(sum(f32(r, {n / 4, 4}), {0})).item<double>() - ref) < 1e-3);
}

TEST_CASE("reduce: integer and bool dtypes") {
  Tensor xi = from_vector<int32_t>({1, 2, 3, 4, 5, 6}, Shape{2, 3});
  Tensor s = sum(xi, {1});
  CHECK(s.dtype() == DType::i64);
  check_ints(s, {6, 15});
  Tensor m = max(xi, {0});
  CHECK(m.dtype() == DType::i32);
  check_ints(m, {4, 5, 6});
  check_ints(min(xi), {1});
  Tensor p = prod(xi, {1});
  CHECK(p.dtype() == DType::i64);
  check_ints(p, {6, 120});
  // Large i64 values are summed exactly (no detour through double).
  const int64_t big = (int64_t{1} << 60) + 1;
  check_ints(sum(i64({big, 1}, {2})), {big + 1});
  Tensor b = from_vector<bool>({true, false, true, true}, Shape{2, 2});
  Tensor bs = sum(b, {1});
  CHECK(bs.dtype() == DType::i64);
  check_ints(bs, {1, 2});
  Tensor bm = max(b, {1});
  CHECK(bm.dtype() == DType::boolean);
  CHECK(bm.to_vector<bool>() == std::vector<bool>{true, true});
  CHECK(min(b, {1}).to_vector<bool>() == std::vector<bool>{false, true});
}

TEST_CASE("reduce: bf16 and f16 reduce through float") {
  Tensor x = f32({1, 2, 3, 4}, {2, 2});
  for (DType dt : {DType::bf16, DType::f16}) {
    Tensor h = x.to(dt);
    Tensor s = sum(h, {1});
    CHECK(s.dtype() == dt);
    check_close(s, {3, 7});
    check_close(max(h, {0}), {3, 4});
    check_close(mean(h), {2.5});
  }
}

TEST_CASE("reduce: zero-size reductions") {
  Tensor e = zeros({0, 3});
  Tensor s = sum(e, {0});
  CHECK(s.shape() == Shape{3});
  check_close(s, {0, 0, 0});
  check_close(sum(e), {0});
  check_close(mean(e, {0}), {kNaN, kNaN, kNaN});
  check_close(prod(e, {0}), {1, 1, 1});
  check_close(logsumexp(e, {0}), {-kInf, -kInf, -kInf});
  // Reducing a non-empty dim of an empty tensor is fine: the result is empty.
  Tensor m = max(e, {1});
  CHECK(m.shape() == Shape{0});
  CHECK(sum(e, {1}).shape() == Shape{0});
  CHECK(argmax(e, 1).shape() == Shape{0});
}

// --- argmax / argmin
// -------------------------------------------------------------------------------

TEST_CASE("reduce: argmax and argmin take the first extreme, along a dim or flattened") {
  Tensor x = f32({1, 5, 5, 0, 2, 2, 7, 7, 0}, {3, 3});
  check_ints(argmax(x, 1), {1, 1, 0});
  check_ints(argmin(x, 1), {0, 0, 2});
  check_ints(argmax(x, 0), {2, 2, 0});
  check_ints(argmax(x, -2), {2, 2, 0});
  Tensor flat = argmax(x);
  CHECK(flat.shape() == Shape{});
  check_ints(flat, {6});
  check_ints(argmin(x), {3});
  Tensor kd = argmax(x, 1, true);
  CHECK(kd.shape() == Shape{3, 1});
  CHECK(argmax(x, std::nullopt, true).shape() == Shape{1, 1});
  CHECK(argmax(x, 0).dtype() == DType::i64);
  // Transposed input (column loop shape).
  check_ints(argmax(x.transpose(0, 1), 1), {2, 2, 0});
  // NaN counts as the maximum (and minimum); the first NaN wins.
  Tensor n = f32({1, NAN, 3, NAN}, {4});
  check_ints(argmax(n), {1});
  check_ints(argmin(n), {1});
  // Integers and a 0-d tensor.
  check_ints(argmax(i64({3, 9, 9, 1}, {4})), {1});
  check_ints(argmax(scalar_tensor(4.0), 0), {0});
}

TEST_CASE("reduce: argmax over long ranges keeps the first of many ties") {
  // Ties spread across thread slices and vector lanes: the smallest index must win.
  const int64_t n = 300000;
  std::vector<float> v(static_cast<std::size_t>(n), 0.0f);
  for (int64_t i = 1000; i < n; i += 997) v[static_cast<std::size_t>(i)] = 5.0f;
  Tensor x = f32(v, {n});
  check_ints(argmax(x), {1000});
  Tensor cols = f32(v, {n / 2, 2});         // column shape, few outputs
  check_ints(argmax(cols, 0), {500, 998});  // flat 1000 and 1997
}

// --- var -----------------------------------------------------------------------------------------

TEST_CASE("reduce: var with and without Bessel's correction") {
  Tensor x = f64({1, 2, 3, 4, 2, 2, 2, 10}, {2, 4});
  check_close(var(x, {1}), {5.0 / 3, 16.0});
  check_close(var(x, {1}, false, 0), {1.25, 12.0});
  Tensor k = var(x, {-1}, true);
  CHECK(k.shape() == Shape{2, 1});
  check_close(var(x), {57.5 / 7}, 1e-12);
}

// --- cumsum --------------------------------------------------------------------------------------

TEST_CASE("reduce: cumsum along each dim, integers widen to i64") {
  Tensor x = f32({1, 2, 3, 4, 5, 6}, {2, 3});
  check_close(cumsum(x, 1), {1, 3, 6, 4, 9, 15});
  check_close(cumsum(x, 0), {1, 2, 3, 5, 7, 9});
  check_close(cumsum(x.transpose(0, 1), -1), {1, 5, 2, 7, 3, 9});
  Tensor ci = cumsum(from_vector<int32_t>({1, 2, 3}, Shape{3}), 0);
  CHECK(ci.dtype() == DType::i64);
  check_ints(ci, {1, 3, 6});
  check_close(cumsum(scalar_tensor(3.0), 0), {3});
  CHECK(cumsum(zeros({0, 4}), 1).shape() == Shape{0, 4});
}

// --- sum_to --------------------------------------------------------------------------------------

TEST_CASE("reduce: sum_to sums broadcast dims back and aliases when shapes match") {
  Tensor g = f32({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(sum_to(g, {2, 3}).is_same(g));
  check_close(sum_to(g, {3}), {5, 7, 9});
  check_close(sum_to(g, {1, 3}), {5, 7, 9});
  CHECK(sum_to(g, {2, 1}).shape() == Shape{2, 1});
  check_close(sum_to(g, {2, 1}), {6, 15});
  check_close(sum_to(g, {}), {21});
  Tensor lead = g.view({1, 2, 3});
  CHECK(sum_to(lead, {2, 3}).shape() == Shape{2, 3});
  CHECK(error_message([&] { sum_to(g, {4}); }).find("sum_to: cannot sum shape [2, 3] to [4]") !=
        std::string::npos);
}

// --- errors --------------------------------------------------------------------------------------

TEST_CASE("reduce: error messages name the op and the bad values") {
  Tensor x = zeros({2, 3});
  CHECK(error_message([&] { sum(x, {0, -2}); }) == "sum: dims [0, -2] repeat a dim");
  CHECK(error_message([&] { mean(x, {2}); }) == "mean: dim 2 out of range for a tensor of rank 2");
  CHECK(error_message([&] {
          max(zeros({3, 0}), {1});
        }).find("max: cannot reduce over dim 1 of extent 0") == 0);
  CHECK(error_message([&] { min(zeros({0})); }).find("min: cannot reduce over dim 0 of extent 0") ==
        0);
  CHECK(error_message([&] {
          argmax(zeros({0}));
        }).find("argmax: cannot take the argmax of an empty") == 0);
  CHECK(error_message([&] {
          argmin(zeros({2, 0}), 1);
        }).find("argmin: cannot reduce over dim 1") == 0);
  CHECK(error_message([&] { argmax(x, 2); }) ==
        "argmax: dim 2 out of range for a tensor of rank 2");
  CHECK(error_message([&] {
          mean(i64({1, 2}, {2}));
        }).find("mean: expected a floating tensor, got dtype i64") == 0);
  CHECK(error_message([&] { var(i64({1, 2}, {2})); }).find("var: expected a floating tensor") == 0);
  CHECK(error_message([&] { cumsum(x, 3); }) ==
        "cumsum: dim 3 out of range for a tensor of rank 2");
}

// --- backward values -----------------------------------------------------------------------------

TEST_CASE("reduce: backward of sum, mean and logsumexp") {
  Tensor x = f64({1, 2, 3, 4, 5, 6}, {2, 3});
  x.requires_grad_();
  backward(sum(mul(sum(x, {1}), f64({1, 2}, {2}))));
  check_close(x.grad(), {1, 1, 1, 2, 2, 2});
  x.zero_grad();
  backward(sum(mean(x, {0}, true)));
  check_close(x.grad(), {0.5, 0.5, 0.5, 0.5, 0.5, 0.5});
  x.zero_grad();
  backward(sum(logsumexp(x, {1})));
  std::vector<double> g = x.grad().to_vector<double>();
  double z = std::exp(1) + std::exp(2) + std::exp(3);
  CHECK(g[0] == doctest::Approx(std::exp(1) / z));
  CHECK(g[2] == doctest::Approx(std::exp(3) / z));
  CHECK(g[3] + g[4] + g[5] == doctest::Approx(1));
}

TEST_CASE("reduce: backward of max splits the gradient between ties") {
  Tensor x = f64({1, 3, 3, 2, 0, 1}, {2, 3});
  x.requires_grad_();
  backward(sum(max(x, {1})));
  check_close(x.grad(), {0, 0.5, 0.5, 1, 0, 0});
  x.zero_grad();
  backward(min(x));
  check_close(x.grad(), {0, 0, 0, 0, 1, 0});
}

TEST_CASE("reduce: backward of prod with zero, one and two zeros in a slice") {
  Tensor x = f64({2, 3, 4, 2, 0, 5, 0, 3, 0}, {3, 3});
  x.requires_grad_();
  backward(sum(prod(x, {1})));
  check_close(x.grad(), {12, 8, 6, 0, 10, 0, 0, 0, 0});
}

TEST_CASE("reduce: backward of var and cumsum") {
  Tensor x = f64({1, 2, 4, 7}, {4});
  x.requires_grad_();
  backward(var(x));
  // d var / d x_i = 2 (x_i - mean) / (N - 1), mean 3.5.
  check_close(x.grad(), {2 * -2.5 / 3, 2 * -1.5 / 3, 2 * 0.5 / 3, 2 * 3.5 / 3});
  x.zero_grad();
  backward(sum(mul(cumsum(x, 0), f64({1, 10, 100, 1000}, {4}))));
  check_close(x.grad(), {1111, 1110, 1100, 1000});
}

TEST_CASE("reduce: no node is recorded for a tensor that does not require grad") {
  Tensor x = f32({1, 2}, {2});
  Tensor s = sum(x);
  CHECK_FALSE(s.requires_grad());
  Tensor y = f32({1, 2}, {2});
  y.requires_grad_();
  CHECK(sum(y).requires_grad());
  CHECK_FALSE(argmax(y).requires_grad());
}

}  // namespace
}  // namespace rw
