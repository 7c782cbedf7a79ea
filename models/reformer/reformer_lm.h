#pragma once
// ReformerLM: the Reformer language model (Kitaev, Kaiser, Levskaya 2020).
//
//   tokens [B, L] -> token embedding (+ axial / sinusoidal / learned positions) -> dropout
//   -> (x, x) -> n_layers reversible blocks            y1 = x1 + F(x2),  y2 = x2 + G(y1)
//        F(x) = dropout(attention(layer_norm(x)))      (LSH, full or local attention per layer)
//        G(x) = dropout(feed_forward(layer_norm(x)))   (chunked or not)
//   -> mean of the halves -> layer_norm -> output projection (optionally tied) -> logits
//
// The halves are joined by their mean (as lucidrains), which keeps the width d_model so the
// output projection can be tied to the embedding; trax concatenates them and normalises over
// 2 d_model. With config.reversible = false the same layers run as a plain residual stack (every
// activation on the tape), for the ablations; both modes draw the same randomness, so their
// outputs and gradients agree.
//
//   rw::reformer::ReformerConfig cfg;
//   cfg.n_layers = 2;
//   auto model = std::make_shared<rw::reformer::ReformerLM>(cfg);
//   rw::Tensor loss = model->loss(tokens, targets);   // chunked cross-entropy, nats per token
//   rw::backward(loss);
//
// Parameter names: embedding.weight, positions.*, layers.<i>.attention_norm.*,
// layers.<i>.attention.*, layers.<i>.ff_norm.*, layers.<i>.ff.*, final_norm.*, and output.weight /
// output.bias (untied) or output_bias (tied to embedding.weight).
#include <cstdint>
#include <memory>
#include <string>

#include "core/generator_scope.h"
#include "core/tensor.h"
#include "models/reformer/reformer_config.h"
#include "nn/containers.h"
#include "nn/embedding.h"
#include "nn/feed_forward.h"
#include "nn/layer_norm.h"
#include "nn/linear.h"
#include "nn/module.h"

namespace rw::reformer {

// The modules of one reversible block: F = attention with its norm, G = feed-forward with its.
class ReformerLayer : public nn::Module {
 public:
  ReformerLayer(const ReformerConfig& config, int64_t index, Generator& generator);
  std::string type_name() const override { return "ReformerLayer"; }

  // F(x): dropout(attention(attention_norm(x), key_padding_mask)).
  Tensor attention_block(const Tensor& x, const Tensor& key_padding_mask);
  // G(x): dropout(ff(ff_norm(x))).
  Tensor feed_forward_block(const Tensor& x);
  std::vector<Tensor> attention_parameters() const;
  std::vector<Tensor> feed_forward_parameters() const;

  AttentionKind kind() const { return kind_; }

  std::shared_ptr<nn::LayerNorm> attention_norm, ff_norm;
  // nn::MultiHeadAttention, LSHSelfAttention or LocalSelfAttention, by kind().
  std::shared_ptr<nn::Module> attention;
  std::shared_ptr<nn::FeedForward> ff;  // a ChunkedFeedForward when config.ff_chunk > 0

 private:
  AttentionKind kind_;
  double dropout_;
};

class ReformerLM : public nn::Module {
 public:
  // Validates the config (rw::Error naming the bad field) and draws every parameter from
  // `generator` in a fixed order.
  explicit ReformerLM(ReformerConfig config, Generator& generator = current_generator());
  std::string type_name() const override { return "ReformerLM"; }

  // tokens i64 [B, L] in [0, vocab_size) -> the final hidden states [B, L, d_model] (after the
  // last layer norm). key_padding_mask: optional bool [B, L], true = a real token; padded keys are
  // never attended. Any L >= 1 up to max_len (for axial and learned positions).
  Tensor hidden(const Tensor& tokens, const Tensor& key_padding_mask = {});
  // The logits [B, L, vocab_size] of hidden states.
  Tensor logits(const Tensor& hidden) const;
  // logits(hidden(tokens)).
  Tensor forward(const Tensor& tokens) override;
  Tensor forward(const Tensor& tokens, const Tensor& key_padding_mask);
  // The mean next-token cross-entropy (nats) over targets that are not ignore_index, computed
  // config.loss_chunk positions at a time (the [B, L, V] logits never exist).
  Tensor loss(const Tensor& tokens, const Tensor& targets, const Tensor& key_padding_mask = {},
              int64_t ignore_index = -100);

  const ReformerConfig& config() const { return config_; }
  // Switches between the reversible and the plain residual stack (same parameters); rw::Error for
  // a model with the standard one-stream residual, which cannot be reversible.
  void set_reversible(bool reversible);
  const ReformerLayer& layer(int64_t i) const;
  // The output projection's weight [vocab_size, d_model] and bias [vocab_size].
  const Tensor& output_weight() const;
  const Tensor& output_bias_tensor() const;

  std::shared_ptr<nn::Embedding> embedding;
  std::shared_ptr<nn::Module> positions;  // null with PositionKind::none
  std::shared_ptr<nn::ModuleList> layers;
  std::shared_ptr<nn::LayerNorm> final_norm;
  std::shared_ptr<nn::Linear> output;  // null when tied
  Tensor output_bias;                  // defined when tied

 private:
  void check_tokens(const Tensor& tokens, const Tensor& key_padding_mask) const;
  ReformerConfig config_;
};

}  // namespace rw::reformer
