#pragma once
// Launchers of the fused LSH chunk-attention kernels (the CUDA implementation of
// models/reformer/chunk_attention.h; host side in models/reformer/chunk_attention_cuda.cpp).
// nvcc-safe: no fmt, only plain structs and raw device pointers.
//
// One thread block per (batch-head, query chunk) of one round: it gathers the chunk's queries
// through the sort permutation into shared memory, then walks its window of key chunks (loaded
// into shared memory one at a time), computing scores, masks and an online softmax; the score
// matrices never reach global memory. Rounds run as consecutive launches on one stream, so within
// a launch every token is the query of exactly one block and its running (max, denominator,
// output) can be folded without atomics, in the same order as the CPU kernel
// (models/reformer/chunk_attention_cpu.cpp).
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "core/dtype_id.h"
#include "core/philox.h"

namespace rw::cuda {

// Threads per block of the chunk-attention kernels: a 16 x 16 grid of micro-tiles.
inline constexpr int kChunkAttentionThreads = 256;

// Whether the kernels are compiled for this chunk length and head size (d_head is padded up to
// 32, 64 or 128 in shared memory; chunk_len must be 32, 64 or 128, and 128 only with d <= 32).
RW_HOST_DEVICE inline int chunk_attention_padded_d(int64_t d) {
  return d <= 32 ? 32 : d <= 64 ? 64 : d <= 128 ? 128 : 0;
}
RW_HOST_DEVICE inline bool chunk_attention_compiled_for(int64_t chunk_len, int64_t d) {
  const int dp = chunk_attention_padded_d(d);
  if (d < 1 || dp == 0) return false;
  return chunk_len == 32 || chunk_len == 64 || (chunk_len == 128 && dp == 32);
}

// Byte offsets into a block's dynamic shared memory (every array 16-byte aligned). Queries' and
// keys' metadata, then the per-row statistics and the f32 tiles: forward Q, K, V ([C][DP + 1],
// padded by one column against bank conflicts) and P ([C][C + 1]); backward Q, G (dout), K, V and
// the two score tiles P~ (dropped) and dS.
struct ChunkAttentionSmem {
  std::size_t q_row, k_row;      // int64 [C]: token rows into [BH * Lp, d]
  std::size_t q_bkt, k_bkt;      // int64 [C]: slot buckets (!attend_across_buckets)
  std::size_t q_tb, k_tb;        // int64 [C * n]: token buckets per round (count_duplicates)
  std::size_t q_tok, k_tok;      // int32 [C]: tokens within the batch-head
  std::size_t k_ok;              // int32 [C]: the key is not padding
  std::size_t q_chunk, k_chunk;  // int32 [C * n]: ticker chunk per round (count_duplicates)
  std::size_t stats;             // f32 [n_stats * C]
  std::size_t tiles;             // f32 tiles
  std::size_t total;
};

RW_HOST_DEVICE inline std::size_t chunk_attention_take(std::size_t& at, std::size_t bytes) {
  const std::size_t here = at;
  at += (bytes + 15) / 16 * 16;
  return here;
}

RW_HOST_DEVICE inline ChunkAttentionSmem chunk_attention_smem(int64_t C, int64_t DP, int64_t n,
                                                              bool buckets, bool duplicates,
                                                              bool backward) {
  ChunkAttentionSmem s{};
  std::size_t at = 0;
  const auto c = static_cast<std::size_t>(C), dp = static_cast<std::size_t>(DP);
  const std::size_t cn = duplicates ? c * static_cast<std::size_t>(n) : 0;
  const std::size_t cb = buckets ? c : 0;
  s.q_row = chunk_attention_take(at, c * 8);
  s.k_row = chunk_attention_take(at, c * 8);
  s.q_bkt = chunk_attention_take(at, cb * 8);
  s.k_bkt = chunk_attention_take(at, cb * 8);
  s.q_tb = chunk_attention_take(at, cn * 8);
  s.k_tb = chunk_attention_take(at, cn * 8);
  s.q_tok = chunk_attention_take(at, c * 4);
  s.k_tok = chunk_attention_take(at, c * 4);
  s.k_ok = chunk_attention_take(at, c * 4);
  s.q_chunk = chunk_attention_take(at, cn * 4);
  s.k_chunk = chunk_attention_take(at, cn * 4);
  // forward: running max, denominator, rescale, and the round fold's two scales; backward: the
  // token's max logit, log-denominator and dout . out.
  s.stats = chunk_attention_take(at, (backward ? 3 : 5) * c * 4);
  const std::size_t d_tiles = backward ? 4 : 3, s_tiles = backward ? 2 : 1;
  s.tiles = chunk_attention_take(at, (d_tiles * c * (dp + 1) + s_tiles * c * (c + 1)) * 4);
  s.total = at;
  return s;
}

// Everything the kernels read besides q, k, v. Index arrays are the plan's (i64 / bool, contiguous,
// on the device).
struct ChunkAttentionParams {
  int64_t batch_heads = 0, length = 0, n_hashes = 1, chunk_len = 64, d = 0;
  int64_t chunks_before = 1, chunks_after = 0;
  bool causal = false, count_duplicates = false, attend_across_buckets = true;
  float self_penalty = -1e5f, masked_penalty = -1e9f;
  DType dtype = DType::f32;               // of q, k, v (f32, bf16 or f16)
  const int64_t* perm = nullptr;          // [BH, S]
  const bool* valid = nullptr;            // [BH * Lp]
  const int64_t* slot_bucket = nullptr;   // [BH, S] (!attend_across_buckets)
  const int64_t* token_chunk = nullptr;   // [BH * Lp, n] (count_duplicates)
  const int64_t* token_bucket = nullptr;  // [BH * Lp, n] (count_duplicates)
  // Dropout (chunk_attention_blocks.h): the call's blocks of block_chunks query chunks each draw
  // from dropout_state advanced past the blocks before them, element by element over
  // [BH, count, chunk_len, window]; a score is kept where its uniform is < keep_prob and then
  // multiplied by keep_scale.
  bool dropout = false;
  double keep_prob = 1;
  float keep_scale = 1;
  PhiloxState dropout_state{};
  int64_t block_chunks = 1;
  uint64_t block_advance = 0;  // Philox blocks of a full block of chunks
  uint64_t round_advance = 0;  // Philox blocks of a whole round
};

// The largest dynamic shared memory a block may opt in to on `device`.
int64_t chunk_attention_max_shared_bytes(int device);

// Forward over all rounds. acc [BH * Lp, d], run_max, run_denom, log_denom [BH * Lp] are f32
// scratch/outputs: on return acc holds the normalised output (zero for tokens without an attended
// key), run_max the max logit and log_denom the log-denominator of every token.
void launch_chunk_attention_forward(const ChunkAttentionParams& p, const void* q, const void* k,
                                    const void* v, float* acc, float* run_max, float* run_denom,
                                    float* log_denom, cudaStream_t stream);

// Backward. out and dout are of the input dtype ([BH * Lp, d], contiguous); max_logit, log_denom
// f32 [BH * Lp]; grad (f32 [BH * Lp, d]) and dout_out (f32 [BH * Lp]) are scratch; dq, dk, dv f32
// [BH * Lp, d] zero-filled by the caller, accumulated into.
void launch_chunk_attention_backward(const ChunkAttentionParams& p, const void* q, const void* k,
                                     const void* v, const void* out, const void* dout,
                                     const float* max_logit, const float* log_denom, float* grad,
                                     float* dout_out, float* dq, float* dk, float* dv,
                                     cudaStream_t stream);

}  // namespace rw::cuda
