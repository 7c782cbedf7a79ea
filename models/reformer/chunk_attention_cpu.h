#pragma once
// The fused CPU kernel of the chunk attention (models/reformer/chunk_attention.h): the same
// function as the op path, for f32/f64 tensors on the CPU.
//
// Per block of query chunks (the blocks of chunk_attention_blocks.h):
// - forward: one OpenMP pass gathers the block's queries and window keys/values in ticker order;
//   rw::matmul computes the scores of the whole block as one batched product; one pass per row
//   applies the masks (self, causal, padding, bucket, duplicate counts) and computes the row
//   maximum, exp and sum; rw::matmul multiplies the unnormalised probabilities by the values; one
//   pass folds each row into its token's running (max, denominator, output) over the rounds.
// - backward (FlashAttention style, nothing per score saved): with P~ = exp(logits - lse_total)
//   (the probabilities already weighted by their round's share) the gradients are
//   dV = P~^T dout, dS = P~ * (dout V^T - dout . out), dQ = dS K, dK = dS^T Q, so each block costs
//   four batched products and two passes; the window rows' gradients are scattered back to their
//   tokens by a pass split over (head, column slice), so no two threads touch the same element.
#include <array>

#include "core/tensor.h"
#include "models/reformer/chunk_attention.h"

namespace rw::reformer::cpu_kernel {

// Whether the fused kernel handles these inputs (CPU, f32 or f64).
bool applies(const Tensor& q);

struct ForwardResult {
  Tensor out;        // [BH, Lp, d]
  Tensor max_logit;  // [BH * Lp]: the largest logit a token met over all rounds
  Tensor log_denom;  // [BH * Lp]: log sum exp(logit - max_logit) over all rounds' keys
};

// q, k, v: [BH, Lp, d] contiguous.
ForwardResult forward(const ChunkAttentionPlan& p, const Tensor& q, const Tensor& k,
                      const Tensor& v);

// Gradients of q, k, v ([BH, Lp, d]) given forward's inputs and results and the output gradient.
std::array<Tensor, 3> backward(const ChunkAttentionPlan& p, const Tensor& q, const Tensor& k,
                               const Tensor& v, const ForwardResult& saved, const Tensor& dout);

}  // namespace rw::reformer::cpu_kernel
