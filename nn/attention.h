#pragma once
// Full (L x L) dot-product attention: the functional core and the multi-head module.
//
//   auto attn = std::make_shared<rw::nn::MultiHeadAttention>(
//       512, 8, rw::nn::MultiHeadAttentionOptions{.causal = true, .shared_qk = true});
//   rw::Tensor y = attn->forward(x, key_padding_mask);  // x [B, L, 512], mask bool [B, L]
//
// Masks are additive finite penalties (see nn/attention_mask.h for why, and for the rule that a
// query with no allowed key gets zero attention).
#include <cstdint>
#include <optional>
#include <vector>

#include "core/generator_scope.h"
#include "core/philox.h"
#include "core/tensor.h"
#include "nn/attention_mask.h"
#include "nn/module.h"

namespace rw::nn {

struct AttentionOptions {
  // Multiplies the logits q . k; default 1 / sqrt(d_head).
  std::optional<double> scale{};
  // Dropout on the attention probabilities; the mask is a pure function of dropout_state, so a
  // recomputation with the same state drops the same entries.
  double dropout_p = 0;
  PhiloxState dropout_state{};
};

// softmax(scale * q k^T + mask penalties) over the keys, with rows that have no allowed key set to
// zero: q [..., Lq, d], k [..., Lk, d] (batch dims broadcast as in matmul) -> [..., Lq, Lk].
// No dropout: these are the probabilities the output is computed from.
Tensor attention_weights(const Tensor& q, const Tensor& k, const AttentionMaskSpec& mask = {},
                         std::optional<double> scale = std::nullopt);

// attention_weights(q, k) (then dropout) @ v: v [..., Lk, dv] -> [..., Lq, dv].
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v,
                 const AttentionMaskSpec& mask = {}, const AttentionOptions& options = {});

// x / |x| over the last dim: the shared-QK keys (Reformer paper, Sec. 2.1). Computed in at least
// f32; a zero vector stays zero (with a zero gradient) rather than becoming NaN.
Tensor unit_normalize(const Tensor& x);

// What every multi-head attention module (MultiHeadAttention, the Reformer's local and LSH
// attention) checks and draws the same way, so their parameters are interchangeable.
//
// d_head resolved (0: d_model / n_heads, which must divide) after checking d_model, n_heads,
// d_head >= 0 and dropout in [0, 1); errors name `module`.
int64_t resolve_attention_d_head(const char* module, int64_t d_model, int64_t n_heads,
                                 int64_t d_head, double dropout);
// Initial weights as PyTorch's nn.MultiheadAttention: `input_blocks` blocks [inner, d_model],
// each Xavier-uniform over its own shape and drawn in order (q, k, v; or qk, v), then the output
// projection [d_model, inner] uniform in +-1/sqrt(inner) (nn.Linear's default).
struct AttentionWeights {
  std::vector<Tensor> input_blocks;
  Tensor output;
};
AttentionWeights initial_attention_weights(int64_t d_model, int64_t inner, int input_blocks,
                                           Generator& generator);

struct MultiHeadAttentionOptions {
  bool causal = false;
  // One projection for queries and keys; keys are the unit-normalised queries and a query attends
  // to itself only when nothing else is allowed (finite self penalty).
  bool shared_qk = false;
  // One input projection w_in (rows: q, k, v blocks; or qk, v with shared_qk) instead of separate
  // w_q, w_k, w_v (or w_qk, w_v). Both draw the same initial values from the same generator.
  bool fused_projection = false;
  bool bias = true;    // biases b_* on every projection (zero-initialised, as PyTorch)
  double dropout = 0;  // on the attention probabilities, in training mode only
  int64_t d_head = 0;  // 0: d_model / n_heads (which must divide)
};

// The keys and values of the positions a causal MultiHeadAttention has seen so far, for
// autoregressive decoding (MultiHeadAttention::forward_cached). Buffers are allocated for
// `capacity` positions at the first call and filled in place, so a step copies only its own row.
struct KeyValueCache {
  Tensor keys;         // [B, n_heads, capacity, d_head]; with shared_qk the unit-normalised qk
  Tensor values;       // [B, n_heads, capacity, d_head]
  int64_t length = 0;  // positions held: [0, length)
};

// What forward_with_weights returns.
struct AttentionResult {
  Tensor output;   // [B, L, d_model]
  Tensor weights;  // [B, n_heads, L, L], the probabilities before dropout
};

// Multi-head self-attention: x [B, L, d_model] -> [B, L, d_model]. Logits are scaled by
// 1/sqrt(d_head) in every mode: with shared_qk that is lucidrains' choice (trax and HuggingFace
// leave the q . k_hat logits unscaled); the scale is a fixed function of d_head either way.
//
// Parameters are public members, like a PyTorch module's attributes; those the options do not use
// stay undefined and unregistered. Their names in state_dict are the member names:
//   separate: w_q, b_q, w_k, b_k, w_v, b_v, w_o, b_o   shared_qk: w_qk, b_qk, w_v, b_v, w_o, b_o
//   fused:    w_in, b_in, w_o, b_o                      (w_in: [3 or 2 x inner, d_model])
// Weights are [out, in] (rw::linear), inner = n_heads * d_head. Initialisation follows PyTorch's
// nn.MultiheadAttention: every q/k/v block Xavier-uniform over [inner, d_model], w_o uniform in
// +-1/sqrt(inner) (nn.Linear's default), biases zero.
class MultiHeadAttention : public Module {
 public:
  MultiHeadAttention(int64_t d_model, int64_t n_heads, MultiHeadAttentionOptions options = {},
                     Generator& generator = current_generator());

  std::string type_name() const override { return "MultiHeadAttention"; }

  Tensor forward(const Tensor& x) override { return forward(x, Tensor()); }
  // key_padding_mask: optional bool [B, L], true = real token (padding keys are never attended).
  Tensor forward(const Tensor& x, const Tensor& key_padding_mask);
  AttentionResult forward_with_weights(const Tensor& x, const Tensor& key_padding_mask = {});

  // Incremental causal decoding: x [B, T, d_model] holds positions cache.length ..
  // cache.length + T - 1 of one sequence; their queries attend to every cached key and to their
  // own (causal, with the shared-QK self penalty), and their keys and values are appended to the
  // cache (allocated for `capacity` positions by the first call). Returns [B, T, d_model], equal
  // to the last T rows of forward() over the whole sequence up to float round-off. Needs a causal
  // module (later positions would change earlier outputs otherwise); inference only: no dropout,
  // no padding mask, no gradient.
  Tensor forward_cached(const Tensor& x, KeyValueCache& cache, int64_t capacity);

  int64_t d_model() const { return d_model_; }
  int64_t n_heads() const { return n_heads_; }
  int64_t d_head() const { return d_head_; }
  const MultiHeadAttentionOptions& options() const { return options_; }

  Tensor w_q, b_q, w_k, b_k, w_qk, b_qk, w_v, b_v, w_in, b_in, w_o, b_o;

 private:
  struct Projected {
    Tensor q, k, v;  // [B, n_heads, L, d_head]
  };
  Projected project(const Tensor& x) const;
  AttentionResult run(const Tensor& x, const Tensor& key_padding_mask, bool need_weights);

  int64_t d_model_, n_heads_, d_head_;
  MultiHeadAttentionOptions options_;
};

}  // namespace rw::nn
