#include "models/reformer/reformer_lm.h"

#include <utility>
#include <vector>

#include "autograd/reversible.h"
#include "core/ops.h"
#include "models/reformer/local_attention.h"
#include "models/reformer/lsh_self_attention.h"
#include "nn/attention.h"
#include "nn/losses.h"
#include "nn/positions.h"

namespace rw::reformer {
namespace {

std::shared_ptr<nn::Module> make_attention(const ReformerConfig& c, AttentionKind kind,
                                           Generator& gen) {
  switch (kind) {
    case AttentionKind::full:
      return std::make_shared<nn::MultiHeadAttention>(
          c.d_model, c.n_heads,
          nn::MultiHeadAttentionOptions{.causal = c.causal,
                                        .shared_qk = c.shared_qk,
                                        .dropout = c.attention_dropout,
                                        .d_head = c.d_head},
          gen);
    case AttentionKind::lsh:
      return std::make_shared<LSHSelfAttention>(
          c.d_model, c.n_heads,
          LSHSelfAttentionOptions{.lsh = {.chunk_len = c.chunk_len,
                                          .n_buckets = c.n_buckets,
                                          .n_hashes = c.n_hashes,
                                          .chunks_before = c.chunks_before,
                                          .chunks_after = c.chunks_after,
                                          .causal = c.causal,
                                          .count_duplicates = c.count_duplicates},
                                  .d_head = c.d_head,
                                  .dropout = c.attention_dropout},
          gen);
    case AttentionKind::local:
      return std::make_shared<LocalSelfAttention>(
          c.d_model, c.n_heads,
          LocalSelfAttentionOptions{.chunk_len = c.chunk_len,
                                    .chunks_before = c.chunks_before,
                                    .chunks_after = c.chunks_after,
                                    .causal = c.causal,
                                    .shared_qk = c.shared_qk,
                                    .dropout = c.attention_dropout,
                                    .d_head = c.d_head},
          gen);
  }
  throw Error("ReformerLM: unknown attention kind");
}

std::shared_ptr<nn::Module> make_positions(const ReformerConfig& c, Generator& gen) {
  switch (c.positions) {
    case PositionKind::axial:
      return std::make_shared<nn::AxialPositionalEmbedding>(
          c.resolved_axial_shape(), c.d_model, nn::AxialPositionalEmbeddingOptions{}, gen);
    case PositionKind::sinusoidal:
      return std::make_shared<nn::SinusoidalPositionalEmbedding>(c.d_model);
    case PositionKind::learned:
      return std::make_shared<nn::LearnedPositionalEmbedding>(c.max_len, c.d_model, gen);
    case PositionKind::none:
      return nullptr;
  }
  return nullptr;
}

// Dropout in training with its key from current_generator(): the reversible stack installs a
// generator per block call and replays it in backward, so the recomputation drops the same units.
Tensor train_dropout(const Tensor& x, double p, bool training) {
  if (!training || p == 0) return x;
  return dropout(x, p, current_generator().next(x.numel()));
}

// Runs f under a generator forked from current_generator(), as reversible_stack runs each F and G,
// so the standard residual draws its dropout masks and LSH rotations in the same order.
template <class F>
Tensor run_forked(F&& f) {
  Generator generator = current_generator().fork();
  GeneratorScope scope(generator);
  return f();
}

std::vector<Tensor> concat_parameters(const nn::Module& a, const nn::Module& b) {
  std::vector<Tensor> out = a.parameters();
  std::vector<Tensor> more = b.parameters();
  out.insert(out.end(), more.begin(), more.end());
  return out;
}

}  // namespace

ReformerLayer::ReformerLayer(const ReformerConfig& c, int64_t index, Generator& gen)
    : kind_(c.attention_of(index)), dropout_(c.dropout) {
  attention_norm = register_module("attention_norm", std::make_shared<nn::LayerNorm>(c.d_model));
  attention = register_module("attention", make_attention(c, kind_, gen));
  ff_norm = register_module("ff_norm", std::make_shared<nn::LayerNorm>(c.d_model));
  const nn::FeedForwardOptions ff_options{.activation = c.ff_activation, .dropout = c.ff_dropout};
  if (c.ff_chunk > 0) {
    ff = register_module("ff", std::make_shared<nn::ChunkedFeedForward>(
                                   c.d_model, c.d_ff, ff_options,
                                   nn::FeedForwardChunking{.chunk_size = c.ff_chunk}, gen));
  } else {
    ff = register_module("ff",
                         std::make_shared<nn::FeedForward>(c.d_model, c.d_ff, ff_options, gen));
  }
}

Tensor ReformerLayer::attention_block(const Tensor& x, const Tensor& key_padding_mask) {
  Tensor h = attention_norm->forward(x);
  switch (kind_) {
    case AttentionKind::full:
      h = static_cast<nn::MultiHeadAttention&>(*attention).forward(h, key_padding_mask);
      break;
    case AttentionKind::lsh:
      h = static_cast<LSHSelfAttention&>(*attention).forward(h, key_padding_mask);
      break;
    case AttentionKind::local:
      h = static_cast<LocalSelfAttention&>(*attention).forward(h, key_padding_mask);
      break;
  }
  return train_dropout(h, dropout_, is_training());
}

Tensor ReformerLayer::feed_forward_block(const Tensor& x) {
  return train_dropout(ff->forward(ff_norm->forward(x)), dropout_, is_training());
}

std::vector<Tensor> ReformerLayer::attention_parameters() const {
  return concat_parameters(*attention_norm, *attention);
}

std::vector<Tensor> ReformerLayer::feed_forward_parameters() const {
  return concat_parameters(*ff_norm, *ff);
}

ReformerLM::ReformerLM(ReformerConfig config, Generator& gen) : config_(std::move(config)) {
  config_.validate();
  const ReformerConfig& c = config_;
  embedding =
      register_module("embedding", std::make_shared<nn::Embedding>(c.vocab_size, c.d_model, gen));
  positions = make_positions(c, gen);
  if (positions) register_module("positions", positions);
  layers = register_module("layers", std::make_shared<nn::ModuleList>());
  for (int64_t i = 0; i < c.n_layers; ++i) {
    layers->push_back(std::make_shared<ReformerLayer>(c, i, gen));
  }
  final_norm = register_module("final_norm", std::make_shared<nn::LayerNorm>(c.d_model));
  if (c.tie_embeddings) {
    output_bias = zeros({c.vocab_size});
    register_parameter("output_bias", output_bias);
  } else {
    output =
        register_module("output", std::make_shared<nn::Linear>(c.d_model, c.vocab_size, true, gen));
  }
}

void ReformerLM::set_reversible(bool reversible) {
  RW_CHECK(!(reversible && config_.standard_residual),
           "ReformerLM::set_reversible: this model has the standard one-stream residual, which "
           "cannot be reversible");
  config_.reversible = reversible;
}

const ReformerLayer& ReformerLM::layer(int64_t i) const {
  return *layers->get<ReformerLayer>(static_cast<std::size_t>(i));
}

const Tensor& ReformerLM::output_weight() const {
  return output ? output->weight : embedding->weight;
}

const Tensor& ReformerLM::output_bias_tensor() const { return output ? output->bias : output_bias; }

void ReformerLM::check_tokens(const Tensor& tokens, const Tensor& key_padding_mask) const {
  RW_CHECK(tokens.defined(), "ReformerLM: the tokens are undefined");
  RW_CHECK(tokens.dim() == 2 && tokens.size(1) >= 1,
           "ReformerLM: expected tokens [batch, length] with length >= 1, got shape {}",
           tokens.shape());
  RW_CHECK(tokens.dtype() == DType::i64 || tokens.dtype() == DType::i32,
           "ReformerLM: tokens must be i64 or i32, got {}", tokens.dtype());
  const bool limited =
      config_.positions == PositionKind::axial || config_.positions == PositionKind::learned;
  RW_CHECK(!limited || tokens.size(1) <= config_.max_len,
           "ReformerLM: sequence length {} exceeds max_len {} of the {} positions", tokens.size(1),
           config_.max_len, to_string(config_.positions));
  if (key_padding_mask.defined()) {
    RW_CHECK(
        key_padding_mask.shape() == tokens.shape() && key_padding_mask.dtype() == DType::boolean,
        "ReformerLM: key_padding_mask must be bool {} like the tokens, got {} {}", tokens.shape(),
        key_padding_mask.dtype(), key_padding_mask.shape());
  }
}

Tensor ReformerLM::hidden(const Tensor& tokens, const Tensor& key_padding_mask) {
  check_tokens(tokens, key_padding_mask);
  Tensor x = embedding->forward(tokens);
  if (positions) x = positions->forward(x);
  x = train_dropout(x, config_.dropout, is_training());

  if (config_.standard_residual) {
    for (int64_t i = 0; i < config_.n_layers; ++i) {
      auto l = layers->get<ReformerLayer>(static_cast<std::size_t>(i));
      x = add(x, run_forked([&] { return l->attention_block(x, key_padding_mask); }));
      x = add(x, run_forked([&] { return l->feed_forward_block(x); }));
    }
    return final_norm->forward(x);
  }

  std::vector<ReversibleBlock> blocks;
  blocks.reserve(static_cast<std::size_t>(config_.n_layers));
  for (int64_t i = 0; i < config_.n_layers; ++i) {
    auto l = layers->get<ReformerLayer>(static_cast<std::size_t>(i));
    blocks.push_back(
        {.f = {.forward = [l, key_padding_mask](
                              const Tensor& h) { return l->attention_block(h, key_padding_mask); },
               .parameters = [l] { return l->attention_parameters(); }},
         .g = {.forward = [l](const Tensor& h) { return l->feed_forward_block(h); },
               .parameters = [l] { return l->feed_forward_parameters(); }}});
  }
  auto [y1, y2] = reversible_stack(blocks, x, x, {.reversible = config_.reversible});
  return final_norm->forward(join_mean(y1, y2));
}

Tensor ReformerLM::logits(const Tensor& h) const {
  return linear(h, output_weight(), output_bias_tensor());
}

Tensor ReformerLM::forward(const Tensor& tokens) { return forward(tokens, Tensor()); }

Tensor ReformerLM::forward(const Tensor& tokens, const Tensor& key_padding_mask) {
  return logits(hidden(tokens, key_padding_mask));
}

Tensor ReformerLM::loss(const Tensor& tokens, const Tensor& targets, const Tensor& key_padding_mask,
                        int64_t ignore_index) {
  RW_CHECK(targets.defined() && targets.shape() == tokens.shape(),
           "ReformerLM: targets must have the tokens' shape {}, got {}", tokens.shape(),
           targets.defined() ? targets.shape() : Shape{});
  Tensor h = hidden(tokens, key_padding_mask);
  return nn::chunked_cross_entropy(h, output_weight(), output_bias_tensor(), targets,
                                   config_.loss_chunk, ignore_index);
}

}  // namespace rw::reformer
