#pragma once
// Exact incremental decoding for causal LSH attention: the attention of ONE new query (the last
// position of the sequence) computed from cached state, equal up to float round-off to the last
// row of lsh_attention over the whole sequence with the same rotations and bucket count.
//
// What the uncached lsh_attention gives the last query p of a length-L sequence (L = p + 1):
// round by round, the real tokens sorted by (bucket, position) fill slots [0, L) of the round
// and the internal padding slots [L, Lp), Lp = L rounded up to chunk_len, so the query sits at
// slot s_r = #{j < p : bucket_r(j) <= bucket_r(p)} (ties sort by position and p is the largest).
// Its chunk in the ticker is (r Lp + s_r) / chunk_len; it attends to that chunk and its
// chunks_before / chunks_after neighbours, wrapping around the whole ticker of n_hashes * Lp slots,
// with the self penalty on its own position, padding slots hard-masked, (optionally) keys of
// another bucket hard-masked, and (optionally) log(count) subtracted from a key met count times;
// rounds combine by the softmax of their logsumexps.
//
// So the state per layer is: the rotations, every position's unit key and value, and per batch
// element, head and round the ticker order of the real tokens (a sorted list the new token is
// inserted into). A step costs O(n_hashes * window * d) for the attention plus an O(L) integer
// insertion per round, instead of the O(n_hashes L window d) of recomputing the whole sequence.
//
// Why only the LAST query: an earlier token's LSH output depends on where later tokens sort (a
// later token sorting before it shifts its chunk boundaries), so the outputs of earlier positions
// change as the sequence grows. A cache is therefore exact for the first LSH layer of a causal
// stack only when nothing after it needs the earlier positions' outputs: see decode_cache.h.
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "models/reformer/lsh_attention.h"
#include "models/reformer/lsh_hashing.h"

namespace rw::reformer {

struct LSHDecodeState {
  LSHAttentionOptions options;  // n_buckets resolved (> 0), causal
  LSHRotations rotations;
  int64_t batch = 0, heads = 0, d_head = 0;
  Tensor keys;    // [B, H, capacity, d_head]: unit-normalised qk of every position so far
  Tensor values;  // [B, H, capacity, d_head]
  int64_t length = 0;
  // Round-local bucket of every position: bucket[((b H + h) n_hashes + r) * capacity + pos].
  std::vector<int64_t> bucket;
  // The ticker order of the real tokens of each (batch, head, round): positions sorted by
  // (bucket, position), indexed (b H + h) n_hashes + r.
  std::vector<std::vector<int64_t>> sorted;

  int64_t capacity() const { return keys.defined() ? keys.size(2) : 0; }
};

// Starts a state for qk, v [B, H, P, d_head] (the prompt's projections) and their buckets
// i64 [B, H, n_hashes, P] (lsh_hash with `rotations`), with room for `capacity` positions.
// options.n_buckets must be resolved (> 0) and match the rotations; options.causal must be set.
LSHDecodeState lsh_decode_start(const Tensor& qk, const Tensor& v, const Tensor& buckets,
                                const LSHRotations& rotations, const LSHAttentionOptions& options,
                                int64_t capacity);

// Appends one position (qk, v [B, H, 1, d_head], buckets i64 [B, H, n_hashes, 1]) and returns its
// attention output [B, H, 1, d_head].
Tensor lsh_decode_step(LSHDecodeState& state, const Tensor& qk, const Tensor& v,
                       const Tensor& buckets);

}  // namespace rw::reformer
