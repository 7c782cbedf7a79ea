#pragma once
// Incremental decoding of a ReformerLM: the next-token logits of a growing sequence, one position
// at a time, without recomputing the whole prefix where the attention allows it.
//
//   rw::reformer::IncrementalDecoder decoder(model, {.capacity = P + 100});
//   rw::Tensor logits = decoder.feed(prompt);       // [B, vocab]: logits after the prompt
//   logits = decoder.feed(next_tokens);             // next_tokens [B, 1]: one more position
//
// In evaluation the reversible stack is just y1 = x1 + F(x2), y2 = x2 + G(y1) per block, so a new
// position can run layer by layer against per-layer caches:
// - full attention (nn::MultiHeadAttention): the keys and values of every earlier position;
// - local attention: the keys and values of the chunks the next query can reach;
// - LSH attention: the rotations, keys, values and every round's ticker order
//   (models/reformer/lsh_decode.h), exact for the new query.
// Exactness decides how far the caches reach. A causal full or local attention layer is
// prefix-stable (an earlier position's output never changes when the sequence grows), so the
// layers before the first LSH layer are cached. An LSH layer is not: a later token that sorts
// before an earlier one shifts that one's chunk, so earlier outputs change with every new token
// (lsh_attention's causal masking holds for fixed buckets only). Hence
// - the first LSH layer is served from its cache when it is the LAST layer (only the new
//   position's output is needed then: a 1-layer LSH model, or LSH on top of full/local layers);
// - otherwise the layers from the first LSH layer on are recomputed over the whole sequence at
//   every step (from the cached, prefix-stable stream entering that layer): correct, not faster;
// - a non-causal model recomputes every layer (nothing is prefix-stable).
// cache_plan() says which layers a model gets.
//
// Randomness: every forward (cached or not) runs under a generator of state options.rng, forked
// per block as reversible_stack does, so each layer draws the same LSH rotations at every step.
// For that the bucket count must not depend on the length either: an LSH layer whose n_buckets
// is 0 (about 2 L / chunk_len per call) is fixed, for the decoder's lifetime, to the default for
// options.capacity (the final length), via LSHSelfAttention::set_n_buckets_override. A model
// forward over the final sequence under the same generator state gives the same logits.
//
// The model must be in evaluation mode (no dropout) and must not be changed while a decoder is
// alive; feed() runs without gradient recording.
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "core/philox.h"
#include "core/tensor.h"
#include "models/reformer/local_attention.h"
#include "models/reformer/lsh_decode.h"
#include "models/reformer/reformer_lm.h"
#include "nn/attention.h"

namespace rw::reformer {

// How a model's layers are decoded.
struct DecodePlan {
  // Layers [0, cached_layers) run on the new position only, from their caches.
  int64_t cached_layers = 0;
  // Layers [cached_layers, n_layers) are recomputed over the whole sequence at every step.
  int64_t recomputed_layers = 0;
};
DecodePlan cache_plan(const ReformerConfig& config);

struct DecoderOptions {
  // The longest sequence (prompt + generated) the decoder will see; > 0, and <= max_len for
  // axial or learned positions. Also fixes the default LSH bucket count (see above).
  int64_t capacity = 0;
  // false: every feed() recomputes the whole sequence with the model's own forward (the
  // reference the cache is tested against).
  bool use_cache = true;
  // The generator state every forward runs under (LSH rotations).
  PhiloxState rng{};
};

class IncrementalDecoder {
 public:
  IncrementalDecoder(ReformerLM& model, DecoderOptions options);
  ~IncrementalDecoder();
  IncrementalDecoder(const IncrementalDecoder&) = delete;
  IncrementalDecoder& operator=(const IncrementalDecoder&) = delete;

  // tokens [B, T] (i64 or i32): the next T positions of every sequence (the batch is fixed by the
  // first call). With the cache, the first call takes the prompt (T >= 1) and later calls one
  // position each. Returns the logits of the last position fed: [B, vocab_size].
  Tensor feed(const Tensor& tokens);

  int64_t length() const { return length_; }
  const DecodePlan& plan() const { return plan_; }

 private:
  struct LayerCache {
    nn::KeyValueCache full;
    LocalKeyValueCache local;
    LSHDecodeState lsh;
  };
  Tensor feed_uncached(const Tensor& tokens);
  Tensor feed_cached(const Tensor& tokens);
  // Runs layer i on (x1, x2) of the new positions (cached) or of the whole sequence.
  std::pair<Tensor, Tensor> run_layer(int64_t i, const Tensor& x1, const Tensor& x2, bool cached);

  ReformerLM& model_;
  DecoderOptions options_;
  DecodePlan plan_;
  // The generator states reversible_stack would install for each layer's F and G.
  std::vector<PhiloxState> f_rng_, g_rng_;
  std::vector<LayerCache> caches_;
  // The tokens so far [B, capacity] (uncached) and the stream entering the first recomputed
  // layer, x1 and x2 [B, capacity, d_model] (cached, when some layers are recomputed).
  Tensor tokens_, stream1_, stream2_;
  int64_t length_ = 0;
  int64_t batch_ = 0;
  // The LSH layers whose bucket count the decoder fixed, to restore.
  std::vector<std::pair<int64_t, std::optional<int64_t>>> overridden_;
};

}  // namespace rw::reformer
