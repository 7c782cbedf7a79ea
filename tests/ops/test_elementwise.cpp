// Elementwise ops: values, broadcasting, strided inputs, type promotion, in-place forms, error
// messages and backward rules. (Finite-difference gradchecks of every op live in the op table.)
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <numbers>
#include <string>
#include <vector>

#include "core/ops.h"
#include "test_util.h"

namespace rw {

using namespace rw::test;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

template <typename T>
Tensor tensor(std::vector<T> values, Shape shape) {
  return from_vector<T>(values, std::move(shape));
}
Tensor boolean(std::vector<bool> v, Shape s) { return tensor<bool>(std::move(v), std::move(s)); }

// Applies f to each element of `in` (as double): the expected result of a unary op.
template <typename F>
std::vector<double> map(const std::vector<double>& in, F f) {
  std::vector<double> out;
  for (double v : in) out.push_back(f(v));
  return out;
}

double gelu_erf_ref(double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }
double gelu_tanh_ref(double x) {
  return 0.5 * x * (1 + std::tanh(std::sqrt(2 / std::numbers::pi) * (x + 0.044715 * x * x * x)));
}

TEST_CASE("elementwise: binary arithmetic values in f32, f64 and i64") {
  Tensor a = f32({1, -2, 3.5f, 4}, {2, 2});
  Tensor b = f32({2, 4, -0.5f, 8}, {2, 2});
  check_close(add(a, b), {3, 2, 3, 12});
  check_close(sub(a, b), {-1, -6, 4, -4});
  check_close(mul(a, b), {2, -8, -1.75, 32});
  check_close(div(a, b), {0.5, -0.5, -7, 0.5});
  check_close(maximum(a, b), {2, 4, 3.5, 8});
  check_close(minimum(a, b), {1, -2, -0.5, 4});
  check_close(pow(f32({2, 9, 4}, {3}), f32({3, 0.5f, -1}, {3})), {8, 3, 0.25});
  CHECK(add(a, b).shape() == Shape{2, 2});

  Tensor c = f64({0.1, 0.2, 0.3}, {3});
  Tensor d = f64({0.7, -1e-300, 3}, {3});
  std::vector<double> sum = add(c, d).to_vector<double>();
  CHECK(sum[0] == 0.1 + 0.7);  // f64 computes in f64, not through f32
  CHECK(sum[1] == 0.2 - 1e-300);
  check_close(mul(c, d), {0.1 * 0.7, -0.2e-300, 0.3 * 3}, 1e-15);

  Tensor x = i64({7, -7, 3, 10}, {4});
  Tensor y = i64({2, 2, -5, 3}, {4});
  CHECK(add(x, y).to_vector<int64_t>() == std::vector<int64_t>{9, -5, -2, 13});
  CHECK(sub(x, y).to_vector<int64_t>() == std::vector<int64_t>{5, -9, 8, 7});
  CHECK(mul(x, y).to_vector<int64_t>() == std::vector<int64_t>{14, -14, -15, 30});
  CHECK(maximum(x, y).to_vector<int64_t>() == std::vector<int64_t>{7, 2, 3, 10});
  CHECK(minimum(x, y).to_vector<int64_t>() == std::vector<int64_t>{2, -7, -5, 3});
  CHECK(pow(x, i64({2, 3, 0, 1}, {4})).to_vector<int64_t>() ==
        std::vector<int64_t>{49, -343, 1, 10});
  // True division: integers divide to f32.
  Tensor q = div(x, y);
  CHECK(q.dtype() == DType::f32);
  check_close(q, {3.5, -3.5, -0.6, 10.0 / 3});
  // Large i64 values stay exact (no round trip through floating point).
  int64_t big = (int64_t{1} << 60) + 1;
  CHECK(add(i64({big}, {1}), i64({1}, {1})).item<int64_t>() == big + 1);
}

TEST_CASE("elementwise: maximum and minimum propagate NaN") {
  Tensor a = f32({1, static_cast<float>(kNaN), 3}, {3});
  Tensor b = f32({static_cast<float>(kNaN), 2, 1}, {3});
  check_close(maximum(a, b), {kNaN, kNaN, 3});
  check_close(minimum(a, b), {kNaN, kNaN, 1});
}

TEST_CASE("elementwise: scalar variants") {
  Tensor a = f32({1, -2, 4}, {3});
  check_close(add(a, 1.5), {2.5, -0.5, 5.5});
  check_close(sub(a, 1.5), {-0.5, -3.5, 2.5});
  check_close(rsub(a, 1.5), {0.5, 3.5, -2.5});
  check_close(mul(a, -2.0), {-2, 4, -8});
  check_close(div(a, 4.0), {0.25, -0.5, 1});
  check_close(rdiv(a, 4.0), {4, -2, 1});
  check_close(pow(a, 2.0), {1, 4, 16});
  check_close(pow(f32({4, 9}, {2}), 0.5), {2, 3});
  check_close(pow(f32({2, 4}, {2}), -1.0), {0.5, 0.25});
  check_close(maximum(a, 0.5), {1, 0.5, 4});
  check_close(minimum(a, 0.5), {0.5, -2, 0.5});
  // Operators.
  check_close(a + 1.0, {2, -1, 5});
  check_close(1.0 + a, {2, -1, 5});
  check_close(a - 1.0, {0, -3, 3});
  check_close(1.0 - a, {0, 3, -3});
  check_close(a * 3.0, {3, -6, 12});
  check_close(3.0 * a, {3, -6, 12});
  check_close(a / 2.0, {0.5, -1, 2});
  check_close(2.0 / a, {2, -1, 0.5});
  check_close(-a, {-1, 2, -4});
  Tensor b = f32({2, 2, 2}, {3});
  check_close(a + b, {3, 0, 6});
  check_close(a - b, {-1, -4, 2});
  check_close(a * b, {2, -4, 8});
  check_close(a / b, {0.5, -1, 2});
  // Integer tensors with integer scalars stay integral.
  Tensor n = i64({3, -4}, {2});
  CHECK(add(n, 2.0).dtype() == DType::i64);
  CHECK(add(n, 2.0).to_vector<int64_t>() == std::vector<int64_t>{5, -2});
  CHECK(mul(n, -3.0).to_vector<int64_t>() == std::vector<int64_t>{-9, 12});
  CHECK(pow(n, 2.0).to_vector<int64_t>() == std::vector<int64_t>{9, 16});
  CHECK(pow(n, 2.0).dtype() == DType::i64);
}

TEST_CASE("elementwise: unary values in f32 and f64") {
  std::vector<double> in = {-1.5, -0.25, 0.0, 0.5, 2.0};
  for (DType dt : {DType::f32, DType::f64}) {
    CAPTURE(dt);
    Tensor x = f64(in, {5}).to(dt);
    double tol = dt == DType::f32 ? 1e-6 : 1e-14;
    check_close(neg(x), map(in, [](double v) { return -v; }), tol);
    check_close(abs(x), map(in, [](double v) { return std::abs(v); }), tol);
    check_close(sign(x), {-1, -1, 0, 1, 1}, tol);
    check_close(exp(x), map(in, [](double v) { return std::exp(v); }), tol);
    check_close(square(x), map(in, [](double v) { return v * v; }), tol);
    check_close(sin(x), map(in, [](double v) { return std::sin(v); }), tol);
    check_close(cos(x), map(in, [](double v) { return std::cos(v); }), tol);
    check_close(tanh(x), map(in, [](double v) { return std::tanh(v); }), tol);
    check_close(sigmoid(x), map(in, [](double v) { return 1 / (1 + std::exp(-v)); }), tol);
    check_close(relu(x), {0, 0, 0, 0.5, 2}, tol);
    check_close(erf(x), map(in, [](double v) { return std::erf(v); }), tol);
    check_close(gelu(x), map(in, gelu_erf_ref), tol);
    check_close(gelu(x, GeluApprox::tanh), map(in, gelu_tanh_ref), tol);
    check_close(clamp(x, -0.3, 0.6), {-0.3, -0.25, 0, 0.5, 0.6}, tol);
    check_close(clamp(x, std::nullopt, 0.1), {-1.5, -0.25, 0, 0.1, 0.1}, tol);
    check_close(clamp(x, 0.1, std::nullopt), {0.1, 0.1, 0.1, 0.5, 2}, tol);
    check_close(pow(x, 3.0), map(in, [](double v) { return v * v * v; }), tol);
    CHECK(exp(x).dtype() == dt);
  }
  std::vector<double> pos = {0.25, 1.0, 4.0, 9.0};
  for (DType dt : {DType::f32, DType::f64}) {
    CAPTURE(dt);
    Tensor x = f64(pos, {4}).to(dt);
    double tol = dt == DType::f32 ? 1e-6 : 1e-14;
    check_close(log(x), map(pos, [](double v) { return std::log(v); }), tol);
    check_close(log1p(x), map(pos, [](double v) { return std::log1p(v); }), tol);
    check_close(sqrt(x), {0.5, 1, 2, 3}, tol);
    check_close(rsqrt(x), {2, 1, 0.5, 1.0 / 3}, tol);
    check_close(reciprocal(x), {4, 1, 0.25, 1.0 / 9}, tol);
  }
  // Special values.
  check_close(log(f32({0, -1}, {2})), {-kInf, kNaN});
  check_close(sqrt(f32({-1}, {1})), {kNaN});
  check_close(relu(f32({static_cast<float>(kNaN)}, {1})), {kNaN});
  check_close(clamp(f32({static_cast<float>(kNaN)}, {1}), 0.0, 1.0), {kNaN});
}

TEST_CASE("elementwise: unary ops on integers and bf16/f16") {
  Tensor n = i64({-3, 0, 5}, {3});
  CHECK(neg(n).to_vector<int64_t>() == std::vector<int64_t>{3, 0, -5});
  CHECK(abs(n).to_vector<int64_t>() == std::vector<int64_t>{3, 0, 5});
  CHECK(sign(n).to_vector<int64_t>() == std::vector<int64_t>{-1, 0, 1});
  CHECK(square(n).to_vector<int64_t>() == std::vector<int64_t>{9, 0, 25});
  CHECK(relu(n).to_vector<int64_t>() == std::vector<int64_t>{0, 0, 5});
  CHECK(clamp(n, -1.0, 2.0).to_vector<int64_t>() == std::vector<int64_t>{-1, 0, 2});
  CHECK(clamp(n, -1.0, 2.0).dtype() == DType::i64);
  // Math on integers and non-integer bounds give f32.
  CHECK(exp(n).dtype() == DType::f32);
  check_close(exp(n), {std::exp(-3.0), 1, std::exp(5.0)});
  CHECK(clamp(n, -0.5, 2.5).dtype() == DType::f32);
  check_close(clamp(n, -0.5, 2.5), {-0.5, 0, 2.5});
  CHECK(pow(n, -1.0).dtype() == DType::f32);
  check_close(pow(i64({2, 4}, {2}), -1.0), {0.5, 0.25});
  CHECK(pow(n, 0.5).dtype() == DType::f32);

  for (DType dt : {DType::bf16, DType::f16}) {
    CAPTURE(dt);
    Tensor h = f32({0.5f, -1.0f, 2.0f}, {3}).to(dt);
    Tensor e = exp(h);
    CHECK(e.dtype() == dt);
    check_close(e, {std::exp(0.5), std::exp(-1.0), std::exp(2.0)}, 1e-2);
    Tensor s = add(h, h);
    CHECK(s.dtype() == dt);
    check_close(s, {1, -2, 4});
    check_close(mul(h, 3.0), {1.5, -3, 6});
    check_close(gelu(h), {gelu_erf_ref(0.5), gelu_erf_ref(-1), gelu_erf_ref(2)}, 1e-2);
  }
}

TEST_CASE("elementwise: comparisons, logical ops, isfinite and where") {
  Tensor a = f32({1, 2, 3}, {3});
  Tensor b = f32({3, 2, 1}, {3});
  CHECK(eq(a, b).dtype() == DType::boolean);
  CHECK(eq(a, b).to_vector<bool>() == std::vector<bool>{false, true, false});
  CHECK(ne(a, b).to_vector<bool>() == std::vector<bool>{true, false, true});
  CHECK(lt(a, b).to_vector<bool>() == std::vector<bool>{true, false, false});
  CHECK(le(a, b).to_vector<bool>() == std::vector<bool>{true, true, false});
  CHECK(gt(a, b).to_vector<bool>() == std::vector<bool>{false, false, true});
  CHECK(ge(a, b).to_vector<bool>() == std::vector<bool>{false, true, true});
  CHECK(eq(a, 2.0).to_vector<bool>() == std::vector<bool>{false, true, false});
  CHECK(ne(a, 2.0).to_vector<bool>() == std::vector<bool>{true, false, true});
  CHECK(lt(a, 2.0).to_vector<bool>() == std::vector<bool>{true, false, false});
  CHECK(le(a, 2.0).to_vector<bool>() == std::vector<bool>{true, true, false});
  CHECK(gt(a, 2.0).to_vector<bool>() == std::vector<bool>{false, false, true});
  CHECK(ge(a, 2.0).to_vector<bool>() == std::vector<bool>{false, true, true});
  // An integer tensor against a fractional scalar compares in floating point.
  CHECK(lt(i64({1, 2, 3}, {3}), 2.5).to_vector<bool>() == std::vector<bool>{true, true, false});
  // Mixed dtypes compare after promotion.
  CHECK(eq(i64({1, 2}, {2}), f32({1, 2.5f}, {2})).to_vector<bool>() ==
        std::vector<bool>{true, false});
  // NaN compares unequal to everything.
  Tensor nan = f32({static_cast<float>(kNaN)}, {1});
  CHECK_FALSE(eq(nan, nan).item<bool>());
  CHECK(ne(nan, nan).item<bool>());

  Tensor p = boolean({true, true, false, false}, {4});
  Tensor q = boolean({true, false, true, false}, {4});
  CHECK(logical_and(p, q).to_vector<bool>() == std::vector<bool>{true, false, false, false});
  CHECK(logical_or(p, q).to_vector<bool>() == std::vector<bool>{true, true, true, false});
  CHECK(logical_not(p).to_vector<bool>() == std::vector<bool>{false, false, true, true});
  CHECK(isfinite(f32({1, static_cast<float>(kInf), static_cast<float>(kNaN), -2}, {4}))
            .to_vector<bool>() == std::vector<bool>{true, false, false, true});
  CHECK(isfinite(i64({1, 2}, {2})).to_vector<bool>() == std::vector<bool>{true, true});
  // bool maximum/minimum are or/and.
  CHECK(maximum(p, q).to_vector<bool>() == std::vector<bool>{true, true, true, false});
  CHECK(minimum(p, q).to_vector<bool>() == std::vector<bool>{true, false, false, false});

  Tensor cond = boolean({true, false, true}, {3});
  check_close(where(cond, a, b), {1, 2, 3});
  check_close(where(cond, a, -1.0), {1, -1, 3});
  // cond broadcasts: a [2, 3] choice by a [3] mask, b a 0-dim tensor.
  Tensor m = f32({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor w = where(cond, m, scalar_tensor(0));
  CHECK(w.shape() == Shape{2, 3});
  check_close(w, {1, 0, 3, 4, 0, 6});
  Tensor wi = where(cond, i64({1, 2, 3}, {3}), i64({7}, {1}));
  CHECK(wi.dtype() == DType::i64);
  CHECK(wi.to_vector<int64_t>() == std::vector<int64_t>{1, 7, 3});
  CHECK(where(cond, i64({1, 2, 3}, {3}), 0.5).dtype() == DType::f32);
}

TEST_CASE("elementwise: large f32 tensors (the oneDNN path) match f64 and keep NaN") {
  const int64_t n = 40000;  // above the size where the CPU backend hands f32 math to oneDNN
  std::vector<double> in(n);
  for (int64_t i = 0; i < n; ++i) in[i] = -8.0 + 16.0 * static_cast<double>(i) / n;
  in[7] = kNaN;
  in[8] = kInf;
  in[9] = -kInf;
  Tensor xd = f64(in, {n});
  Tensor x = xd.to(DType::f32);
  std::vector<double> in_f32 = x.to_vector<double>();  // compare against the rounded inputs
  Tensor ref_in = f64(in_f32, {n});
  Tensor pos = abs(x);
  Tensor pos_ref = abs(ref_in);
  auto close = [](const Tensor& got, const Tensor& ref) {
    check_close(got, ref.to_vector<double>(), 2e-6);
  };
  close(tanh(x), tanh(ref_in));
  close(sigmoid(x), sigmoid(ref_in));
  close(exp(x), exp(ref_in));
  close(gelu(x), gelu(ref_in));
  close(gelu(x, GeluApprox::tanh), gelu(ref_in, GeluApprox::tanh));
  close(log(pos), log(pos_ref));
  close(sqrt(pos), sqrt(pos_ref));
  for (GeluApprox approx : {GeluApprox::none, GeluApprox::tanh}) {
    CAPTURE(static_cast<int>(approx));
    // Finite inputs only: the derivative at +-inf is a limit the f64 formula does not take.
    Tensor xf = x.slice(0, 10, n).contiguous().requires_grad_();
    Tensor xr = ref_in.slice(0, 10, n).contiguous().requires_grad_();
    backward(gelu(xf, approx), ones({n - 10}));
    backward(gelu(xr, approx), ones({n - 10}, {.dtype = DType::f64}));
    check_close(xf.grad(), xr.grad().to_vector<double>(), 2e-6);
  }
}

TEST_CASE("elementwise: broadcasting shapes, 0-dim and zero-size") {
  Tensor row = f32({1, 2, 3}, {1, 3});
  Tensor col = f32({10, 20}, {2, 1});
  Tensor s = add(row, col);
  CHECK(s.shape() == Shape{2, 3});
  check_close(s, {11, 12, 13, 21, 22, 23});
  // Rank extension: [3] + [2, 1, 3] -> [2, 1, 3]; [4, 1] * [3] -> [4, 3].
  CHECK(add(f32({1, 2, 3}, {3}), zeros({2, 1, 3})).shape() == Shape{2, 1, 3});
  CHECK(mul(ones({4, 1}), ones({3})).shape() == Shape{4, 3});
  // 0-dim with anything.
  Tensor zero_dim = scalar_tensor(5);
  CHECK(zero_dim.dim() == 0);
  Tensor r = mul(zero_dim, row);
  CHECK(r.shape() == Shape{1, 3});
  check_close(r, {5, 10, 15});
  Tensor rr = add(zero_dim, scalar_tensor(2));
  CHECK(rr.dim() == 0);
  CHECK(rr.item() == 7);
  CHECK(exp(scalar_tensor(0)).dim() == 0);
  // Zero-size: broadcasting against 0 gives 0, and ops run on nothing.
  Tensor empty0 = zeros({0, 3});
  CHECK(add(empty0, row).shape() == Shape{0, 3});
  CHECK(add(empty0, row).numel() == 0);
  CHECK(mul(zeros({2, 0}), ones({2, 1})).shape() == Shape{2, 0});
  CHECK(exp(empty0).shape() == Shape{0, 3});
  CHECK(eq(empty0, 1.0).shape() == Shape{0, 3});
  CHECK(where(boolean({}, {0}), zeros({0}), 1.0).shape() == Shape{0});
}

TEST_CASE("elementwise: strided inputs give the same values as contiguous ones") {
  // Large enough (>= the parallel grain) that the OpenMP path runs too.
  for (int64_t n : {5, 300}) {
    CAPTURE(n);
    Tensor base =
        arange(0.0, static_cast<double>(n * n), 1.0, {.dtype = DType::f32}).reshape({n, n});
    Tensor t = base.transpose(0, 1);  // non-contiguous
    REQUIRE_FALSE(t.is_contiguous());
    Tensor tc = t.contiguous();
    CHECK(add(t, t).to_vector<float>() == add(tc, tc).to_vector<float>());
    CHECK(mul(t, base).to_vector<float>() == mul(tc, base).to_vector<float>());
    CHECK(sqrt(t).to_vector<float>() == sqrt(tc).to_vector<float>());
    CHECK(gt(t, base).to_vector<bool>() == gt(tc, base).to_vector<bool>());
    Tensor sl = base.slice(1, 1, n, 2);  // stepped slice
    CHECK(sub(sl, 1.0).to_vector<float>() == sub(sl.contiguous(), 1.0).to_vector<float>());
    Tensor cond = gt(t, 10.0);
    CHECK(where(cond, t, sl.slice(1, 0, 1)).to_vector<float>() ==
          where(cond, tc, sl.slice(1, 0, 1).contiguous()).to_vector<float>());
  }
  // A stride-0 expand view as an input.
  Tensor e = f32({1, 2}, {2, 1}).expand({2, 3});
  check_close(mul(e, f32({1, 2, 3}, {3})), {1, 2, 3, 2, 4, 6});
  check_close(exp(e), {std::exp(1.0), std::exp(1.0), std::exp(1.0), std::exp(2.0), std::exp(2.0),
                       std::exp(2.0)});
}

TEST_CASE("elementwise: type promotion") {
  CHECK(add(ones({2}, {.dtype = DType::i32}), ones({2})).dtype() == DType::f32);
  CHECK(add(ones({2}, {.dtype = DType::i32}), ones({2}, {.dtype = DType::i64})).dtype() ==
        DType::i64);
  CHECK(div(ones({2}, {.dtype = DType::i64}), ones({2}, {.dtype = DType::i64})).dtype() ==
        DType::f32);
  CHECK(mul(ones({2}), 2.0).dtype() == DType::f32);
  CHECK(mul(ones({2}, {.dtype = DType::f64}), ones({2})).dtype() == DType::f64);
  CHECK(add(ones({2}, {.dtype = DType::bf16}), ones({2}, {.dtype = DType::f16})).dtype() ==
        DType::f32);
  CHECK(mul(ones({2}, {.dtype = DType::i64}), 0.5).dtype() == DType::f32);
  check_close(mul(i64({3, 4}, {2}), 0.5), {1.5, 2});
  CHECK(div(ones({2}, {.dtype = DType::i64}), 2.0).dtype() == DType::f32);
  check_close(div(i64({3, 4}, {2}), 2.0), {1.5, 2});
  check_close(rdiv(i64({2, 4}, {2}), 1.0), {0.5, 0.25});
  // A bool mask times a float tensor promotes to the float dtype.
  Tensor mask = boolean({true, false}, {2});
  Tensor masked = mul(f32({3, 4}, {2}), mask);
  CHECK(masked.dtype() == DType::f32);
  check_close(masked, {3, 0});
  check_close(add(i64({1, 2}, {2}), f32({0.5f, 0.25f}, {2})), {1.5, 2.25});
}

TEST_CASE("elementwise: in-place forms write, bump the version and broadcast other") {
  Tensor x = f32({1, 2, 3, 4}, {2, 2});
  uint64_t v = x.storage()->version();
  add_(x, f32({10, 20}, {2}));
  check_close(x, {11, 22, 13, 24});
  CHECK(x.storage()->version() == v + 1);
  sub_(x, scalar_tensor(1));
  check_close(x, {10, 21, 12, 23});
  mul_(x, f32({2, 1}, {2, 1}));
  check_close(x, {20, 42, 12, 23});
  div_(x, f32({2, 2, 2, 2}, {2, 2}));
  check_close(x, {10, 21, 6, 11.5});
  add_(x, ones({2, 2}), -2.0);
  check_close(x, {8, 19, 4, 9.5});
  add_(x, 1.0);
  mul_(x, 2.0);
  check_close(x, {18, 40, 10, 21});
  clamp_(x, 11.0, 30.0);
  check_close(x, {18, 30, 11, 21});
  copy_(x, f32({7, 8}, {2}));
  check_close(x, {7, 8, 7, 8});
  fill_(x, 3.0);
  check_close(x, {3, 3, 3, 3});
  zero_(x);
  check_close(x, {0, 0, 0, 0});
  CHECK(x.storage()->version() == v + 11);
  // The returned reference is self.
  CHECK(add_(x, 1.0).is_same(x));

  // Writes through a non-contiguous view land in the base.
  Tensor base = zeros({2, 3});
  Tensor col = base.slice(1, 1, 2);  // [2, 1], strided
  add_(col, f32({5, 6}, {2, 1}));
  check_close(base, {0, 5, 0, 0, 6, 0});
  Tensor bt = base.transpose(0, 1);
  mul_(bt, 2.0);
  check_close(base, {0, 10, 0, 0, 12, 0});
  copy_(bt, f32({1, 2, 3}, {3, 1}));
  check_close(base, {1, 2, 3, 1, 2, 3});
  fill_(base.select(0, 1), -1.0);
  check_close(base, {1, 2, 3, -1, -1, -1});
  clamp_(bt, 0.0, 2.0);
  check_close(base, {1, 2, 2, 0, 0, 0});
  // Self and other overlap in different layouts: other is read before being overwritten.
  Tensor sq = f32({1, 2, 3, 4}, {2, 2});
  add_(sq, sq.transpose(0, 1));
  check_close(sq, {2, 5, 5, 8});
  Tensor self_add = f32({1, 2}, {2});
  add_(self_add, self_add);
  check_close(self_add, {2, 4});
  // copy_ converts the dtype; integer in-place ops stay integral.
  Tensor n = zeros({2}, {.dtype = DType::i64});
  copy_(n, f32({1.7f, -2.2f}, {2}));
  CHECK(n.to_vector<int64_t>() == std::vector<int64_t>{1, -2});
  add_(n, i64({3, 3}, {2}));
  mul_(n, 2.0);
  CHECK(n.to_vector<int64_t>() == std::vector<int64_t>{8, 2});
  clamp_(n, 2.5, 7.5);  // integers in [2.5, 7.5] are [3, 7]
  CHECK(n.to_vector<int64_t>() == std::vector<int64_t>{7, 3});
  Tensor flags = zeros({3}, {.dtype = DType::boolean});
  fill_(flags, 1);
  CHECK(flags.to_vector<bool>() == std::vector<bool>{true, true, true});
}

TEST_CASE("elementwise: in-place forms refuse tensors that take part in autograd") {
  Tensor w = ones({3}, {.requires_grad = true});
  REQUIRE_THROWS_WITH_AS(add_(w, ones({3})), doctest::Contains("add_: in-place update"), Error);
  REQUIRE_THROWS_WITH_AS(mul_(w, 2.0), doctest::Contains("mul_: in-place update"), Error);
  REQUIRE_THROWS_WITH_AS(zero_(w), doctest::Contains("zero_: in-place update"), Error);
  REQUIRE_THROWS_WITH_AS(copy_(w, zeros({3})), doctest::Contains("copy_: in-place update"), Error);
  REQUIRE_THROWS_WITH_AS(clamp_(w, 0.0, 1.0), doctest::Contains("clamp_: in-place update"), Error);
  // A view of such a tensor is refused too.
  REQUIRE_THROWS_WITH_AS(fill_(w.slice(0, 0, 2), 0.0), doctest::Contains("in-place update"), Error);
  // Writing a tensor that requires grad into a plain one would silently lose its gradient.
  Tensor buf = zeros({3});
  REQUIRE_THROWS_WITH_AS(copy_(buf, w), doctest::Contains("gradient of src"), Error);
  REQUIRE_THROWS_WITH_AS(add_(buf, w), doctest::Contains("gradient of `other`"), Error);
  CHECK(buf.storage()->version() == 0);
  {
    NoGradGuard no_grad;  // optimizers update parameters like this
    uint64_t v = w.storage()->version();
    add_(w, full({3}, 0.5), -2.0);
    CHECK(w.storage()->version() == v + 1);
    copy_(buf, w);
  }
  check_close(w, {0, 0, 0});
  check_close(buf, {0, 0, 0});
}

TEST_CASE("elementwise: in-place forms detect a modified saved tensor in backward") {
  Tensor a = f32({1, 2}, {2}).requires_grad_();
  Tensor b = f32({3, 4}, {2});
  Tensor y = mul(a, b);  // saves b for a's gradient
  mul_(b, 2.0);
  REQUIRE_THROWS_WITH_AS(backward(y, ones({2})), doctest::Contains("modified in place"), Error);
}

TEST_CASE("elementwise: error messages") {
  Tensor a = zeros({2, 3});
  Tensor b = zeros({4});
  REQUIRE_THROWS_WITH_AS(
      add(a, b), doctest::Contains("add: shapes [2, 3] and [4] cannot be broadcast"), Error);
  REQUIRE_THROWS_WITH_AS(mul(a, b), doctest::Contains("mul: shapes [2, 3] and [4]"), Error);
  REQUIRE_THROWS_WITH_AS(where(boolean({true, false}, {2}), a, 1.0),
                         doctest::Contains("where: shapes [2] and [2, 3] cannot be broadcast"),
                         Error);
  REQUIRE_THROWS_WITH_AS(eq(a, b), doctest::Contains("eq: shapes [2, 3] and [4]"), Error);
  Tensor p = boolean({true}, {1});
  REQUIRE_THROWS_WITH_AS(add(p, p), doctest::Contains("add: arithmetic on bool tensors"), Error);
  REQUIRE_THROWS_WITH_AS(sub(p, p), doctest::Contains("sub: arithmetic on bool tensors"), Error);
  REQUIRE_THROWS_WITH_AS(neg(p), doctest::Contains("neg: arithmetic on a bool tensor"), Error);
  REQUIRE_THROWS_WITH_AS(add(p, 1.0), doctest::Contains("add: arithmetic on a bool tensor"), Error);
  REQUIRE_THROWS_WITH_AS(logical_and(p, a),
                         doctest::Contains("logical_and: b must have dtype bool, got f32"), Error);
  REQUIRE_THROWS_WITH_AS(logical_not(a),
                         doctest::Contains("logical_not: x must have dtype bool, got f32"), Error);
  REQUIRE_THROWS_WITH_AS(where(a, a, a),
                         doctest::Contains("where: cond must have dtype bool, got f32"), Error);
  REQUIRE_THROWS_WITH_AS(add(a, Tensor()), doctest::Contains("add: b is an undefined tensor"),
                         Error);
  REQUIRE_THROWS_WITH_AS(exp(Tensor()), doctest::Contains("exp: x is an undefined tensor"), Error);
  REQUIRE_THROWS_WITH_AS(clamp(a, std::nullopt, std::nullopt),
                         doctest::Contains("clamp: at least one of min and max"), Error);
  // In-place shape and dtype rules.
  REQUIRE_THROWS_WITH_AS(add_(zeros({3}), zeros({2, 3})),
                         doctest::Contains("add_: other of shape [2, 3] does not broadcast to "
                                           "self's shape [3]"),
                         Error);
  REQUIRE_THROWS_WITH_AS(copy_(zeros({3}), zeros({2})),
                         doctest::Contains("copy_: shapes [3] and [2] cannot be broadcast"), Error);
  REQUIRE_THROWS_WITH_AS(add_(zeros({2}, {.dtype = DType::i64}), ones({2})),
                         doctest::Contains("add_: the result has dtype f32, which cannot be "
                                           "written into self of dtype i64"),
                         Error);
  REQUIRE_THROWS_WITH_AS(div_(zeros({2}, {.dtype = DType::i64}), ones({2})),
                         doctest::Contains("div_: true division"), Error);
  REQUIRE_THROWS_WITH_AS(mul_(zeros({2}, {.dtype = DType::i64}), 0.5),
                         doctest::Contains("mul_: the result has dtype f32"), Error);
  REQUIRE_THROWS_WITH_AS(add_(zeros({2}, {.dtype = DType::boolean}), 1.0),
                         doctest::Contains("add_: arithmetic on a bool tensor"), Error);
  REQUIRE_THROWS_WITH_AS(fill_(zeros({1}).expand({3}), 1.0),
                         doctest::Contains("fill_: self (shape [3], strides [0]) is a broadcast"),
                         Error);
  // Cross-device operands need a CUDA build to construct; see tests/backends for CUDA.
}

TEST_CASE("elementwise: backward of binary ops, with broadcasting and mixed dtypes") {
  Tensor a = f64({1, 2, 3, 4, 5, 6}, {2, 3}).requires_grad_();
  Tensor b = f64({0.5, -1, 2}, {3}).requires_grad_();
  Tensor g = f64({1, 1, 1, 1, 1, 1}, {2, 3});

  backward(mul(a, b), g);
  check_close(a.grad(), {0.5, -1, 2, 0.5, -1, 2});
  check_close(b.grad(), {5, 7, 9});  // summed over the broadcast dim
  CHECK(b.grad().shape() == Shape{3});
  a.zero_grad();
  b.zero_grad();

  backward(div(a, b), g);
  check_close(a.grad(), {2, -1, 0.5, 2, -1, 0.5});
  // d(a/b)/db = -a/b^2, summed over rows.
  check_close(b.grad(), {-(1 + 4) / 0.25, -(2 + 5) / 1.0, -(3 + 6) / 4.0});
  a.zero_grad();
  b.zero_grad();

  backward(sub(a, b), g);
  check_close(a.grad(), {1, 1, 1, 1, 1, 1});
  check_close(b.grad(), {-2, -2, -2});
  a.zero_grad();
  b.zero_grad();

  // Ties split the gradient evenly.
  Tensor x = f64({1, 2, 3}, {3}).requires_grad_();
  Tensor y = f64({2, 2, 2}, {3}).requires_grad_();
  backward(maximum(x, y), f64({1, 1, 1}, {3}));
  check_close(x.grad(), {0, 0.5, 1});
  check_close(y.grad(), {1, 0.5, 0});
  x.zero_grad();
  y.zero_grad();
  backward(minimum(x, 2.0), f64({1, 1, 1}, {3}));
  check_close(x.grad(), {1, 0.5, 0});
  x.zero_grad();

  // pow: d/da = b a^(b-1), d/db = a^b log a.
  Tensor base = f64({2, 3}, {2}).requires_grad_();
  Tensor ex = f64({3, 0.5}, {2}).requires_grad_();
  backward(pow(base, ex), f64({1, 1}, {2}));
  check_close(base.grad(), {3 * 4.0, 0.5 / std::sqrt(3.0)}, 1e-12);
  check_close(ex.grad(), {8 * std::log(2.0), std::sqrt(3.0) * std::log(3.0)}, 1e-12);

  // A gradient reaching an f32 input through an f64 op comes back as f32.
  Tensor lo = f32({1, 2}, {2}).requires_grad_();
  Tensor hi = f64({3, 4}, {2});
  Tensor prod = mul(lo, hi);
  CHECK(prod.dtype() == DType::f64);
  backward(prod, f64({1, 1}, {2}));
  CHECK(lo.grad().dtype() == DType::f32);
  check_close(lo.grad(), {3, 4});
  // An integer operand gets no gradient and does not block the float one.
  Tensor fl = f32({1, 2}, {2}).requires_grad_();
  backward(mul(fl, i64({5, 6}, {2})), f32({1, 1}, {2}));
  check_close(fl.grad(), {5, 6});
}

TEST_CASE("elementwise: backward of scalar, unary, clamp and where") {
  std::vector<double> in = {0.5, 1.5, 2.5};
  auto grad_of = [&](auto f) {
    Tensor x = f64(in, {3}).requires_grad_();
    backward(f(x), f64({1, 1, 1}, {3}));
    return x.grad();
  };
  check_close(grad_of([](const Tensor& x) { return add(x, 2.0); }), {1, 1, 1});
  check_close(grad_of([](const Tensor& x) { return rsub(x, 2.0); }), {-1, -1, -1});
  check_close(grad_of([](const Tensor& x) { return mul(x, 3.0); }), {3, 3, 3});
  check_close(grad_of([](const Tensor& x) { return div(x, 4.0); }), {0.25, 0.25, 0.25});
  check_close(grad_of([](const Tensor& x) { return rdiv(x, 2.0); }),
              map(in, [](double v) { return -2 / (v * v); }));
  check_close(grad_of([](const Tensor& x) { return pow(x, 3.0); }),
              map(in, [](double v) { return 3 * v * v; }));
  check_close(grad_of([](const Tensor& x) { return exp(x); }),
              map(in, [](double v) { return std::exp(v); }));
  check_close(grad_of([](const Tensor& x) { return log(x); }),
              map(in, [](double v) { return 1 / v; }));
  check_close(grad_of([](const Tensor& x) { return sqrt(x); }),
              map(in, [](double v) { return 0.5 / std::sqrt(v); }));
  check_close(grad_of([](const Tensor& x) { return tanh(x); }),
              map(in, [](double v) { return 1 - std::tanh(v) * std::tanh(v); }));
  check_close(grad_of([](const Tensor& x) { return sigmoid(x); }), map(in, [](double v) {
                double s = 1 / (1 + std::exp(-v));
                return s * (1 - s);
              }));
  check_close(grad_of([](const Tensor& x) { return relu(sub(x, 1.0)); }), {0, 1, 1});
  check_close(grad_of([](const Tensor& x) { return gelu(x); }), map(in, [](double v) {
                return 0.5 * (1 + std::erf(v / std::sqrt(2.0))) +
                       v * std::exp(-0.5 * v * v) / std::sqrt(2 * std::numbers::pi);
              }));
  check_close(grad_of([](const Tensor& x) { return sin(x); }),
              map(in, [](double v) { return std::cos(v); }));
  // Clamp passes the gradient inside [min, max], bounds included.
  check_close(grad_of([](const Tensor& x) { return clamp(x, 1.5, 2.0); }), {0, 1, 0});

  Tensor a = f64({1, 2, 3}, {3}).requires_grad_();
  Tensor b = f64({4}, {1}).requires_grad_();
  Tensor cond = boolean({true, false, false}, {3});
  backward(where(cond, a, b), f64({1, 2, 3}, {3}));
  check_close(a.grad(), {1, 0, 0});
  check_close(b.grad(), {5});
  CHECK(b.grad().shape() == Shape{1});

  // Comparisons carry no gradient.
  CHECK_FALSE(gt(a, 1.0).requires_grad());
  CHECK(add(a, 1.0).requires_grad());
  {
    NoGradGuard no_grad;
    CHECK_FALSE(add(a, 1.0).requires_grad());
  }
}

TEST_CASE("elementwise: gradient of sum(mul(a, b))") {
  Tensor a = f32({1, 2, 3, 4}, {2, 2}).requires_grad_();
  Tensor b = f32({5, 6}, {2}).requires_grad_();
  Tensor loss = sum(mul(a, b));
  backward(loss);
  check_close(a.grad(), {5, 6, 5, 6});
  check_close(b.grad(), {4, 6});
}

}  // namespace
}  // namespace rw
