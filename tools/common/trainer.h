#pragma once
// The training loop every tool shares: a ReformerLM on a TrainingData source with an optimizer, a
// learning-rate schedule, gradient clipping, periodic evaluation, a JSON-lines log, atomic
// checkpoints (every N steps, at the end, and when SIGINT/SIGTERM asks to stop) and exact resume.
//
// Exact resume: a checkpoint holds the parameters, the optimizer state, the step, the model's
// generator (dropout masks, LSH rotations) and the data source's state, so training N steps,
// stopping, and resuming for M more gives bit for bit the run of N + M steps.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/json_lines.h"
#include "common/training_data.h"
#include "core/device.h"
#include "models/reformer/reformer_lm.h"
#include "nn/grad_scaler.h"
#include "nn/lr_schedule.h"
#include "nn/optimizer.h"

namespace rw::tools {

struct TrainOptions {
  int64_t steps = 1000;  // total optimizer steps (a resumed run continues up to this)
  int64_t batch = 8;
  std::string optimizer = "adam";  // adam, adamw, adafactor, sgd
  double lr = 1e-3;                // peak learning rate
  std::string schedule = "rsqrt";  // constant, rsqrt (linear warm-up, rsqrt decay), cosine
  int64_t warmup = 100;
  double weight_decay = 0;
  double clip = 1.0;         // global gradient-norm clip; 0: off
  int64_t eval_every = 200;  // and after the last step; 0: only then
  int64_t eval_batches = 8;  // 0: no evaluation
  int64_t checkpoint_every = 500;
  std::filesystem::path out_dir;  // checkpoint.safetensors and log.jsonl go here
  uint64_t seed = 0;              // parameters, dropout and LSH rotations
  Device device = Device::cpu();
  // f32, bf16 or f16: the forward (and its backward) under rw::AutocastScope of that dtype, the
  // parameters and the optimizer in f32 (master weights, so checkpoints stay f32); f16 also scales
  // the loss with an nn::GradScaler, whose state the checkpoint keeps.
  std::string precision = "f32";
  bool progress = true;  // the progress bar on stderr
};

struct EvalPoint {
  int64_t step = 0;
  double loss = 0;  // nats per scored token
};

struct TrainOutcome {
  int64_t step = 0;      // steps done in total
  bool stopped = false;  // a stop signal ended the run early
  double last_loss = 0;  // the last training step's loss (nats)
  std::vector<EvalPoint> evaluations;
};

class Trainer {
 public:
  // A fresh run. Validates the options (rw::Error naming the flag) and creates out_dir.
  Trainer(reformer::ReformerConfig config, TrainOptions options,
          std::unique_ptr<TrainingData> data);
  // Continues the run saved in `checkpoint`: the model config, parameters, optimizer state, step,
  // randomness and data position come from it; `options` give the rest (steps, evaluation, ...).
  // The optimizer must be the one the checkpoint was trained with (rw::Error otherwise).
  static std::unique_ptr<Trainer> resume(const std::filesystem::path& checkpoint,
                                         TrainOptions options, std::unique_ptr<TrainingData> data);

  // Trains up to options.steps; returns early (after checkpointing) when stop_requested().
  TrainOutcome run();
  // Mean loss (nats per scored token) over the data's evaluation batches, in eval mode.
  double evaluate();
  // Writes the checkpoint now (atomically).
  void save_checkpoint() const;

  reformer::ReformerLM& model() { return *model_; }
  const TrainOptions& options() const { return options_; }
  int64_t step() const { return optimizer_->step_count(); }
  std::filesystem::path checkpoint_path() const;
  std::filesystem::path log_path() const;

 private:
  void build_optimizer();
  double train_step();

  TrainOptions options_;
  std::unique_ptr<TrainingData> data_;
  std::shared_ptr<reformer::ReformerLM> model_;
  std::unique_ptr<nn::Optimizer> optimizer_;
  std::unique_ptr<nn::LrSchedule> schedule_;
  Generator generator_;  // dropout masks and LSH rotations of training steps
  std::unique_ptr<JsonLinesLog> log_;
  DType compute_dtype_ = DType::f32;  // options_.precision
  nn::GradScaler scaler_;             // enabled for f16 only
  int64_t skipped_in_a_row_ = 0;      // f16 steps skipped for inf/NaN gradients
  bool last_step_skipped_ = false;
};

}  // namespace rw::tools
