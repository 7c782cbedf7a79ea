// The reversible backward's recomputation of a block keeps what its own backward needs: the chunked
// feed-forward's pre-activations are computed once in the recomputation and reused, not computed
// again, and the gradients stay those of the plain residual stack. (Keeping the chunk attention's
// scores the same way was tried and measured no faster at L = 16384 for 131 MB more, so it does
// not.)
#include <doctest/doctest.h>

#include <algorithm>
#include <vector>

#include "autograd/tape.h"
#include "core/generator_scope.h"
#include "core/ops.h"
#include "models/reformer/reformer_lm.h"
#include "nn/feed_forward.h"
#include "reformer_test_util.h"
#include "test_util.h"

namespace rw::reformer {
namespace {

ReformerConfig reuse_config() {
  ReformerConfig c;
  c.vocab_size = 11;
  c.d_model = 8;
  c.d_ff = 16;
  c.n_layers = 2;
  c.n_heads = 2;
  c.attention = {AttentionKind::lsh};
  c.chunk_len = 4;
  c.n_hashes = 2;
  c.n_buckets = 4;
  c.max_len = 64;
  c.loss_chunk = 5;
  c.ff_chunk = 3;  // 4 chunks of the 10 positions
  c.causal = true;
  return c;
}

struct Step {
  std::vector<Tensor> grads;
  nn::ChunkedFeedForwardCounters ff;
};

Step step(ReformerLM& model, const Tensor& tokens, const Tensor& targets) {
  model.zero_grad();
  nn::reset_chunked_feed_forward_counters();
  Generator gen(99);
  GeneratorScope scope(gen);
  backward(model.loss(tokens, targets));
  Step s{.grads = {}, .ff = nn::chunked_feed_forward_counters()};
  for (const Tensor& p : model.parameters()) s.grads.push_back(p.grad());
  return s;
}

double max_rel_diff(const Tensor& a, const Tensor& b) {
  const double scale = std::max(max(abs(b)).item(), 1e-300);
  return max(abs(sub(a, b))).item() / scale;
}

TEST_CASE("the reversible backward computes each FF chunk's hidden units once") {
  for (DType dtype : {DType::f64, DType::f32}) {
    CAPTURE(dtype);
    Generator gen(5);
    ReformerLM model(reuse_config(), gen);
    model.to(dtype);
    const Tensor tokens = test::random_tokens(2, 10, 11, 6),
                 targets = test::random_tokens(2, 10, 11, 7);
    model.set_reversible(false);
    const Step plain = step(model, tokens, targets);
    model.set_reversible(true);
    const Step rev = step(model, tokens, targets);

    // Plain: every FF chunk once in forward and once in backward, nothing kept.
    CHECK(plain.ff.hidden_chunks_computed == 2 * 2 * 4);  // 2 layers x (forward, backward) x 4
    CHECK(plain.ff.hidden_chunks_reused == 0);
    // Reversible: forward, then the recomputation; its backward reuses instead of a third pass.
    CHECK(rev.ff.hidden_chunks_computed == plain.ff.hidden_chunks_computed);
    CHECK(2 * rev.ff.hidden_chunks_reused == plain.ff.hidden_chunks_computed);

    REQUIRE(rev.grads.size() == plain.grads.size());
    double worst = 0;
    for (std::size_t i = 0; i < rev.grads.size(); ++i) {
      REQUIRE(rev.grads[i].defined());
      worst = std::max(worst, max_rel_diff(rev.grads[i], plain.grads[i]));
    }
    // f32: the reconstructed inputs differ from the true ones by round-off.
    CHECK(worst <= (dtype == DType::f64 ? 1e-9 : 2e-3));
  }
}

TEST_CASE("a forward without gradients keeps nothing for a backward") {
  Generator gen(5);
  ReformerLM model(reuse_config(), gen);
  model.to(DType::f64);
  const Tensor tokens = test::random_tokens(1, 10, 11, 8),
               targets = test::random_tokens(1, 10, 11, 9);
  nn::reset_chunked_feed_forward_counters();
  Tensor loss;
  {
    Generator g(3);
    GeneratorScope scope(g);
    NoGradGuard no_grad;
    loss = model.loss(tokens, targets);
  }
  CHECK(nn::chunked_feed_forward_counters().hidden_chunks_reused == 0);
  CHECK_FALSE(loss.requires_grad());
}

}  // namespace
}  // namespace rw::reformer
