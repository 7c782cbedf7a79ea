// rewind-train: trains a ReformerLM on a corpus (byte-level language modelling of the GCIDE
// dictionary by default, any text file, or Fashion-MNIST images as pixel sequences), with a
// progress bar, periodic evaluation, a JSON-lines log, atomic checkpoints, and exact resume.
//
//   rewind-train --out run1 --steps 2000                  # the default corpus (GCIDE)
//   rewind-train --out run1 --steps 4000 --resume         # continue the same run
//   rewind-train --data input.txt --out base --attention full --no-reversible   # a baseline
//   rewind-train --data fashion-mnist --out images        # 784-pixel sequences, bits/dim
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "common/model_flags.h"
#include "common/stop_signal.h"
#include "common/trainer.h"
#include "core/error.h"

int main(int argc, char** argv) {
  using namespace rw::tools;
  CLI::App app{
      "rewind-train: train a Reformer language model on text (bytes are the tokens) or on images "
      "(pixels are the tokens)"};
  std::string data = "gcide";
  int64_t length = kDefaultTextLength;
  bool resume = false;
  std::string device = "cpu";
  TrainOptions options;
  options.out_dir = "rewind-run";
  ModelFlags model;
  model.base.n_layers = 2;
  model.base.d_model = 128;
  model.base.d_ff = 512;
  model.base.n_hashes = 2;
  model.base.ff_chunk = 128;
  // A flag given twice takes its last value, so a wrapper's defaults can be overridden by
  // appending flags (tools/main_job.sh passes its own, then the user's).
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);

  app.add_option("--data", data,
                 "what to train on: gcide (the default corpus: the GCIDE dictionary from Debian's "
                 "dict-gcide, ~40 MB of text, split 90/5/5), fashion-mnist (28x28 images as "
                 "784-pixel sequences, scored in bits/dim; from dataset-fashion-mnist), or a file "
                 "(any bytes; gzip-compressed files are decompressed)")
      ->capture_default_str();
  app.add_option("--out", options.out_dir, "run directory: checkpoint.safetensors, log.jsonl")
      ->capture_default_str();
  app.add_flag("--resume", resume, "continue from the run directory's checkpoint");
  app.add_option("--length", length,
                 "tokens per training sequence (text only: fashion-mnist sequences are 784 pixels)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--steps", options.steps, "total optimizer steps")->capture_default_str();
  app.add_option("--batch", options.batch, "sequences per step")->capture_default_str();
  app.add_option("--optimizer", options.optimizer, "adam, adamw, adafactor or sgd")
      ->check(CLI::IsMember({"adam", "adamw", "adafactor", "sgd"}))
      ->capture_default_str();
  app.add_option("--lr", options.lr, "peak learning rate")->capture_default_str();
  app.add_option("--schedule", options.schedule,
                 "constant, rsqrt (linear warm-up then 1/sqrt decay) or cosine")
      ->check(CLI::IsMember({"constant", "rsqrt", "cosine"}))
      ->capture_default_str();
  app.add_option("--warmup", options.warmup, "warm-up steps")->capture_default_str();
  app.add_option("--weight-decay", options.weight_decay, "weight decay")->capture_default_str();
  app.add_option("--clip", options.clip, "global gradient-norm clip (0: off)")
      ->capture_default_str();
  app.add_option("--eval-every", options.eval_every, "evaluate every N steps (0: at the end only)")
      ->capture_default_str();
  app.add_option("--eval-batches", options.eval_batches, "validation batches per evaluation")
      ->capture_default_str();
  app.add_option("--checkpoint-every", options.checkpoint_every, "checkpoint every N steps")
      ->capture_default_str();
  app.add_option("--seed", options.seed, "parameters, dropout, LSH rotations, data order")
      ->capture_default_str();
  app.add_option("--device", device, "cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--precision", options.precision,
                 "f32, bf16 or f16: mixed precision (autocast matmuls in bf16/f16 with f32 "
                 "accumulation; softmax, norms and the loss in f32; f32 master weights and "
                 "checkpoints; f16 adds dynamic loss scaling)")
      ->capture_default_str();
  app.add_flag("--progress,!--no-progress", options.progress, "the progress bar on stderr");
  model.add_to(app);
  CLI11_PARSE(app, argc, argv);

  try {
    options.device = rw::Device::parse(device);
    install_stop_handlers();
    std::unique_ptr<TrainingData> training_data = open_training_data(
        data, app.count("--length") > 0 ? std::optional<int64_t>(length) : std::nullopt,
        options.seed);
    const std::string unit = training_data->unit();
    std::unique_ptr<Trainer> trainer;
    const std::filesystem::path checkpoint = options.out_dir / "checkpoint.safetensors";
    if (resume) {
      RW_CHECK(std::filesystem::exists(checkpoint),
               "--resume: there is no checkpoint to resume at {}", checkpoint.string());
      trainer = Trainer::resume(checkpoint, options, std::move(training_data));
      std::fprintf(stderr, "resuming %s at step %ld\n", checkpoint.c_str(),
                   static_cast<long>(trainer->step()));
    } else {
      RW_CHECK(!std::filesystem::exists(checkpoint),
               "{} already exists: pass --resume to continue that run, or choose another --out",
               checkpoint.string());
      rw::reformer::ReformerConfig config =
          model.config(training_data->vocab_size(), training_data->length());
      trainer = std::make_unique<Trainer>(config, options, std::move(training_data));
    }
    std::fprintf(stderr, "model: %ld parameters; log: %s\n",
                 static_cast<long>(trainer->model().num_parameters()), trainer->log_path().c_str());
    TrainOutcome outcome = trainer->run();
    if (!outcome.evaluations.empty()) {
      const EvalPoint& last = outcome.evaluations.back();
      std::printf("step %ld: validation %.4f nats/token = %.4f %s\n", static_cast<long>(last.step),
                  last.loss, last.loss / std::log(2.0), unit.c_str());
    }
    std::printf("checkpoint: %s\n", trainer->checkpoint_path().c_str());
    if (outcome.stopped) {
      std::fprintf(stderr, "stopped by signal %d at step %ld; resume with --resume\n",
                   stop_signal(), static_cast<long>(outcome.step));
      return exit_status_for_signal(stop_signal());
    }
    return 0;
  } catch (const rw::Error& e) {
    std::fprintf(stderr, "rewind-train: error: %s\n", e.what());
    return 1;
  }
}
