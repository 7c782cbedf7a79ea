// Shape-assembling ops: concat, stack, split, chunk, pad, roll, tril/triu and their masks: values
// (matching PyTorch), dtype promotion, zero-size and strided inputs, error messages, and a few
// backward values. (Finite-difference gradchecks of every op live in the op table.)
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/ops.h"
#include "test_util.h"

namespace rw {

using namespace rw::test;

namespace {

void check_values(const Tensor& t, const std::vector<double>& expected) {
  std::vector<double> got = t.to_vector<double>();
  REQUIRE(got.size() == expected.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("element ", i);
    CHECK(got[i] == doctest::Approx(expected[i]));
  }
}

// --- concat / stack ------------------------------------------------------------------------------

TEST_CASE("shape_ops: concat along each dim, with strided and zero-size inputs") {
  Tensor a = f32({1, 2, 3, 4}, {2, 2});
  Tensor b = f32({5, 6}, {2, 1});
  Tensor c = f32({7, 8}, {1, 2});
  Tensor r1 = concat({a, b}, 1);
  CHECK(r1.shape() == Shape{2, 3});
  check_values(r1, {1, 2, 5, 3, 4, 6});
  check_values(concat({a, b}, -1), {1, 2, 5, 3, 4, 6});
  Tensor r0 = concat({a, c, a});
  CHECK(r0.shape() == Shape{5, 2});
  check_values(r0, {1, 2, 3, 4, 7, 8, 1, 2, 3, 4});
  // A transposed input is read through its strides.
  check_values(concat({a.transpose(0, 1), c}, 0), {1, 3, 2, 4, 7, 8});
  // Zero-size inputs contribute nothing.
  Tensor e = zeros({0, 2});
  check_values(concat({e, a, e}, 0), {1, 2, 3, 4});
  CHECK(concat({e, e}, 0).shape() == Shape{0, 2});
  CHECK(concat({a}, 0).shape() == Shape{2, 2});
}

TEST_CASE("shape_ops: concat promotes to a common dtype") {
  Tensor a = f32({1.5f}, {1});
  Tensor i = from_vector<int64_t>({2}, Shape{1});
  Tensor d = f64({3.25}, {1});
  Tensor ai = concat({i, a});
  CHECK(ai.dtype() == DType::f32);
  check_values(ai, {2, 1.5});
  Tensor ad = concat({a, d});
  CHECK(ad.dtype() == DType::f64);
  check_values(ad, {1.5, 3.25});
  CHECK(concat({i, i}).dtype() == DType::i64);
}

TEST_CASE("shape_ops: concat and stack errors name the op and shapes") {
  Tensor a = zeros({2, 2});
  Tensor b = zeros({2, 1});
  CHECK(error_message([&] {
          concat({a, b}, 0);
        }) ==
        "concat: tensor 1 has shape [2, 1] but tensor 0 has shape [2, 2]; they must match except "
        "in dim 0");
  CHECK(error_message([&] {
          concat({a, zeros({2})}, 0);
        }).find("concat: tensor 1 has shape [2]") == 0);
  CHECK(error_message([&] { concat({}, 0); }) == "concat: expected at least one tensor, got none");
  CHECK(error_message([&] {
          concat({a, a}, 2);
        }) == "concat: dim 2 out of range for a tensor of rank 2");
  CHECK(error_message([&] {
          concat({scalar_tensor(1), scalar_tensor(2)});
        }).find("concat: cannot concatenate 0-d tensors") == 0);
  CHECK(error_message([&] {
          stack({a, b});
        }) == "stack: tensor 1 has shape [2, 1] but tensor 0 has shape [2, 2]; all must be equal");
}

TEST_CASE("shape_ops: stack inserts a new dim") {
  Tensor a = f32({1, 2, 3}, {3});
  Tensor b = f32({4, 5, 6}, {3});
  Tensor s0 = stack({a, b});
  CHECK(s0.shape() == Shape{2, 3});
  check_values(s0, {1, 2, 3, 4, 5, 6});
  Tensor s1 = stack({a, b}, -1);
  CHECK(s1.shape() == Shape{3, 2});
  check_values(s1, {1, 4, 2, 5, 3, 6});
  Tensor sc = stack({scalar_tensor(1), scalar_tensor(2)});
  CHECK(sc.shape() == Shape{2});
}

TEST_CASE("shape_ops: concat and stack backward give each input its slice") {
  Tensor x = f32({1, 2, 3, 4}, {2, 2});
  Tensor y = f64({5, 6}, {2, 1});
  x.requires_grad_();
  y.requires_grad_();
  Tensor w = f64({1, 2, 3, 4, 5, 6}, {2, 3});
  backward(sum(mul(concat({x, y}, 1), w)));
  CHECK(x.grad().dtype() == DType::f32);  // the gradient keeps the input's dtype
  check_values(x.grad(), {1, 2, 4, 5});
  check_values(y.grad(), {3, 6});
  x.zero_grad();
  Tensor z = f32({0, 0}, {2});  // does not require grad
  backward(sum(mul(stack({x.select(0, 1), z}), f32({1, 2, 3, 4}, {2, 2}))));
  check_values(x.grad(), {0, 0, 1, 2});
}

// --- split / chunk -------------------------------------------------------------------------------

TEST_CASE("shape_ops: split and chunk return views with torch's piece sizes") {
  Tensor x = iota({7});
  std::vector<Tensor> s = split(x, 3);
  REQUIRE(s.size() == 3);
  check_values(s[0], {0, 1, 2});
  check_values(s[2], {6});
  CHECK(s[1].storage() == x.storage());         // a view, no copy
  std::vector<Tensor> c = chunk(iota({6}), 4);  // ceil(6/4) = 2 per piece: 3 pieces
  REQUIRE(c.size() == 3);
  check_values(c[2], {4, 5});
  std::vector<Tensor> c2 = chunk(iota({2, 5}), 2, 1);
  REQUIRE(c2.size() == 2);
  CHECK(c2[0].shape() == Shape{2, 3});
  CHECK(c2[1].shape() == Shape{2, 2});
  check_values(c2[1], {3, 4, 8, 9});
  CHECK(split(zeros({0, 2}), 3).size() == 1);
  CHECK(chunk(zeros({0}), 3).size() == 3);
  CHECK(error_message([&] { split(x, 0); }).find("split: split_size must be positive, got 0") == 0);
  CHECK(error_message([&] { chunk(x, 0); }) == "chunk: chunks must be positive, got 0");
}

TEST_CASE("shape_ops: gradients flow through split pieces") {
  Tensor x = iota({6});
  x.requires_grad_();
  std::vector<Tensor> s = split(x, 2);
  backward(add(sum(mul(s[1], 2.0)), sum(s[2])));
  check_values(x.grad(), {0, 0, 2, 2, 1, 1});
}

// --- pad -----------------------------------------------------------------------------------------

TEST_CASE("shape_ops: pad follows torch.nn.functional.pad") {
  Tensor x = iota({2, 3});  // [[0, 1, 2], [3, 4, 5]]
  Tensor p1 = pad(x, {1, 2});
  CHECK(p1.shape() == Shape{2, 6});
  check_values(p1, {0, 0, 1, 2, 0, 0, 0, 3, 4, 5, 0, 0});
  Tensor p2 = pad(x, {1, 0, 0, 2}, 9);  // last dim (1, 0), second-to-last (0, 2)
  CHECK(p2.shape() == Shape{4, 4});
  check_values(p2, {9, 0, 1, 2, 9, 3, 4, 5, 9, 9, 9, 9, 9, 9, 9, 9});
  Tensor crop = pad(x, {-1, 1});  // negative pads crop
  CHECK(crop.shape() == Shape{2, 3});
  check_values(crop, {1, 2, 0, 4, 5, 0});
  check_values(pad(x, {0, 0, -1, 0}), {3, 4, 5});
  check_values(pad(x, {-1, -1, 1, -1}), {0, 1});
  CHECK(pad(x, {-2, -1}).shape() == Shape{2, 0});
  CHECK(pad(x, {}).shape() == Shape{2, 3});
  // Strided input and an integer dtype.
  check_values(pad(x.transpose(0, 1), {0, 1}), {0, 3, 0, 1, 4, 0, 2, 5, 0});
  Tensor pi = pad(from_vector<int64_t>({1, 2}, Shape{2}), {1, 1}, -1);
  CHECK(pi.dtype() == DType::i64);
  CHECK(pi.to_vector<int64_t>() == std::vector<int64_t>{-1, 1, 2, -1});
}

TEST_CASE("shape_ops: pad errors") {
  Tensor x = zeros({2, 3});
  CHECK(error_message([&] { pad(x, {1}); }).find("pad: pads must come in (before, after) pairs") ==
        0);
  CHECK(error_message([&] {
          pad(x, {1, 1, 1, 1, 1, 1});
        }) == "pad: 3 padded dims given for a tensor of rank 2 (shape [2, 3])");
  CHECK(error_message([&] {
          pad(x, {-2, -2});
        }) == "pad: pads (-2, -2) make dim 1 of extent 3 negative (shape [2, 3])");
}

TEST_CASE("shape_ops: pad backward takes the matching slice, zeros where cropped") {
  Tensor x = iota({2, 3});
  x.requires_grad_();
  Tensor w = iota({2, 6});
  backward(sum(mul(pad(x, {1, 2}), w)));
  check_values(x.grad(), {1, 2, 3, 7, 8, 9});
  x.zero_grad();
  backward(sum(mul(pad(x, {-1, 1}), iota({2, 3}))));
  check_values(x.grad(), {0, 0, 1, 0, 3, 4});
}

// --- roll ----------------------------------------------------------------------------------------

TEST_CASE("shape_ops: roll wraps around in both directions") {
  Tensor x = iota({5});
  check_values(roll(x, 1, 0), {4, 0, 1, 2, 3});
  check_values(roll(x, -1, 0), {1, 2, 3, 4, 0});
  check_values(roll(x, 7, 0), {3, 4, 0, 1, 2});
  check_values(roll(x, 5, 0), {0, 1, 2, 3, 4});
  Tensor m = iota({2, 3});
  check_values(roll(m, 1, 1), {2, 0, 1, 5, 3, 4});
  check_values(roll(m, 1, -2), {3, 4, 5, 0, 1, 2});
  check_values(roll(m.transpose(0, 1), 1, 0), {2, 5, 0, 3, 1, 4});
  CHECK(roll(zeros({0, 3}), 2, 0).shape() == Shape{0, 3});
}

TEST_CASE("shape_ops: roll backward rolls the gradient back") {
  Tensor x = iota({4});
  x.requires_grad_();
  backward(sum(mul(roll(x, 1, 0), f32({1, 2, 3, 4}, {4}))));
  check_values(x.grad(), {2, 3, 4, 1});
}

// --- tril / triu ---------------------------------------------------------------------------------

TEST_CASE("shape_ops: tril and triu with diagonal offsets") {
  Tensor x = add(iota({3, 4}), 1.0);
  check_values(tril(x), {1, 0, 0, 0, 5, 6, 0, 0, 9, 10, 11, 0});
  check_values(tril(x, 1), {1, 2, 0, 0, 5, 6, 7, 0, 9, 10, 11, 12});
  check_values(tril(x, -1), {0, 0, 0, 0, 5, 0, 0, 0, 9, 10, 0, 0});
  check_values(triu(x), {1, 2, 3, 4, 0, 6, 7, 8, 0, 0, 11, 12});
  check_values(triu(x, 1), {0, 2, 3, 4, 0, 0, 7, 8, 0, 0, 0, 12});
  check_values(triu(x, -1), {1, 2, 3, 4, 5, 6, 7, 8, 0, 10, 11, 12});
  // Batched and strided: each [rows, cols] matrix is masked the same way.
  Tensor b = stack({x, x});
  Tensor tb = tril(b);
  CHECK(tb.shape() == Shape{2, 3, 4});
  check_values(tb.select(0, 1), {1, 0, 0, 0, 5, 6, 0, 0, 9, 10, 11, 0});
  check_values(triu(x.transpose(0, 1)), {1, 5, 9, 0, 6, 10, 0, 0, 11, 0, 0, 0});
  CHECK(error_message([&] { tril(zeros({3})); }) ==
        "tril: expected a tensor with at least 2 dims, got shape [3]");
}

TEST_CASE("shape_ops: tril_mask and triu_mask") {
  Tensor lo = tril_mask(2, 3);
  CHECK(lo.dtype() == DType::boolean);
  CHECK(lo.shape() == Shape{2, 3});
  CHECK(lo.to_vector<bool>() == std::vector<bool>{true, false, false, true, true, false});
  CHECK(triu_mask(2, 3, 1).to_vector<bool>() ==
        std::vector<bool>{false, true, true, false, false, true});
  CHECK(tril_mask(0, 3).shape() == Shape{0, 3});
  CHECK(error_message([&] { triu_mask(-1, 2); }) ==
        "triu_mask: rows and cols must be >= 0, got -1 and 2");
}

TEST_CASE("shape_ops: tril backward masks the gradient") {
  Tensor x = iota({2, 2});
  x.requires_grad_();
  backward(sum(mul(tril(x), f32({1, 2, 3, 4}, {2, 2}))));
  check_values(x.grad(), {1, 0, 3, 4});
  x.zero_grad();
  backward(sum(triu(x, 1)));
  check_values(x.grad(), {0, 1, 0, 0});
}

}  // namespace
}  // namespace rw
