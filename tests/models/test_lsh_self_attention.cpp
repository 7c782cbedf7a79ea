// The LSHSelfAttention module: shapes, parameters, replay of its randomness, the block cache.
#include <doctest/doctest.h>

#include <vector>

#include "autograd/reversible.h"
#include "core/generator_scope.h"
#include "core/ops.h"
#include "models/reformer/lsh_self_attention.h"
#include "nn/nn_test_util.h"
#include "test_util.h"

namespace rw::reformer {
namespace {

using test::contains;
using test::error_message;
using test::host;

std::shared_ptr<LSHSelfAttention> make_attention(
    LSHSelfAttentionOptions options = {.lsh = {.chunk_len = 4, .n_hashes = 2, .causal = true}}) {
  Generator init(17);
  return std::make_shared<LSHSelfAttention>(16, 2, options, init);
}

TEST_CASE("LSHSelfAttention: shapes, parameters and a padded batch") {
  auto attn = make_attention();
  std::vector<std::string> names;
  for (const auto& [name, t] : attn->named_parameters()) names.push_back(name);
  CHECK(names == std::vector<std::string>{"w_qk", "w_v", "w_o", "b_o"});
  CHECK(attn->w_qk.shape() == Shape{16, 16});
  Generator gen(1);
  Tensor x = randn({2, 13, 16}, gen);
  Tensor mask = lt(arange(13), 10.0).reshape({1, 13}).expand({2, 13}).contiguous();
  Generator g(3);
  GeneratorScope scope(g);
  Tensor y = attn->forward(x, mask);
  CHECK(y.shape() == Shape{2, 13, 16});
  for (double value : host(y)) CHECK(std::isfinite(value));
  CHECK(contains(error_message([&] {
                   attn->forward(randn({2, 13, 8}, gen));
                 }),
                 "LSHSelfAttention: expected floating x of shape [batch, length, 16], got f32 "
                 "[2, 13, 8]"));
  CHECK(contains(error_message([] { LSHSelfAttention(10, 3); }),
                 "LSHSelfAttention: d_model 10 is not divisible by n_heads 3"));
}

TEST_CASE("LSHSelfAttention replays its rotations and dropout from the generator") {
  auto attn =
      make_attention({.lsh = {.chunk_len = 4, .n_hashes = 2, .causal = true}, .dropout = 0.2});
  attn->train();
  Generator gen(1);
  Tensor x = randn({1, 24, 16}, gen);
  Generator a(5), b(5);
  Tensor y1, y2, y3;
  {
    GeneratorScope scope(a);
    y1 = attn->forward(x);
    y3 = attn->forward(x);  // the generator has moved on: new rotations and dropout
  }
  {
    GeneratorScope scope(b);
    y2 = attn->forward(x);
  }
  CHECK(host(y1) == host(y2));
  CHECK(host(y1) != host(y3));
}

TEST_CASE("LSHSelfAttention takes its buckets from a replaying block cache") {
  auto attn = make_attention();
  Generator gen(2);
  Tensor x = randn({1, 32, 16}, gen);
  BlockCache cache;
  Tensor forward_out, replayed, rehashed;
  {
    BlockCacheScope scope(&cache, false);
    Generator g(1);
    GeneratorScope gs(g);
    forward_out = attn->forward(x);
  }
  {
    BlockCacheScope scope(&cache, true);
    Generator g(1234);  // other rotations: only the cached buckets can give the same output
    GeneratorScope gs(g);
    replayed = attn->forward(x);
  }
  {
    Generator g(1234);
    GeneratorScope gs(g);
    rehashed = attn->forward(x);
  }
  CHECK(host(replayed) == host(forward_out));
  CHECK(host(rehashed) != host(forward_out));
}

TEST_CASE("LSHSelfAttention gradients pass gradcheck in float64") {
  auto attn = make_attention();
  attn->to(DType::f64);
  Tensor x = test::randn64({2, 9, 16}, 4);
  Tensor mask = lt(arange(9), 7.0).reshape({1, 9}).expand({2, 9}).contiguous();
  auto r = test::gradcheck_module({&attn->w_qk, &attn->w_v, &attn->w_o, &attn->b_o}, x,
                                  [&](const Tensor& in) {
                                    Generator g(6);  // the same rotations in every evaluation
                                    GeneratorScope scope(g);
                                    return attn->forward(in, mask);
                                  });
  INFO(r.message);
  CHECK(r.ok);
}

}  // namespace
}  // namespace rw::reformer
