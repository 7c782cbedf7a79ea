// rewind-bench from the command line at a tiny size: the attention benchmark's CSV columns and
// JSON output, and a clear error for bad flags.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "nn/nn_test_util.h"
#include "process.h"
#include "test_util.h"

namespace rw::test {
namespace {

const std::string kBench = REWIND_BENCH_EXE;

TEST_CASE("rewind-bench attention writes CSV and JSON with the documented columns") {
  TempDir dir("bench");
  const std::vector<std::string> tiny{kBench,     "attention", "--lengths", "64,128",
                                      "--hashes", "1,2",       "--d-model", "16",
                                      "--heads",  "2",         "--chunk",   "16"};
  std::vector<std::string> csv = tiny;
  csv.insert(csv.end(), {"--format", "csv"});
  ProcessResult c = run_process(csv, dir / "");
  REQUIRE(c.exit_code == 0);
  CHECK(contains(c.out, "kind,length,hashes,fwd_bwd_s,peak_bytes"));
  CHECK(contains(c.out, "\nlsh,128,2,"));
  CHECK(contains(c.out, "\nfull,64,-,"));

  std::vector<std::string> json = tiny;
  json.insert(json.end(), {"--format", "json", "--kind", "lsh"});
  ProcessResult j = run_process(json, dir / "");
  REQUIRE(j.exit_code == 0);
  const nlohmann::json doc = nlohmann::json::parse(j.out);
  const auto& rows = doc.at("tables").at(0).at("rows");
  REQUIRE(rows.size() == 4);  // 2 lengths x 2 hash counts
  for (const auto& row : rows) {
    CHECK(row.at("kind") == "lsh");
    CHECK(row.at("fwd_bwd_s").get<double>() > 0);
    CHECK(row.at("peak_bytes").get<double>() > 0);
  }
  CHECK(contains(doc.at("run").at("command").get<std::string>(), "attention"));

  ProcessResult bad = run_process({kBench, "attention", "--kind", "sparse"}, dir / "");
  CHECK(bad.exit_code != 0);
  CHECK(contains(bad.err, "--kind"));
}

}  // namespace
}  // namespace rw::test
