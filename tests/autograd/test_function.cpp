// Custom functions: user-written forward and backward.
#include <doctest/doctest.h>

#include <any>
#include <string>
#include <vector>

#include "autograd/function.h"
#include "core/ops.h"
#include "test_util.h"

namespace rw {

using namespace rw::test;

namespace {

Tensor leaf(std::vector<float> v) { return from_vector<float>(v).requires_grad_(); }

// y = x^2 with a hand-written gradient; counts backward calls.
int g_square_backward_calls = 0;
const CustomFunction kSquare{
    .name = "square",
    .forward =
        [](FunctionContext& ctx, std::span<const Tensor> in) {
          ctx.save_for_backward({in[0]});
          return std::vector<Tensor>{mul(in[0], in[0])};
        },
    .backward =
        [](FunctionContext& ctx, std::span<const Tensor> grad) {
          ++g_square_backward_calls;
          return std::vector<Tensor>{mul(grad[0], mul(ctx.saved(0), 2.0))};
        },
};

// Identity forward whose backward clips the incoming gradient to [-bound, bound].
Tensor clip_gradient(const Tensor& x, double bound) {
  const CustomFunction fn{
      .name = "clip_gradient",
      .forward = [](FunctionContext&,
                    std::span<const Tensor> in) { return std::vector<Tensor>{in[0]}; },
      .backward =
          [bound](FunctionContext&, std::span<const Tensor> grad) {
            return std::vector<Tensor>{clamp(grad[0], -bound, bound)};
          },
  };
  return fn.apply1({x});
}

TEST_CASE("a custom square gives the right values and gradients") {
  Tensor x = leaf({1, -2, 3});
  g_square_backward_calls = 0;
  Tensor y = kSquare.apply1({x});
  CHECK(vals(y) == std::vector<float>{1, 4, 9});
  CHECK(y.requires_grad());
  CHECK_FALSE(y.is_leaf());
  backward(y, from_vector<float>({1, 10, 100}));
  CHECK(g_square_backward_calls == 1);
  CHECK(vals(x.grad()) == std::vector<float>{2, -40, 600});
}

TEST_CASE("custom functions compose with built-in ops") {
  Tensor x = leaf({1, 2, 3});
  Tensor w = leaf({4, 5, 6});
  // loss = sum(square(x * w) + x)  ->  d/dx = 2 (x w) w + 1,  d/dw = 2 (x w) x
  Tensor loss = sum(add(kSquare.apply1({mul(x, w)}), x));
  CHECK(loss.item<float>() == 16 + 100 + 324 + 6);
  backward(loss);
  CHECK(vals(x.grad()) == std::vector<float>{33, 101, 217});
  CHECK(vals(w.grad()) == std::vector<float>{8, 40, 108});
  // Applied twice in a chain: d/dx x^4 = 4 x^3.
  Tensor z = leaf({1, 2});
  backward(sum(kSquare.apply1({kSquare.apply1({z})})));
  CHECK(vals(z.grad()) == std::vector<float>{4, 32});
}

TEST_CASE("a clip-gradient function changes only the gradient") {
  Tensor x = leaf({1, 2, 3});
  Tensor y = clip_gradient(x, 1.0);
  CHECK(vals(y) == std::vector<float>{1, 2, 3});
  CHECK(x.is_leaf());  // returning the input as output leaves the input handle alone
  CHECK_FALSE(y.is_same(x));
  backward(sum(mul(y, from_vector<float>({0.5f, 5, -5}))));
  CHECK(vals(x.grad()) == std::vector<float>{0.5f, 1, -1});
}

TEST_CASE("in-place modification of a saved input is detected") {
  Tensor x = leaf({1, 2, 3});
  Tensor y = kSquare.apply1({x});
  {
    NoGradGuard no_grad;
    mul_(x, 2.0);
  }
  std::string msg = error_message([&] { backward(sum(y)); });
  CHECK(contains(msg, "square"));
  CHECK(contains(msg, "modified in place"));
}

TEST_CASE("in-place modification of a saved output is detected") {
  // exp, saving its output (as a real exp backward would).
  const CustomFunction my_exp{
      .name = "my_exp",
      .forward =
          [](FunctionContext& ctx, std::span<const Tensor> in) {
            Tensor out = exp(in[0]);
            ctx.save_for_backward({out});
            return std::vector<Tensor>{out};
          },
      .backward =
          [](FunctionContext& ctx, std::span<const Tensor> grad) {
            return std::vector<Tensor>{mul(grad[0], ctx.saved(0))};
          },
  };
  Tensor x = leaf({0, 0});
  Tensor y = my_exp.apply1({x});
  backward(sum(y), Tensor(), {.retain_graph = true});
  CHECK(vals(x.grad()) == std::vector<float>{1, 1});
  {
    NoGradGuard no_grad;
    fill_(y, 5);
  }
  CHECK(contains(error_message([&] { backward(sum(y)); }), "my_exp"));
}

TEST_CASE("multiple outputs: an unused output's gradient arrives as zeros") {
  std::vector<Tensor> seen;
  const CustomFunction two{
      .name = "two",
      .forward =
          [](FunctionContext&, std::span<const Tensor> in) {
            return std::vector<Tensor>{mul(in[0], 2.0), mul(in[0], 3.0)};
          },
      .backward =
          [&seen](FunctionContext&, std::span<const Tensor> grad) {
            seen.assign(grad.begin(), grad.end());
            return std::vector<Tensor>{add(mul(grad[0], 2.0), mul(grad[1], 3.0))};
          },
  };
  Tensor x = leaf({1, 2});
  std::vector<Tensor> out = two.apply({x});
  REQUIRE(out.size() == 2);
  CHECK(vals(out[1]) == std::vector<float>{3, 6});
  backward(sum(out[1]));
  REQUIRE(seen.size() == 2);
  CHECK(vals(seen[0]) == std::vector<float>{0, 0});
  CHECK(vals(seen[1]) == std::vector<float>{1, 1});
  CHECK(vals(x.grad()) == std::vector<float>{3, 3});
  CHECK(contains(error_message([&] { two.apply1({x}); }), "apply1"));
}

TEST_CASE("integral outputs carry no gradient") {
  std::vector<Tensor> seen;
  const CustomFunction with_index{
      .name = "with_index",
      .forward =
          [](FunctionContext&, std::span<const Tensor> in) {
            return std::vector<Tensor>{mul(in[0], 2.0), arange(in[0].numel())};
          },
      .backward =
          [&seen](FunctionContext&, std::span<const Tensor> grad) {
            seen.assign(grad.begin(), grad.end());
            return std::vector<Tensor>{mul(grad[0], 2.0)};
          },
  };
  Tensor x = leaf({1, 2, 3});
  std::vector<Tensor> out = with_index.apply({x});
  CHECK(out[0].requires_grad());
  CHECK_FALSE(out[1].requires_grad());
  CHECK(out[1].to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2});
  backward(sum(out[0]));
  REQUIRE(seen.size() == 2);
  CHECK_FALSE(seen[1].defined());
  CHECK(vals(x.grad()) == std::vector<float>{2, 2, 2});
}

TEST_CASE("needs_input_grad, undefined inputs and state from forward to backward") {
  std::vector<bool> needs;
  const CustomFunction scaled_product{
      .name = "scaled_product",
      .forward =
          [](FunctionContext& ctx, std::span<const Tensor> in) {
            CHECK_FALSE(grad_mode_enabled());
            CHECK_FALSE(in[0].requires_grad());  // forward sees detached inputs
            CHECK_FALSE(in[2].defined());        // an optional input left out
            ctx.state = 10.0;                    // a value chosen in forward that backward needs
            ctx.save_for_backward({in[0], in[1]});
            return std::vector<Tensor>{mul(mul(in[0], in[1]), 10.0)};
          },
      .backward =
          [&needs](FunctionContext& ctx, std::span<const Tensor> grad) {
            CHECK_FALSE(grad_mode_enabled());
            needs = {ctx.needs_input_grad(0), ctx.needs_input_grad(1), ctx.needs_input_grad(2)};
            double scale = std::any_cast<double>(ctx.state);
            std::vector<Tensor> saved = ctx.saved_tensors();
            Tensor ga = ctx.needs_input_grad(0) ? mul(mul(grad[0], saved[1]), scale) : Tensor();
            Tensor gb = ctx.needs_input_grad(1) ? mul(mul(grad[0], saved[0]), scale) : Tensor();
            return std::vector<Tensor>{ga, gb, Tensor()};
          },
  };
  Tensor a = from_vector<float>({1, 2});
  Tensor b = leaf({3, 4});
  Tensor y = scaled_product.apply1({a, b, Tensor()});
  CHECK(vals(y) == std::vector<float>{30, 80});
  backward(sum(y));
  CHECK(needs == std::vector<bool>{false, true, false});
  CHECK(vals(b.grad()) == std::vector<float>{10, 20});
  CHECK_FALSE(a.grad().defined());
}

TEST_CASE("nothing is recorded when no input requires grad or grad mode is off") {
  Tensor x = leaf({1, 2});
  Tensor c = from_vector<float>({1, 2});
  current_tape().sweep();
  const std::size_t before = current_tape().size();
  Tensor y = kSquare.apply1({c});
  CHECK_FALSE(y.requires_grad());
  CHECK(vals(y) == std::vector<float>{1, 4});
  {
    NoGradGuard no_grad;
    Tensor z = kSquare.apply1({x});
    CHECK_FALSE(z.requires_grad());
  }
  CHECK(current_tape().size() == before);
  Tensor r = kSquare.apply1({x});
  CHECK(current_tape().size() == before + 1);  // one node, whatever forward does inside
}

TEST_CASE("a backward that recomputes in a local tape (as reversible layers do)") {
  // cube(x) saves nothing but its input and recomputes x*x*x under a TapeScope in backward.
  const CustomFunction cube{
      .name = "checkpointed_cube",
      .forward =
          [](FunctionContext& ctx, std::span<const Tensor> in) {
            ctx.save_for_backward({in[0]});
            return std::vector<Tensor>{mul(mul(in[0], in[0]), in[0])};
          },
      .backward =
          [](FunctionContext& ctx, std::span<const Tensor> grad) {
            TapeScope scope;
            Tensor x = ctx.saved(0).detach().requires_grad_();
            Tensor y = mul(mul(x, x), x);
            rw::backward(y, grad[0]);
            return std::vector<Tensor>{x.grad()};
          },
  };
  Tensor x = leaf({1, 2, 3});
  Tensor w = leaf({1, 1, 2});
  backward(sum(mul(cube.apply1({x}), w)));
  CHECK(vals(x.grad()) == std::vector<float>{3, 12, 54});
  CHECK(vals(w.grad()) == std::vector<float>{1, 8, 27});
}

TEST_CASE("a backward that records on the tape being walked is refused") {
  // Turning grad mode on inside backward and using a tensor that requires grad would append to
  // the very tape backward is iterating over (and may reallocate it under the running closure).
  Tensor w = leaf({2, 3});
  const CustomFunction reentrant{
      .name = "reentrant",
      .forward = [](FunctionContext&,
                    std::span<const Tensor> in) { return std::vector<Tensor>{mul(in[0], 1.0)}; },
      .backward =
          [w](FunctionContext&, std::span<const Tensor> grad) {
            EnableGradGuard enable;
            Tensor g = grad[0];
            for (int i = 0; i < 2000; ++i) g = mul(g, w);  // enough to outgrow any capacity
            return std::vector<Tensor>{g.detach()};
          },
  };
  Tensor x = leaf({1, 1});
  Tensor y = reentrant.apply1({x});
  std::string msg = error_message([&] { backward(sum(y)); });
  CAPTURE(msg);
  CHECK(contains(msg, "while its backward runs"));
  CHECK(contains(msg, "TapeScope"));
}

TEST_CASE("a malformed backward is reported naming the function") {
  auto make = [](std::vector<Tensor> (*bwd)(std::span<const Tensor>)) {
    return CustomFunction{
        .name = "broken",
        .forward = [](FunctionContext&,
                      std::span<const Tensor> in) { return std::vector<Tensor>{mul(in[0], 1.0)}; },
        .backward = [bwd](FunctionContext&, std::span<const Tensor> g) { return bwd(g); },
    };
  };
  Tensor x = leaf({1, 2, 3});

  CustomFunction too_many = make([](std::span<const Tensor> g) {
    return std::vector<Tensor>{g[0], g[0]};
  });
  std::string count = error_message([&] { backward(sum(too_many.apply1({x}))); });
  CHECK(contains(count, "broken"));
  CHECK(contains(count, "2 gradients for 1 inputs"));

  CustomFunction wrong_shape = make([](std::span<const Tensor> g) {
    return std::vector<Tensor>{g[0].reshape({3, 1})};
  });
  std::string shape = error_message([&] { backward(sum(wrong_shape.apply1({x}))); });
  CHECK(contains(shape, "broken"));
  CHECK(contains(shape, "[3, 1]"));
  CHECK(contains(shape, "[3]"));

  // A gradient of another floating dtype is converted to the input's.
  CustomFunction f64_grad =
      make([](std::span<const Tensor> g) { return std::vector<Tensor>{g[0].to(DType::f64)}; });
  backward(sum(f64_grad.apply1({x})));
  CHECK(x.grad().dtype() == DType::f32);
  CHECK(vals(x.grad()) == std::vector<float>{1, 1, 1});

  const CustomFunction no_outputs{
      .name = "empty",
      .forward = [](FunctionContext&, std::span<const Tensor>) { return std::vector<Tensor>{}; },
      .backward = [](FunctionContext&, std::span<const Tensor>) { return std::vector<Tensor>{}; },
  };
  CHECK(contains(error_message([&] { no_outputs.apply({x}); }), "empty: forward returned no"));
  const CustomFunction missing{.name = "missing", .forward = {}, .backward = {}};  // neither set
  CHECK(contains(error_message([&] { missing.apply({x}); }), "missing"));
  CHECK(contains(error_message([&] {
                   FunctionContext ctx;
                   ctx.saved(0);
                 }),
                 "saved tensor 0"));
}

}  // namespace
}  // namespace rw
