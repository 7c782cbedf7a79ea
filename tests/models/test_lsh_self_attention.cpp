// The LSHSelfAttention module: shapes, parameters, replay of its randomness, the block cache.
#include <doctest/doctest.h>

#include <algorithm>
#include <vector>

#include "autograd/reversible.h"
#include "autograd/tape.h"
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

TEST_CASE("LSHSelfAttention::forward_cached: each new position equals the last row of forward") {
  // The exact incremental LSH query: for every length, the cached output of the last position
  // equals forward() over the whole sequence with the same rotations (same generator state, fixed
  // bucket count), across chunk boundaries, the wrap-around between rounds, duplicate counting,
  // chunks after, bucket-restricted attention, and a batch.
  struct Config {
    int64_t n_hashes, n_buckets, before, after;
    bool count, across;
  };
  for (const Config& cf : {Config{2, 4, 1, 0, false, true}, Config{3, 4, 1, 1, true, true},
                           Config{1, 8, 2, 0, false, true}, Config{2, 4, 1, 0, true, false},
                           Config{4, 2, 1, 0, true, true}, Config{2, 1, 0, 0, false, true}}) {
    INFO("hashes ", cf.n_hashes, " buckets ", cf.n_buckets, " before ", cf.before, " after ",
         cf.after, " count ", cf.count, " across ", cf.across);
    auto attn = make_attention({.lsh = {.chunk_len = 4,
                                        .n_buckets = cf.n_buckets,
                                        .n_hashes = cf.n_hashes,
                                        .chunks_before = cf.before,
                                        .chunks_after = cf.after,
                                        .causal = true,
                                        .count_duplicates = cf.count,
                                        .attend_across_buckets = cf.across}});
    attn->eval();
    Generator data(5);
    const int64_t L = 19;
    Tensor x = randn({2, L, 16}, data);
    NoGradGuard no_grad;
    for (int64_t prompt : {1, 4, 7}) {
      INFO("prompt ", prompt);
      LSHDecodeState state;
      Generator g(11);
      Tensor first;
      {
        GeneratorScope scope(g);
        first = attn->forward_cached(x.narrow(1, 0, prompt), state, L);
      }
      double worst = 0;
      for (int64_t t = prompt; t <= L; ++t) {
        Generator replay(11);
        GeneratorScope scope(replay);
        Tensor reference = attn->forward(x.narrow(1, 0, t)).select(1, t - 1);
        Tensor got = t == prompt
                         ? first.select(1, t - 1)
                         : attn->forward_cached(x.narrow(1, t - 1, 1), state, L).select(1, 0);
        worst = std::max(worst, max(abs(sub(got, reference))).item());
      }
      CHECK(worst < 1e-5);
    }
  }
}

TEST_CASE("LSHSelfAttention::forward_cached needs causal attention and a fixed bucket count") {
  auto attn = make_attention();  // n_buckets 0: resolved per length
  LSHDecodeState state;
  Tensor x = randn({1, 3, 16});
  CHECK(contains(error_message([&] { attn->forward_cached(x, state, 8); }),
                 "forward_cached needs a fixed bucket count"));
  attn->set_n_buckets_override(4);
  CHECK(attn->forward_cached(x, state, 8).shape() == Shape{1, 3, 16});
  CHECK(contains(error_message([&] { attn->forward_cached(x, state, 8); }),
                 "takes one position at a time"));
  CHECK(contains(error_message([&] { attn->set_n_buckets_override(3); }),
                 "override must be 1 or even, got 3"));
  attn->set_n_buckets_override(std::nullopt);
  auto bidirectional = make_attention({.lsh = {.chunk_len = 4, .n_buckets = 4}});
  LSHDecodeState other;
  CHECK(contains(error_message([&] { bidirectional->forward_cached(x, other, 8); }),
                 "forward_cached needs causal attention"));
}

}  // namespace
}  // namespace rw::reformer
