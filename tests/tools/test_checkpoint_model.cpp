// common/checkpoint_model.h: a rewind-train checkpoint read back into a ReformerLM (the parameters
// the trainer saved, in evaluation mode), and each way a checkpoint file can be wrong named.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <memory>

#include "common/checkpoint_model.h"
#include "common/trainer.h"
#include "common/training_data.h"
#include "core/generator_scope.h"
#include "core/ops.h"
#include "nn/checkpoint.h"
#include "nn/nn_test_util.h"
#include "nn/safetensors.h"
#include "test_util.h"

namespace rw::tools {
namespace {

using rw::test::contains;
using rw::test::error_message;
using rw::test::TempDir;

reformer::ReformerConfig tiny_config() {
  reformer::ReformerConfig c;
  c.vocab_size = 128;
  c.n_layers = 2;
  c.attention = {reformer::AttentionKind::lsh, reformer::AttentionKind::full};
  c.d_model = 16;
  c.d_ff = 32;
  c.n_heads = 2;
  c.chunk_len = 8;
  c.max_len = 16;
  return c;
}

// A trainer of the duplication task (no data file needed), trained `steps` steps and saved.
std::unique_ptr<Trainer> trained(const std::filesystem::path& out, int64_t steps) {
  TrainOptions o;
  o.steps = steps;
  o.batch = 2;
  o.eval_batches = 0;
  o.checkpoint_every = 0;
  o.out_dir = out;
  o.seed = 5;
  o.progress = false;
  auto trainer =
      std::make_unique<Trainer>(tiny_config(), o, std::make_unique<DuplicationData>(16, 5));
  trainer->run();  // ends with a checkpoint
  return trainer;
}

TEST_CASE("load_checkpoint_model returns the parameters the trainer saved, in evaluation mode") {
  TempDir dir("checkpoint-model");
  std::unique_ptr<Trainer> trainer = trained(dir / "run", 2);
  CheckpointModel loaded = load_checkpoint_model(trainer->checkpoint_path());
  CHECK(loaded.step == 2);
  CHECK(loaded.model->config() == trainer->model().config());
  CHECK_FALSE(loaded.model->is_training());

  const nn::NamedParameters saved = trainer->model().named_parameters();
  const nn::NamedParameters read = loaded.model->named_parameters();
  REQUIRE(read.size() == saved.size());
  for (std::size_t i = 0; i < saved.size(); ++i) {
    CAPTURE(saved[i].first);
    CHECK(read[i].first == saved[i].first);
    CHECK(max(abs(sub(read[i].second, saved[i].second))).item() == 0);
  }

  // The same function of the tokens: equal logits under the same randomness (LSH rotations).
  Tensor tokens = from_vector<int64_t>({3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8}, Shape{1, 12});
  trainer->model().eval();
  Generator g1(11), g2(11);
  Tensor expected, actual;
  {
    GeneratorScope scope(g1);
    expected = trainer->model().forward(tokens);
  }
  {
    GeneratorScope scope(g2);
    actual = loaded.model->forward(tokens);
  }
  CHECK(max(abs(sub(actual, expected))).item() == 0);
}

TEST_CASE("load_checkpoint_model names the file and the problem of a bad checkpoint") {
  TempDir dir("checkpoint-model-bad");
  std::unique_ptr<Trainer> trainer = trained(dir / "run", 1);
  const std::filesystem::path good = trainer->checkpoint_path();
  const nn::Checkpoint checkpoint = nn::load_checkpoint(good);
  auto message = [](const std::filesystem::path& p) {
    return error_message([&] { load_checkpoint_model(p); });
  };

  CHECK(contains(message(dir / "missing.safetensors"), "missing.safetensors': no such file"));
  CHECK(contains(message(dir / "run"),
                 "is a directory, not a file (a run directory? its "
                 "checkpoint is '" +
                     good.string() + "')"));

  const std::filesystem::path cut = dir / "cut.safetensors";
  std::filesystem::copy_file(good, cut);
  std::filesystem::resize_file(cut, std::filesystem::file_size(good) - 64);
  const std::string truncated = message(cut);
  CHECK(contains(truncated,
                 "cannot load the checkpoint (truncated, corrupt or not a rewind-train "
                 "checkpoint): safetensors file '" +
                     cut.string() + "'"));
  CHECK(contains(truncated, "run past the end of the data buffer"));

  // A valid safetensors file that is no checkpoint, and a checkpoint that holds no model.
  const std::filesystem::path weights = dir / "weights.safetensors";
  nn::save_safetensors(weights, {{"w", ones({2, 2})}});
  CHECK(contains(message(weights), "not a rewind checkpoint"));
  nn::Checkpoint no_config = checkpoint;
  no_config.config.clear();
  nn::save_checkpoint(dir / "no-config.safetensors", no_config);
  CHECK(contains(message(dir / "no-config.safetensors"),
                 "no-config.safetensors' holds no model config (no \"model.*\" entries): it was "
                 "not written by rewind-train"));

  nn::Checkpoint bad_config = checkpoint;
  bad_config.config["model.d_model"] = "wide";
  nn::save_checkpoint(dir / "bad-config.safetensors", bad_config);
  const std::string invalid = message(dir / "bad-config.safetensors");
  CHECK(contains(invalid, "bad-config.safetensors': invalid model config: ReformerConfig:"));
  CHECK(contains(invalid, "wide"));
  bad_config.config["model.d_model"] = "15";  // not divisible by the 2 heads
  nn::save_checkpoint(dir / "bad-config.safetensors", bad_config);
  CHECK(contains(message(dir / "bad-config.safetensors"),
                 "invalid model config: ReformerConfig: n_heads 2 must divide d_model 15"));

  nn::Checkpoint missing = checkpoint;
  missing.model.erase("final_norm.weight");
  nn::save_checkpoint(dir / "missing-param.safetensors", missing);
  const std::string absent = message(dir / "missing-param.safetensors");
  CHECK(contains(absent, "missing-param.safetensors': its parameters do not fit the model"));
  CHECK(contains(absent, "missing keys [final_norm.weight]"));

  nn::Checkpoint reshaped = checkpoint;
  reshaped.model["final_norm.weight"] = ones({8});
  nn::save_checkpoint(dir / "reshaped.safetensors", reshaped);
  const std::string mismatch = message(dir / "reshaped.safetensors");
  CHECK(contains(mismatch, "reshaped.safetensors': its parameters do not fit the model"));
  CHECK(contains(mismatch, "final_norm.weight: checkpoint shape"));

  // rewind-train --resume reads the model through the same function, with the same messages.
  TrainOptions o;
  o.out_dir = dir / "resumed";
  const std::string resumed = error_message([&] {
    Trainer::resume(dir / "no-config.safetensors", o, std::make_unique<DuplicationData>(16, 5));
  });
  CHECK(contains(resumed, "holds no model config"));
}

}  // namespace
}  // namespace rw::tools
