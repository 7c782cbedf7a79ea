// Autocast (core/autocast.h): scopes, the dtype each op class computes and returns in, f32
// gradients for f32 parameters, matmul equal to the f32 product of the rounded operands, and the
// reversible stack replaying a block in the precision its forward ran in.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "autograd/reversible.h"
#include "autograd/tape.h"
#include "core/autocast.h"
#include "core/ops.h"
#include "test_util.h"

namespace rw {
namespace {

// The spacing of the half type's mantissa relative to a value: one unit in the last place at 1.
double ulp_at_one(DType t) { return t == DType::bf16 ? 0x1p-7 : 0x1p-10; }

// max |a - b| / max(|b|, tiny), over all elements (read as doubles).
double max_rel(const Tensor& a, const Tensor& b) {
  const double scale = std::max(max(abs(b.to(DType::f64))).item(), 1e-30);
  return max(abs(sub(a.to(DType::f64), b.to(DType::f64)))).item() / scale;
}

TEST_CASE("AutocastScope: off by default, nests and restores, f32 turns it off") {
  CHECK(autocast_dtype() == DType::f32);
  CHECK_FALSE(autocast_enabled());
  {
    AutocastScope outer(DType::bf16);
    CHECK(autocast_dtype() == DType::bf16);
    CHECK(autocast_enabled());
    {
      AutocastScope inner(DType::f16);
      CHECK(autocast_dtype() == DType::f16);
      {
        AutocastScope off(DType::f32);
        CHECK_FALSE(autocast_enabled());
        Generator gen(1);
        Tensor a = randn({2, 3}, gen), b = randn({3, 2}, gen);
        CHECK(matmul(a, b).dtype() == DType::f32);
      }
      CHECK(autocast_dtype() == DType::f16);
    }
    CHECK(autocast_dtype() == DType::bf16);
  }
  CHECK(autocast_dtype() == DType::f32);
}

TEST_CASE("AutocastScope rejects dtypes other than bf16, f16 and f32") {
  for (DType bad : {DType::f64, DType::i64, DType::boolean}) {
    const std::string msg = test::error_message([&] { AutocastScope scope(bad); });
    CHECK(test::contains(msg, "AutocastScope: the compute dtype must be bf16 or f16"));
    CHECK(test::contains(msg, fmt::format("got {}", bad)));
    CHECK(autocast_dtype() == DType::f32);  // a failed scope changed nothing
  }
}

TEST_CASE("autocast: matmul-class ops return the compute dtype, sensitive ops f32") {
  Generator gen(2);
  const Tensor a = randn({2, 4, 3}, gen), b = randn({3, 5}, gen);
  const Tensor w = randn({5, 3}, gen), bias = randn({5}, gen);
  const Tensor targets = test::i64({0, 4, 2, 1, 3, 0, 1, 2}, {2, 4});
  for (DType low : {DType::bf16, DType::f16}) {
    INFO("compute dtype ", low);
    AutocastScope autocast(low);
    Tensor y = matmul(a, b);
    CHECK(y.dtype() == low);
    CHECK(linear(a, w, bias).dtype() == low);
    CHECK(linear(a, w).dtype() == low);
    // The other half type is cast too; f64 is never cast.
    CHECK(matmul(a.to(low == DType::bf16 ? DType::f16 : DType::bf16), b).dtype() == low);
    CHECK(matmul(a.to(DType::f64), b.to(DType::f64)).dtype() == DType::f64);
    // Sensitive ops: low-precision inputs computed and returned in f32; f32 stays f32.
    CHECK(softmax(y, -1).dtype() == DType::f32);
    CHECK(log_softmax(y, -1).dtype() == DType::f32);
    CHECK(logsumexp(y, {-1}).dtype() == DType::f32);
    CHECK(layer_norm(y, ones({5}), zeros({5})).dtype() == DType::f32);
    CHECK(cross_entropy(y, targets).dtype() == DType::f32);
    CHECK(sum(y).dtype() == DType::f32);
    CHECK(mean(y, {0}).dtype() == DType::f32);
    CHECK(softmax(a, -1).dtype() == DType::f32);
    CHECK(softmax(a.to(DType::f64), -1).dtype() == DType::f64);
    // Everything else keeps its inputs' dtype, with the usual promotion.
    CHECK(relu(y).dtype() == low);
    CHECK(add(y, ones({5})).dtype() == DType::f32);
  }
  // Outside the scope nothing is cast.
  CHECK(matmul(a, b).dtype() == DType::f32);
  CHECK(softmax(a.to(DType::bf16), -1).dtype() == DType::bf16);
}

TEST_CASE("autocast: matmul equals the f32 product of the rounded operands, rounded once") {
  Generator gen(3);
  const Tensor a = randn({3, 16, 24}, gen), b = randn({24, 8}, gen), bias = randn({8}, gen);
  const Tensor w = b.mT().contiguous();  // [8, 24]: linear(a, w) = a @ b
  for (DType low : {DType::bf16, DType::f16}) {
    INFO("compute dtype ", low);
    auto rounded = [&](const Tensor& t) { return t.to(low).to(DType::f64); };
    // The exact product of the rounded operands (f64 is exact enough here), then rounded once.
    const Tensor expected = matmul(rounded(a), rounded(b));
    const Tensor expected_linear = add(expected, rounded(bias));
    Tensor got, got_linear;
    {
      AutocastScope autocast(low);
      got = matmul(a, b);
      got_linear = linear(a, w, bias);
    }
    // One rounding of an f32-accumulated sum: within one unit in the last place of the half
    // type, far below the error of rounding the product of unrounded operands' terms.
    CHECK(max_rel(got, expected) <= ulp_at_one(low));
    CHECK(max_rel(got_linear, expected_linear) <= ulp_at_one(low));
    // Not the f32 product of the unrounded operands, rounded afterwards: the operands were cast.
    CHECK(max_rel(got, matmul(a, b).to(low)) > 0);
  }
}

TEST_CASE("autocast: f32 parameters get f32 gradients through the recorded casts") {
  Generator gen(4);
  Tensor x = randn({6, 5}, gen).requires_grad_();
  Tensor w = randn({3, 5}, gen).requires_grad_();
  Tensor bias = randn({3}, gen).requires_grad_();
  Tensor m = randn({3, 3}, gen).requires_grad_();
  for (DType low : {DType::bf16, DType::f16}) {
    INFO("compute dtype ", low);
    x.set_grad(Tensor());
    w.set_grad(Tensor());
    bias.set_grad(Tensor());
    m.set_grad(Tensor());
    Tensor loss, ref_loss;
    {
      AutocastScope autocast(low);
      Tensor h = matmul(linear(x, w, bias), m);
      CHECK(h.dtype() == low);
      loss = mean(mul(log_softmax(h, -1), softmax(h, -1)));
      CHECK(loss.dtype() == DType::f32);
      backward(loss);
    }
    for (const Tensor* p : {&x, &w, &bias, &m}) {
      REQUIRE(p->grad().defined());
      CHECK(p->grad().dtype() == DType::f32);
    }
    // Close to the f32 gradients (a few roundings of the half type along the way).
    Tensor gx = x.grad(), gw = w.grad();
    x.set_grad(Tensor());
    w.set_grad(Tensor());
    Tensor h = matmul(linear(x, w, bias), m);
    backward(mean(mul(log_softmax(h, -1), softmax(h, -1))));
    CHECK(max_rel(gx, x.grad()) < 20 * ulp_at_one(low));
    CHECK(max_rel(gw, w.grad()) < 20 * ulp_at_one(low));
  }
}

// A block F = x @ w (through linear) returns the compute dtype under autocast: the stack casts it
// back to the residual's dtype, and its backward replays F in the precision of the forward even
// when backward runs outside the scope.
TEST_CASE("autocast: the reversible stack keeps f32 halves and replays blocks in their precision") {
  Generator gen(5);
  Tensor x = randn({4, 6}, gen).requires_grad_();
  Tensor wf = mul(randn({6, 6}, gen), 0.3).requires_grad_();
  Tensor wg = mul(randn({6, 6}, gen), 0.3).requires_grad_();
  std::vector<ReversibleBlock> blocks{
      {.f = {.forward = [&](const Tensor& h) { return tanh(linear(h, wf)); },
             .parameters = [&] { return std::vector<Tensor>{wf}; }},
       .g = {.forward = [&](const Tensor& h) { return linear(h, wg); },
             .parameters = [&] { return std::vector<Tensor>{wg}; }}}};
  auto grads = [&](bool backward_inside) {
    for (Tensor* t : {&x, &wf, &wg}) t->set_grad(Tensor());
    Tensor loss;
    {
      AutocastScope autocast(DType::bf16);
      auto [y1, y2] = reversible_stack(blocks, x, x);
      CHECK(y1.dtype() == DType::f32);
      CHECK(y2.dtype() == DType::f32);
      loss = sum(square(join_mean(y1, y2)));
      if (backward_inside) backward(loss);
    }
    if (!backward_inside) backward(loss);
    return std::vector<Tensor>{x.grad(), wf.grad(), wg.grad()};
  };
  const std::vector<Tensor> inside = grads(true), outside = grads(false);
  for (std::size_t i = 0; i < inside.size(); ++i) {
    CHECK(inside[i].dtype() == DType::f32);
    CHECK(max_rel(outside[i], inside[i]) == 0);
  }
  // The plain residual mode casts too.
  AutocastScope autocast(DType::f16);
  auto [y1, y2] = reversible_stack(blocks, x, x, {.reversible = false});
  CHECK(y1.dtype() == DType::f32);
}

}  // namespace
}  // namespace rw
