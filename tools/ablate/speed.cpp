// `rewind-ablate speed`: the Reformer's Fig. 5 (right). Seconds per step of one attention layer
// (forward + backward, projections included) against the sequence length, for full attention and
// LSH attention with 1, 2, 4 and 8 hash rounds, at a fixed number of tokens per batch
// (batch x length constant). Full attention's cost per sequence grows as L^2, so at a fixed token
// count its step time grows as L; LSH attention's grows as L per sequence, so its step time stays
// flat. The measuring code is rewind-bench attention's (tools/common/attention_timing.h).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "ablate/experiment.h"
#include "common/attention_timing.h"
#include "common/progress.h"
#include "core/error.h"

namespace rw::ablate {
namespace {

struct SpeedSettings {
  int64_t tokens = 0;  // per batch: batch = tokens / length
  std::vector<int64_t> lengths;
  std::vector<int64_t> hashes = {1, 2, 4, 8};
  int64_t d_model = 0, heads = 0, chunk = 0;
  int64_t reps = 1;
  double full_cap_bytes = 0;  // full attention is skipped where its L x L tensors exceed this
  std::string reductions;     // markdown: how this scale differs from the paper
};

SpeedSettings settings_for(Scale scale) {
  switch (scale) {
    case Scale::tiny:
      return {.tokens = 512,
              .lengths = {64, 128, 256},
              .d_model = 32,
              .heads = 2,
              .chunk = 16,
              .reps = 3,
              .full_cap_bytes = 1e9,
              .reductions =
                  "a smoke test: 512 tokens per batch, d_model 32, 2 heads, chunk 16; "
                  "the numbers are dominated by per-call overheads"};
    case Scale::small:
      return {.tokens = 16384,
              .lengths = {256, 512, 1024, 2048, 4096, 8192, 16384},
              .d_model = 256,
              .heads = 4,
              .chunk = 64,
              .reps = 2,
              .full_cap_bytes = 4e9,
              .reductions =
                  "16K tokens per batch (the paper's budget is not stated), lengths 256..16K "
                  "instead of 1K..32K, d_model 256 and 4 heads (d_head 64) instead of 1024 "
                  "and 8 (d_head 128), one layer on a 2-core CPU, full attention only where "
                  "its L x L tensors fit under the cap"};
    case Scale::paper:
      return {.tokens = 32768,
              .lengths = {1024, 2048, 4096, 8192, 16384, 32768},
              .d_model = 1024,
              .heads = 8,
              .chunk = 64,
              .reps = 3,
              .full_cap_bytes = 48e9,
              .reductions =
                  "the paper's model width (d_model 1024, 8 heads) and lengths 1K..32K (the "
                  "range of the paper's figure as read from its axis; REFORMER.md does not "
                  "list it); the paper holds the tokens per batch fixed without stating the "
                  "number: 32K is this tool's choice"};
  }
  RW_CHECK(false, "speed: unknown scale");
  return {};
}

// One attention kind's timings.
struct KindTimings {
  std::string name;  // "full", "LSH-4"
  std::string kind;  // "full" or "lsh"
  int64_t n_hashes = 0;
  std::map<int64_t, double> seconds;  // length -> seconds per step (absent: skipped)
};

std::string seconds_cell(const KindTimings& s, int64_t length) {
  auto it = s.seconds.find(length);
  return it == s.seconds.end() ? std::string("-") : fmt::format("{:.4g}", it->second);
}

std::optional<double> exponent_of(const KindTimings& s) {
  if (s.seconds.size() < 2) return std::nullopt;
  std::vector<std::pair<double, double>> points;
  for (auto [length, secs] : s.seconds) points.emplace_back(static_cast<double>(length), secs);
  return tools::fitted_exponent(points);
}

// Where LSH becomes faster than full attention, as a sentence: the crossover is interpolated on
// log-log axes between the last length where full attention was faster and the next one, when LSH
// stays faster from there on; noisy timings that cross back and forth are reported as such.
std::string crossover(const KindTimings& full, const KindTimings& lsh) {
  std::vector<int64_t> common;
  for (auto [length, secs] : full.seconds) {
    if (lsh.seconds.count(length)) common.push_back(length);
  }
  if (common.empty()) return fmt::format("{}: no length with both measured", lsh.name);
  auto log_ratio = [&](int64_t length) {  // > 0: full attention is slower
    return std::log(full.seconds.at(length) / lsh.seconds.at(length));
  };
  std::vector<int64_t> lsh_faster;
  for (int64_t length : common) {
    if (log_ratio(length) > 0) lsh_faster.push_back(length);
  }
  if (lsh_faster.size() == common.size()) {
    return fmt::format("{} is faster than full attention at every length both ran ({}..{})",
                       lsh.name, common.front(), common.back());
  }
  if (lsh_faster.empty()) {
    return fmt::format(
        "{} is not faster than full attention at any length both ran (up to L = {}, where it "
        "takes {:.2f}x full attention's time)",
        lsh.name, common.back(), std::exp(-log_ratio(common.back())));
  }
  // The first length from which LSH stays faster.
  std::size_t from = common.size();
  while (from > 0 && log_ratio(common[from - 1]) > 0) --from;
  if (from == common.size() || from == 0 || lsh_faster.size() != common.size() - from) {
    return fmt::format(
        "{} is faster than full attention only at L = {}, not from some length on (noisy "
        "timings)",
        lsh.name, fmt::join(lsh_faster, ", "));
  }
  const double a = log_ratio(common[from - 1]), b = log_ratio(common[from]);
  const double la = std::log(static_cast<double>(common[from - 1]));
  const double lb = std::log(static_cast<double>(common[from]));
  const double at = std::exp(la + (lb - la) * (-a) / (b - a));
  return fmt::format("{} overtakes full attention at L ≈ {:.0f} (between {} and {})", lsh.name, at,
                     common[from - 1], common[from]);
}

std::string findings_of(const std::vector<KindTimings>& series, const SpeedSettings& st) {
  const KindTimings& full = series.front();
  std::string out;
  out +=
      "Fitted exponents k of seconds per step ~ L^k at a fixed token count (a sequence then "
      "costs L^(k+1)): the paper's Fig. 5 has full attention slowing with L (k = 1, "
      "quadratic per sequence) and LSH flat (k = 0, linear per sequence).\n\n";
  std::optional<double> full_k = exponent_of(full);
  for (const KindTimings& s : series) {
    std::optional<double> k = exponent_of(s);
    if (!k) {
      out += fmt::format("- {}: fewer than two lengths measured, no exponent\n", s.name);
      continue;
    }
    const bool is_full = s.kind == "full";
    const bool as_paper = is_full ? *k > 0.7 : std::abs(*k) < 0.35;
    out += fmt::format("- {}: k = {:.2f} over L = {}..{} (per sequence L^{:.2f}); {}: {}\n", s.name,
                       *k, s.seconds.begin()->first, s.seconds.rbegin()->first, *k + 1,
                       is_full ? "grows about linearly at fixed tokens (k > 0.7)"
                               : "flat like the paper's (|k| < 0.35)",
                       as_paper ? "yes" : "no");
  }
  out +=
      "\nWhere LSH attention becomes faster than full attention (the paper's figure shows "
      "full attention overtaken as L grows):\n\n";
  for (std::size_t i = 1; i < series.size(); ++i) {
    out += "- " + crossover(full, series[i]) + "\n";
  }
  if (full_k && series.size() > 1) {
    // The slowest LSH series at the longest length both ran, against full attention there.
    const int64_t longest_full = full.seconds.rbegin()->first;
    double worst_lsh = 0;
    for (std::size_t i = 1; i < series.size(); ++i) {
      auto it = series[i].seconds.find(longest_full);
      if (it != series[i].seconds.end()) worst_lsh = std::max(worst_lsh, it->second);
    }
    if (worst_lsh > 0) {
      out += fmt::format(
          "\nAt L = {} (the longest full attention ran under the {:.0f} GB cap) full attention "
          "takes {:.2f}x the time of the slowest LSH variant.\n",
          longest_full, st.full_cap_bytes / 1e9, full.seconds.rbegin()->second / worst_lsh);
    }
  }
  return out;
}

Result run_speed(const RunOptions& options) {
  const SpeedSettings st = settings_for(options.scale);
  std::vector<KindTimings> series;
  series.push_back({.name = "full", .kind = "full", .n_hashes = 0, .seconds = {}});
  for (int64_t h : st.hashes) {
    series.push_back(
        {.name = fmt::format("LSH-{}", h), .kind = "lsh", .n_hashes = h, .seconds = {}});
  }
  std::vector<int64_t> skipped_full;
  const int64_t total = static_cast<int64_t>(st.lengths.size() * series.size());
  std::optional<tools::Progress> progress;
  if (options.progress) progress.emplace("speed", total);
  int64_t done = 0;
  for (int64_t length : st.lengths) {
    const int64_t batch = st.tokens / length;
    for (KindTimings& s : series) {
      ++done;
      if (s.kind == "full" &&
          tools::full_attention_score_bytes(batch, st.heads, length) > st.full_cap_bytes) {
        skipped_full.push_back(length);
        continue;
      }
      auto layer = tools::make_attention_layer({.kind = s.kind,
                                                .n_hashes = std::max<int64_t>(s.n_hashes, 1),
                                                .d_model = st.d_model,
                                                .heads = st.heads,
                                                .chunk = st.chunk,
                                                .causal = true});
      layer->to(options.device);
      const tools::AttentionTiming t = tools::time_attention(*layer, {.batch = batch,
                                                                      .length = length,
                                                                      .d_model = st.d_model,
                                                                      .reps = st.reps,
                                                                      .device = options.device});
      s.seconds[length] = t.seconds;
      if (progress) {
        progress->update(done, {{"L", std::to_string(length)},
                                {"attention", s.name},
                                {"s/step", fmt::format("{:.3g}", t.seconds)}});
      }
    }
  }
  if (progress) progress->finish();

  Result r;
  r.name = "speed";
  r.title = "Fig. 5: seconds per step against sequence length, full vs LSH attention";
  r.table.columns = {"length", "batch"};
  for (const KindTimings& s : series) r.table.columns.push_back(s.name + " s");
  for (int64_t length : st.lengths) {
    std::vector<std::string> row = {std::to_string(length), std::to_string(st.tokens / length)};
    for (const KindTimings& s : series) row.push_back(seconds_cell(s, length));
    r.table.rows.push_back(std::move(row));
  }
  Plot plot{.title = fmt::format("One attention layer, forward + backward, {} tokens per batch",
                                 st.tokens),
            .x_label = "sequence length",
            .y_label = "seconds per step",
            .log_x = true,
            .log_y = true,
            .series = {}};
  for (const KindTimings& s : series) {
    Series line{.name = s.name, .x = {}, .y = {}};
    for (auto [length, secs] : s.seconds) {
      line.x.push_back(static_cast<double>(length));
      line.y.push_back(secs);
    }
    plot.series.push_back(std::move(line));
  }
  r.plot = std::move(plot);

  std::string skipped = "none";
  if (!skipped_full.empty()) {
    skipped = fmt::format(
        "L >= {} (its L x L tensors, 3 x batch x heads x L^2 x 4 bytes, would "
        "exceed {:.0f} GB)",
        skipped_full.front(), st.full_cap_bytes / 1e9);
  }
  r.settings = fmt::format(
      "- One self-attention layer, forward + backward (projections included), causal, shared-QK, "
      "f32: full = rw::nn::MultiHeadAttention, LSH-k = rw::reformer::LSHSelfAttention with k hash "
      "rounds (chunk {}, n_buckets ~ 2L/chunk, one chunk of look-back); the same code as "
      "`rewind-bench attention`.\n"
      "- {} tokens per batch (batch = {} / L), lengths {}..{}, d_model {}, {} heads, best of {} "
      "timed run(s) after a warm-up; device {}.\n"
      "- Full attention skipped at: {}.\n"
      "- Reductions from the paper: {}.\n"
      "- Timings do not depend on --seed (fixed weights and inputs); on a shared machine they "
      "are noisy.",
      st.chunk, st.tokens, st.tokens, st.lengths.front(), st.lengths.back(), st.d_model, st.heads,
      st.reps, options.device.str(), skipped, st.reductions);
  r.findings = findings_of(series, st);
  return r;
}

const bool registered = register_experiment(
    {"speed",
     "Fig. 5: seconds per step against sequence length, full attention vs LSH-1/2/4/8, at a "
     "fixed number of tokens per batch",
     run_speed, 50});

}  // namespace
}  // namespace rw::ablate
