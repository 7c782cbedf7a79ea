#pragma once
// A progress report for long runs, on stderr: a live bar redrawn in place when stderr is a
// terminal, and plain periodic lines otherwise (a log file or CI output gets a readable line every
// few seconds instead of thousands of carriage returns).
//
//   rw::tools::Progress progress("train", total_steps);
//   progress.update(step, {{"loss", "1.234"}, {"tok/s", "12.3k"}});
//   progress.finish();
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace rw::tools {

using ProgressFields = std::vector<std::pair<std::string, std::string>>;

class Progress {
 public:
  // `interactive`: redraw a bar in place (default: whether `out` is a terminal).
  Progress(std::string label, int64_t total, std::FILE* out = stderr);
  Progress(std::string label, int64_t total, std::FILE* out, bool interactive,
           double line_interval_seconds = 10);
  // Records that `done` of `total` units are finished, with fields shown beside the count. The
  // ETA is extrapolated from the rate since `start` (the first update's count, so a resumed run
  // estimates from its own speed).
  void update(int64_t done, const ProgressFields& fields = {});
  // Ends the bar's line (interactive) or prints a final line.
  void finish(const ProgressFields& fields = {});

 private:
  std::string render(int64_t done, const ProgressFields& fields, bool with_bar) const;

  std::string label_;
  int64_t total_;
  std::FILE* out_;
  bool interactive_;
  double line_interval_;
  std::chrono::steady_clock::time_point start_time_, last_line_;
  int64_t start_done_ = -1;
  int64_t last_done_ = 0;
  ProgressFields last_fields_;
};

// "42s", "3m05s", "2h07m".
std::string format_duration(double seconds);
// "950", "12.3k", "4.56M".
std::string format_count(double value);

}  // namespace rw::tools
