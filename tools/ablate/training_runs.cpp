#include "ablate/training_runs.h"

#include <cstdio>
#include <fstream>
#include <map>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/checkpoint_model.h"
#include "core/error.h"
#include "nn/atomic_file.h"

namespace rw::ablate {
namespace {

// Everything that decides what a run computes: a run directory holding a run started with other
// settings (another scale, seed or corpus in the same --out) is not resumed but started afresh.
// The number of steps is not part of it: a run asked for more steps continues a shorter one (the
// schedules but cosine do not depend on it, and cosine is recorded through "steps_if_cosine").
nlohmann::json run_settings(const Variant& v, const tools::TrainOptions& o,
                            const tools::TrainingData& data) {
  return {{"variant", v.name},
          {"config", v.config.to_map()},
          {"data", data.description()},
          {"length", data.length()},
          {"steps_if_cosine", o.schedule == "cosine" ? o.steps : 0},
          {"batch", o.batch},
          {"optimizer", o.optimizer},
          {"lr", o.lr},
          {"schedule", o.schedule},
          {"warmup", o.warmup},
          {"weight_decay", o.weight_decay},
          {"clip", o.clip},
          {"eval_every", o.eval_every},
          {"eval_batches", o.eval_batches},
          {"seed", o.seed}};
}

bool same_settings(const std::filesystem::path& file, const nlohmann::json& settings) {
  std::ifstream in(file);
  if (!in) return false;
  try {
    return nlohmann::json::parse(in) == settings;
  } catch (const nlohmann::json::exception&) {
    return false;  // a damaged file: the run cannot be trusted
  }
}

void say(const RunOptions& run, const std::string& line) {
  if (run.progress) std::fprintf(stderr, "%s\n", line.c_str());
}

}  // namespace

std::vector<tools::EvalPoint> read_curve(const std::filesystem::path& log, int64_t last_step) {
  std::map<int64_t, double> by_step;
  std::ifstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    // A run killed mid-write leaves at most one partial line: skip what does not parse.
    const nlohmann::json record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!record.is_object() || record.value("event", "") != "eval") continue;
    if (!record.contains("step") || !record.contains("loss")) continue;
    const int64_t step = record["step"].get<int64_t>();
    if (step <= last_step) by_step[step] = record["loss"].get<double>();
  }
  std::vector<tools::EvalPoint> curve;
  for (const auto& [step, loss] : by_step) curve.push_back({step, loss});
  return curve;
}

VariantRun train_variant(const Variant& variant, const RunOptions& run) {
  tools::TrainOptions options = variant.train;
  options.out_dir = run.work_dir / variant.name;
  options.seed = run.seed;
  options.device = run.device;
  options.progress = run.progress;

  VariantRun out;
  out.name = variant.name;
  out.label = variant.label.empty() ? variant.name : variant.label;
  std::unique_ptr<tools::TrainingData> data = variant.data();
  const nlohmann::json settings = run_settings(variant, options, *data);
  const std::filesystem::path settings_file = options.out_dir / "run.json";
  const std::filesystem::path checkpoint = options.out_dir / "checkpoint.safetensors";
  const std::filesystem::path log = options.out_dir / "log.jsonl";

  std::unique_ptr<tools::Trainer> trainer;
  std::optional<tools::CheckpointModel> saved;
  if (std::filesystem::exists(checkpoint) && same_settings(settings_file, settings)) {
    try {
      saved = tools::load_checkpoint_model(checkpoint, run.device);
    } catch (const Error& e) {
      // Checkpoints are written atomically, so this is a file damaged by other means: train again.
      say(run, fmt::format("{}: cannot read {} ({}); training from the start", variant.name,
                           checkpoint.string(), e.what()));
    }
    // A run trained past the steps asked for now cannot be cut back: start again.
    if (saved && saved->step > options.steps) saved.reset();
  }
  if (saved) {
    if (saved->step == options.steps) {
      say(run, fmt::format("{}: reusing the finished run in {} ({} steps)", variant.name,
                           options.out_dir.string(), saved->step));
      out.reused = true;
      out.step = saved->step;
      out.curve = read_curve(log, saved->step);
      out.model = std::move(saved->model);
      return out;
    }
    say(run, fmt::format("{}: resuming at step {} of {} ({})", variant.name, saved->step,
                         options.steps, options.out_dir.string()));
    trainer = tools::Trainer::resume(checkpoint, options, std::move(data));
  } else {
    // A run of other settings (or none): start afresh, without its stale log.
    std::filesystem::remove_all(options.out_dir);
    std::filesystem::create_directories(options.out_dir);
    const std::string text = settings.dump(2) + "\n";
    nn::AtomicFileWriter writer(settings_file);
    writer.write(text.data(), text.size());
    writer.commit();
    say(run, fmt::format("{}: training {} steps ({})", variant.name, options.steps,
                         options.out_dir.string()));
    trainer = std::make_unique<tools::Trainer>(variant.config, options, std::move(data));
  }
  if (variant.prepare) variant.prepare(trainer->model());
  const tools::TrainOutcome outcome = trainer->run();
  out.stopped = outcome.stopped;
  out.step = outcome.step;
  out.curve = read_curve(log, outcome.step);
  // The model lives in the trainer: share ownership of the whole trainer.
  std::shared_ptr<tools::Trainer> owner = std::move(trainer);
  out.model = std::shared_ptr<reformer::ReformerLM>(owner, &owner->model());
  out.model->eval();
  return out;
}

}  // namespace rw::ablate
