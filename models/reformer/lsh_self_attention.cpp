#include "models/reformer/lsh_self_attention.h"

#include <any>
#include <cmath>
#include <utility>

#include "autograd/reversible.h"
#include "autograd/tape.h"
#include "core/ops.h"
#include "models/reformer/lsh_hashing.h"
#include "nn/attention.h"

namespace rw::reformer {

LSHSelfAttention::LSHSelfAttention(int64_t d_model, int64_t n_heads,
                                   LSHSelfAttentionOptions options, Generator& generator)
    : d_model_(d_model),
      n_heads_(n_heads),
      d_head_(nn::resolve_attention_d_head("LSHSelfAttention", d_model, n_heads, options.d_head,
                                           options.dropout)),
      options_(options) {
  const LSHAttentionOptions& lsh = options.lsh;
  RW_CHECK(lsh.chunk_len > 0 && lsh.n_hashes > 0 && lsh.chunks_before >= 0 && lsh.chunks_after >= 0,
           "LSHSelfAttention: need chunk_len > 0, n_hashes > 0, chunks_before/after >= 0, got "
           "{}, {}, {}, {}",
           lsh.chunk_len, lsh.n_hashes, lsh.chunks_before, lsh.chunks_after);
  RW_CHECK(
      lsh.n_buckets == 0 || lsh.n_buckets == 1 || (lsh.n_buckets > 0 && lsh.n_buckets % 2 == 0),
      "LSHSelfAttention: n_buckets must be 0 (default), 1 or even, got {}", lsh.n_buckets);

  // The shared-QK layout of nn::MultiHeadAttention: w_qk and w_v, then w_o.
  nn::AttentionWeights init =
      nn::initial_attention_weights(d_model, n_heads_ * d_head_, 2, generator);
  w_qk = init.input_blocks[0];
  w_v = init.input_blocks[1];
  register_parameter("w_qk", w_qk);
  register_parameter("w_v", w_v);
  register_projection("w_o", w_o, init.output, "b_o", b_o, options.output_bias);
}

void LSHSelfAttention::set_n_buckets_override(std::optional<int64_t> n_buckets) {
  RW_CHECK(!n_buckets || *n_buckets == 1 || (*n_buckets > 0 && *n_buckets % 2 == 0),
           "LSHSelfAttention: the n_buckets override must be 1 or even, got {}",
           n_buckets.value_or(0));
  n_buckets_override_ = n_buckets;
}

LSHAttentionOptions LSHSelfAttention::call_options() const {
  LSHAttentionOptions lsh = options_.lsh;
  if (n_buckets_override_) lsh.n_buckets = *n_buckets_override_;
  return lsh;
}

void LSHSelfAttention::check_input(const Tensor& x) const {
  RW_CHECK(x.defined(), "LSHSelfAttention: x is undefined");
  RW_CHECK(x.dim() == 3 && x.size(2) == d_model_ && is_floating(x.dtype()),
           "LSHSelfAttention: expected floating x of shape [batch, length, {}], got {} {}",
           d_model_, x.dtype(), x.shape());
}

std::pair<Tensor, Tensor> LSHSelfAttention::project(const Tensor& x) const {
  const int64_t B = x.size(0), L = x.size(1);
  auto heads = [&](const Tensor& t) {
    return t.reshape({B, L, n_heads_, d_head_}).transpose(1, 2);
  };
  return {heads(linear(x, w_qk)), heads(linear(x, w_v))};
}

namespace {

// Rotations for a call, drawn from `generator` in the dtype and on the device of x.
LSHRotations draw_rotations(int64_t heads, int64_t d_head, const LSHAttentionOptions& lsh,
                            int64_t length, const Tensor& x, Generator& generator) {
  const DType rotation_dtype = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  LSHRotations rotations = random_lsh_rotations(
      heads, d_head, lsh.n_hashes, resolve_n_buckets(lsh, length), generator, rotation_dtype);
  if (rotations.first.defined()) rotations.first = rotations.first.to(x.device());
  if (rotations.second.defined()) rotations.second = rotations.second.to(x.device());
  return rotations;
}

}  // namespace

Tensor LSHSelfAttention::forward(const Tensor& x, const Tensor& key_padding_mask) {
  check_input(x);
  const int64_t B = x.size(0), L = x.size(1), inner = n_heads_ * d_head_;
  auto [qk, v] = project(x);

  LSHAttentionOptions lsh = call_options();
  Generator& generator = current_generator();
  // Drawn in every pass (even when the cached buckets are used) so the generator advances alike.
  LSHRotations rotations = draw_rotations(n_heads_, d_head_, lsh, L, x, generator);
  lsh.dropout_p = is_training() ? options_.dropout : 0;
  if (lsh.dropout_p > 0) lsh.dropout_state = generator.fork().state();

  Tensor buckets;
  if (BlockCache* cache = current_block_cache(); cache != nullptr && cache->replaying()) {
    buckets = std::any_cast<Tensor>(cache->take(this));
  } else {
    buckets = lsh_hash(qk, rotations);
    if (cache != nullptr) cache->save(this, buckets);
  }
  Tensor attended = lsh_attention_with_buckets(qk, v, buckets, lsh, key_padding_mask);
  Tensor merged = attended.transpose(1, 2).reshape({B, L, inner});
  return linear(merged, w_o, b_o);
}

Tensor LSHSelfAttention::forward_cached(const Tensor& x, LSHDecodeState& state, int64_t capacity) {
  NoGradGuard no_grad;  // inference only: the caches are filled in place
  check_input(x);
  LSHAttentionOptions lsh = call_options();
  RW_CHECK(lsh.causal,
           "LSHSelfAttention: forward_cached needs causal attention (without causal masking a new "
           "position would change the outputs of earlier ones)");
  RW_CHECK(lsh.n_buckets > 0,
           "LSHSelfAttention: forward_cached needs a fixed bucket count (options.lsh.n_buckets > 0 "
           "or set_n_buckets_override): the default resolves per length, so the rotations would "
           "change as the sequence grows");
  const int64_t B = x.size(0), T = x.size(1), inner = n_heads_ * d_head_;
  auto [qk, v] = project(x);
  Tensor attended;
  if (state.length == 0) {
    LSHRotations rotations = draw_rotations(n_heads_, d_head_, lsh, T, x, current_generator());
    Tensor buckets = lsh_hash(qk, rotations);
    attended = lsh_attention_with_buckets(qk, v, buckets, lsh);
    state = lsh_decode_start(qk, v, buckets, rotations, lsh, capacity);
  } else {
    RW_CHECK(T == 1,
             "LSHSelfAttention: after the prompt, forward_cached takes one position at a time, "
             "got x of shape {}",
             x.shape());
    attended = lsh_decode_step(state, qk, v, lsh_hash(qk, state.rotations));
  }
  return linear(attended.transpose(1, 2).reshape({B, T, inner}), w_o, b_o);
}

}  // namespace rw::reformer
