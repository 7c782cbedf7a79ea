// The reversible-graph API on plain functions (tests/nn/test_reversible_stack.cpp runs it on
// attention and feed-forward modules): rw::grad, gradients against the plain residual stack,
// randomness replay, the block cache, nesting, and bad use.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/reversible.h"
#include "autograd/tape.h"
#include "core/generator_scope.h"
#include "core/ops.h"
#include "test_util.h"

namespace rw {
namespace {

Tensor randn64(Shape shape, uint64_t seed) {
  Generator gen(seed);
  return randn(std::move(shape), gen, {.dtype = DType::f64});
}

double max_abs_diff(const Tensor& a, const Tensor& b) { return max(abs(sub(a, b))).item(); }

// |a - b| <= rtol * max|b| elementwise, with a message on failure.
void check_rel(const Tensor& a, const Tensor& b, double rtol, const char* what) {
  REQUIRE(a.defined());
  REQUIRE(b.defined());
  REQUIRE(a.shape() == b.shape());
  const double scale = std::max(max(abs(b)).item(), 1e-300);
  INFO(what << ": max |a-b| = " << max_abs_diff(a, b) << ", max |b| = " << scale);
  CHECK(max_abs_diff(a, b) <= rtol * scale);
}

// A function x -> tanh(x W + b) with dropout on its output, its randomness drawn from
// current_generator() (what the stack replays).
ReversibleFunction dense(Tensor w, Tensor b, double p) {
  return {.forward =
              [w, b, p](const Tensor& x) {
                Tensor h = tanh(add(matmul(x, w), b));
                if (p == 0) return h;
                return dropout(h, p, current_generator().next(h.numel()));
              },
          .parameters =
              [w, b] {
                return std::vector<Tensor>{w, b};
              }};
}

struct Params {
  std::vector<Tensor> all;  // per block: wf, bf, wg, bg
};

Params make_params(std::size_t depth, int64_t d, uint64_t seed) {
  Params p;
  for (std::size_t i = 0; i < depth; ++i) {
    p.all.push_back(mul(randn64({d, d}, seed + 4 * i), 0.5).requires_grad_());
    p.all.push_back(mul(randn64({d}, seed + 4 * i + 1), 0.1).requires_grad_());
    p.all.push_back(mul(randn64({d, d}, seed + 4 * i + 2), 0.5).requires_grad_());
    p.all.push_back(mul(randn64({d}, seed + 4 * i + 3), 0.1).requires_grad_());
  }
  return p;
}

std::vector<ReversibleBlock> make_blocks(const std::vector<Tensor>& params, double p) {
  std::vector<ReversibleBlock> blocks;
  for (std::size_t i = 0; i + 3 < params.size(); i += 4) {
    blocks.push_back(
        {.f = dense(params[i], params[i + 1], p), .g = dense(params[i + 2], params[i + 3], p)});
  }
  return blocks;
}

// Runs the stack (reversible or plain) under a fixed generator; returns sum(y1 * c1 + y2 * c2)
// for fixed random cotangents, so every output element matters.
Tensor stack_loss(const std::vector<ReversibleBlock>& blocks, const Tensor& x1, const Tensor& x2,
                  bool reversible) {
  Generator gen(1234);
  GeneratorScope scope(gen);
  auto [y1, y2] = reversible_stack(blocks, x1, x2, {.reversible = reversible});
  Tensor c1 = randn64(y1.shape(), 77), c2 = randn64(y2.shape(), 78);
  return add(sum(mul(y1, c1)), sum(mul(y2, c2)));
}

struct Grads {
  Tensor dx1, dx2;
  std::vector<Tensor> params;
};

Grads stack_grads(std::size_t depth, double p, bool reversible) {
  Params params = make_params(depth, 6, 100);
  Tensor x1 = randn64({3, 6}, 1).requires_grad_();
  Tensor x2 = randn64({3, 6}, 2).requires_grad_();
  backward(stack_loss(make_blocks(params.all, p), x1, x2, reversible));
  Grads g{x1.grad(), x2.grad(), {}};
  for (const Tensor& t : params.all) g.params.push_back(t.grad());
  return g;
}

TEST_CASE("grad returns gradients for the inputs asked for and leaves grad() alone") {
  Tensor a = from_vector<double>({1, 2, 3}).requires_grad_();
  Tensor b = from_vector<double>({4, 5, 6}).requires_grad_();
  Tensor c = from_vector<double>({7, 8, 9}).requires_grad_();
  Tensor h = mul(a, b);       // a non-leaf input: gradients stop there
  Tensor y = sum(mul(h, c));  // dy/dh = c, dy/da = b c, dy/db = a c
  std::vector<Tensor> g = grad(std::span<const Tensor>(&y, 1), std::vector<Tensor>{Tensor()},
                               std::vector<Tensor>{h, c});
  test::check_close(g[0], {7, 8, 9});
  test::check_close(g[1], {4, 10, 18});
  CHECK_FALSE(a.grad().defined());  // not asked for: dropped, not accumulated
  CHECK_FALSE(c.grad().defined());  // asked for: returned, not accumulated

  Tensor z = sum(mul(a, 2.0));
  std::vector<Tensor> unused =
      grad(std::span<const Tensor>(&z, 1), std::vector<Tensor>{Tensor()}, std::vector<Tensor>{b});
  CHECK_FALSE(unused[0].defined());  // no path from z to b

  Tensor w = sum(mul(a, b));
  const std::string msg = test::error_message([&] {
    grad(std::span<const Tensor>(&w, 1), std::vector<Tensor>{Tensor()}, std::vector<Tensor>{a},
         {.error_on_unlisted = true});
  });
  CHECK(test::contains(msg,
                       "grad: mul sends a gradient (shape [3]) to a tensor that requires "
                       "grad but is not among the inputs"));
  CHECK(test::contains(test::error_message([&] {
                         grad(std::span<const Tensor>(&w, 1), std::vector<Tensor>{Tensor()},
                              std::vector<Tensor>{from_vector<double>({1})});
                       }),
                       "grad: input 0 (shape [1]) does not require grad"));
}

TEST_CASE("reversible gradients equal the plain residual stack's, dropout on, depths 1, 2, 6") {
  for (std::size_t depth : {1u, 2u, 6u}) {
    CAPTURE(depth);
    Grads rev = stack_grads(depth, 0.3, true);
    Grads plain = stack_grads(depth, 0.3, false);
    check_rel(rev.dx1, plain.dx1, 1e-9, "dx1");
    check_rel(rev.dx2, plain.dx2, 1e-9, "dx2");
    for (std::size_t i = 0; i < rev.params.size(); ++i) {
      CAPTURE(i);
      check_rel(rev.params[i], plain.params[i], 1e-9, "parameter gradient");
    }
  }
}

TEST_CASE("dropout changes the function, and the reversible backward replays its masks") {
  // Without replay the recomputed masks would differ and so would the gradients; the equality
  // above would then fail. Check here that dropout is really active in the test setup.
  Grads with = stack_grads(2, 0.3, true);
  Grads without = stack_grads(2, 0.0, true);
  CHECK(max_abs_diff(with.dx1, without.dx1) > 1e-3);
}

TEST_CASE("the reversible stack passes gradcheck in float64") {
  const int64_t d = 4;
  Params p = make_params(2, d, 300);
  std::vector<Tensor> inputs{randn64({2, d}, 3).requires_grad_(),
                             randn64({2, d}, 4).requires_grad_()};
  inputs.insert(inputs.end(), p.all.begin(), p.all.end());
  GradcheckResult r = gradcheck(
      [](const std::vector<Tensor>& in) {
        std::vector<Tensor> params(in.begin() + 2, in.end());
        Generator gen(9);
        GeneratorScope scope(gen);
        auto [y1, y2] = reversible_stack(make_blocks(params, 0.25), in[0], in[1]);
        return concat({y1, y2}, 1);
      },
      inputs);
  CHECK_MESSAGE(r.ok, r.message);
}

TEST_CASE("the recovered inputs equal the true inputs") {
  const std::size_t depth = 6;
  Params p = make_params(depth, 6, 500);
  std::vector<ReversibleBlock> blocks = make_blocks(p.all, 0.2);
  Tensor x1 = randn64({3, 6}, 5).requires_grad_();
  Tensor x2 = randn64({3, 6}, 6).requires_grad_();

  // The true inputs of every block, from the plain stack run block by block.
  std::vector<std::pair<Tensor, Tensor>> truth;
  {
    NoGradGuard no_grad;
    Generator gen(1234);
    GeneratorScope scope(gen);
    Tensor a = x1, b = x2;
    for (const ReversibleBlock& block : blocks) {
      truth.emplace_back(a, b);
      std::tie(a, b) = reversible_stack(std::span<const ReversibleBlock>(&block, 1), a, b,
                                        {.reversible = false});
    }
  }
  std::vector<std::pair<Tensor, Tensor>> recovered(depth);
  std::vector<std::size_t> order;
  Generator gen(1234);
  GeneratorScope scope(gen);
  auto [y1, y2] = reversible_stack(
      blocks, x1, x2, {.on_reconstructed = [&](std::size_t i, const Tensor& a, const Tensor& b) {
        recovered[i] = {a, b};
        order.push_back(i);
      }});
  backward(add(sum(y1), sum(y2)));
  CHECK(order == std::vector<std::size_t>{5, 4, 3, 2, 1, 0});
  for (std::size_t i = 0; i < depth; ++i) {
    CAPTURE(i);
    CHECK(max_abs_diff(recovered[i].first, truth[i].first) < 1e-12);
    CHECK(max_abs_diff(recovered[i].second, truth[i].second) < 1e-12);
  }
}

TEST_CASE("both modes draw the same randomness and leave the generator in the same state") {
  Params p = make_params(3, 6, 700);
  std::vector<ReversibleBlock> blocks = make_blocks(p.all, 0.5);
  Tensor x1 = randn64({2, 6}, 7), x2 = randn64({2, 6}, 8);
  Generator g_rev(5), g_plain(5);
  std::pair<Tensor, Tensor> rev, plain;
  {
    GeneratorScope scope(g_rev);
    rev = reversible_stack(blocks, x1, x2);
  }
  {
    GeneratorScope scope(g_plain);
    plain = reversible_stack(blocks, x1, x2, {.reversible = false});
  }
  CHECK(max_abs_diff(rev.first, plain.first) == 0);
  CHECK(max_abs_diff(rev.second, plain.second) == 0);
  CHECK(g_rev.state() == g_plain.state());
  CHECK(g_rev.state() != Generator(5).state());  // the stack did draw
}

TEST_CASE("the reversible stack records one node and keeps only its outputs") {
  Params p = make_params(4, 6, 900);
  std::vector<ReversibleBlock> blocks = make_blocks(p.all, 0);
  Tensor x1 = randn64({2, 6}, 1).requires_grad_(), x2 = randn64({2, 6}, 2).requires_grad_();
  TapeScope scope;
  auto [y1, y2] = reversible_stack(blocks, x1, x2);
  CHECK(scope.tape().size() == 1);
  auto plain = reversible_stack(blocks, x1, x2, {.reversible = false});
  CHECK(scope.tape().size() > 4 * 4);
}

TEST_CASE("a backward with retain_graph can run twice") {
  Params p = make_params(2, 6, 1100);
  Tensor x1 = randn64({2, 6}, 1).requires_grad_(), x2 = randn64({2, 6}, 2).requires_grad_();
  Tensor loss = stack_loss(make_blocks(p.all, 0.3), x1, x2, true);
  backward(loss, {}, {.retain_graph = true});
  Tensor first = x1.grad().clone();
  backward(loss);
  check_rel(x1.grad(), mul(first, 2.0), 1e-12, "twice the gradient");
}

TEST_CASE("a block function hands values from forward to its recomputation through the cache") {
  // F hashes its input into an integer code in forward and must see the same code when
  // recomputed, even though the recovered input differs from the original by round-off.
  int forward_calls = 0, replay_calls = 0;
  const int owner = 0;
  Tensor w = mul(randn64({4, 4}, 31), 0.5).requires_grad_();
  ReversibleFunction f{.forward =
                           [&, w](const Tensor& x) {
                             Tensor code;
                             BlockCache* cache = current_block_cache();
                             REQUIRE(cache != nullptr);
                             if (cache->replaying()) {
                               ++replay_calls;
                               code = std::any_cast<Tensor>(cache->take(&owner));
                             } else {
                               ++forward_calls;
                               code = argmax(x, -1, true);
                               cache->save(&owner, code);
                             }
                             return mul(tanh(matmul(x, w)), add(code.to(DType::f64), 1.0));
                           },
                       .parameters = [w] { return std::vector<Tensor>{w}; }};
  ReversibleFunction g =
      dense(mul(randn64({4, 4}, 32), 0.5).requires_grad_(), randn64({4}, 33).requires_grad_(), 0);
  std::vector<ReversibleBlock> blocks{{f, g}, {f, g}};
  Tensor x1 = randn64({3, 4}, 1).requires_grad_(), x2 = randn64({3, 4}, 2).requires_grad_();
  auto [y1, y2] = reversible_stack(blocks, x1, x2);
  CHECK(forward_calls == 2);
  CHECK(current_block_cache() == nullptr);  // only inside a block
  backward(add(sum(y1), sum(y2)));
  CHECK(replay_calls == 2);

  // With nothing recorded (no grad) and in plain mode there is no cache: nothing is recomputed.
  ReversibleFunction probe{.forward = [](const Tensor& x) {
    CHECK(current_block_cache() == nullptr);
    return mul(x, 0.0);
  }};
  std::vector<ReversibleBlock> probes{{probe, probe}};
  {
    NoGradGuard no_grad;
    reversible_stack(probes, x1, x2);
  }
  reversible_stack(probes, x1, x2, {.reversible = false});
}

TEST_CASE("block cache: values come back in the order saved, and over-taking is an error") {
  BlockCache cache;
  const int a = 0, b = 0;
  {
    BlockCacheScope scope(&cache, false);
    CHECK(current_block_cache() == &cache);
    CHECK_FALSE(cache.replaying());
    cache.save(&a, 1);
    cache.save(&a, 2);
    cache.save(&b, 3);
  }
  CHECK(current_block_cache() == nullptr);
  for (int replay = 0; replay < 2; ++replay) {  // a second replay starts from the first value
    BlockCacheScope scope(&cache, true);
    CHECK(cache.replaying());
    CHECK(std::any_cast<int>(cache.take(&a)) == 1);
    CHECK(std::any_cast<int>(cache.take(&b)) == 3);
    CHECK(std::any_cast<int>(cache.take(&a)) == 2);
    CHECK(test::contains(test::error_message([&] { cache.take(&a); }),
                         "block cache: take() found no value left for this owner (2 saved in "
                         "forward, 2 already taken)"));
  }
}

TEST_CASE("nested reversible stacks") {
  // F of the outer block is itself a reversible stack of two blocks (joined by the mean).
  Params inner = make_params(2, 6, 1300);
  Params outer = make_params(1, 6, 1400);
  auto run = [&](bool reversible) {
    for (Tensor& t : inner.all) t.zero_grad();
    for (Tensor& t : outer.all) t.zero_grad();
    std::vector<ReversibleBlock> inner_blocks = make_blocks(inner.all, 0.2);
    ReversibleFunction nested{.forward =
                                  [inner_blocks, reversible](const Tensor& x) {
                                    auto [a, b] = reversible_stack(inner_blocks, x, x,
                                                                   {.reversible = reversible});
                                    return join_mean(a, b);
                                  },
                              .parameters = [&] { return inner.all; }};
    std::vector<ReversibleBlock> blocks{{.f = nested, .g = dense(outer.all[2], outer.all[3], 0.2)}};
    Tensor x1 = randn64({3, 6}, 1).requires_grad_(), x2 = randn64({3, 6}, 2).requires_grad_();
    backward(stack_loss(blocks, x1, x2, reversible));
    std::vector<Tensor> g{x1.grad(), x2.grad()};
    for (const Tensor& t : inner.all) g.push_back(t.grad());
    g.push_back(outer.all[2].grad());
    return g;
  };
  std::vector<Tensor> rev = run(true), plain = run(false);
  for (std::size_t i = 0; i < rev.size(); ++i) {
    CAPTURE(i);
    check_rel(rev[i], plain[i], 1e-9, "gradient");
  }
}

TEST_CASE("gradients flow to parameters that are results, not leaves") {
  // A weight computed from a leaf (tied or transformed weights): its gradient continues through
  // the tape to the leaf.
  Tensor base = randn64({4, 4}, 41).requires_grad_();
  auto run = [&](bool reversible) {
    base.zero_grad();
    Tensor w = mul(base, 0.5);
    std::vector<ReversibleBlock> blocks{
        {dense(w, randn64({4}, 42), 0), dense(w, randn64({4}, 43), 0)}};
    Tensor x = randn64({2, 4}, 44).requires_grad_();
    backward(stack_loss(blocks, x, x, reversible));
    return base.grad();
  };
  Tensor rev = run(true);
  REQUIRE(rev.defined());
  check_rel(rev, run(false), 1e-9, "gradient of the leaf under a computed weight");
}

TEST_CASE("bad use of the reversible stack is a clear error") {
  Tensor x = randn64({2, 4}, 1).requires_grad_();
  ReversibleFunction identity{.forward = [](const Tensor& t) { return t; }};
  ReversibleFunction widen{.forward = [](const Tensor& t) { return concat({t, t}, 1); }};
  ReversibleFunction to_f32{.forward = [](const Tensor& t) { return t.to(DType::f32); }};

  std::vector<ReversibleBlock> changes_shape{{identity, identity}, {identity, widen}};
  for (bool reversible : {true, false}) {
    CHECK(test::contains(
        test::error_message(
            [&] { reversible_stack(changes_shape, x, x, {.reversible = reversible}); }),
        "reversible_stack: block 1 G must keep its input's shape, dtype and device (a residual is "
        "added to it): got [2, 8] f64 on cpu, expected [2, 4] f64 on cpu"));
  }
  std::vector<ReversibleBlock> changes_dtype{{to_f32, identity}};
  CHECK(test::contains(test::error_message([&] { reversible_stack(changes_dtype, x, x); }),
                       "block 0 F must keep its input's shape, dtype and device"));

  std::vector<ReversibleBlock> ok{{identity, identity}};
  CHECK(test::contains(
      test::error_message([&] {
        reversible_stack(ok, x, randn64({2, 5}, 2));
      }),
      "reversible_stack: the halves must match in shape, dtype and device: x1 is [2, 4] f64 on "
      "cpu, x2 is [2, 5] f64 on cpu"));
  CHECK(test::contains(test::error_message([&] { reversible_stack(ok, x, x.to(DType::f32)); }),
                       "the halves must match"));
  std::vector<ReversibleBlock> missing{{identity, ReversibleFunction{}}};
  CHECK(test::contains(test::error_message([&] { reversible_stack(missing, x, x); }),
                       "reversible_stack: block 0 has no G function"));

  // A function reading a tensor that requires grad without declaring it.
  Tensor hidden = randn64({4, 4}, 3).requires_grad_();
  ReversibleFunction undeclared{.forward = [hidden](const Tensor& t) { return matmul(t, hidden); }};
  std::vector<ReversibleBlock> sneaky{{identity, undeclared}};
  auto [y1, y2] = reversible_stack(sneaky, x, x);
  CHECK(
      test::contains(test::error_message([&] { backward(sum(y2)); }),
                     "reversible_stack: backward of block 0 G: grad: matmul sends a gradient "
                     "(shape [4, 4]) to a tensor that requires grad but is not among the inputs"));

  // A function whose parameters were replaced between forward and backward.
  Tensor wa = randn64({4, 4}, 60).requires_grad_(), wb = randn64({4, 4}, 61).requires_grad_();
  Tensor current = wa;
  ReversibleFunction swappable{
      .forward = [&current](const Tensor& t) { return matmul(t, current); },
      .parameters = [&current] { return std::vector<Tensor>{current}; }};
  std::vector<ReversibleBlock> swapped{{swappable, identity}};
  auto [s1, s2] = reversible_stack(swapped, x, x);
  current = wb;
  CHECK(test::contains(test::error_message([&] { backward(sum(s2)); }),
                       "reversible_stack: backward of block 0 F: its parameters are not the "
                       "tensors it declared in forward (1 then, 1 now)"));

  // A parameter changed in place between forward and backward (an optimizer step too early).
  Params p = make_params(1, 4, 50);
  std::vector<ReversibleBlock> blocks = make_blocks(p.all, 0);
  auto [z1, z2] = reversible_stack(blocks, x, x);
  {
    NoGradGuard no_grad;
    mul_(p.all[0].detach(), 2.0);
  }
  CHECK(test::contains(test::error_message([&] { backward(sum(z1)); }),
                       "reversible_stack: backward needs a tensor (shape [4, 4]) that was modified "
                       "in place after it was saved"));
}

TEST_CASE("layout helpers split and join") {
  Tensor x = test::iota({2, 6}).to(DType::f64);
  auto [a, b] = split_halves(x);
  test::check_close(a, {0, 1, 2, 6, 7, 8});
  test::check_close(b, {3, 4, 5, 9, 10, 11});
  test::check_close(join_concat(a, b), {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11});
  test::check_close(join_mean(a, b), {1.5, 2.5, 3.5, 7.5, 8.5, 9.5});
  auto [c1, c2] = split_copies(x);
  CHECK(c1.is_same(x));
  CHECK(c2.is_same(x));
  CHECK(test::contains(test::error_message([&] {
                         split_halves(test::iota({2, 5}));
                       }),
                       "split_halves: dim -1 of shape [2, 5] has odd size 5"));
  CHECK(test::contains(test::error_message([&] { split_halves(x, 2); }),
                       "split_halves: dim 2 is out of range for shape [2, 6]"));
  CHECK(test::contains(test::error_message([&] { join_mean(a, x); }),
                       "join_mean: the halves differ in shape: [2, 3] vs [2, 6]"));
  CHECK(test::contains(test::error_message([&] { join_concat(a, x); }),
                       "join_concat: the halves differ in shape: [2, 3] vs [2, 6]"));
}

}  // namespace
}  // namespace rw
