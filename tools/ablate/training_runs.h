#pragma once
// Training one variant of an ablation (one model configuration) with the shared Trainer, so that a
// killed `rewind-ablate` continues where it was: each variant trains in <work_dir>/<variant>/
// (checkpoint.safetensors, log.jsonl, and run.json, which records the settings the run was
// started with).
//
//   a finished run (its checkpoint is at the last step)  -> reused: the model is loaded and its
//                                                          learning curve read back from log.jsonl
//   a partial run                                        -> resumed from its checkpoint (exactly:
//                                                          same batches, same randomness)
//   no run, or one started with other settings           -> trained from the start
//
// A stop request (SIGINT/SIGTERM, tools/common/stop_signal.h) makes the Trainer checkpoint and
// return; train_variant then reports `stopped` and the experiment returns early.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ablate/experiment.h"
#include "common/trainer.h"
#include "common/training_data.h"
#include "models/reformer/reformer_lm.h"

namespace rw::ablate {

// A fresh data source (one per start or resume of a run; the checkpoint restores its position).
using DataFactory = std::function<std::unique_ptr<tools::TrainingData>()>;

struct Variant {
  std::string name;   // the run's directory under work_dir, and its label: "lsh-2"
  std::string label;  // for tables and plots ("LSH, 2 hashes"); empty: name
  reformer::ReformerConfig config;
  tools::TrainOptions train;  // out_dir, seed, device and progress are set by train_variant
  DataFactory data;
  // Applied to the model after it is built or resumed and before it trains (e.g. freezing a
  // parameter); may be empty.
  std::function<void(reformer::ReformerLM&)> prepare;
};

struct VariantRun {
  std::string name, label;
  bool stopped = false;  // a stop request ended the training early
  bool reused = false;   // the run had finished before: nothing was trained
  int64_t step = 0;      // steps trained in total
  // Every evaluation of the run, by step (from log.jsonl, across restarts): the learning curve.
  std::vector<tools::EvalPoint> curve;
  std::shared_ptr<reformer::ReformerLM> model;  // the trained model, in eval mode
};

// Trains (or resumes, or reuses) `variant` in run.work_dir / variant.name with run.seed, device
// and progress. rw::Error when training fails (a diverged loss, a bad option).
VariantRun train_variant(const Variant& variant, const RunOptions& run);

// The evaluation points recorded in a run's log.jsonl (the "eval" events), by step; a step
// evaluated twice (a run killed after evaluating but before checkpointing, then resumed) keeps
// the last record. Steps beyond `last_step` (evaluated by a run that was killed before its next
// checkpoint) are dropped. Missing file: empty.
std::vector<tools::EvalPoint> read_curve(const std::filesystem::path& log, int64_t last_step);

}  // namespace rw::ablate
