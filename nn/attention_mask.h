#pragma once
// The masks of dot-product attention, applied as additive finite penalties on the logits.
//
// Why additive finite penalties rather than -inf (or boolean selects of -inf):
// - a query whose every key is masked would compute softmax(-inf, ..., -inf) = NaN, forward and
//   backward; finite penalties keep every value finite (such rows are then zeroed, see below);
// - the shared-QK self penalty must be finite so that a query with nothing else to attend to (the
//   first position under causal masking) still attends to itself (Reformer paper, Sec. 2.1);
// - the hard penalty (causal, padding) lies far below the self penalty, so a self-penalised key
//   still wins against hard-masked ones, and exp(hard - self) underflows to exactly 0;
// - the constants depend on the compute dtype: f16's largest finite value is 65504, so trax's f32
//   value -1e9 would round to -inf there and bring the NaNs back; bf16 has f32's exponent range.
//
// Rows with no allowed key (every key hard-masked, e.g. a sequence that is all padding, or a
// left-padded position under causal masking) get all-zero attention probabilities: their output
// is zero and no gradient flows through them. This is the same in every dtype, whereas the
// softmax of uniformly penalised logits would depend on how the dtype rounds `logit + penalty`.
#include <cstdint>

#include "core/tensor.h"

namespace rw::nn {

// Which keys each query may see. Queries and keys are aligned at position 0 (query i and key i
// are the same token), as in self-attention.
struct AttentionMaskSpec {
  bool causal = false;     // query i may attend to keys j <= i only
  bool mask_self = false;  // shared-QK: key j == i gets the finite self penalty
  // Optional bool [batch, Lk]: true = a real token that may be attended to, false = padding.
  Tensor key_padding_mask{};
};

// The additive penalties for logits computed in `dtype` (a floating dtype).
struct AttentionPenalties {
  double masked;  // causal and padding (hard) masks
  double self;    // the shared-QK diagonal (soft: a lone key still gets all the weight)
};
// f64, f32, bf16: masked -1e9, self -1e5 (trax's values). f16: masked -3e4, self -1e4, so that
// logit + penalty stays below 65504 in magnitude for any logit up to 3.5e4.
AttentionPenalties attention_penalties(DType dtype);

// Checks `spec` for logits of shape [batch, ..., Lq, Lk] (rank >= 2; a padding mask needs a batch
// dim, i.e. rank >= 3, and must be bool [batch, Lk]). `op` names the caller in messages.
void check_attention_mask(const char* op, const AttentionMaskSpec& spec, const Shape& logits_shape,
                          Device device);

// Bool mask of the keys each query may attend to under the hard masks (causal, padding),
// broadcastable to the logits [batch, ..., Lq, Lk]; undefined when there are none.
Tensor attention_allowed_mask(const AttentionMaskSpec& spec, int64_t rank, int64_t Lq, int64_t Lk,
                              Device device);

// The additive penalty for logits of rank `rank` and [Lq, Lk] last dims, in `dtype`: 0 where a key
// is allowed, penalties.self on the diagonal when spec.mask_self, penalties.masked where a hard
// mask forbids the key. Broadcastable to the logits; undefined when the spec masks nothing.
Tensor attention_bias(const AttentionMaskSpec& spec, int64_t rank, int64_t Lq, int64_t Lk,
                      DType dtype, Device device);

}  // namespace rw::nn
