#pragma once
// Local (chunked) attention: the sequence is cut into chunks of chunk_len positions, and each
// query attends to the keys of its own chunk and of chunks_before / chunks_after neighbouring
// chunks (no wrap-around: the first chunk has no previous chunk). Cost and memory are linear in
// the length L: no L x L tensor is ever built.
//
//   rw::reformer::LocalAttentionOptions opt{.chunk_len = 64, .causal = true};
//   rw::Tensor y = rw::reformer::local_attention(q, k, v, opt);  // [B, H, L, d] each
//
//   auto attn = std::make_shared<rw::reformer::LocalSelfAttention>(
//       256, 4, rw::reformer::LocalSelfAttentionOptions{.causal = true, .shared_qk = true});
//   rw::Tensor out = attn->forward(x, key_padding_mask);  // x [B, L, 256]
//
// Semantics: exactly full attention (rw::nn::attention) with one more hard mask, "key j lies in
// the chunks query i attends to", where chunks are counted from position 0 of the original
// sequence. The masks and their penalties are those of nn/attention_mask.h (finite per-dtype
// penalties; a query with no allowed key gets zero attention, so zero output and no gradient).
#include <cstdint>
#include <optional>
#include <string>

#include "core/generator_scope.h"
#include "core/philox.h"
#include "core/tensor.h"
#include "nn/module.h"

namespace rw::reformer {

struct LocalAttentionOptions {
  int64_t chunk_len = 64;     // positions per chunk (> 0); a chunk_len >= L is full attention
  int64_t chunks_before = 1;  // earlier chunks each query chunk also attends to (>= 0)
  int64_t chunks_after = 0;   // later chunks (>= 0; useless with causal, allowed anyway)
  bool causal = false;        // query i attends to keys j <= i only (original positions)
  // Shared-QK (Reformer paper, Sec. 2.1): the keys are the unit-normalised k (pass k = q, or an
  // undefined k, which means q) and attending to one's own position costs the finite self penalty.
  bool shared_qk = false;
  // Multiplies the logits q . k; default 1 / sqrt(d_head).
  std::optional<double> scale{};
  // Dropout on the attention probabilities. The dropped entries are a pure function of
  // dropout_state (over the internal [B, H, n_chunks, chunk_len, window] probabilities), so a
  // recomputation with the same state drops the same entries.
  double dropout_p = 0;
  PhiloxState dropout_state{};
};

// q, k [B, H, L, d], v [B, H, L, d_v] -> [B, H, L, d_v]. key_padding_mask: optional bool [B, L],
// true = a real token (padding keys are never attended). Any L >= 1: the sequence is padded to a
// multiple of chunk_len internally and the padded queries dropped. Differentiable in q, k, v; the
// chunk core saves only its (chunked) inputs and recomputes the scores in backward.
Tensor local_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                       const LocalAttentionOptions& options = {},
                       const Tensor& key_padding_mask = {});

// The number of probabilities the dropout of local_attention draws for these sizes (what a caller
// advances its generator by): B * H * n_chunks * chunk_len * window.
int64_t local_attention_dropout_numel(int64_t batch, int64_t heads, int64_t length,
                                      const LocalAttentionOptions& options);

struct LocalSelfAttentionOptions {
  int64_t chunk_len = 64;
  int64_t chunks_before = 1;
  int64_t chunks_after = 0;
  bool causal = false;
  bool shared_qk = false;  // one projection w_qk; keys are the unit-normalised queries
  bool bias = true;        // biases b_* on every projection (zero-initialised)
  double dropout = 0;      // on the attention probabilities, in training mode only
  int64_t d_head = 0;      // 0: d_model / n_heads (which must divide)
};

// What a causal LocalSelfAttention keeps for autoregressive decoding: the keys and values of the
// positions the next query can still attend to. The query at position t attends to the chunks
// t / chunk_len - chunks_before .. t / chunk_len (chunks counted from position 0, as
// local_attention), so a buffer of (chunks_before + 2) chunks suffices: when it is full its oldest
// chunk (no longer attendable) is dropped. Memory is bounded by the window, not the sequence.
struct LocalKeyValueCache {
  Tensor keys;    // [B, n_heads, (chunks_before + 2) * chunk_len, d_head] (shared_qk: unit keys)
  Tensor values;  // the same shape
  int64_t start = 0;   // the original position of the buffer's row 0 (a multiple of chunk_len)
  int64_t held = 0;    // rows in use: positions [start, start + held)
  int64_t length = 0;  // positions seen so far
};

// Multi-head local self-attention: x [B, L, d_model] -> [B, L, d_model]. Parameters, their names,
// shapes and initialisation are those of rw::nn::MultiHeadAttention with separate projections
//   separate: w_q, b_q, w_k, b_k, w_v, b_v, w_o, b_o   shared_qk: w_qk, b_qk, w_v, b_v, w_o, b_o
// drawn in the same order from the generator, so both modules built from the same seed hold the
// same weights (and agree exactly when chunk_len >= L). Logits are scaled by 1/sqrt(d_head).
// Dropout draws its state from current_generator(), so a reversible recomputation replays it.
class LocalSelfAttention : public nn::Module {
 public:
  LocalSelfAttention(int64_t d_model, int64_t n_heads, LocalSelfAttentionOptions options = {},
                     Generator& generator = current_generator());

  std::string type_name() const override { return "LocalSelfAttention"; }

  Tensor forward(const Tensor& x) override { return forward(x, Tensor()); }
  // key_padding_mask: optional bool [B, L], true = real token.
  Tensor forward(const Tensor& x, const Tensor& key_padding_mask);

  // Incremental causal decoding. The first call (an empty cache) takes the whole prompt x [B, P,
  // d_model] and returns forward(x); every later call takes the next position, x [B, 1, d_model],
  // and returns its output [B, 1, d_model] (equal, up to float round-off, to the last row of
  // forward() over the whole sequence). Needs a causal module; inference only (no dropout, no
  // gradient).
  Tensor forward_cached(const Tensor& x, LocalKeyValueCache& cache);

  int64_t d_model() const { return d_model_; }
  int64_t n_heads() const { return n_heads_; }
  int64_t d_head() const { return d_head_; }
  const LocalSelfAttentionOptions& options() const { return options_; }

  Tensor w_q, b_q, w_k, b_k, w_qk, b_qk, w_v, b_v, w_o, b_o;

 private:
  int64_t d_model_, n_heads_, d_head_;
  LocalSelfAttentionOptions options_;
  // [B, L, d_model] -> [B, n_heads, L, d_head] queries, keys (unit keys with shared_qk) and
  // values.
  struct Projected {
    Tensor q, k, v;
  };
  Projected project(const Tensor& x) const;
};

}  // namespace rw::reformer
