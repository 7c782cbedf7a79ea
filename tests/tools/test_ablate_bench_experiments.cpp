// The measuring code shared by rewind-bench and rewind-ablate (tools/common/attention_timing.h,
// training_step_timing.h) at tiny sizes, and `rewind-ablate speed` / `memory --scale tiny` from
// the command line: well-formed tables and plot data with positive times and peaks.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "common/attention_timing.h"
#include "common/training_step_timing.h"
#include "core/ops.h"
#include "models/reformer/reformer_lm.h"
#include "nn/nn_test_util.h"
#include "process.h"
#include "test_util.h"

namespace rw::test {
namespace {

tools::AttentionTiming time_tiny_layer(const std::string& kind, int64_t length) {
  const tools::AttentionLayerSpec spec{
      .kind = kind, .n_hashes = 2, .d_model = 16, .heads = 2, .chunk = 16};
  auto layer = tools::make_attention_layer(spec);
  return tools::time_attention(*layer, {.length = length, .d_model = spec.d_model});
}

TEST_CASE("time_attention: full attention's peak grows as L^2, LSH attention's as L") {
  const auto full_128 = time_tiny_layer("full", 128), full_256 = time_tiny_layer("full", 256);
  const auto lsh_256 = time_tiny_layer("lsh", 256), lsh_512 = time_tiny_layer("lsh", 512);
  for (const auto& t : {full_128, full_256, lsh_256, lsh_512}) {
    CHECK(t.seconds > 0);
    CHECK(t.seconds < 10);
    CHECK(t.peak > 0);
  }
  // Doubling L: about 4x for the L x L scores, about 2x for LSH's chunks.
  const double full_growth = static_cast<double>(full_256.peak) / full_128.peak;
  const double lsh_growth = static_cast<double>(lsh_512.peak) / lsh_256.peak;
  CHECK(full_growth > 3.0);
  CHECK(full_growth < 4.5);
  CHECK(lsh_growth > 1.5);
  CHECK(lsh_growth < 2.5);
  // The cap estimate (scores, probabilities and their gradient) is what full attention holds.
  const double scores = tools::full_attention_score_bytes(1, 2, 256);
  CHECK(full_256.peak > 0.5 * scores);
  CHECK(full_256.peak < 2.0 * scores);
}

TEST_CASE("time_attention: a batch of B sequences holds about B times the memory") {
  const tools::AttentionLayerSpec spec{.kind = "lsh", .d_model = 16, .heads = 2, .chunk = 16};
  auto layer = tools::make_attention_layer(spec);
  const auto one = tools::time_attention(*layer, {.batch = 1, .length = 256, .d_model = 16});
  const auto four = tools::time_attention(*layer, {.batch = 4, .length = 256, .d_model = 16});
  const double growth = static_cast<double>(four.peak) / one.peak;
  CHECK(growth > 3.0);
  CHECK(growth < 4.5);
}

TEST_CASE("make_attention_layer rejects an unknown kind") {
  CHECK(contains(error_message([] { tools::make_attention_layer({.kind = "sparse"}); }),
                 "unknown kind 'sparse'"));
}

TEST_CASE("full_attention_score_bytes and fitted_exponent") {
  // 3 tensors x batch 2 x 4 heads x 1024^2 x 4 bytes.
  CHECK(tools::full_attention_score_bytes(2, 4, 1024) ==
        doctest::Approx(3.0 * 2 * 4 * 1048576 * 4));
  CHECK(tools::fitted_exponent({{1, 3}, {2, 12}, {4, 48}}) == doctest::Approx(2.0));
  CHECK(tools::fitted_exponent({{10, 5}, {100, 5}}) == doctest::Approx(0.0));
  CHECK(contains(error_message([] { tools::fitted_exponent({{1, 1}}); }), "at least 2 points"));
  CHECK(contains(error_message([] { tools::fitted_exponent({{2, 1}, {2, 3}}); }), "same x"));
  CHECK(contains(error_message([] { tools::fitted_exponent({{1, 1}, {2, 0}}); }), "positive"));
}

// Activations (peak minus the parameter gradients) of one tiny training step.
double step_activations(bool reversible, int64_t layers) {
  reformer::ReformerConfig c;
  c.vocab_size = 32;
  c.d_model = 16;
  c.d_ff = 64;
  c.n_heads = 2;
  c.n_layers = layers;
  c.attention = {reformer::AttentionKind::full};
  c.reversible = reversible;
  c.max_len = 128;
  Generator gen(1);
  reformer::ReformerLM model(c, gen);
  Generator data(2);
  Tensor tokens = randint(0, 32, {1, 128}, data, {.dtype = DType::i64});
  Tensor targets = randint(0, 32, {1, 128}, data, {.dtype = DType::i64});
  const tools::StepTiming t = tools::time_training_step(model, tokens, targets, {.reps = 1});
  CHECK(t.fwd_bwd_s > 0);
  CHECK(t.params > 0);
  CHECK(t.peak > t.params);
  return static_cast<double>(t.peak - t.params);
}

TEST_CASE("time_training_step: plain residual activations grow with depth, reversible do not") {
  const double plain_growth = step_activations(false, 4) / step_activations(false, 1);
  const double reversible_growth = step_activations(true, 4) / step_activations(true, 1);
  CHECK(plain_growth > 2.5);
  CHECK(reversible_growth < 1.6);
}

// --- rewind-ablate speed / memory --scale tiny ------------------------------------------------

const std::string kAblate = REWIND_ABLATE_EXE;

// RFC 4180 CSV: fields quoted when they hold a comma or a quote, inner quotes doubled.
std::vector<std::vector<std::string>> parse_csv(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char ch = text[i];
    if (quoted) {
      if (ch == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (ch == '"') {
        quoted = false;
      } else {
        field += ch;
      }
    } else if (ch == '"') {
      quoted = true;
    } else if (ch == ',') {
      row.push_back(field);
      field.clear();
    } else if (ch == '\n') {
      row.push_back(field);
      field.clear();
      rows.push_back(row);
      row.clear();
    } else {
      field += ch;
    }
  }
  return rows;
}

// The plot data: one block per series, "# index <i>: <series>" then "x y" lines (other comment
// lines describe the plot).
std::map<std::string, std::vector<std::pair<double, double>>> parse_plot_data(
    const std::string& text) {
  std::map<std::string, std::vector<std::pair<double, double>>> series;
  std::istringstream in(text);
  std::string line, current;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line[0] == '#') {
      const auto colon = line.find(": ");
      if (line.rfind("# index ", 0) == 0 && colon != std::string::npos) {
        current = line.substr(colon + 2);
        series[current];
      }
      continue;
    }
    std::istringstream xy(line);
    double x = 0, y = 0;
    xy >> x >> y;
    series[current].emplace_back(x, y);
  }
  return series;
}

ProcessResult run_tiny(const std::string& experiment, const TempDir& dir) {
  return run_process(
      {kAblate, experiment, "--scale", "tiny", "--no-progress", "--out", (dir / "out").string()},
      dir / "");
}

TEST_CASE("rewind-ablate speed --scale tiny: seconds per kind and length, one series per kind") {
  TempDir dir("ablate-speed");
  ProcessResult r = run_tiny("speed", dir);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const auto rows = parse_csv(read_file(dir / "out/speed.csv"));
  REQUIRE(rows.size() == 4);  // header + lengths 64, 128, 256
  CHECK(rows[0] == std::vector<std::string>{"length", "batch", "full s", "LSH-1 s", "LSH-2 s",
                                            "LSH-4 s", "LSH-8 s"});
  for (std::size_t i = 1; i < rows.size(); ++i) {
    REQUIRE(rows[i].size() == 7);
    // Tokens per batch are fixed: batch x length is the same on every row.
    CHECK(std::stol(rows[i][0]) * std::stol(rows[i][1]) ==
          std::stol(rows[1][0]) * std::stol(rows[1][1]));
    for (std::size_t c = 2; c < rows[i].size(); ++c) CHECK(std::stod(rows[i][c]) > 0);
  }
  const auto plot = parse_plot_data(read_file(dir / "out/speed.plot.dat"));
  REQUIRE(plot.size() == 5);
  for (const auto& [name, points] : plot) {
    CHECK(points.size() == 3);
    for (auto [x, y] : points) CHECK(y > 0);
  }
  const std::string md = read_file(dir / "out/speed.md");
  CHECK(contains(md, "full: k = "));
  CHECK(contains(md, "LSH-8"));
}

TEST_CASE("rewind-ablate memory --scale tiny: every Table 3 variant, formula next to measurement") {
  TempDir dir("ablate-memory");
  ProcessResult r = run_tiny("memory", dir);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const auto rows = parse_csv(read_file(dir / "out/memory.csv"));
  REQUIRE(!rows.empty());
  const std::vector<std::string>& header = rows[0];
  auto column = [&](const std::string& name) {
    for (std::size_t i = 0; i < header.size(); ++i) {
      if (header[i] == name) return i;
    }
    FAIL("no column " << name);
    return std::size_t{0};
  };
  const std::size_t sweep = column("sweep"), variant = column("variant"), length = column("length"),
                    layers = column("layers"), peak = column("peak_MB"),
                    formula = column("formula_MB");
  // 5 variants x (3 lengths + 3 depths), nothing skipped at this size.
  REQUIRE(rows.size() == 1 + 5 * 6);
  std::map<std::string, std::vector<std::pair<long, double>>> by_length, by_depth;
  for (std::size_t i = 1; i < rows.size(); ++i) {
    REQUIRE(rows[i].size() == header.size());
    CHECK(std::stod(rows[i][peak]) > 0);
    CHECK(std::stod(rows[i][formula]) > 0);
    auto& target = rows[i][sweep] == "length" ? by_length : by_depth;
    const std::size_t x = rows[i][sweep] == "length" ? length : layers;
    target[rows[i][variant]].emplace_back(std::stol(rows[i][x]), std::stod(rows[i][peak]));
  }
  REQUIRE(by_length.size() == 5);
  REQUIRE(by_depth.size() == 5);
  // Full attention: the peak rises with the length; the plain stack's with the depth too.
  for (const std::string name : {"Transformer", "Reversible Transformer"}) {
    const auto& pts = by_length.at(name);
    for (std::size_t i = 1; i < pts.size(); ++i) {
      CHECK(pts[i].first > pts[i - 1].first);
      CHECK(pts[i].second > pts[i - 1].second);
    }
  }
  CHECK(by_depth.at("Transformer").back().second > by_depth.at("Transformer").front().second);
  const auto plot = parse_plot_data(read_file(dir / "out/memory.plot.dat"));
  REQUIRE(plot.size() == 5);
  for (const auto& [name, points] : plot) CHECK(points.size() == 3);
  const std::string md = read_file(dir / "out/memory.md");
  CHECK(contains(md, "max(b l d_ff, b n_h l^2) n_l"));
  CHECK(contains(md, "reversible layers remove the n_l factor"));
}

}  // namespace
}  // namespace rw::test
