#include "common/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numbers>

#include <fmt/format.h>

#include "autograd/tape.h"
#include "common/checkpoint_model.h"
#include "common/precision.h"
#include "common/progress.h"
#include "common/stop_signal.h"
#include "core/autocast.h"
#include "core/generator_scope.h"
#include "core/ops.h"
#include "nn/adafactor.h"
#include "nn/adam.h"
#include "nn/checkpoint.h"
#include "nn/clip_grad.h"
#include "nn/sgd.h"

namespace rw::tools {
namespace {

constexpr const char* kTrainPrefix = "train.";
// The GradScaler's state sits among the optimizer's tensors of a checkpoint under this prefix.
constexpr const char* kScalerPrefix = "grad_scaler.";
// f16 steps skipped in a row (each halving the loss scale) before training gives up: 2^-100 of
// the initial scale means the gradients are not finite at any scale.
constexpr int64_t kMaxSkippedInARow = 100;

void check_options(const TrainOptions& o) {
  RW_CHECK(o.steps >= 0, "--steps must be >= 0, got {}", o.steps);
  RW_CHECK(o.batch > 0, "--batch must be > 0, got {}", o.batch);
  RW_CHECK(o.lr > 0 && std::isfinite(o.lr), "--lr must be a positive number, got {}", o.lr);
  RW_CHECK(o.warmup >= 0, "--warmup must be >= 0, got {}", o.warmup);
  RW_CHECK(o.clip >= 0, "--clip must be >= 0 (0: off), got {}", o.clip);
  RW_CHECK(o.weight_decay >= 0, "--weight-decay must be >= 0, got {}", o.weight_decay);
  RW_CHECK(o.eval_every >= 0 && o.eval_batches >= 0,
           "--eval-every and --eval-batches must be >= 0, got {} and {}", o.eval_every,
           o.eval_batches);
  RW_CHECK(o.checkpoint_every >= 0, "--checkpoint-every must be >= 0, got {}", o.checkpoint_every);
  RW_CHECK(!o.out_dir.empty(), "--out: an output directory is required");
  precision_dtype(o.precision);
  const std::vector<std::string> optimizers{"adam", "adamw", "adafactor", "sgd"};
  RW_CHECK(std::find(optimizers.begin(), optimizers.end(), o.optimizer) != optimizers.end(),
           "--optimizer: unknown optimizer '{}' (adam, adamw, adafactor or sgd)", o.optimizer);
  RW_CHECK(o.schedule == "constant" || o.schedule == "rsqrt" || o.schedule == "cosine",
           "--schedule: unknown schedule '{}' (constant, rsqrt or cosine)", o.schedule);
  RW_CHECK(o.schedule != "cosine" || o.warmup < std::max<int64_t>(o.steps, 1),
           "--schedule cosine needs --warmup ({}) below --steps ({})", o.warmup, o.steps);
}

std::map<std::string, std::string> checkpoint_metadata(const reformer::ReformerConfig& config,
                                                       const TrainOptions& options,
                                                       PhiloxState data_state) {
  std::map<std::string, std::string> meta = model_config_entries(config);
  meta[std::string(kTrainPrefix) + "optimizer"] = options.optimizer;
  meta[std::string(kTrainPrefix) + "precision"] = options.precision;
  meta[std::string(kTrainPrefix) + "data.seed"] = std::to_string(data_state.seed);
  meta[std::string(kTrainPrefix) + "data.stream"] = std::to_string(data_state.stream);
  meta[std::string(kTrainPrefix) + "data.counter"] = std::to_string(data_state.counter);
  return meta;
}

uint64_t parse_u64(const std::filesystem::path& file, const std::string& key,
                   const std::map<std::string, std::string>& meta) {
  auto it = meta.find(key);
  RW_CHECK(it != meta.end(), "{}: the checkpoint has no '{}' (not written by rewind-train?)",
           file.string(), key);
  try {
    std::size_t used = 0;
    const unsigned long long v = std::stoull(it->second, &used);
    RW_CHECK(used == it->second.size(), "bad");
    return v;
  } catch (...) {
    throw Error(
        fmt::format("{}: '{}' is not an unsigned integer: '{}'", file.string(), key, it->second));
  }
}

}  // namespace

Trainer::Trainer(reformer::ReformerConfig config, TrainOptions options,
                 std::unique_ptr<TrainingData> data)
    : options_(std::move(options)), data_(std::move(data)), generator_(options_.seed) {
  check_options(options_);
  RW_CHECK(config.vocab_size == data_->vocab_size(),
           "the model's vocabulary ({}) differs from that of the data ({}, {}): a resumed run "
           "needs the --data it was trained on",
           config.vocab_size, data_->vocab_size(), data_->description());
  std::filesystem::create_directories(options_.out_dir);
  // Parameters from their own stream, so the training randomness does not depend on model size.
  Generator init = generator_.split(1);
  model_ = std::make_shared<reformer::ReformerLM>(std::move(config), init);
  model_->to(options_.device);
  build_optimizer();
  compute_dtype_ = precision_dtype(options_.precision);
  // bf16 has f32's exponent range: only f16's gradients underflow without loss scaling.
  scaler_ = nn::GradScaler({.enabled = compute_dtype_ == DType::f16});
  log_ = std::make_unique<JsonLinesLog>(log_path());
}

std::unique_ptr<Trainer> Trainer::resume(const std::filesystem::path& checkpoint,
                                         TrainOptions options, std::unique_ptr<TrainingData> data) {
  // The model's config and parameters are read as every tool reads them
  // (common/checkpoint_model.h).
  const nn::Checkpoint ckpt = read_checkpoint_file(checkpoint);
  reformer::ReformerConfig config = checkpoint_model_config(ckpt, checkpoint);
  const std::string optimizer_key = std::string(kTrainPrefix) + "optimizer";
  auto opt = ckpt.config.find(optimizer_key);
  RW_CHECK(opt != ckpt.config.end() && opt->second == options.optimizer,
           "{}: the checkpoint was trained with --optimizer {}, not {}", checkpoint.string(),
           opt == ckpt.config.end() ? std::string("(unknown)") : opt->second, options.optimizer);
  const PhiloxState data_state{
      parse_u64(checkpoint, std::string(kTrainPrefix) + "data.seed", ckpt.config),
      parse_u64(checkpoint, std::string(kTrainPrefix) + "data.stream", ckpt.config),
      parse_u64(checkpoint, std::string(kTrainPrefix) + "data.counter", ckpt.config)};

  auto trainer = std::make_unique<Trainer>(std::move(config), std::move(options), std::move(data));
  load_checkpoint_parameters(*trainer->model_, ckpt, checkpoint);
  // The optimizer's own tensors, and the loss scaler's (f16 runs), which a run resumed in f16
  // continues from (another precision does not scale: the master weights are f32 either way).
  nn::StateDict optimizer_state, scaler_state;
  for (const auto& [name, t] : ckpt.optimizer) {
    if (name.starts_with(kScalerPrefix)) {
      scaler_state.emplace(name.substr(std::string_view(kScalerPrefix).size()), t);
    } else {
      optimizer_state.emplace(name, t);
    }
  }
  trainer->optimizer_->load_state_dict(optimizer_state);
  if (trainer->scaler_.enabled() && !scaler_state.empty()) {
    try {
      trainer->scaler_.load_state_dict(scaler_state);
    } catch (const Error& e) {
      throw Error(fmt::format("{}: {}", checkpoint.string(), e.what()));
    }
  }
  trainer->generator_.set_state(ckpt.rng);
  trainer->data_->set_state(data_state);
  RW_CHECK(trainer->optimizer_->step_count() == ckpt.step,
           "{}: the optimizer state is at step {} but the checkpoint says {}", checkpoint.string(),
           trainer->optimizer_->step_count(), ckpt.step);
  return trainer;
}

void Trainer::build_optimizer() {
  const nn::NamedParameters params = model_->named_parameters();
  const TrainOptions& o = options_;
  if (o.optimizer == "adam") {
    optimizer_ = std::make_unique<nn::Adam>(
        params, nn::AdamOptions{.lr = o.lr, .weight_decay = o.weight_decay});
  } else if (o.optimizer == "adamw") {
    optimizer_ = std::make_unique<nn::AdamW>(
        params, nn::AdamWOptions{.lr = o.lr, .weight_decay = o.weight_decay});
  } else if (o.optimizer == "adafactor") {
    // The schedule sets the step size directly (trax's Reformer setup), not Adafactor's own
    // relative step.
    optimizer_ = std::make_unique<nn::Adafactor>(
        params, nn::AdafactorOptions{
                    .lr = o.lr, .relative_step = false, .weight_decay_rate = o.weight_decay});
  } else {
    optimizer_ = std::make_unique<nn::SGD>(
        params, nn::SGDOptions{.lr = o.lr, .momentum = 0.9, .weight_decay = o.weight_decay});
  }
  if (o.schedule == "constant") {
    schedule_ = std::make_unique<nn::ConstantSchedule>(o.lr);
  } else if (o.schedule == "rsqrt") {
    schedule_ = std::make_unique<nn::LinearWarmupRsqrtDecay>(o.lr, std::max<int64_t>(o.warmup, 1));
  } else {
    schedule_ = std::make_unique<nn::CosineSchedule>(o.lr, std::max<int64_t>(o.steps, 1), o.warmup);
  }
}

std::filesystem::path Trainer::checkpoint_path() const {
  return options_.out_dir / "checkpoint.safetensors";
}
std::filesystem::path Trainer::log_path() const { return options_.out_dir / "log.jsonl"; }

void Trainer::save_checkpoint() const {
  nn::Checkpoint ckpt;
  ckpt.model = model_->state_dict();
  ckpt.optimizer = optimizer_->state_dict();
  if (scaler_.enabled()) {
    for (const auto& [name, t] : scaler_.state_dict()) {
      ckpt.optimizer.emplace(std::string(kScalerPrefix) + name, t);
    }
  }
  ckpt.step = optimizer_->step_count();
  ckpt.rng = generator_.state();
  ckpt.config = checkpoint_metadata(model_->config(), options_, data_->state());
  nn::save_checkpoint(checkpoint_path(), ckpt);
}

double Trainer::train_step() {
  TokenBatch b = data_->next(options_.batch);
  Tensor inputs = b.inputs.to(options_.device), targets = b.targets.to(options_.device);
  model_->train();
  GeneratorScope scope(generator_);
  optimizer_->zero_grad();
  double loss_value = 0;
  {
    // Backward inside the scope too: its recomputations (chunked feed-forward, chunked loss) run
    // in the forward's precision.
    AutocastScope autocast(compute_dtype_);
    Tensor loss = model_->loss(inputs, targets);
    backward(scaler_.scale(loss));
    loss_value = loss.item();
  }
  // Clipping sees the true (unscaled) gradients; an f16 step whose gradients overflowed is
  // skipped and the loss scale backs off (f32/bf16: the scaler is off and the step always runs).
  scaler_.unscale_(*optimizer_);
  if (options_.clip > 0) nn::clip_grad_norm_(model_->named_parameters(), options_.clip);
  nn::apply_schedule(*schedule_, *optimizer_);
  last_step_skipped_ = !scaler_.step(*optimizer_);
  scaler_.update();
  skipped_in_a_row_ = last_step_skipped_ ? skipped_in_a_row_ + 1 : 0;
  RW_CHECK(skipped_in_a_row_ < kMaxSkippedInARow,
           "--precision f16: the gradients were inf/NaN in {} steps in a row (loss scale now {}); "
           "train in bf16 or f32",
           skipped_in_a_row_, scaler_.get_scale());
  return loss_value;
}

double Trainer::evaluate() {
  const std::vector<TokenBatch> batches =
      data_->evaluation_batches(options_.batch, std::max<int64_t>(options_.eval_batches, 1));
  RW_CHECK(!batches.empty(), "evaluation: the data gave no evaluation batch");
  NoGradGuard no_grad;
  model_->eval();
  // Evaluation's own randomness (LSH rotations): the same at every evaluation, and the training
  // generator is not advanced, so evaluating does not change the training run.
  Generator eval_generator(options_.seed, /*stream=*/7);
  GeneratorScope scope(eval_generator);
  AutocastScope autocast(compute_dtype_);
  double total = 0;
  for (const TokenBatch& b : batches) {
    total += model_->loss(b.inputs.to(options_.device), b.targets.to(options_.device)).item();
  }
  model_->train();
  return total / static_cast<double>(batches.size());
}

TrainOutcome Trainer::run() {
  TrainOutcome outcome;
  const double nats_to_unit = 1 / std::numbers::ln2;
  const int64_t tokens_per_step = options_.batch * data_->length();
  log_->write({{"event", "start"},
               {"step", step()},
               {"steps", options_.steps},
               {"data", data_->description()},
               {"parameters", model_->num_parameters()},
               {"precision", options_.precision},
               {"config", model_->config().to_map()}});
  Progress progress("train", options_.steps, stderr, options_.progress && ::isatty(2) != 0);
  auto t_last = std::chrono::steady_clock::now();
  double tokens_per_s = 0;
  while (step() < options_.steps) {
    if (stop_requested()) {
      outcome.stopped = true;
      break;
    }
    const double loss = train_step();
    outcome.last_loss = loss;
    const auto now = std::chrono::steady_clock::now();
    const double dt = std::chrono::duration<double>(now - t_last).count();
    t_last = now;
    tokens_per_s = dt > 0 ? static_cast<double>(tokens_per_step) / dt : 0;
    RW_CHECK(std::isfinite(loss), "training diverged: the loss at step {} is {}", step(), loss);
    nlohmann::json record{{"event", "train"},       {"step", step()},
                          {"loss", loss},           {data_->unit(), loss * nats_to_unit},
                          {"lr", optimizer_->lr()}, {"tokens_per_s", tokens_per_s}};
    if (scaler_.enabled()) {
      // The scale for the next step, and whether this one was skipped (the step count stays).
      record["loss_scale"] = scaler_.get_scale();
      record["skipped"] = last_step_skipped_;
    }
    log_->write(record);
    if (last_step_skipped_) continue;
    const bool eval_due =
        (options_.eval_every > 0 && step() % options_.eval_every == 0) || step() == options_.steps;
    if (options_.eval_batches > 0 && eval_due) {
      const double eval_loss = evaluate();
      outcome.evaluations.push_back({step(), eval_loss});
      log_->write({{"event", "eval"},
                   {"step", step()},
                   {"loss", eval_loss},
                   {data_->unit(), eval_loss * nats_to_unit}});
    }
    if (options_.checkpoint_every > 0 && step() % options_.checkpoint_every == 0) save_checkpoint();
    if (options_.progress) {
      progress.update(step(), {{"loss", fmt::format("{:.3f}", loss)},
                               {data_->unit(), fmt::format("{:.3f}", loss * nats_to_unit)},
                               {"tok/s", format_count(tokens_per_s)}});
    }
  }
  save_checkpoint();
  if (options_.progress) progress.finish();
  outcome.step = step();
  log_->write({{"event", outcome.stopped ? "stopped" : "finished"}, {"step", step()}});
  return outcome;
}

}  // namespace rw::tools
