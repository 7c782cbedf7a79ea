// The standard one-stream residual (ReformerConfig::standard_residual, the Transformer baseline of
// the paper's Fig. 3 right): it computes x + F(x), then + G(.), layer after layer, with the same
// randomness order as the reversible stack, and its gradients pass gradcheck.
#include <doctest/doctest.h>

#include <vector>

#include "autograd/gradcheck.h"
#include "core/generator_scope.h"
#include "core/ops.h"
#include "models/reformer/reformer_lm.h"
#include "reformer_test_util.h"
#include "test_util.h"

namespace rw::reformer {
namespace {

ReformerConfig standard_config() {
  ReformerConfig c;
  c.vocab_size = 11;
  c.d_model = 8;
  c.d_ff = 16;
  c.n_layers = 2;
  c.n_heads = 2;
  c.attention = {AttentionKind::lsh, AttentionKind::full};
  c.chunk_len = 4;
  c.n_hashes = 2;
  c.n_buckets = 4;
  c.max_len = 64;
  c.loss_chunk = 5;
  c.dropout = 0.2;
  c.reversible = false;
  c.standard_residual = true;
  return c;
}

TEST_CASE("standard residual: x + F(x), then + G, one stream, written out by hand") {
  const ReformerConfig c = standard_config();
  Generator init(3);
  ReformerLM model(c, init);
  model.to(DType::f64);
  model.train();  // dropout on: the masks must come from the same forks
  const Tensor tokens = test::random_tokens(2, 9, c.vocab_size, 4);

  Generator run(7);
  Tensor h;
  {
    GeneratorScope scope(run);
    h = model.hidden(tokens);
  }

  // By hand, with the generator forked per F and G in the order the reversible stack uses.
  Generator by_hand(7);
  GeneratorScope scope(by_hand);
  Tensor x = model.positions->forward(model.embedding->forward(tokens));
  x = dropout(x, c.dropout, current_generator().next(x.numel()));
  for (int64_t i = 0; i < c.n_layers; ++i) {
    auto& layer = const_cast<ReformerLayer&>(model.layer(i));
    {
      Generator f = current_generator().fork();
      GeneratorScope fs(f);
      x = add(x, layer.attention_block(x, Tensor()));
    }
    {
      Generator g = current_generator().fork();
      GeneratorScope gs(g);
      x = add(x, layer.feed_forward_block(x));
    }
  }
  const Tensor expected = model.final_norm->forward(x);
  CHECK(max(abs(sub(h, expected))).item() <= 1e-12);

  // It is not the two-stream model: the same weights give other outputs there.
  ReformerConfig two_stream = c;
  two_stream.standard_residual = false;
  Generator init2(3);
  ReformerLM other(two_stream, init2);
  other.to(DType::f64);
  other.train();
  Generator run2(7);
  GeneratorScope scope2(run2);
  CHECK(max(abs(sub(other.hidden(tokens), h))).item() > 1e-3);
}

TEST_CASE("standard residual: a 2-layer model passes gradcheck in float64") {
  ReformerConfig c = standard_config();
  c.dropout = 0;
  Generator init(11);
  ReformerLM model(c, init);
  model.to(DType::f64);
  const Tensor tokens = test::random_tokens(1, 9, c.vocab_size, 12);
  const Tensor targets = test::random_tokens(1, 9, c.vocab_size, 13);
  GradcheckResult r = test::gradcheck_reformer_lm(model, tokens, targets);
  CHECK_MESSAGE(r.ok, r.message);
}

TEST_CASE("standard residual: reversible is refused in the config and by set_reversible") {
  ReformerConfig c = standard_config();
  c.reversible = true;
  CHECK(test::contains(test::error_message([&] { c.validate(); }),
                       "standard_residual needs reversible = false"));
  c.reversible = false;
  CHECK(ReformerConfig::from_map(c.to_map()) == c);
  Generator init(1);
  ReformerLM model(c, init);
  CHECK(test::contains(test::error_message([&] { model.set_reversible(true); }),
                       "cannot be reversible"));
  CHECK_NOTHROW(model.set_reversible(false));
}

}  // namespace
}  // namespace rw::reformer
