#pragma once
// Evaluating a trained model under another attention (the duplication task's Table 2): a model
// trained with full attention is evaluated with LSH attention and the other way round, with the
// same weights.
//
// Shared-QK full attention (nn::MultiHeadAttention with shared_qk) and LSH attention
// (reformer::LSHSelfAttention) compute the same projections with the same 1/sqrt(d_head) scale,
// unit-normalised keys and self penalty; their parameters differ only in biases:
//
//   MultiHeadAttention (shared_qk):  w_qk, b_qk, w_v, b_v, w_o, b_o
//   LSHSelfAttention:                w_qk,       w_v,      w_o, b_o
//
// full -> LSH: b_v folds exactly into the output bias (attention weights sum to one, so every
//              output carries w_o b_v): b_o' = b_o + w_o b_v. b_qk cannot be folded (it would
//              shift every query and key before the angular hash), so it must be zero: a model
//              meant to run under LSH too trains with b_qk frozen at zero
//              (freeze_query_key_bias), as trax's and HuggingFace's shared-QK projections have
//              no bias.
// LSH -> full: b_qk = b_v = 0.
// Every other parameter (embeddings, norms, feed-forward, output) keeps its name and value.
#include <memory>

#include "models/reformer/reformer_config.h"
#include "models/reformer/reformer_lm.h"

namespace rw::ablate {

// A new ReformerLM with config `target` (the trained model's config with other attention
// settings: kind, n_hashes, chunk_len, n_buckets) holding `trained`'s weights, mapped as above;
// in eval mode, on the trained model's device. rw::Error when a layer's attention cannot be
// mapped (separate Q/K full attention; a non-zero b_qk going to LSH) or the other parameters do not
// fit the target config.
std::shared_ptr<reformer::ReformerLM> with_attention(const reformer::ReformerLM& trained,
                                                     const reformer::ReformerConfig& target);

// Stops training b_qk of every shared-QK full-attention layer (it stays at its initial zero), so
// the model maps onto LSH attention exactly.
void freeze_query_key_bias(reformer::ReformerLM& model);

}  // namespace rw::ablate
