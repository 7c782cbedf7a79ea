// `rewind-bench attention`: time and peak memory (the allocator's counter) of one forward +
// backward of one self-attention layer, projections included, against the sequence length: full
// attention (rw::nn::MultiHeadAttention, shared-QK) against LSH attention
// (rw::reformer::LSHSelfAttention) with 1, 2, 4, 8 hash rounds, plus the scaling exponent of each
// series (the least-squares slope of log time against log length). The Reformer's Fig. 5 and the
// speed targets of issue 5 are stated in these terms.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>

#include <fmt/format.h>

#include "autograd/tape.h"
#include "core/allocator.h"
#include "core/error.h"
#include "device_option.h"
#include "registry.h"
#include "time_budget.h"

// The measuring code is shared with `rewind-ablate speed`.
#include "common/attention_timing.h"

namespace rw::bench {
namespace {

struct AttentionOptions {
  std::vector<std::string> kinds = {"full", "lsh"};
  std::vector<int64_t> lengths = {1024, 2048, 4096, 8192, 16384, 32768, 65536};
  std::vector<int64_t> hashes = {1, 2, 4, 8};
  int64_t d_model = 256;
  int64_t heads = 4;
  int64_t chunk = 64;
  bool causal = true;
  int64_t reps = 1;  // timed runs per row (the best counts)
  // Full attention rows whose L x L score tensors (scores, probabilities and their gradient, per
  // head) would exceed this are skipped.
  double full_memory_cap_gb = 8;
  // After the last length, keep doubling up to this length while the projected peak (twice the
  // last one) stays under --memory-cap-gb; 0 = only the listed lengths.
  int64_t extend_to = 0;
  double memory_cap_gb = 16;
  double fit_from = 4096;  // the second exponent fits only lengths >= this
  Device device = Device::cpu();
  double time_budget_s = 0;  // stop a series before a row that would overrun this (0: none)
};

std::string exponent_cell(const std::vector<std::pair<int64_t, double>>& points) {
  if (points.size() < 2) return "-";
  std::vector<std::pair<double, double>> xy;
  for (auto [length, seconds] : points) xy.emplace_back(static_cast<double>(length), seconds);
  return fmt::format("{:.2f}", tools::fitted_exponent(xy));
}

std::vector<Table> run(const AttentionOptions& o) {
  Table rows;
  rows.title = fmt::format(
      "Forward + backward of one self-attention layer against L (batch 1, d_model {}, {} heads, "
      "chunk {}, {}, f32) on {}",
      o.d_model, o.heads, o.chunk, o.causal ? "causal" : "not causal", device_label(o.device));
  rows.columns = {"kind", "length", "hashes", "fwd_bwd_s", "peak_bytes", "peak_MB", "tokens_per_s"};
  Table fits;
  fits.title = "Scaling exponent of the time in L (least-squares slope of log time vs log L)";
  fits.columns = {"kind", "hashes", "lengths", "exponent", "lengths_fit_from", "exponent_from"};
  const double cap = o.memory_cap_gb * 1e9;
  const TimeBudget budget(o.time_budget_s);
  for (const std::string& kind : o.kinds) {
    const std::vector<int64_t> series = kind == "full" ? std::vector<int64_t>{0} : o.hashes;
    for (int64_t n_hashes : series) {
      std::vector<int64_t> lengths = o.lengths;
      std::vector<std::pair<int64_t, double>> points;
      int64_t last_peak = 0;
      int64_t last_length = 0;
      double last_wall_s = 0;
      for (std::size_t i = 0; i < lengths.size(); ++i) {
        const int64_t L = lengths[i];
        const double lxl_bytes = tools::full_attention_score_bytes(1, o.heads, L);
        if (kind == "full" && lxl_bytes > o.full_memory_cap_gb * 1e9) {
          std::fprintf(stderr, "attention: full, L %ld skipped (L x L scores ~%.1f GB > cap)\n",
                       static_cast<long>(L), lxl_bytes / 1e9);
          continue;
        }
        if (!budget.fits(TimeBudget::next_row_estimate(last_wall_s, last_length, L,
                                                       kind == "full" ? 2.0 : 1.0))) {
          std::fprintf(stderr, "attention: %s, L %ld: stopped (--time-budget)\n", kind.c_str(),
                       static_cast<long>(L));
          rows.rows.push_back({kind, std::to_string(L),
                               kind == "full" ? "-" : std::to_string(n_hashes), "time budget", "-",
                               "-", "-"});
          break;
        }
        std::fprintf(stderr, "attention: %s, L %ld, hashes %ld\n", kind.c_str(),
                     static_cast<long>(L), static_cast<long>(n_hashes));
        const double row_start = budget.elapsed();
        tools::AttentionTiming m;
        try {
          auto layer = tools::make_attention_layer({.kind = kind,
                                                    .n_hashes = n_hashes,
                                                    .d_model = o.d_model,
                                                    .heads = o.heads,
                                                    .chunk = o.chunk,
                                                    .causal = o.causal,
                                                    .device = o.device});
          m = tools::time_attention(
              *layer, {.length = L, .d_model = o.d_model, .reps = o.reps, .device = o.device});
        } catch (const OutOfMemoryError& e) {
          // The rows measured so far still count: this length is reported as OOM and the
          // series stops (a longer one would not fit either).
          std::fprintf(stderr, "attention: %s, L %ld: out of memory: %s\n", kind.c_str(),
                       static_cast<long>(L), e.what());
          current_tape().sweep();
          empty_cache(o.device);
          rows.rows.push_back({kind, std::to_string(L),
                               kind == "full" ? "-" : std::to_string(n_hashes), "OOM", "-", "-",
                               "-"});
          break;
        }
        points.emplace_back(L, m.seconds);
        last_peak = m.peak;
        last_length = L;
        last_wall_s = budget.elapsed() - row_start;
        rows.rows.push_back({kind, std::to_string(L),
                             kind == "full" ? "-" : std::to_string(n_hashes),
                             fmt::format("{:.4f}", m.seconds), std::to_string(m.peak),
                             fmt::format("{:.1f}", static_cast<double>(m.peak) / 1e6),
                             fmt::format("{:.0f}", static_cast<double>(L) / m.seconds)});
        const bool last = i + 1 == lengths.size();
        if (last && kind == "lsh" && 2 * L <= o.extend_to &&
            2.0 * static_cast<double>(last_peak) <= cap) {
          lengths.push_back(2 * L);
        }
      }
      std::vector<std::pair<int64_t, double>> tail;
      for (auto pt : points) {
        if (static_cast<double>(pt.first) >= o.fit_from) tail.push_back(pt);
      }
      auto span = [](const std::vector<std::pair<int64_t, double>>& pts) {
        return pts.empty() ? std::string("-")
                           : fmt::format("{}..{}", pts.front().first, pts.back().first);
      };
      fits.rows.push_back({kind, kind == "full" ? "-" : std::to_string(n_hashes), span(points),
                           exponent_cell(points), span(tail), exponent_cell(tail)});
    }
  }
  rows.notes = {
      "One layer, projections included: full = rw::nn::MultiHeadAttention (shared-QK, no "
      "biases), lsh = rw::reformer::LSHSelfAttention (shared-QK, default n_buckets ~ 2L/chunk, "
      "one chunk of look-back).",
      "fwd_bwd_s: forward plus backward of sum(y * cotangent) w.r.t. the input and the weights, "
      "best of the timed runs; a warm-up run precedes them when it takes under 1 s. On a GPU "
      "the clock is read after rw::synchronize (the device's stream drained).",
      "peak_bytes: the device allocator's peak during one forward + backward, above what was "
      "live before (parameters and input).",
      fmt::format("Full attention is skipped where its L x L scores (3 x heads x L^2 x 4 bytes) "
                  "would exceed {} GB.",
                  o.full_memory_cap_gb),
      "OOM: the device ran out of memory at that length; the series stops there. time budget: "
      "the row would have overrun --time-budget; the series stops there."};
  fits.notes = {
      "exponent: slope over every measured length of the series; exponent_from: over lengths "
      ">= lengths_fit_from only, where fixed per-call costs no longer dominate."};
  return {rows, fits};
}

RunFn setup(CLI::App& cmd) {
  auto opt = std::make_shared<AttentionOptions>();
  auto kind = std::make_shared<std::string>("both");
  cmd.add_option("--kind", *kind, "attention kinds to measure")
      ->check(CLI::IsMember({"full", "lsh", "both"}))
      ->capture_default_str();
  cmd.add_option("--lengths", opt->lengths, "sequence lengths")
      ->delimiter(',')
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--hashes", opt->hashes, "LSH hash rounds, one series each")
      ->delimiter(',')
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--d-model", opt->d_model, "model width")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--heads", opt->heads, "attention heads (must divide d_model)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--chunk", opt->chunk, "LSH chunk length")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_flag("--causal,!--no-causal", opt->causal, "causal masking (default on)")
      ->capture_default_str();
  cmd.add_option("--reps", opt->reps, "timed runs per row (the best counts)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--full-memory-cap-gb", opt->full_memory_cap_gb,
                 "skip full attention where its L x L scores would exceed this many GB")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--extend-to", opt->extend_to,
                 "LSH: after the last length, keep doubling up to this length while twice the "
                 "last peak fits under --memory-cap-gb (0: off)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd.add_option("--memory-cap-gb", opt->memory_cap_gb, "memory cap of --extend-to")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--fit-from", opt->fit_from, "second exponent: only lengths >= this")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--time-budget", opt->time_budget_s,
                 "seconds: stop a series before a row expected to overrun this (0: no limit)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  auto device = std::make_shared<std::string>("cpu");
  add_device_option(cmd, *device);
  return [opt, kind, device] {
    AttentionOptions o = *opt;
    o.device = usable_device(*device);
    if (*kind != "both") o.kinds = {*kind};
    std::sort(o.lengths.begin(), o.lengths.end());
    return run(o);
  };
}

const bool registered = register_subcommand(
    {"attention",
     "time and peak memory of one attention layer's forward + backward against L: full "
     "attention vs LSH with 1/2/4/8 hashes, with fitted scaling exponents",
     setup});

}  // namespace
}  // namespace rw::bench
