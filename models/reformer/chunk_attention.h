#pragma once
// The fused chunk attention at the heart of LSH attention (models/reformer/lsh_attention.h), as one
// rw::CustomFunction. Not a user API: lsh_attention builds the plan (sort permutations, masks) and
// calls it.
//
// Three implementations compute the same function:
// - the op path (chunk_attention.cpp): every step an rw op, so it runs on any device; it is the
//   reference;
// - the fused CPU kernel (chunk_attention_cpu.h), used for CPU tensors: the per-block matmuls
//   still go through rw::matmul (oneDNN), but gathering a block's rows, the masks, the softmax and
//   the round combination (and in backward the softmax gradient and the scatter of the row
//   gradients) are single OpenMP passes over raw data instead of a dozen elementwise ops each;
// - the fused CUDA kernel (chunk_attention_cuda.h), used for CUDA f32/bf16/f16 tensors of the
//   shapes it is compiled for (cuda_kernel::unsupported_reason says why a call is not): one
//   thread block per query chunk keeps its scores in shared memory with an online softmax
//   (FlashAttention style), bf16/f16 computed in f32; other CUDA calls take the op path.
// ChunkAttentionKernelScope forces the op path (tests compare the two).
//
// Memory: forward processes blocks of chunks (at most kChunkBlockElements scores at a time) with
// batched matmuls and keeps only its inputs (q, k, v), the output and per token its largest logit
// and log-denominator over all rounds (their sum is its logsumexp; kept apart so that backward's
// logit - max is exact even near the -1e5 self penalty, where f32 spacing is 1/128); backward
// recomputes each block's scores and probabilities (FlashAttention style). Everything
// kept is linear in L; the transient per-block tensors are bounded.
#include <cstdint>
#include <memory>

#include "core/philox.h"
#include "core/tensor.h"

namespace rw::reformer {

// Scores per block of chunks, summed over batch and heads (4 MB of f32, about 2 MB per thread on
// two cores: a thread's share of the scores stays in its L2 cache between the matmul that writes
// them and the pass that reads them). Measured at L = 16384, 4 hashes, 4 heads on 2 cores: 2^18
// took 0.50 s per layer forward+backward, 2^20 0.37 s (a quarter as many blocks, so a quarter of
// the parallel regions and their wake-ups), 2^22 0.37 s again with 95 MB more peak memory.
inline constexpr int64_t kChunkBlockElements = int64_t{1} << 20;

// Everything about one call that is not differentiable. Index tensors are i64 on the inputs'
// device; "token" means a position in [0, Lp) of the padded sequence, "slot" a position in the
// ticker [0, S), S = n_hashes * Lp, round r owning slots [r Lp, (r+1) Lp).
struct ChunkAttentionPlan {
  int64_t batch_heads = 0;  // BH
  int64_t length = 0;       // Lp, a multiple of chunk_len
  int64_t n_hashes = 1;
  int64_t chunk_len = 64;
  int64_t chunks_before = 1;
  int64_t chunks_after = 0;
  bool causal = false;
  bool count_duplicates = false;
  bool attend_across_buckets = true;
  double self_penalty = -1e5;    // on the logit of a query's own position
  double masked_penalty = -1e9;  // replaces the logit of a forbidden key
  double dropout_p = 0;
  PhiloxState dropout_state{};

  Tensor perm;   // [BH, S]: the token in each slot (the sort permutation, round by round)
  Tensor inv;    // [BH, n_hashes, Lp]: the slot (within its round) of each token
  Tensor valid;  // bool [BH * Lp]: the token may be attended (not padding)
  Tensor
      slot_bucket;  // [BH, S]: bucket of each slot, unique across rounds (!attend_across_buckets)
  Tensor
      token_chunk;  // [BH * Lp, n_hashes]: ticker chunk of each token per round (count_duplicates)
  Tensor token_bucket;  // [BH * Lp, n_hashes]: bucket of each token per round (count_duplicates)
};

enum class ChunkAttentionKernel {
  automatic,  // the fused CPU kernel for CPU f32/f64, the CUDA kernel where it applies, else ops
  ops,        // always the op path
};

// Selects the implementation for chunk_attention calls made on this thread while it lives (the
// backward of a call uses the implementation its forward used). Nests; restores on destruction.
class ChunkAttentionKernelScope {
 public:
  explicit ChunkAttentionKernelScope(ChunkAttentionKernel kernel);
  ~ChunkAttentionKernelScope();
  ChunkAttentionKernelScope(const ChunkAttentionKernelScope&) = delete;
  ChunkAttentionKernelScope& operator=(const ChunkAttentionKernelScope&) = delete;

 private:
  ChunkAttentionKernel previous_;
};
ChunkAttentionKernel current_chunk_attention_kernel();

// q (already scaled), k (unit keys), v: [BH, Lp, d] -> [BH, Lp, d], differentiable in all three.
Tensor chunk_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                       std::shared_ptr<const ChunkAttentionPlan> plan);

}  // namespace rw::reformer
