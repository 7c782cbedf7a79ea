#pragma once
// LSH self-attention as a module: the Reformer's attention layer (models/reformer/lsh_attention.h
// has the algorithm).
//
//   auto attn = std::make_shared<rw::reformer::LSHSelfAttention>(
//       256, 4, rw::reformer::LSHSelfAttentionOptions{.lsh = {.n_hashes = 4, .causal = true}});
//   rw::Tensor y = attn->forward(x, key_padding_mask);  // x [B, L, 256], mask bool [B, L]
//
// Randomness and reversibility: every forward draws fresh rotations from rw::current_generator()
// (and, in training with dropout, forks a generator for the dropout mask), so a reversible stack,
// which reinstalls the forward's generator for its recomputation, replays them exactly. On top of
// that the buckets go through the block cache (autograd/reversible.h): when the stack recomputes
// the block in backward, the module attends within the very buckets the forward used (trax and
// lucidrains found recomputed buckets unstable) instead of hashing again. The rotations are still
// drawn then, so the generator advances the same way in both passes.
//
// Parameters (state_dict names = member names; weights [out, in] as rw::linear):
//   w_qk [inner, d_model]  shared query/key projection, no bias (as trax and HuggingFace: a bias
//                          would shift every vector and blur the angular hash);
//   w_v  [inner, d_model]  value projection, no bias;
//   w_o  [d_model, inner], b_o [d_model] (b_o when options.output_bias) output projection.
// inner = n_heads * d_head. Initialisation as rw::nn::MultiHeadAttention: w_qk, w_v Xavier-uniform,
// w_o uniform in +-1/sqrt(inner), b_o zero.
#include <cstdint>
#include <optional>
#include <string>

#include "core/generator_scope.h"
#include "core/tensor.h"
#include "models/reformer/lsh_attention.h"
#include "models/reformer/lsh_decode.h"
#include "nn/module.h"

namespace rw::reformer {

struct LSHSelfAttentionOptions {
  // chunk_len, n_buckets (0 = about 2L/chunk_len per call), n_hashes, chunks before/after, causal,
  // count_duplicates, attend_across_buckets, scale. Its dropout fields are ignored: see `dropout`.
  LSHAttentionOptions lsh{};
  int64_t d_head = 0;       // 0: d_model / n_heads (which must divide)
  bool output_bias = true;  // b_o
  double dropout = 0;       // on the attention probabilities, in training mode only
};

class LSHSelfAttention : public nn::Module {
 public:
  LSHSelfAttention(int64_t d_model, int64_t n_heads, LSHSelfAttentionOptions options = {},
                   Generator& generator = current_generator());

  std::string type_name() const override { return "LSHSelfAttention"; }

  Tensor forward(const Tensor& x) override { return forward(x, Tensor()); }
  // x [B, L, d_model]; key_padding_mask: optional bool [B, L], true = real token.
  Tensor forward(const Tensor& x, const Tensor& key_padding_mask);

  // Incremental causal decoding (models/reformer/lsh_decode.h has what is exact and why). The
  // first call (an empty state) takes the whole prompt x [B, P, d_model], returns forward(x) and
  // keeps the rotations it drew, every position's key and value and the ticker order; every later
  // call takes the next position, x [B, 1, d_model], and returns its output [B, 1, d_model], equal
  // up to float round-off to the last row of forward() over the whole sequence drawn with the
  // same generator state. Needs causal attention and a fixed bucket count (options.lsh.n_buckets
  // > 0 or an override); inference only (no dropout, no gradient).
  Tensor forward_cached(const Tensor& x, LSHDecodeState& state, int64_t capacity);

  // While set, every call hashes into this many buckets instead of options().lsh.n_buckets (whose
  // default 0 resolves per sequence length): generation fixes it so that every step of a growing
  // sequence draws the same rotations. nullopt: back to the options.
  void set_n_buckets_override(std::optional<int64_t> n_buckets);
  std::optional<int64_t> n_buckets_override() const { return n_buckets_override_; }

  int64_t d_model() const { return d_model_; }
  int64_t n_heads() const { return n_heads_; }
  int64_t d_head() const { return d_head_; }
  const LSHSelfAttentionOptions& options() const { return options_; }

  Tensor w_qk, w_v, w_o, b_o;

 private:
  // The attention options of a call: options().lsh with the override applied.
  LSHAttentionOptions call_options() const;
  // x [B, L, d_model] -> qk, v [B, n_heads, L, d_head].
  std::pair<Tensor, Tensor> project(const Tensor& x) const;
  void check_input(const Tensor& x) const;

  int64_t d_model_, n_heads_, d_head_;
  LSHSelfAttentionOptions options_;
  std::optional<int64_t> n_buckets_override_;
};

}  // namespace rw::reformer
