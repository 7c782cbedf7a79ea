// The tape: recording, backward, accumulation, retain_graph, no-grad, local tape scopes, the
// version counter, sweeping of dead graphs, differentiable views and error messages.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "autograd/tape.h"
#include "core/allocator.h"
#include "core/ops.h"
#include "core/tensor.h"
#include "test_util.h"

namespace rw {

using namespace rw::test;

namespace {

Tensor leaf(std::vector<float> v, Shape shape) {
  Tensor t = from_vector<float>(v, std::move(shape));
  t.requires_grad_();
  return t;
}
Tensor leaf(std::vector<float> v) {
  Shape s{static_cast<int64_t>(v.size())};
  return leaf(std::move(v), s);
}

// --- basics --------------------------------------------------------------------------------

TEST_CASE("y = a*b + a: backward gives b + 1 and a") {
  Tensor a = leaf({1, 2, 3});
  Tensor b = leaf({4, 5, 6});
  CHECK(a.is_leaf());
  CHECK(a.requires_grad());
  CHECK_FALSE(a.grad().defined());
  const std::size_t before = current_tape().size();
  Tensor y = add(mul(a, b), a);
  CHECK(current_tape().size() > before);
  CHECK(y.requires_grad());
  CHECK_FALSE(y.is_leaf());
  CHECK(vals(y) == std::vector<float>{5, 12, 21});
  backward(sum(y));
  CHECK(vals(a.grad()) == std::vector<float>{5, 6, 7});
  CHECK(vals(b.grad()) == std::vector<float>{1, 2, 3});
  CHECK_FALSE(y.grad().defined());  // only leaves keep a grad
  CHECK_FALSE(a.grad().requires_grad());
}

TEST_CASE("explicit output gradient, and the leaf grad is a fresh unaliased copy") {
  Tensor a = leaf({1, 2, 3});
  Tensor y = mul(a, 3.0);
  Tensor g = from_vector<float>({1, 10, 100});
  backward(y, g);
  CHECK(vals(a.grad()) == std::vector<float>{3, 30, 300});
  // A view's backward hands the gradient through unchanged; the leaf must still own its grad.
  Tensor b = leaf({1, 2, 3});
  Tensor v = b.view({3, 1});
  Tensor gv = from_vector<float>({4, 5, 6}, Shape{3, 1});
  backward(v, gv);
  CHECK(b.grad().storage() != gv.storage());
  CHECK(b.grad().is_contiguous());
  fill_(gv, 0);
  CHECK(vals(b.grad()) == std::vector<float>{4, 5, 6});
  // Backward of a leaf itself passes the gradient straight through.
  Tensor x = leaf({1, 2});
  backward(x, from_vector<float>({7, 8}));
  CHECK(vals(x.grad()) == std::vector<float>{7, 8});
}

TEST_CASE("an input used twice gets both contributions") {
  Tensor a = leaf({1, 2, 3});
  backward(sum(mul(a, a)));
  CHECK(vals(a.grad()) == std::vector<float>{2, 4, 6});
  Tensor b = leaf({1, 2});
  Tensor h = mul(b, 2.0);  // used by two later ops: a diamond
  backward(sum(add(mul(h, h), h)));
  // d/db (4b^2 + 2b) = 8b + 2
  CHECK(vals(b.grad()) == std::vector<float>{10, 18});
}

TEST_CASE("several roots at once") {
  Tensor a = leaf({1, 2});
  Tensor y1 = sum(mul(a, 2.0));
  Tensor y2 = mul(a, a);
  std::vector<Tensor> roots{y1, y2};
  std::vector<Tensor> grads{Tensor(), from_vector<float>({1, 1})};
  backward(roots, grads);
  CHECK(vals(a.grad()) == std::vector<float>{4, 6});
}

TEST_CASE("gradients accumulate across two backward calls") {
  Tensor a = leaf({1, 2, 3});
  Tensor b = leaf({4, 5, 6});
  backward(sum(mul(a, b)));
  backward(sum(mul(a, b)));  // a second forward, a second backward
  CHECK(vals(a.grad()) == std::vector<float>{8, 10, 12});
  CHECK(vals(b.grad()) == std::vector<float>{2, 4, 6});
  a.zero_grad();
  CHECK_FALSE(a.grad().defined());
  backward(sum(mul(a, b)));
  CHECK(vals(a.grad()) == std::vector<float>{4, 5, 6});
  CHECK(vals(b.grad()) == std::vector<float>{3, 6, 9});
}

TEST_CASE("backward twice on one graph needs retain_graph") {
  Tensor a = leaf({1, 2, 3});
  Tensor b = leaf({4, 5, 6});
  Tensor loss = sum(add(mul(a, b), a));
  backward(loss);
  std::string msg = error_message([&] { backward(loss); });
  CHECK(contains(msg, "backward"));
  CHECK(contains(msg, "retain_graph"));
  CHECK(vals(a.grad()) == std::vector<float>{5, 6, 7});  // the failed call changed nothing

  // A later result built on a freed intermediate cannot reach the leaves either.
  Tensor c = leaf({1, 2});
  Tensor h = mul(c, c);
  backward(sum(h));
  CHECK(contains(error_message([&] { backward(sum(mul(h, 2.0))); }), "retain_graph"));

  // With retain_graph the second backward accumulates; the graph is freed by the last one.
  Tensor x = leaf({1, 2, 3});
  Tensor w = leaf({4, 5, 6});
  Tensor l2 = sum(add(mul(x, w), x));
  backward(l2, Tensor(), {.retain_graph = true});
  backward(l2, Tensor(), {.retain_graph = true});
  CHECK(vals(x.grad()) == std::vector<float>{10, 12, 14});
  CHECK(vals(w.grad()) == std::vector<float>{2, 4, 6});
  backward(l2);
  CHECK(vals(x.grad()) == std::vector<float>{15, 18, 21});
  CHECK_THROWS_AS(backward(l2), Error);
}

// --- grad mode -----------------------------------------------------------------------------

TEST_CASE("no-grad records nothing") {
  Tensor a = leaf({1, 2, 3});
  Tensor b = leaf({4, 5, 6});
  CHECK(grad_mode_enabled());
  current_tape().sweep();  // so that no automatic sweep shrinks the tape below
  const std::size_t before = current_tape().size();
  {
    NoGradGuard no_grad;
    CHECK_FALSE(grad_mode_enabled());
    Tensor y = add(mul(a, b), a);
    CHECK_FALSE(y.requires_grad());
    CHECK(y.is_leaf());
    Tensor v = a.transpose(0, 0).narrow(0, 1, 2).reshape({2, 1}).expand({2, 3});
    CHECK_FALSE(v.requires_grad());
    CHECK_FALSE(a.clone().requires_grad());
    CHECK_FALSE(a.to(DType::f64).requires_grad());
    {
      NoGradGuard nested;
      CHECK_FALSE(grad_mode_enabled());
    }
    CHECK_FALSE(grad_mode_enabled());
    {
      EnableGradGuard enable;
      CHECK(grad_mode_enabled());
      CHECK(mul(a, b).requires_grad());
    }
    CHECK_FALSE(grad_mode_enabled());
  }
  CHECK(grad_mode_enabled());
  CHECK(current_tape().size() == before + 1);  // only the EnableGradGuard block's mul
  // Tensors that do not require grad record nothing with grad mode on either.
  const std::size_t before2 = current_tape().size();
  Tensor p = from_vector<float>({1, 2});
  Tensor q = add(mul(p, p), p).transpose(0, 0).reshape({2, 1});
  CHECK_FALSE(q.requires_grad());
  CHECK(current_tape().size() == before2);
  CHECK_FALSE(needs_grad({&p, &q}));
  CHECK(needs_grad({&p, &a}));
  {
    NoGradGuard no_grad;
    CHECK_FALSE(needs_grad({&p, &a}));
  }
}

TEST_CASE("detach cuts the graph") {
  Tensor a = leaf({1, 2});
  Tensor d = mul(a, 3.0).detach();
  CHECK_FALSE(d.requires_grad());
  Tensor y = add(mul(a, d), a);  // d is a constant
  backward(sum(y));
  CHECK(vals(a.grad()) == std::vector<float>{4, 7});
}

// --- local tapes ---------------------------------------------------------------------------

TEST_CASE("a TapeScope is independent of the outer tape") {
  Tensor x = leaf({1, 2, 3});
  Tensor w = leaf({2, 2, 2});
  Tensor y = mul(x, w);  // on the outer tape
  Tensor outer_loss = sum(y);
  Tape& outer = current_tape();
  const std::size_t outer_size = outer.size();
  {
    NoGradGuard no_grad;  // a scope enables grad mode even inside a no-grad region
    TapeScope scope;
    CHECK(grad_mode_enabled());
    CHECK(&current_tape() == &scope.tape());
    CHECK(scope.tape().size() == 0);
    // The inner graph's leaf is a detached copy of an outer tensor (as a reversible block
    // recomputes its input).
    Tensor yd = y.detach().requires_grad_();
    Tensor z = sum(mul(yd, yd));
    CHECK(scope.tape().size() > 0);
    CHECK(outer.size() == outer_size);
    backward(z);
    CHECK(vals(yd.grad()) == std::vector<float>{4, 8, 12});
    // The outer leaves are untouched.
    CHECK_FALSE(x.grad().defined());
    CHECK_FALSE(w.grad().defined());
    // An outer result cannot be differentiated on the inner tape.
    CHECK(contains(error_message([&] { backward(outer_loss); }), "another tape"));
    {
      TapeScope nested;
      CHECK(&current_tape() == &nested.tape());
      Tensor n = sum(mul(yd, 3.0));
      CHECK(nested.tape().size() > 0);
      backward(n);
      CHECK(vals(yd.grad()) == std::vector<float>{7, 11, 15});
    }
    CHECK(&current_tape() == &scope.tape());
  }
  CHECK(grad_mode_enabled());
  CHECK(&current_tape() == &outer);
  CHECK(outer.size() == outer_size);
  // The outer graph still gives the right gradients afterwards.
  backward(outer_loss);
  CHECK(vals(x.grad()) == std::vector<float>{2, 2, 2});
  CHECK(vals(w.grad()) == std::vector<float>{1, 2, 3});
}

TEST_CASE("a TapeScope restores a disabled grad mode") {
  NoGradGuard no_grad;
  { TapeScope scope; }
  CHECK_FALSE(grad_mode_enabled());
}

// --- version counter -----------------------------------------------------------------------

TEST_CASE("an in-place write into a saved input makes backward fail") {
  SUBCASE("the modified input requires grad (written under NoGradGuard)") {
    Tensor x = leaf({1, 2, 3});
    Tensor w = leaf({4, 5, 6});
    Tensor y = mul(x, w);
    {
      NoGradGuard no_grad;
      mul_(x, 2.0);
    }
    std::string msg = error_message([&] { backward(sum(y)); });
    CHECK(contains(msg, "modified in place"));
    CHECK(contains(msg, "mul"));
    CHECK(contains(msg, "[3]"));
  }
  SUBCASE("the modified input does not require grad but is saved for the other's gradient") {
    Tensor x = from_vector<float>({1, 2, 3});
    Tensor w = leaf({4, 5, 6});
    Tensor y = mul(x, w);
    mul_(x, 2.0);
    CHECK(contains(error_message([&] { backward(sum(y)); }), "modified in place"));
  }
  SUBCASE("a write through a view of the saved tensor counts too") {
    Tensor x = from_vector<float>({1, 2, 3});
    Tensor w = leaf({4, 5, 6});
    Tensor y = mul(x, w);
    fill_(x.narrow(0, 1, 1), 0);
    CHECK(contains(error_message([&] { backward(sum(y)); }), "modified in place"));
  }
  SUBCASE("a write before the op is fine") {
    Tensor x = from_vector<float>({1, 2, 3});
    Tensor w = leaf({4, 5, 6});
    mul_(x, 2.0);
    backward(sum(mul(x, w)));
    CHECK(vals(w.grad()) == std::vector<float>{2, 4, 6});
  }
}

TEST_CASE("SavedTensor checks the version itself") {
  Tensor t = from_vector<float>({1, 2});
  SavedTensor saved(t);
  CHECK(saved.defined());
  CHECK(vals(saved.get("op")) == std::vector<float>{1, 2});
  CHECK_FALSE(saved.get("op").requires_grad());
  t.storage()->bump_version();
  std::string msg = error_message([&] { saved.get("my_op"); });
  CHECK(contains(msg, "my_op"));
  CHECK(contains(msg, "modified in place"));
  CHECK_FALSE(SavedTensor(Tensor()).defined());
  CHECK_FALSE(SavedTensor().get("op").defined());
}

TEST_CASE("an in-place op on a tensor that requires grad is refused in grad mode") {
  Tensor x = leaf({1, 2});
  std::string msg = error_message([&] { mul_(x, 2.0); });
  CHECK(contains(msg, "mul_"));
  CHECK(contains(msg, "requires grad"));
  CHECK(vals(x) == std::vector<float>{1, 2});
}

// --- lifetime ------------------------------------------------------------------------------

TEST_CASE("dead graphs are swept and their memory returns") {
  Tensor x = leaf(std::vector<float>(1000, 0.5f));
  Tensor w = leaf(std::vector<float>(1000, 2.0f));
  current_tape().sweep();
  const std::size_t tape_before = current_tape().size();
  const int64_t mem_before = memory_stats().allocated_bytes;
  std::size_t max_tape = 0;
  int64_t max_mem = 0;
  constexpr int kIters = 3000;
  for (int i = 0; i < kIters; ++i) {
    Tensor y = mul(x, w);
    Tensor z = mul(y, y);  // saves y: 4000 bytes per iteration that only the tape holds
    Tensor loss = sum(z);
    max_tape = std::max(max_tape, current_tape().size());
    max_mem = std::max(max_mem, memory_stats().allocated_bytes - mem_before);
  }
  // Without sweeping the tape would hold >= 3 nodes and >= 4000 bytes per iteration.
  CHECK(max_tape < 2048);
  CHECK(max_mem < int64_t{kIters} * 4000 / 2);
  current_tape().sweep();
  CHECK(current_tape().size() == tape_before);
  CHECK(memory_stats().allocated_bytes == mem_before);
  // The leaves still work.
  backward(sum(mul(x, w)));
  CHECK(vals(x.grad()).at(7) == 2.0f);
}

TEST_CASE("a backward frees its nodes' saved tensors") {
  Tensor x = leaf(std::vector<float>(1000, 1.0f));
  const int64_t before = memory_stats().allocated_bytes;
  Tensor loss = sum(mul(mul(x, 2.0), x));  // the inner product's output is saved, nothing holds it
  CHECK(memory_stats().allocated_bytes > before + 4000);
  backward(loss);
  x.zero_grad();
  CHECK(memory_stats().allocated_bytes == before + static_cast<int64_t>(loss.nbytes()));
}

// --- errors --------------------------------------------------------------------------------

TEST_CASE("backward on a non-scalar root needs an explicit gradient") {
  Tensor a = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor y = mul(a, 2.0);
  std::string msg = error_message([&] { backward(y); });
  CHECK(contains(msg, "[2, 3]"));
  CHECK(contains(msg, "gradient"));
  std::string shape = error_message([&] { backward(y, ones({3, 2})); });
  CHECK(contains(shape, "[3, 2]"));
  CHECK(contains(shape, "[2, 3]"));
  std::string dtype = error_message([&] { backward(y, ones({2, 3}, {.dtype = DType::f64})); });
  CHECK(contains(dtype, "f64"));
  CHECK(contains(dtype, "f32"));
  backward(y, ones({2, 3}));
  CHECK(vals(a.grad()) == std::vector<float>(6, 2.0f));
  // A one-element root of any rank gets an implied gradient of one.
  Tensor b = leaf({3}, {1, 1});
  backward(mul(b, b));
  CHECK(vals(b.grad()) == std::vector<float>{6});
}

TEST_CASE("backward of a root that does not require grad is an error") {
  std::string msg = error_message([] { backward(ones({2, 2})); });
  CHECK(contains(msg, "does not require grad"));
  CHECK(contains(msg, "[2, 2]"));
  Tensor a = leaf({1, 2});
  Tensor y;
  {
    NoGradGuard no_grad;
    y = sum(mul(a, a));
  }
  CHECK(contains(error_message([&] { backward(y); }), "does not require grad"));
}

TEST_CASE("requires_grad_ rules") {
  std::string msg = error_message([] { arange(3).requires_grad_(); });
  CHECK(contains(msg, "requires_grad_"));
  CHECK(contains(msg, "i64"));
  CHECK_THROWS_AS(zeros({2}, {.dtype = DType::i32, .requires_grad = true}), Error);
  CHECK_THROWS_AS(zeros({2}, {.dtype = DType::boolean}).requires_grad_(), Error);
  CHECK(ones({2}, {.dtype = DType::f64, .requires_grad = true}).requires_grad());
  CHECK(ones({2}, {.dtype = DType::bf16}).requires_grad_().requires_grad());

  Tensor a = leaf({1, 2});
  Tensor y = mul(a, 2.0);
  CHECK(contains(error_message([&] { y.requires_grad_(false); }), "leaf"));
  a.requires_grad_(false);
  CHECK_FALSE(a.requires_grad());
  CHECK(a.is_leaf());
  // Turning it on again is idempotent.
  a.requires_grad_().requires_grad_();
  CHECK(a.requires_grad());
}

TEST_CASE("set_grad and zero_grad") {
  Tensor a = leaf({1, 2});
  a.set_grad(from_vector<float>({5, 6}));
  CHECK(vals(a.grad()) == std::vector<float>{5, 6});
  backward(sum(a));
  CHECK(vals(a.grad()) == std::vector<float>{6, 7});
  CHECK(contains(error_message([&] { a.set_grad(ones({3})); }), "[3]"));
  CHECK_THROWS_AS(from_vector<float>({1}).set_grad(ones({1})), Error);
  Tensor y = mul(a, 1.0);
  CHECK_THROWS_AS(y.set_grad(ones({2})), Error);
  a.zero_grad();
  CHECK_FALSE(a.grad().defined());
}

// --- differentiable views ------------------------------------------------------------------

TEST_CASE("gradients flow through views to the right places") {
  SUBCASE("transpose") {
    Tensor x = leaf({0, 1, 2, 3, 4, 5}, {2, 3});
    Tensor w = iota({3, 2});
    backward(sum(mul(x.transpose(0, 1), w)));
    CHECK(vals(x.grad()) == vals(w.transpose(0, 1)));  // [[0, 2, 4], [1, 3, 5]]
  }
  SUBCASE("permute") {
    Tensor x = iota({2, 3, 4}).requires_grad_();
    Tensor w = iota({4, 2, 3});
    backward(sum(mul(x.permute({2, 0, 1}), w)));
    CHECK(vals(x.grad()) == vals(w.permute({1, 2, 0})));
  }
  SUBCASE("narrow and select") {
    Tensor x = iota({3, 4}).requires_grad_();
    backward(sum(mul(x.narrow(1, 1, 2), 3.0)));
    CHECK(vals(x.grad()) == std::vector<float>{0, 3, 3, 0, 0, 3, 3, 0, 0, 3, 3, 0});
    x.zero_grad();
    backward(sum(mul(x.select(0, -1), 2.0)));
    CHECK(vals(x.grad()) == std::vector<float>{0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2});
  }
  SUBCASE("slice with a step") {
    Tensor x = iota({7}).requires_grad_();
    backward(sum(mul(x.slice(0, 1, 7, 2), from_vector<float>({1, 2, 3}))));
    CHECK(vals(x.grad()) == std::vector<float>{0, 1, 0, 2, 0, 3, 0});
  }
  SUBCASE("expand sums over the broadcast dims") {
    Tensor v = leaf({1, 2, 3});
    Tensor m = iota({4, 3});
    backward(sum(mul(v.expand({4, 3}), m)));
    CHECK(vals(v.grad()) == std::vector<float>{0 + 3 + 6 + 9, 1 + 4 + 7 + 10, 2 + 5 + 8 + 11});
    Tensor c = leaf({1, 2}, {2, 1});
    backward(sum(mul(c.expand({2, 3}), 1.0)));
    CHECK(vals(c.grad()) == std::vector<float>{3, 3});
  }
  SUBCASE("reshape, view, flatten, squeeze and unsqueeze") {
    Tensor x = iota({2, 3}).requires_grad_();
    Tensor w = iota({6});
    backward(sum(mul(x.reshape({6}), w)));
    CHECK(vals(x.grad()) == vals(w));
    x.zero_grad();
    backward(sum(mul(x.view({3, 2}).flatten(), w)));
    CHECK(vals(x.grad()) == vals(w));
    x.zero_grad();
    Tensor u = x.unsqueeze(0).unsqueeze(-1);
    CHECK(u.shape() == Shape{1, 2, 3, 1});
    backward(sum(mul(u.squeeze(), iota({2, 3}))));
    CHECK(vals(x.grad()) == vals(w));
    CHECK(x.grad().shape() == Shape{2, 3});
  }
  SUBCASE("reshape of a non-viewable tensor copies and still differentiates") {
    Tensor x = iota({2, 3}).requires_grad_();
    Tensor r = x.transpose(0, 1).reshape({6});  // [0, 3, 1, 4, 2, 5]
    CHECK(r.storage() != x.storage());
    backward(sum(mul(r, iota({6}))));
    // x[i][j] sits at position 2j + i of r.
    CHECK(vals(x.grad()) == std::vector<float>{0, 2, 4, 1, 3, 5});
  }
  SUBCASE("contiguous, clone and to(dtype)") {
    Tensor x = leaf({1, 2, 3});
    Tensor y = x.clone();
    Tensor z = x.to(DType::f64);
    CHECK(z.requires_grad());
    backward(add(sum(mul(y, 2.0)), sum(mul(z, 3.0)).to(DType::f32)));
    CHECK(x.grad().dtype() == DType::f32);
    CHECK(vals(x.grad()) == std::vector<float>{5, 5, 5});
    // Conversion to an integer dtype is not differentiable.
    CHECK_FALSE(x.to(DType::i64).requires_grad());
  }
}

// --- multi-output nodes --------------------------------------------------------------------

TEST_CASE("a multi-output node gets zeros for an output that received no gradient") {
  Tensor a = leaf({1, 2, 3});
  std::vector<Tensor> outs;
  {
    NoGradGuard no_grad;
    outs = {mul(a, 2.0), mul(a, 3.0).reshape({3, 1})};
  }
  std::vector<Tensor> seen;
  std::vector<Tensor> inputs{a};
  record("two_outputs", inputs, outs, [&seen](std::span<const Tensor> g) -> std::vector<Tensor> {
    seen.assign(g.begin(), g.end());
    return {add(mul(g[0], 2.0), mul(g[1].reshape({3}), 3.0))};
  });
  CHECK(outs[0].requires_grad());
  CHECK(outs[1].requires_grad());
  CHECK_FALSE(outs[1].is_leaf());
  backward(sum(mul(outs[0], from_vector<float>({1, 2, 3}))));
  REQUIRE(seen.size() == 2);
  CHECK(vals(seen[0]) == std::vector<float>{1, 2, 3});
  CHECK(seen[1].shape() == Shape{3, 1});
  CHECK(vals(seen[1]) == std::vector<float>{0, 0, 0});
  CHECK(vals(a.grad()) == std::vector<float>{2, 4, 6});

  // split: each piece can be used or not; unused pieces contribute nothing.
  Tensor x = iota({6}).requires_grad_();
  std::vector<Tensor> parts = split(x, 4);
  REQUIRE(parts.size() == 2);
  CHECK(parts[1].shape() == Shape{2});
  backward(sum(mul(parts[1], 5.0)));
  CHECK(vals(x.grad()) == std::vector<float>{0, 0, 0, 0, 5, 5});
  x.zero_grad();
  std::vector<Tensor> chunks = chunk(x, 3);
  REQUIRE(chunks.size() == 3);
  backward(sum(mul(chunks[0], chunks[2])));
  CHECK(vals(x.grad()) == std::vector<float>{4, 5, 0, 0, 0, 1});
}

}  // namespace
}  // namespace rw
