#pragma once
// The configuration of a ReformerLM: every switch the paper's ablations need, validated in one
// place, and saved into / loaded from checkpoints as "key" -> "value" strings.
//
//   rw::reformer::ReformerConfig cfg;            // a 6-layer LSH Reformer over bytes
//   cfg.attention = {rw::reformer::AttentionKind::full};   // the full-attention baseline
//   cfg.reversible = false;                      // the same two streams, all kept for backward
//   cfg.standard_residual = true;                // + one stream: a Transformer (Fig. 3 right)
//   cfg.validate();                              // rw::Error naming the field and value
//   auto saved = cfg.to_map();                   // Checkpoint::config
//   auto again = rw::reformer::ReformerConfig::from_map(saved);
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "nn/activations.h"

namespace rw::reformer {

enum class AttentionKind {
  full,   // L x L attention (shared-QK or separate Q/K): the Transformer baseline
  lsh,    // the Reformer's LSH attention (always shared-QK)
  local,  // chunked local attention: each chunk attends to itself and its neighbours
};
enum class PositionKind { axial, sinusoidal, learned, none };

std::string to_string(AttentionKind kind);
std::string to_string(PositionKind kind);
// The inverses; an rw::Error listing the accepted names otherwise.
AttentionKind parse_attention_kind(const std::string& name);
PositionKind parse_position_kind(const std::string& name);
nn::Activation parse_activation(const std::string& name);

struct ReformerConfig {
  int64_t vocab_size = 256;  // bytes
  int64_t d_model = 256;
  int64_t d_ff = 1024;
  int64_t n_layers = 6;
  int64_t n_heads = 4;
  int64_t d_head = 0;  // 0: d_model / n_heads (which must divide)

  // One kind for every layer, or one per layer (a model may mix kinds).
  std::vector<AttentionKind> attention = {AttentionKind::lsh};
  bool shared_qk = true;  // for full and local attention (LSH attention is always shared-QK)
  bool causal = true;
  int64_t chunk_len = 64;  // LSH and local attention
  int64_t chunks_before = 1;
  int64_t chunks_after = 0;
  int64_t n_hashes = 1;   // LSH rounds
  int64_t n_buckets = 0;  // 0: about 2 L / chunk_len per call (a power of two)
  bool count_duplicates = false;

  bool reversible = true;  // false: the same layers as a plain residual stack
  // The Transformer's residual on one stream, x + F(x) then that + G(that), instead of the two
  // streams of the reversible layers: the baseline of the paper's Fig. 3 (right). Needs
  // reversible = false (a one-stream residual cannot be inverted).
  bool standard_residual = false;
  int64_t ff_chunk = 0;  // > 0: chunked feed-forward over that many positions; 0: unchunked
  nn::Activation ff_activation = nn::Activation::gelu;

  double dropout = 0;            // on the embeddings and on each block's output
  double attention_dropout = 0;  // on the attention probabilities
  double ff_dropout = 0;         // on the feed-forward's d_ff hidden activations

  PositionKind positions = PositionKind::axial;
  int64_t max_len = 4096;  // longest sequence the positions cover (axial / learned)
  // The axial grid (its product >= max_len); empty: two factors near sqrt(max_len).
  std::vector<int64_t> axial_shape{};

  bool tie_embeddings = false;  // the output projection is the token embedding's transpose
  int64_t loss_chunk = 1024;    // positions per chunk of the chunked cross-entropy

  // The kind of attention of layer i.
  AttentionKind attention_of(int64_t layer) const;
  int64_t head_dim() const { return d_head > 0 ? d_head : d_model / n_heads; }
  // The axial grid actually used (axial_shape, or the default for max_len).
  std::vector<int64_t> resolved_axial_shape() const;

  // Throws rw::Error naming the first bad field and its value.
  void validate() const;

  // Every field as text (lists comma-separated, kinds by name); from_map(to_map()) == *this.
  std::map<std::string, std::string> to_map() const;
  // Reads what to_map wrote; a missing key keeps its default, an unknown key or a malformed
  // value is an rw::Error naming the key (a checkpoint from another model is not silently read).
  static ReformerConfig from_map(const std::map<std::string, std::string>& values);

  friend bool operator==(const ReformerConfig&, const ReformerConfig&) = default;
};

}  // namespace rw::reformer
