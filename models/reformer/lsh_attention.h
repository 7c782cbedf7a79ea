#pragma once
// The Reformer's LSH attention (Kitaev, Kaiser, Levskaya 2020, Sec. 2), exactly, as a function of
// explicit rotations (or precomputed buckets) so it can be checked against a brute-force reference.
//
//   rw::Generator gen(7);
//   auto rot = rw::reformer::random_lsh_rotations(H, d_head, /*n_hashes=*/4, /*n_buckets=*/32,
//   gen); rw::Tensor y = rw::reformer::lsh_attention(qk, v, rot, {.chunk_len = 64, .causal =
//   true});
//
// What it computes, for each batch element and head (qk, v [B, H, L, d_head]):
// 1. Shared QK: queries are qk, keys are unit_normalize(qk); logits are scale * q . k_hat with
//    scale = 1/sqrt(d_head) by default, as rw::nn::MultiHeadAttention's shared_qk mode (lucidrains'
//    choice; trax and HuggingFace use scale 1, which `scale = 1.0` selects).
// 2. Buckets per round (lsh_hash); real tokens keep theirs, padding (key_padding_mask false, and
//    the internal padding up to a multiple of chunk_len) goes to an extra last bucket of its round.
// 3. Round by round, a stable sort by (bucket, position): the n_hashes * L "ticker".
// 4. The ticker is cut into chunks of chunk_len; the queries of a chunk attend to the keys of the
//    chunks_before chunks before it, itself, and the chunks_after chunks after it. The neighbours
//    wrap around the whole ticker (the first chunk of round r looks back into round r-1, the first
//    chunk of round 0 into the last round), as in trax, HuggingFace and lucidrains.
// 5. Masks, on the logits: a key at the query's own position gets a finite self penalty (a token
//    with nothing else to attend to still attends to itself); causal masking compares ORIGINAL
//    positions; padding keys are never attended; with attend_across_buckets = false, keys of
//    another bucket (or round) are masked too. Penalties per dtype: rw::nn::attention_penalties.
// 6. Per round, each query's softmax output and logsumexp; rounds are combined by a softmax over
//    their logsumexps. With count_duplicates, a key that a query meets c > 1 times over all rounds
//    and window positions has log(c) subtracted from its logit, so the result equals ONE softmax
//    over the union of attended keys (paper Sec. 2, "the case of duplicate attention").
// 7. A query whose every attended key is hard-masked (all padding) gets a zero output and no
//    gradient, as rw::nn::attention.
// Any L works (L = 1 included): the sequence is padded internally to a multiple of chunk_len.
//
// Cost: O(n_hashes L (chunks_before + 1 + chunks_after) chunk_len d) time; memory linear in L.
// No L x L (or L x n_buckets) tensor is ever built: the chunk attention is one custom function
// whose forward processes blocks of chunks with batched matmuls and saves only its inputs, the
// output and two numbers per token; backward recomputes each block's scores (FlashAttention style).
// Gradients flow to qk (through both the queries and the keys) and v; none into the hashing.
#include <cstdint>
#include <optional>

#include "core/philox.h"
#include "core/tensor.h"
#include "models/reformer/lsh_hashing.h"

namespace rw::reformer {

struct LSHAttentionOptions {
  int64_t chunk_len = 64;
  // 0 = default_n_buckets(L, chunk_len). Must be 1 or even.
  int64_t n_buckets = 0;
  int64_t n_hashes = 1;
  int64_t chunks_before = 1;
  int64_t chunks_after = 0;
  bool causal = false;
  // Subtract log(count) from the logit of a key met several times (exact union attention).
  bool count_duplicates = false;
  // false: keys of another bucket in the attended chunks are masked (lucidrains' switch).
  bool attend_across_buckets = true;
  // Multiplies q . k_hat; default 1/sqrt(d_head).
  std::optional<double> scale{};
  // Dropout on the attention probabilities (after the per-round softmax); the mask is a pure
  // function of dropout_state, so backward (and a reversible recomputation) drops the same ones.
  double dropout_p = 0;
  PhiloxState dropout_state{};
};

// n_buckets resolved for a sequence of `length` (options.n_buckets or the default).
int64_t resolve_n_buckets(const LSHAttentionOptions& options, int64_t length);

// LSH attention with the given rotations (their n_buckets and n_hashes must match the options,
// after resolving n_buckets for L). qk, v [B, H, L, d_head] of one floating dtype; optional
// key_padding_mask bool [B, L] (true = real token). Returns [B, H, L, d_head].
Tensor lsh_attention(const Tensor& qk, const Tensor& v, const LSHRotations& rotations,
                     const LSHAttentionOptions& options = {}, const Tensor& key_padding_mask = {});

// The same with precomputed buckets: i64 [B, H, n_hashes, L], round r's in
// [r n_buckets, (r+1) n_buckets) (what lsh_hash returns).
Tensor lsh_attention_with_buckets(const Tensor& qk, const Tensor& v, const Tensor& buckets,
                                  const LSHAttentionOptions& options = {},
                                  const Tensor& key_padding_mask = {});

}  // namespace rw::reformer
