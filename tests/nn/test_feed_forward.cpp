// FeedForward and ChunkedFeedForward (nn/feed_forward.h): the composition they compute for each
// activation, f64 gradchecks, the chunked block against the plain one (outputs and every gradient,
// dropout included, chunk sizes that do not divide L, other chunk dims), parameter sharing through
// state_dict, the peak-memory claim, and error messages.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/tape.h"
#include "core/allocator.h"
#include "core/generator_scope.h"
#include "core/ops.h"
#include "nn/feed_forward.h"
#include "nn/nn_test_util.h"
#include "test_util.h"

namespace rw::nn {

using namespace rw::test;

namespace {

const Activation kActivations[] = {Activation::relu, Activation::gelu, Activation::gelu_tanh,
                                   Activation::silu, Activation::swiglu};

// An f64 block (plain or chunked) whose every parameter, biases included, is N(0, 0.5^2).
template <typename FF, typename... Args>
std::shared_ptr<FF> random_ff(uint64_t seed, Args&&... args) {
  Generator gen(seed);
  auto ff = std::make_shared<FF>(std::forward<Args>(args)..., gen);
  ff->to(DType::f64);
  NoGradGuard no_grad;
  for (auto& [name, p] : ff->named_parameters()) {
    copy_(p, mul(randn(p.shape(), gen, {.dtype = DType::f64}), 0.5));
  }
  return ff;
}

std::vector<Tensor*> parameter_slots(FeedForward& ff) {
  std::vector<Tensor*> out;
  for (Linear* lin : {ff.w1.get(), ff.w2.get(), ff.w3.get()}) {
    if (lin == nullptr) continue;
    out.push_back(&lin->weight);
    if (lin->bias.defined()) out.push_back(&lin->bias);
  }
  return out;
}

// The block written out with the functional ops, for one activation.
Tensor reference_ff(FeedForward& ff, const Tensor& x) {
  auto lin = [](const std::shared_ptr<Linear>& l, const Tensor& in) {
    return linear(in, l->weight, l->bias);
  };
  Tensor h;
  switch (ff.options().activation) {
    case Activation::relu:
      h = relu(lin(ff.w1, x));
      break;
    case Activation::gelu:
      h = gelu(lin(ff.w1, x), GeluApprox::none);
      break;
    case Activation::gelu_tanh:
      h = gelu(lin(ff.w1, x), GeluApprox::tanh);
      break;
    case Activation::silu:
      h = mul(lin(ff.w1, x), sigmoid(lin(ff.w1, x)));
      break;
    case Activation::swiglu: {
      Tensor a = lin(ff.w1, x);
      h = mul(mul(a, sigmoid(a)), lin(ff.w3, x));
      break;
    }
  }
  return lin(ff.w2, h);
}

}  // namespace

// --- FeedForward
// ------------------------------------------------------------------------------------

TEST_CASE("FeedForward: parameter names and shapes, forward is W2 act(W1 x) for each activation") {
  for (Activation act : kActivations) {
    INFO(to_string(act));
    auto ff = random_ff<FeedForward>(1, 6, 10, FeedForwardOptions{.activation = act});
    std::vector<std::string> names;
    for (auto& [name, p] : ff->named_parameters()) names.push_back(name);
    std::vector<std::string> expected{"w1.weight", "w1.bias", "w2.weight", "w2.bias"};
    if (act == Activation::swiglu) {
      expected.insert(expected.end(), {"w3.weight", "w3.bias"});
      CHECK(ff->w3->weight.shape() == Shape{10, 6});
    } else {
      CHECK(ff->w3 == nullptr);
    }
    CHECK(names == expected);
    CHECK(ff->w1->weight.shape() == Shape{10, 6});
    CHECK(ff->w2->weight.shape() == Shape{6, 10});
    Tensor x = randn64({2, 3, 6}, 2);
    check_close(ff->forward(x), host(reference_ff(*ff, x)), 1e-12);
  }
  auto no_bias = random_ff<FeedForward>(1, 6, 10, FeedForwardOptions{.bias = false});
  CHECK(no_bias->num_parameters() == 2 * 6 * 10);
}

TEST_CASE("FeedForward: gradcheck in f64 for each activation, without and with dropout") {
  for (Activation act : kActivations) {
    for (double p : {0.0, 0.4}) {
      INFO(to_string(act), " dropout ", p);
      auto ff =
          random_ff<FeedForward>(3, 4, 6, FeedForwardOptions{.activation = act, .dropout = p});
      const PhiloxState key{5, 0, 11};
      const auto r = gradcheck_module(parameter_slots(*ff), randn64({2, 3, 4}, 4),
                                      [&](const Tensor& x) { return ff->forward(x, key); });
      CHECK_MESSAGE(r.ok, r.message);
    }
  }
}

TEST_CASE("FeedForward: dropout draws its key from current_generator in training only") {
  auto ff = random_ff<FeedForward>(5, 4, 8, FeedForwardOptions{.dropout = 0.5});
  Tensor x = randn64({2, 3, 4}, 6);
  Generator gen(7);
  const PhiloxState key = gen.state();
  Tensor y;
  {
    GeneratorScope scope(gen);
    y = ff->forward(x);
  }
  CHECK(gen.state().counter == key.counter + 2 * 3 * 8 / 4);  // the hidden [2, 3, 8] elements
  CHECK(host(ff->forward(x, key)) == host(y));
  ff->eval();
  const PhiloxState after = gen.state();
  {
    GeneratorScope scope(gen);
    y = ff->forward(x);
  }
  CHECK(gen.state() == after);
  check_close(y, host(reference_ff(*ff, x)), 1e-12);  // eval: no dropout
}

// --- ChunkedFeedForward
// -----------------------------------------------------------------------------

TEST_CASE("ChunkedFeedForward: gradcheck in f64, chunk size not dividing L, dropout on") {
  for (Activation act : {Activation::gelu, Activation::swiglu}) {
    INFO(to_string(act));
    auto ff = random_ff<ChunkedFeedForward>(8, 3, 5,
                                            FeedForwardOptions{.activation = act, .dropout = 0.3},
                                            FeedForwardChunking{.chunk_size = 2});
    const PhiloxState key{1, 2, 3};
    const auto r = gradcheck_module(parameter_slots(*ff), randn64({2, 5, 3}, 9),
                                    [&](const Tensor& x) { return ff->forward(x, key); });
    CHECK_MESSAGE(r.ok, r.message);
  }
}

TEST_CASE("ChunkedFeedForward: same outputs and gradients as FeedForward, dropout on, same key") {
  // L = 7 in chunks of 3 (3 + 3 + 1), along the default dim -2 ([B, L, d]) and along dim 0
  // ([L, B, d]); every activation; weights shared through state_dict.
  struct Case {
    Shape x_shape;
    int64_t chunk_dim;
  };
  for (const Case& c : {Case{{2, 7, 4}, -2}, Case{{7, 2, 4}, 0}}) {
    for (Activation act : kActivations) {
      INFO(to_string(act), " chunk_dim ", c.chunk_dim);
      const FeedForwardOptions options{.activation = act, .dropout = 0.25};
      auto plain = random_ff<FeedForward>(10, 4, 9, options);
      auto chunked = std::make_shared<ChunkedFeedForward>(
          4, 9, options, FeedForwardChunking{.chunk_size = 3, .chunk_dim = c.chunk_dim});
      chunked->to(DType::f64);
      chunked->load_state_dict(plain->state_dict());

      const PhiloxState key{77, 1, 5};
      Tensor x1 = randn64(c.x_shape, 11).requires_grad_();
      Tensor x2 = x1.detach().clone().requires_grad_();
      Tensor gy = randn64(c.x_shape, 12);
      Tensor y1 = plain->forward(x1, key);
      Tensor y2 = chunked->forward(x2, key);
      check_close(y2, host(y1), 1e-12);
      // Dropout really acted: the output differs from the eval-mode block.
      CHECK(host(y1) != host(reference_ff(*plain, x1.detach())));
      backward(y1, gy);
      backward(y2, gy);
      check_close(x2.grad(), host(x1.grad()), 1e-12);
      const auto p1 = plain->named_parameters(), p2 = chunked->named_parameters();
      REQUIRE(p1.size() == p2.size());
      for (std::size_t i = 0; i < p1.size(); ++i) {
        INFO(p1[i].first);
        CHECK(p1[i].first == p2[i].first);
        check_close(p2[i].second.grad(), host(p1[i].second.grad()), 1e-12);
      }
    }
  }
}

TEST_CASE("ChunkedFeedForward: from the same seed it has FeedForward's parameters and key draws") {
  const FeedForwardOptions options{.activation = Activation::swiglu, .dropout = 0.2};
  Generator g1(31), g2(31);
  auto plain = std::make_shared<FeedForward>(4, 6, options, g1);
  auto chunked =
      std::make_shared<ChunkedFeedForward>(4, 6, options, FeedForwardChunking{.chunk_size = 2}, g2);
  const StateDict a = plain->state_dict(), b = chunked->state_dict();
  REQUIRE(a.size() == b.size());
  for (const auto& [name, t] : a) {
    INFO(name);
    REQUIRE(b.contains(name));
    CHECK(host(b.at(name)) == host(t));
  }
  CHECK(chunked->type_name() == "ChunkedFeedForward");
  // forward(x) in training draws the same key from current_generator() as FeedForward does.
  Tensor x = randn({3, 5, 4}, g1);
  Generator s1(8), s2(8);
  Tensor y1, y2;
  {
    GeneratorScope scope(s1);
    y1 = plain->forward(x);
  }
  {
    GeneratorScope scope(s2);
    y2 = chunked->forward(x);
  }
  CHECK(s1.state() == s2.state());
  check_close(y2, host(y1), 1e-6);
}

TEST_CASE("ChunkedFeedForward: gradients when only x or only the parameters require grad") {
  const FeedForwardOptions options{.activation = Activation::gelu};
  auto plain = random_ff<FeedForward>(13, 3, 5, options);
  auto chunked =
      std::make_shared<ChunkedFeedForward>(3, 5, options, FeedForwardChunking{.chunk_size = 2});
  chunked->to(DType::f64);
  chunked->load_state_dict(plain->state_dict());
  Tensor gy = randn64({2, 5, 3}, 14);

  // Parameters only: x is plain data.
  Tensor x = randn64({2, 5, 3}, 15);
  backward(plain->forward(x), gy);
  backward(chunked->forward(x), gy);
  check_close(chunked->w1->weight.grad(), host(plain->w1->weight.grad()), 1e-12);
  check_close(chunked->w2->bias.grad(), host(plain->w2->bias.grad()), 1e-12);

  // x only: frozen parameters get no gradient.
  chunked->zero_grad();
  for (Tensor& p : chunked->parameters()) p.requires_grad_(false);
  Tensor x1 = x.detach().clone().requires_grad_(), x2 = x.detach().clone().requires_grad_();
  backward(plain->forward(x1), gy);
  backward(chunked->forward(x2), gy);
  check_close(x2.grad(), host(x1.grad()), 1e-12);
  CHECK_FALSE(chunked->w1->weight.grad().defined());

  // Without grad mode nothing is recorded and the output is the same.
  NoGradGuard no_grad;
  Tensor y = chunked->forward(x1);
  CHECK_FALSE(y.requires_grad());
  check_close(y, host(plain->forward(x)), 1e-12);
}

TEST_CASE("ChunkedFeedForward: one chunk's d_ff activations at a time (peak memory)") {
  // x [B, L, d_model] with a wide d_ff, in f32, training with dropout; forward + backward.
  const int64_t B = 2, L = 64, d_model = 16, d_ff = 1024, chunk = 8;
  const int64_t num_chunks = L / chunk;
  const int64_t chunk_bytes = B * chunk * d_ff * 4;  // one chunk's [B, chunk, d_ff] activation
  const FeedForwardOptions options{.activation = Activation::gelu, .dropout = 0.1};
  Generator gen(40);
  auto plain = std::make_shared<FeedForward>(d_model, d_ff, options, gen);
  auto chunked = std::make_shared<ChunkedFeedForward>(
      d_model, d_ff, options, FeedForwardChunking{.chunk_size = chunk}, gen);
  chunked->load_state_dict(plain->state_dict());
  const PhiloxState key{3, 3, 3};

  auto run = [&](FeedForward& ff, int64_t length) {
    Tensor x = randn({B, length, d_model}, gen).requires_grad_();
    Tensor gy = randn({B, length, d_model}, gen);
    ff.zero_grad();
    return peak_bytes([&] { backward(ff.forward(x, key), gy); });
  };
  const int64_t plain_peak = run(*plain, L);
  const int64_t chunked_peak = run(*chunked, L);
  MESSAGE("peak bytes: plain ", plain_peak, ", chunked ", chunked_peak, ", one chunk ",
          chunk_bytes);
  // The bound asserted: peak(plain) - peak(chunked) >= (num_chunks - 1) * chunk_bytes. Both runs
  // allocate the same output, input gradient and parameter gradients; the plain block also keeps
  // its whole [B, L, d_ff] hidden activation (num_chunks chunks' worth) for backward, where the
  // chunked one never holds more than a few chunks' worth at once.
  CHECK(plain_peak - chunked_peak >= (num_chunks - 1) * chunk_bytes);
  // And the chunked peak does not grow with d_ff * L: doubling L adds only d_model-wide tensors
  // (y, the input gradient and its slices), well under one chunk's activation; the plain block's
  // peak grows by num_chunks chunks' worth at least.
  const int64_t chunked_peak_2l = run(*chunked, 2 * L);
  const int64_t plain_peak_2l = run(*plain, 2 * L);
  MESSAGE("at 2L: plain ", plain_peak_2l, ", chunked ", chunked_peak_2l);
  CHECK(chunked_peak_2l - chunked_peak < chunk_bytes);
  CHECK(plain_peak_2l - plain_peak >= num_chunks * chunk_bytes);
}

TEST_CASE("ChunkedFeedForward: errors name the module and the offending values") {
  CHECK(contains(
      error_message([] { ChunkedFeedForward(4, 8, {}, FeedForwardChunking{.chunk_size = 0}); }),
      "ChunkedFeedForward: chunk_size must be > 0, got 0"));
  ChunkedFeedForward ff(4, 8, {}, FeedForwardChunking{.chunk_size = 2, .chunk_dim = -1});
  CHECK(contains(error_message([&] {
                   ff.forward(zeros({2, 5, 4}));
                 }),
                 "ChunkedFeedForward: chunk_dim -1 must be a dim of x other than the feature dim "
                 "(x has shape [2, 5, 4])"));
  CHECK(contains(error_message([&] {
                   ff.forward(zeros({2, 5, 3}));
                 }),
                 "ChunkedFeedForward: expected input [..., 4] (d_model), got shape [2, 5, 3]"));
  CHECK(contains(error_message([] { FeedForward(4, 8, {.dropout = 1.5}); }),
                 "FeedForward: dropout must be in [0, 1), got 1.5"));
}

}  // namespace rw::nn
