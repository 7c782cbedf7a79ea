#pragma once
// How the chunk attention (models/reformer/chunk_attention.h) walks the ticker: round by round, in
// blocks of consecutive query chunks. Shared by the op-based path (chunk_attention.cpp) and the
// fused CPU kernel (chunk_attention_cpu.cpp), which must cut the same blocks so that dropout, whose
// Philox counter advances block by block, drops the same probabilities in both.
#include <algorithm>
#include <cstdint>

#include "models/reformer/chunk_attention.h"

namespace rw::reformer::chunk_blocks {

// Key chunks per query chunk: the chunks before, the chunk itself and the chunks after.
inline int64_t window_chunks(const ChunkAttentionPlan& p) {
  return p.chunks_before + 1 + p.chunks_after;
}
inline int64_t chunks_per_round(const ChunkAttentionPlan& p) { return p.length / p.chunk_len; }
inline int64_t total_chunks(const ChunkAttentionPlan& p) {
  return p.n_hashes * chunks_per_round(p);
}
// Scores of one query chunk, summed over batch and heads.
inline int64_t scores_per_chunk(const ChunkAttentionPlan& p) {
  return p.batch_heads * p.chunk_len * window_chunks(p) * p.chunk_len;
}

// Chunks per block: as many as keep the block's scores under kChunkBlockElements.
inline int64_t block_chunks(const ChunkAttentionPlan& p) {
  return std::clamp<int64_t>(kChunkBlockElements / std::max<int64_t>(scores_per_chunk(p), 1), 1,
                             chunks_per_round(p));
}

// The ticker chunk that window position `offset` (in [-chunks_before, chunks_after]) of query
// chunk `chunk` reads: neighbours wrap around the whole ticker (round r's first chunk looks back
// into round r - 1, round 0's into the last round).
inline int64_t neighbour_chunk(int64_t chunk, int64_t offset, int64_t n_chunks) {
  return ((chunk + offset) % n_chunks + n_chunks) % n_chunks;
}

// Visits the blocks in their fixed order as visit(round, first_chunk_in_round, count,
// dropout_state): the dropout state of a block is the call's, advanced past the scores of every
// block before it.
template <typename F>
void for_each_block(const ChunkAttentionPlan& p, F&& visit) {
  const int64_t per_block = block_chunks(p), ncr = chunks_per_round(p);
  PhiloxState dropout_state = p.dropout_state;
  for (int64_t r = 0; r < p.n_hashes; ++r) {
    for (int64_t first = 0; first < ncr; first += per_block) {
      const int64_t count = std::min(per_block, ncr - first);
      visit(r, first, count, dropout_state);
      dropout_state.counter += static_cast<uint64_t>((count * scores_per_chunk(p) + 3) / 4);
    }
  }
}

}  // namespace rw::reformer::chunk_blocks
