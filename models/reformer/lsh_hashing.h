#pragma once
// Angular locality-sensitive hashing of the Reformer (Kitaev et al. 2020, Sec. 2; Andoni et al.
// 2015): a vector x falls in bucket argmax([xR; -xR]) for a random Gaussian rotation R, so
// vectors at a small angle tend to share a bucket.
//
// - Every head and every hash round has its own rotation (trax, HuggingFace); the batch shares
// them.
// - Round r's buckets are offset by r * n_buckets, so rounds never collide.
// - Factorised buckets: for n_buckets = b1 * b2 two rotations of widths b1/2 and b2/2 give
//   h1 = argmax([xR1; -xR1]) and h2 = argmax([xR2; -xR2]), and bucket = h1 + b1 * h2. Hashing then
//   costs O(L (b1 + b2)) = O(L sqrt(n_buckets)) and never builds an L x n_buckets tensor (the
//   term that costs a popular implementation 17 GB at L = 65536). Rule: factorise when
//   n_buckets > kFactoriseAbove (64), into the even pair b1 >= b2 closest to sqrt(n_buckets).
// - Rotations are drawn from a Generator (or regenerated from its PhiloxState), so a reversible
//   stack's recomputation sees exactly the forward's rotations.
// Bucket ids are i64 tensors: they carry no gradient.
#include <cstdint>

#include "core/philox.h"
#include "core/tensor.h"

namespace rw::reformer {

// Bucket counts above this are factorised (when an even factorisation exists).
inline constexpr int64_t kFactoriseAbove = 64;

// About 2 L / chunk_len buckets (trax, HuggingFace), rounded to the nearest power of two, at
// least 2: on average a bucket then fills half a chunk.
int64_t default_n_buckets(int64_t length, int64_t chunk_len);

// The two factors of n_buckets (first * second == n_buckets). second == 1: not factorised, one
// rotation of width n_buckets / 2 (or none at all for n_buckets == 1). n_buckets must be 1 or even.
struct BucketFactors {
  int64_t first = 1;
  int64_t second = 1;
};
BucketFactors factorise_buckets(int64_t n_buckets);

// The random rotations of one LSH attention call.
struct LSHRotations {
  int64_t n_buckets = 1;
  int64_t n_hashes = 1;
  BucketFactors factors;
  // [n_heads, n_hashes, d_head, factors.first / 2]; undefined when n_buckets == 1.
  Tensor first;
  // [n_heads, n_hashes, d_head, factors.second / 2]; undefined unless factorised.
  Tensor second;
};

// Standard normal rotations drawn from `generator` (first, then second), in `dtype`.
LSHRotations random_lsh_rotations(int64_t n_heads, int64_t d_head, int64_t n_hashes,
                                  int64_t n_buckets, Generator& generator,
                                  DType dtype = DType::f32);

// Rotations given explicitly (for references and tests): checks the shapes against n_buckets
// and n_hashes.
LSHRotations lsh_rotations_from(int64_t n_buckets, int64_t n_hashes, Tensor first,
                                Tensor second = {});

// x [B, H, L, d] -> i64 buckets [B, H, n_hashes, L], round r's in [r n_buckets, (r+1) n_buckets).
// No gradient (x is read detached).
Tensor lsh_hash(const Tensor& x, const LSHRotations& rotations);

}  // namespace rw::reformer
