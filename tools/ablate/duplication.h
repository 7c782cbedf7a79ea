#pragma once
// The duplication experiment (paper Table 2), exposed for its tests: its settings per scale and a
// run with explicit settings.
#include <cstdint>
#include <string>

#include "ablate/experiment.h"

namespace rw::ablate {

struct DuplicationSettings {
  int64_t length = 1024;  // the sequence `0 w 0 w`: w has length/2 - 1 symbols
  int64_t d_model = 256, d_ff = 1024, n_heads = 4;
  int64_t chunk_len = 64;
  int64_t n_buckets = 32;  // per hash round
  int64_t steps = 150000, batch = 64;
  double lr = 1e-3;
  std::string schedule = "rsqrt";  // the Trainer's: constant, rsqrt or cosine
  int64_t warmup = 1000;
  int64_t eval_every = 5000;     // learning-curve points of each training run
  int64_t eval_batches = 8;      // held-out batches of the accuracy matrix
  int64_t eval_batch_size = 64;  // sequences per held-out batch
  std::string reductions;        // how this scale differs from the paper (markdown)
};

DuplicationSettings duplication_settings(Scale scale);

// Trains the four models (full attention, LSH-1/2/4) and evaluates each under full attention and
// LSH-8/4/2/1. A stop request returns early with a Result that says so.
Result run_duplication(const DuplicationSettings& settings, const RunOptions& run);

}  // namespace rw::ablate
