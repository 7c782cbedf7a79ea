#pragma once
// Autoregressive generation with a ReformerLM: greedy or sampled (temperature, top-k, top-p),
// deterministic per seed, with per-layer caches so a step does not recompute the whole prefix
// where the attention kind allows (models/reformer/decode_cache.h says which layers).
//
//   rw::Tensor prompt = rw::from_vector<int64_t>({0, 17, 42}, rw::Shape{1, 3});
//   rw::Tensor out = rw::reformer::generate(*model, prompt,
//                                           {.max_new_tokens = 64, .temperature = 0.8,
//                                            .top_p = 0.9, .seed = 7});   // [1, 3 + 64]
//
// The model runs in evaluation mode without gradient recording for the call; the training mode
// of every submodule is restored afterwards.
//
// Randomness: two Philox streams of `seed`: stream 0 draws one uniform number per sequence per
// step for sampling (also when greedy, so the streams never shift), stream 1 is the generator
// state every forward runs under (LSH rotations: the same at every step, cached or not). An LSH
// layer with n_buckets = 0 hashes into default_n_buckets(P + max_new_tokens, chunk_len) buckets
// for the whole call (a count fixed from the final length, so each step sees the same rotations;
// the model's forward over the final sequence at that length uses the same count).
#include <cstdint>
#include <optional>

#include "core/philox.h"
#include "core/tensor.h"
#include "models/reformer/reformer_lm.h"

namespace rw::reformer {

struct SamplingOptions {
  double temperature = 1.0;  // >= 0; 0 = greedy (the most likely token, lowest id on ties)
  int64_t top_k = 0;         // >= 0; keep the k most likely tokens (0 = all)
  double top_p = 1.0;        // in (0, 1]; keep the smallest most-likely set with mass >= top_p
};

// rw::Error naming the bad field and its value.
void validate(const SamplingOptions& options);

// The distribution sample_next_tokens draws from, f64 [B, V] on the CPU: softmax(logits /
// temperature) restricted to the top_k most likely tokens, renormalised, then restricted to the
// smallest prefix (by decreasing probability, ties by id) whose mass reaches top_p, renormalised.
// Greedy (temperature 0): one-hot on the argmax. logits [B, V] of any floating dtype and device.
Tensor sampling_probabilities(const Tensor& logits, const SamplingOptions& options);

// One token per row of logits [B, V]: i64 [B] on the CPU. Draws B uniform numbers from
// `generator` (inverse-CDF sampling of sampling_probabilities, tokens ordered by decreasing
// probability).
Tensor sample_next_tokens(const Tensor& logits, const SamplingOptions& options,
                          Generator& generator);

struct GenerateOptions {
  int64_t max_new_tokens = 32;  // >= 0
  double temperature = 1.0;     // 0 = greedy
  int64_t top_k = 0;            // 0 = off
  double top_p = 1.0;           // 1 = off
  uint64_t seed = 0;
  // false: every step recomputes the whole sequence with the model's forward (the reference).
  bool use_cache = true;
  // A sequence that produces this token stops: its later positions are filled with it, and the
  // call returns early once every sequence has stopped.
  std::optional<int64_t> stop_token{};
};

// prompt i64 or i32 [B, P], P >= 1, every sequence of the same length, tokens in [0, vocab_size)
// -> i64 [B, P + n] on the prompt's device, n <= max_new_tokens (fewer only with stop_token).
// P + max_new_tokens must not exceed max_len for axial or learned positions.
Tensor generate(ReformerLM& model, const Tensor& prompt, const GenerateOptions& options = {});

}  // namespace rw::reformer
