// rewind-bench's --device flag on the attention and model benchmarks: the device named in the
// tables, a clear error (naming the flag and the value, exit status 1) for a device this build or
// this machine lacks, and the run itself on a GPU where there is one. Also the flags the GPU
// session (tools/gpu_session.sh) relies on: --time-budget and the model's --buckets.
#include <doctest/doctest.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "core/device.h"
#include "nn/nn_test_util.h"
#include "process.h"
#include "test_util.h"

namespace rw::test {
namespace {

const std::string kBench = REWIND_BENCH_EXE;

// The smallest runs of each benchmark, as JSON, on `device`.
std::vector<std::string> tiny_attention(const std::string& device) {
  return {kBench,     "attention", "--kind",    "lsh",  "--lengths", "64",
          "--hashes", "1",         "--d-model", "16",   "--heads",   "2",
          "--chunk",  "16",        "--format",  "json", "--device",  device};
}
std::vector<std::string> tiny_model(const std::string& device) {
  return {kBench,        "model", "--lengths", "64", "--depths", "1",    "--d-model", "16",
          "--d-ff",      "32",    "--heads",   "2",  "--chunk",  "16",   "--buckets", "4",
          "--optimizer", "adam",  "--reps",    "1",  "--format", "json", "--device",  device};
}

// The first table's title and rows of a JSON report.
const nlohmann::json& first_table(const nlohmann::json& doc) { return doc.at("tables").at(0); }

TEST_CASE("rewind-bench attention and model name the CPU device in their tables") {
  TempDir dir("bench-device");
  for (const auto& argv : {tiny_attention("cpu"), tiny_model("cpu")}) {
    ProcessResult r = run_process(argv, dir / "");
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    const nlohmann::json doc = nlohmann::json::parse(r.out);
    const nlohmann::json& table = first_table(doc);
    CHECK(contains(table.at("title").get<std::string>(), " on cpu"));
    REQUIRE(table.at("rows").size() == 1);
    CHECK(table.at("rows").at(0).at("peak_bytes").get<double>() > 0);
  }
}

TEST_CASE("rewind-bench model --buckets reaches the model and is reported") {
  TempDir dir("bench-buckets");
  ProcessResult r = run_process(tiny_model("cpu"), dir / "");
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  const nlohmann::json doc = nlohmann::json::parse(r.out);
  bool noted = false;
  for (const auto& note : first_table(doc).at("notes")) {
    noted = noted || note.get<std::string>() == "LSH buckets per round: 4 at every length.";
  }
  CHECK(noted);

  // An odd bucket count is rejected by the model's own validation.
  std::vector<std::string> odd = tiny_model("cpu");
  odd[std::find(odd.begin(), odd.end(), "--buckets") - odd.begin() + 1] = "3";
  ProcessResult bad = run_process(odd, dir / "");
  CHECK(bad.exit_code == 1);
  CHECK(contains(bad.err, "rewind-bench: error: "));
  CHECK(contains(bad.err, "3"));
}

TEST_CASE("rewind-bench --time-budget stops a series before a row that would overrun it") {
  TempDir dir("bench-budget");
  // Two lengths and two hash counts: with room, every row is measured.
  std::vector<std::string> roomy = tiny_attention("cpu");
  roomy[std::find(roomy.begin(), roomy.end(), "--lengths") - roomy.begin() + 1] = "64,128";
  roomy[std::find(roomy.begin(), roomy.end(), "--hashes") - roomy.begin() + 1] = "1,2";
  std::vector<std::string> tight = roomy;
  roomy.insert(roomy.end(), {"--time-budget", "100000"});
  tight.insert(tight.end(), {"--time-budget", "1e-9"});

  ProcessResult r = run_process(roomy, dir / "");
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  const nlohmann::json all = first_table(nlohmann::json::parse(r.out)).at("rows");
  REQUIRE(all.size() == 4);
  for (const auto& row : all) CHECK(row.at("fwd_bwd_s").get<double>() > 0);

  // No time at all: each series stops at its first row, which says why; the run still succeeds
  // and prints its tables.
  ProcessResult t = run_process(tight, dir / "");
  REQUIRE_MESSAGE(t.exit_code == 0, t.err);
  const nlohmann::json stopped = first_table(nlohmann::json::parse(t.out)).at("rows");
  REQUIRE(stopped.size() == 2);
  for (const auto& row : stopped) {
    CHECK(row.at("length").get<double>() == 64);
    CHECK(row.at("fwd_bwd_s") == "time budget");
  }

  std::vector<std::string> model = tiny_model("cpu");
  model.insert(model.end(), {"--time-budget", "1e-9"});
  ProcessResult m = run_process(model, dir / "");
  REQUIRE_MESSAGE(m.exit_code == 0, m.err);
  const nlohmann::json model_rows = first_table(nlohmann::json::parse(m.out)).at("rows");
  REQUIRE(model_rows.size() == 1);
  CHECK(model_rows.at(0).at("fwd_bwd_s") == "time budget");
}

TEST_CASE("rewind-bench --device: an unknown device is an error naming the flag and the value") {
  TempDir dir("bench-device-bad");
  for (const auto& argv : {tiny_attention("gpu"), tiny_model("cuda:x")}) {
    ProcessResult r = run_process(argv, dir / "");
    CHECK(r.exit_code == 1);
    CHECK(contains(r.err, "rewind-bench: error: --device " + argv.back() + ": unknown device '" +
                              argv.back() + "'"));
    CHECK(r.out.empty());
  }
}

TEST_CASE("rewind-bench --device cuda: an error without a usable GPU, the GPU's tables with one") {
  TempDir dir("bench-device-cuda");
  for (const auto& argv : {tiny_attention("cuda"), tiny_model("cuda:0")}) {
    const std::string device = argv.back();
    ProcessResult r = run_process(argv, dir / "");
    if (!cuda_is_built()) {
      CHECK(r.exit_code == 1);
      CHECK(contains(r.err, "rewind-bench: error: --device " + device +
                                ": this rewind-bench was built without CUDA support"));
      CHECK(r.out.empty());
    } else if (cuda_device_count() == 0) {
      CHECK(r.exit_code == 1);
      CHECK(contains(
          r.err, "rewind-bench: error: --device " + device + ": no such CUDA device (0 visible"));
    } else {
      REQUIRE_MESSAGE(r.exit_code == 0, r.err);
      const nlohmann::json doc = nlohmann::json::parse(r.out);
      const nlohmann::json& table = first_table(doc);
      CHECK(contains(table.at("title").get<std::string>(), " on cuda:0 ("));
      REQUIRE(table.at("rows").size() == 1);
      // The GPU allocator's peak: a forward + backward allocates on the device.
      CHECK(table.at("rows").at(0).at("peak_bytes").get<double>() > 0);
      CHECK(table.at("rows").at(0).at("fwd_bwd_s").get<double>() > 0);
    }
  }
  if (cuda_device_count() > 0) {
    // The per-component table times with the CPU's clock and counters only.
    std::vector<std::string> components = tiny_model("cuda");
    components.push_back("--components");
    ProcessResult c = run_process(components, dir / "");
    CHECK(c.exit_code == 1);
    CHECK(contains(c.err, "--components: measured on the CPU only (--device cuda)"));
  }
  // A GPU index past the visible ones is refused in every build.
  ProcessResult far = run_process(tiny_model("cuda:15"), dir / "");
  CHECK(far.exit_code == 1);
  CHECK(contains(far.err, "rewind-bench: error: --device cuda:15: "));
}

}  // namespace
}  // namespace rw::test
