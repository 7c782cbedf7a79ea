#pragma once
// A tiny pre-norm Transformer language model built only from the nn library's public modules, as
// a user would write one: the integration subject of the training tests (every optimizer overfits
// it; checkpoints resume it exactly).
#include <memory>
#include <vector>

#include "core/ops.h"
#include "nn/attention.h"
#include "nn/containers.h"
#include "nn/embedding.h"
#include "nn/feed_forward.h"
#include "nn/layer_norm.h"
#include "nn/learned_positions.h"
#include "nn/linear.h"

namespace rw::test {

class TinyBlock : public nn::Module {
 public:
  TinyBlock(int64_t d, int64_t heads, int64_t d_ff) {
    norm1 = register_module("norm1", std::make_shared<nn::LayerNorm>(d));
    attn = register_module(
        "attn", std::make_shared<nn::MultiHeadAttention>(
                    d, heads, nn::MultiHeadAttentionOptions{.causal = true, .shared_qk = true}));
    norm2 = register_module("norm2", std::make_shared<nn::LayerNorm>(d));
    ff = register_module("ff", std::make_shared<nn::FeedForward>(d, d_ff));
  }
  std::string type_name() const override { return "TinyBlock"; }
  Tensor forward(const Tensor& x) override {
    Tensor h = add(x, attn->forward(norm1->forward(x)));
    return add(h, ff->forward(norm2->forward(h)));
  }

  std::shared_ptr<nn::LayerNorm> norm1, norm2;
  std::shared_ptr<nn::MultiHeadAttention> attn;
  std::shared_ptr<nn::FeedForward> ff;
};

class TinyLM : public nn::Module {
 public:
  TinyLM(int64_t vocab, int64_t max_len, int64_t d = 32, int64_t layers = 2) {
    embed = register_module("embed", std::make_shared<nn::Embedding>(vocab, d));
    positions =
        register_module("positions", std::make_shared<nn::LearnedPositionalEmbedding>(max_len, d));
    blocks = register_module("blocks", std::make_shared<nn::ModuleList>());
    for (int64_t i = 0; i < layers; ++i)
      blocks->push_back(std::make_shared<TinyBlock>(d, 2, 2 * d));
    norm = register_module("norm", std::make_shared<nn::LayerNorm>(d));
    head = register_module("head", std::make_shared<nn::Linear>(d, vocab));
  }
  std::string type_name() const override { return "TinyLM"; }
  // tokens i64 [B, L] -> logits [B, L, vocab]
  Tensor forward(const Tensor& tokens) override {
    Tensor h = positions->forward(mul(embed->forward(tokens), 0.5));
    for (const auto& block : *blocks) h = block->forward(h);
    return head->forward(norm->forward(h));
  }

  std::shared_ptr<nn::Embedding> embed;
  std::shared_ptr<nn::LearnedPositionalEmbedding> positions;
  std::shared_ptr<nn::ModuleList> blocks;
  std::shared_ptr<nn::LayerNorm> norm;
  std::shared_ptr<nn::Linear> head;
};

// A batch of the repeating sequence 0 1 2 ... period-1 0 1 ..., shifted by the row index: inputs
// [B, L] and next-token targets [B, L].
inline std::pair<Tensor, Tensor> repeating_batch(int64_t batch, int64_t length, int64_t period) {
  std::vector<int64_t> x, y;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = 0; t < length; ++t) {
      x.push_back((b + t) % period);
      y.push_back((b + t + 1) % period);
    }
  }
  return {from_vector<int64_t>(x, Shape{batch, length}),
          from_vector<int64_t>(y, Shape{batch, length})};
}

}  // namespace rw::test
