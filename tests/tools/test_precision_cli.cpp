// --precision f32|bf16|f16 of rewind-train and rewind-bench model: a tiny run trains in bf16 and
// f16 with finite, decreasing losses, keeps f32 checkpoints (plus the f16 loss scaler's state),
// resumes; bad values are errors naming the flag.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nn/checkpoint.h"
#include "nn/nn_test_util.h"
#include "process.h"
#include "test_util.h"

namespace rw::test {
namespace {

const std::string kTrain = REWIND_TRAIN_EXE;
const std::string kBench = REWIND_BENCH_EXE;

void write_text(const std::filesystem::path& path) {
  std::ofstream out(path);
  const char* words[] = {"alpha", "beta", "gamma", "delta"};
  uint32_t x = 777;
  for (int i = 0; i < 4000; ++i) {
    x = x * 1103515245u + 12345u;
    out << words[(x >> 16) % 4] << (i % 11 == 10 ? ".\n" : " ");
  }
}

std::vector<std::string> tiny_run(const std::filesystem::path& data,
                                  const std::filesystem::path& out, int64_t steps,
                                  const std::string& precision) {
  return {kTrain,
          "--data",
          data.string(),
          "--out",
          out.string(),
          "--steps",
          std::to_string(steps),
          "--length",
          "32",
          "--batch",
          "4",
          "--layers",
          "1",
          "--d-model",
          "32",
          "--d-ff",
          "64",
          "--chunk",
          "8",
          "--lr",
          "3e-3",
          "--schedule",
          "constant",
          "--eval-every",
          "0",
          "--eval-batches",
          "1",
          "--precision",
          precision,
          "--no-progress"};
}

std::vector<nlohmann::json> train_records(const std::filesystem::path& log) {
  std::vector<nlohmann::json> out;
  std::ifstream in(log);
  for (std::string line; std::getline(in, line);) {
    nlohmann::json j = nlohmann::json::parse(line);
    if (j["event"] == "train") out.push_back(j);
  }
  return out;
}

TEST_CASE("rewind-train --precision bf16 and f16: finite, decreasing losses, f32 checkpoints") {
  TempDir dir("train-precision");
  write_text(dir / "text.txt");
  for (const std::string precision : {"bf16", "f16"}) {
    INFO(precision);
    const std::filesystem::path run = dir / precision;
    ProcessResult r = run_process(tiny_run(dir / "text.txt", run, 12, precision), dir / "");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    const std::vector<nlohmann::json> records = train_records(run / "log.jsonl");
    REQUIRE(records.size() >= 12);
    for (const nlohmann::json& j : records) CHECK(std::isfinite(j["loss"].get<double>()));
    const double first = records[0]["loss"].get<double>() + records[1]["loss"].get<double>();
    const double last = records[records.size() - 1]["loss"].get<double>() +
                        records[records.size() - 2]["loss"].get<double>();
    CHECK(last < first - 0.2);  // nats, summed over two steps: clearly learning
    CHECK(records[0].contains("loss_scale") == (precision == "f16"));

    const nn::Checkpoint ckpt = nn::load_checkpoint(run / "checkpoint.safetensors");
    for (const auto& [name, t] : ckpt.model) {
      INFO(name);
      CHECK(t.dtype() == DType::f32);  // master weights
    }
    CHECK(ckpt.config.at("train.precision") == precision);
    CHECK(ckpt.optimizer.contains("grad_scaler.scale") == (precision == "f16"));

    // Resuming continues the run (the f16 loss scale included).
    std::vector<std::string> resume = tiny_run(dir / "text.txt", run, 14, precision);
    resume.push_back("--resume");
    ProcessResult resumed = run_process(resume, dir / "");
    INFO(resumed.err);
    CHECK(resumed.exit_code == 0);
    CHECK(nn::load_checkpoint(run / "checkpoint.safetensors").step == 14);
  }
}

TEST_CASE("--precision rejects unknown values in rewind-train and rewind-bench model") {
  TempDir dir("precision-bad");
  write_text(dir / "text.txt");
  ProcessResult train = run_process(tiny_run(dir / "text.txt", dir / "run", 2, "f64"), dir / "");
  CHECK(train.exit_code == 1);
  CHECK(contains(train.err,
                 "rewind-train: error: --precision: unknown precision 'f64' (f32, bf16 or f16)"));
  CHECK_FALSE(std::filesystem::exists(dir / "run" / "checkpoint.safetensors"));

  ProcessResult bench = run_process(
      {kBench, "model", "--lengths", "16", "--depths", "1", "--precision", "half"}, dir / "");
  CHECK(bench.exit_code != 0);
  CHECK(contains(bench.err, "--precision: unknown precision 'half' (f32, bf16 or f16)"));
}

TEST_CASE("rewind-bench model --precision f16 times a mixed-precision step") {
  TempDir dir("bench-precision");
  ProcessResult r = run_process(
      {kBench,    "model",       "--lengths", "32",       "--depths", "1",        "--d-model",
       "32",      "--d-ff",      "64",        "--heads",  "2",        "--hashes", "1",
       "--chunk", "8",           "--vocab",   "16",       "--reps",   "1",        "--optimizer",
       "adam",    "--precision", "f16",       "--format", "md"},
      dir / "");
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(contains(r.out, "fwd_bwd_s"));
  CHECK(contains(r.out, "f16 autocast, f32 master weights"));
}

}  // namespace
}  // namespace rw::test
