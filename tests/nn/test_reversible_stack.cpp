// The reversible stack on real layers: pre-norm attention and (chunked) feed-forward blocks with
// dropout. Gradients against the plain residual stack, input reconstruction, and the memory
// claim, asserted with the allocator's peak counter.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "autograd/tape.h"
#include "core/generator_scope.h"
#include "core/ops.h"
#include "nn/attention.h"
#include "nn/containers.h"
#include "nn/dropout.h"
#include "nn/feed_forward.h"
#include "nn/layer_norm.h"
#include "nn/reversible_stack.h"
#include "nn_test_util.h"
#include "test_util.h"

namespace rw::nn {
namespace {

struct StackShape {
  int64_t d_model = 16, n_heads = 2, d_ff = 32;
  double dropout = 0;
  int64_t ff_chunk = 0;  // > 0: ChunkedFeedForward with that chunk size
};

// F = dropout(attention(norm(x))), G = feed_forward(norm(x)) (pre-norm, as the Reformer).
std::shared_ptr<ReversibleStack> make_stack(std::size_t depth, const StackShape& s, DType dtype,
                                            uint64_t seed) {
  Generator gen(seed);
  auto stack = std::make_shared<ReversibleStack>();
  const FeedForwardOptions ff{.activation = Activation::gelu, .dropout = s.dropout};
  for (std::size_t i = 0; i < depth; ++i) {
    auto f = std::make_shared<Sequential>(
        std::make_shared<LayerNorm>(s.d_model),
        std::make_shared<MultiHeadAttention>(
            s.d_model, s.n_heads,
            MultiHeadAttentionOptions{.causal = true, .shared_qk = true, .dropout = s.dropout},
            gen),
        std::make_shared<Dropout>(s.dropout));
    std::shared_ptr<Module> ffn =
        s.ff_chunk > 0
            ? std::shared_ptr<Module>(std::make_shared<ChunkedFeedForward>(
                  s.d_model, s.d_ff, ff, FeedForwardChunking{.chunk_size = s.ff_chunk}, gen))
            : std::make_shared<FeedForward>(s.d_model, s.d_ff, ff, gen);
    auto g = std::make_shared<Sequential>(std::make_shared<LayerNorm>(s.d_model), ffn);
    stack->push_back(f, g);
  }
  stack->to(dtype);
  stack->train();
  return stack;
}

// d/d(x, parameters) of sum(forward(x) * c) for a fixed cotangent c, in the stack's current mode.
std::vector<Tensor> gradients(ReversibleStack& stack, const Tensor& x0) {
  stack.zero_grad();
  Tensor x = x0.detach().requires_grad_();
  Generator gen(2024);
  GeneratorScope scope(gen);
  Tensor y = stack.forward(x);
  Tensor c = test::randn64(y.shape(), 5).to(y.dtype());
  backward(sum(mul(y, c)));
  std::vector<Tensor> g{x.grad()};
  for (const Tensor& p : stack.parameters()) g.push_back(p.grad());
  return g;
}

double max_rel_diff(const Tensor& a, const Tensor& b) {
  const double scale = std::max(max(abs(b)).item(), 1e-300);
  return max(abs(sub(a, b))).item() / scale;
}

TEST_CASE("ReversibleStack names its layers' parameters") {
  auto stack = make_stack(2, {}, DType::f32, 1);
  auto names = stack->named_parameters();
  CHECK(names.front().first == "layers.0.f.0.weight");
  CHECK(names.back().first == "layers.1.g.1.w2.bias");
  CHECK(stack->size() == 2);
  CHECK(test::contains(test::error_message([] { ReversibleLayer(nullptr, nullptr); }),
                       "ReversibleLayer: f and g must both be modules (got a null f)"));
}

TEST_CASE("reversible attention/feed-forward gradients equal the plain stack's (f64, dropout)") {
  for (std::size_t depth : {1u, 2u, 6u}) {
    for (int64_t ff_chunk : {0, 3}) {
      CAPTURE(depth);
      CAPTURE(ff_chunk);
      auto stack = make_stack(depth, {.dropout = 0.2, .ff_chunk = ff_chunk}, DType::f64, 7);
      Tensor x = test::randn64({2, 7, 16}, 3);
      stack->set_reversible(true);
      std::vector<Tensor> rev = gradients(*stack, x);
      stack->set_reversible(false);
      std::vector<Tensor> plain = gradients(*stack, x);
      REQUIRE(rev.size() == plain.size());
      double worst = 0;
      for (std::size_t i = 0; i < rev.size(); ++i) {
        REQUIRE(rev[i].defined());
        REQUIRE(plain[i].defined());
        worst = std::max(worst, max_rel_diff(rev[i], plain[i]));
      }
      CHECK(worst <= 1e-9);
    }
  }
}

// The true inputs of every block (a plain run one block at a time) and the ones the reversible
// backward recovers; returns the worst relative error per block (max |recovered - true| / max
// |true|, over both halves).
std::vector<double> reconstruction_errors(std::size_t depth, DType dtype) {
  auto stack = make_stack(depth, {.dropout = 0.1}, dtype, 11);
  Tensor x = test::randn64({2, 9, 16}, 4).to(dtype);
  std::vector<std::pair<Tensor, Tensor>> truth;
  {
    NoGradGuard no_grad;
    Generator gen(77);
    GeneratorScope scope(gen);
    Tensor a = x, b = x;
    for (std::size_t i = 0; i < depth; ++i) {
      truth.emplace_back(a, b);
      ReversibleFunction f = reversible_function(stack->layer(i).f);
      ReversibleFunction g = reversible_function(stack->layer(i).g);
      const ReversibleBlock block{f, g};
      std::tie(a, b) = reversible_stack(std::span<const ReversibleBlock>(&block, 1), a, b,
                                        {.reversible = false});
    }
  }
  std::vector<double> errors(depth, -1);
  stack->on_reconstructed = [&](std::size_t i, const Tensor& a, const Tensor& b) {
    errors[i] = std::max(max_rel_diff(a.to(DType::f64), truth[i].first.to(DType::f64)),
                         max_rel_diff(b.to(DType::f64), truth[i].second.to(DType::f64)));
  };
  Tensor xr = x.detach().requires_grad_();
  Generator gen(77);
  GeneratorScope scope(gen);
  auto [y1, y2] = stack->forward(xr, xr);
  backward(add(sum(y1), sum(y2)));
  return errors;
}

TEST_CASE("the reversible backward recovers every block's inputs (f64 exactly, f32 drift)") {
  std::vector<double> f64_errors = reconstruction_errors(6, DType::f64);
  for (double e : f64_errors) CHECK((e >= 0 && e < 1e-13));

  std::vector<double> f32_errors = reconstruction_errors(12, DType::f32);
  std::string report;
  for (std::size_t i = f32_errors.size(); i-- > 0;) {
    report += fmt::format(" {}:{:.2e}", i, f32_errors[i]);
  }
  // Drift grows from the last block (recovered first) to the first (recovered last).
  MESSAGE("float32 reconstruction drift over 12 blocks (block:max relative error):" << report);
  for (double e : f32_errors) CHECK((e >= 0 && e < 1e-4));
}

struct MemoryRun {
  int64_t peak = 0;         // above what was live before (the parameters and the input)
  int64_t param_bytes = 0;  // the parameters' size, which is also their gradients' size
};

MemoryRun measure(std::size_t depth, bool reversible, int64_t ff_chunk = 0) {
  const StackShape shape{.d_model = 64, .n_heads = 4, .d_ff = 256, .ff_chunk = ff_chunk};
  auto stack = make_stack(depth, shape, DType::f32, 3);
  stack->set_reversible(reversible);
  Generator data(5);
  Tensor x = randn({2, 256, 64}, data).requires_grad_();
  MemoryRun run;
  for (const Tensor& p : stack->parameters()) run.param_bytes += static_cast<int64_t>(p.nbytes());
  run.peak = test::peak_bytes([&] {
    Tensor y = stack->forward(x);
    backward(sum(y));
  });
  return run;
}

TEST_CASE("memory: the reversible stack's peak is flat in depth, the plain stack's linear") {
  // Peak bytes during forward + backward above the parameters, the input and the parameters'
  // gradients (all of which grow with depth as they must): what is left is activations, which the
  // reversible stack keeps for one block only.
  const MemoryRun rev1 = measure(1, true), rev12 = measure(12, true);
  const MemoryRun plain1 = measure(1, false), plain12 = measure(12, false);
  const auto activations = [](const MemoryRun& r) { return r.peak - r.param_bytes; };
  MESSAGE("peak above parameters (bytes): reversible depth 1 "
          << activations(rev1) << ", depth 12 " << activations(rev12) << "; plain depth 1 "
          << activations(plain1) << ", depth 12 " << activations(plain12));
  CHECK(static_cast<double>(activations(rev12)) <= 1.1 * static_cast<double>(activations(rev1)));
  // The plain stack keeps every block's activations (measured: 7.3x at 12 blocks; one block's
  // peak also holds the backward's transients, which do not grow with depth).
  CHECK(activations(plain12) >= 6 * activations(plain1));
  CHECK(activations(plain12) - activations(plain1) >=
        30 * (activations(rev12) - activations(rev1)));
}

}  // namespace
}  // namespace rw::nn
