// rewind-train from the command line, at a tiny size: help, bad flags and files, a run killed by
// SIGTERM and resumed (its losses continue exactly those of an uninterrupted run), corrupt
// checkpoints.
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "nn/nn_test_util.h"
#include "process.h"
#include "test_util.h"

namespace rw::test {
namespace {

const std::string kTrain = REWIND_TRAIN_EXE;

void write_text(const std::filesystem::path& path) {
  std::ofstream out(path);
  const char* words[] = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta"};
  uint32_t x = 12345;
  for (int i = 0; i < 6000; ++i) {
    x = x * 1103515245u + 12345u;
    out << words[(x >> 16) % 6] << (i % 13 == 12 ? ".\n" : " ");
  }
}

// Flags of a tiny, quick run (dropout on, so resume must replay the randomness too).
std::vector<std::string> tiny_run(const std::filesystem::path& data,
                                  const std::filesystem::path& out, int64_t steps) {
  return {kTrain,
          "--data",
          data.string(),
          "--out",
          out.string(),
          "--steps",
          std::to_string(steps),
          "--length",
          "64",
          "--batch",
          "2",
          "--layers",
          "1",
          "--d-model",
          "32",
          "--d-ff",
          "64",
          "--dropout",
          "0.1",
          "--eval-every",
          "0",
          "--checkpoint-every",
          "1000",
          "--no-progress"};
}

// The "train" records of a log with their timing field removed: what must match across runs.
std::vector<std::string> train_records(const std::filesystem::path& log) {
  std::vector<std::string> out;
  std::ifstream in(log);
  for (std::string line; std::getline(in, line);) {
    if (line.find("\"event\":\"train\"") == std::string::npos) continue;
    // "tokens_per_s":<number> is the last field (the keys are sorted): cut it.
    const auto timing = line.find(",\"tokens_per_s\":");
    if (timing != std::string::npos) line = line.substr(0, timing) + "}";
    out.push_back(line);
  }
  return out;
}

TEST_CASE("rewind-train --help lists the training and model flags") {
  TempDir dir("train-help");
  ProcessResult r = run_process({kTrain, "--help"}, dir / "");
  CHECK(r.exit_code == 0);
  for (const char* flag : {"--data", "--resume", "--steps", "--optimizer", "--attention",
                           "--hashes", "--no-reversible", "--ff-chunk", "--device"}) {
    CAPTURE(flag);
    CHECK(contains(r.out, flag));
  }
}

TEST_CASE("rewind-train rejects bad flags and files with a clear error") {
  TempDir dir("train-bad");
  write_text(dir / "text.txt");
  auto run = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = tiny_run(dir / "text.txt", dir / "run", 3);
    argv.insert(argv.end(), extra.begin(), extra.end());
    return run_process(argv, dir / "");
  };
  ProcessResult missing = run_process(
      {kTrain, "--data", (dir / "nope.txt").string(), "--out", (dir / "run").string()}, dir / "");
  CHECK(missing.exit_code == 1);
  CHECK(contains(missing.err, "rewind-train: error: "));
  CHECK(contains(missing.err, "nope.txt"));

  ProcessResult optimizer = run({"--optimizer", "adagrad"});
  CHECK(optimizer.exit_code != 0);
  CHECK(contains(optimizer.err, "--optimizer"));

  ProcessResult heads = run({"--heads", "3"});
  CHECK(heads.exit_code == 1);
  CHECK(contains(heads.err, "ReformerConfig: n_heads 3 must divide d_model 32"));

  ProcessResult kind = run({"--attention", "lsh,sparse"});
  CHECK(kind.exit_code == 1);
  CHECK(contains(kind.err, "unknown attention kind 'sparse'"));

  ProcessResult device = run({"--device", "tpu"});
  CHECK(device.exit_code == 1);
  CHECK(contains(device.err, "tpu"));

  ProcessResult no_checkpoint = run({"--resume"});
  CHECK(no_checkpoint.exit_code == 1);
  CHECK(contains(no_checkpoint.err, "--resume: there is no checkpoint to resume"));
}

TEST_CASE("rewind-train stopped by SIGTERM resumes exactly where it stopped") {
  TempDir dir("train-resume");
  write_text(dir / "text.txt");
  // A long run, stopped politely once a few steps are logged.
  ChildProcess child(tiny_run(dir / "text.txt", dir / "killed", 100000), dir / "");
  const auto log = dir / "killed" / "log.jsonl";
  for (int wait = 0; wait < 600 && train_records(log).size() < 5; ++wait) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  REQUIRE(train_records(log).size() >= 5);
  child.send(SIGTERM);
  ProcessResult stopped = child.wait();
  CHECK(stopped.exit_code == 128 + SIGTERM);
  CHECK(contains(stopped.err, "stopped by signal 15"));
  const int64_t stopped_at = static_cast<int64_t>(train_records(log).size());
  CHECK(std::filesystem::exists(dir / "killed" / "checkpoint.safetensors"));

  // Resume for 4 more steps, and compare with one uninterrupted run of the same length.
  std::vector<std::string> resume = tiny_run(dir / "text.txt", dir / "killed", stopped_at + 4);
  resume.push_back("--resume");
  ProcessResult resumed = run_process(resume, dir / "");
  CHECK(resumed.exit_code == 0);
  CHECK(contains(resumed.err, fmt::format("at step {}", stopped_at)));
  ProcessResult straight =
      run_process(tiny_run(dir / "text.txt", dir / "straight", stopped_at + 4), dir / "");
  CHECK(straight.exit_code == 0);
  const std::vector<std::string> a = train_records(log),
                                 b = train_records(dir / "straight" / "log.jsonl");
  REQUIRE(b.size() == static_cast<std::size_t>(stopped_at + 4));
  CHECK(a == b);

  // The run directory holds no temporary files from the atomic writes.
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir / "killed")) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"checkpoint.safetensors", "log.jsonl"});
}

TEST_CASE("rewind-train refuses to overwrite a run and names a corrupt checkpoint") {
  TempDir dir("train-corrupt");
  write_text(dir / "text.txt");
  REQUIRE(run_process(tiny_run(dir / "text.txt", dir / "run", 2), dir / "").exit_code == 0);
  ProcessResult again = run_process(tiny_run(dir / "text.txt", dir / "run", 2), dir / "");
  CHECK(again.exit_code == 1);
  CHECK(contains(again.err, "already exists: pass --resume to continue that run"));

  const auto ckpt = dir / "run" / "checkpoint.safetensors";
  std::filesystem::resize_file(ckpt, std::filesystem::file_size(ckpt) / 2);
  std::vector<std::string> resume = tiny_run(dir / "text.txt", dir / "run", 4);
  resume.push_back("--resume");
  ProcessResult truncated = run_process(resume, dir / "");
  CHECK(truncated.exit_code == 1);
  CHECK(contains(truncated.err, "checkpoint.safetensors"));
}

}  // namespace
}  // namespace rw::test
