#pragma once
// Time and peak memory of one self-attention layer's forward + backward, shared by
// `rewind-bench attention` and `rewind-ablate speed` (the Reformer's Fig. 5):
//
//   rw::tools::AttentionLayerSpec spec{.kind = "lsh", .n_hashes = 4};
//   auto layer = rw::tools::make_attention_layer(spec);
//   rw::tools::AttentionTiming t = rw::tools::time_attention(*layer, {.batch = 2, .length = 4096,
//                                                                      .d_model = spec.d_model});
//
// The layer is full attention (rw::nn::MultiHeadAttention, shared-QK, no biases) or LSH attention
// (rw::reformer::LSHSelfAttention); projections are included in the time.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/device.h"
#include "nn/module.h"

namespace rw::tools {

struct AttentionLayerSpec {
  std::string kind = "lsh";  // "full" or "lsh"
  int64_t n_hashes = 1;      // LSH rounds (ignored by full attention)
  int64_t d_model = 256;
  int64_t heads = 4;
  int64_t chunk = 64;  // LSH chunk length
  bool causal = true;
  Device device = Device::cpu();  // where the layer is put
};

// The layer of `spec` on spec.device, its weights drawn from a fixed seed (the same weights on
// every device); rw::Error for an unknown kind.
std::shared_ptr<nn::Module> make_attention_layer(const AttentionLayerSpec& spec);

struct AttentionRun {
  int64_t batch = 1;
  int64_t length = 1024;
  int64_t d_model = 256;
  int64_t reps = 1;  // timed runs (the best counts)
  Device device = Device::cpu();
};

struct AttentionTiming {
  double seconds = 0;  // best forward + backward over the timed runs
  int64_t peak = 0;    // allocator peak bytes above what was live before (parameters, input)
};

// Forward + backward of sum(layer(x) * cotangent) for a fresh random x [batch, length, d_model],
// w.r.t. x and the weights. A warm-up run (oneDNN primitives, cuBLAS handles, allocator pools)
// precedes the timed ones when it takes under 1 s; a slower first run counts as the first timed
// run. The layer must be on run.device already. On a GPU each run is timed between two
// rw::synchronize calls, and the peak is that device's allocator's.
AttentionTiming time_attention(nn::Module& layer, const AttentionRun& run);

// Bytes of the L x L tensors full attention keeps per layer (scores, probabilities and their
// gradient, per head and sequence, f32): 3 x batch x heads x L^2 x 4. What caps the lengths at
// which full attention is measured.
double full_attention_score_bytes(int64_t batch, int64_t heads, int64_t length);

// Least-squares slope of log(y) against log(x): the exponent k of y ~ x^k. Needs two points with
// different x (rw::Error otherwise); every value must be positive.
double fitted_exponent(const std::vector<std::pair<double, double>>& points);

}  // namespace rw::tools
