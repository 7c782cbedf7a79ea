#include "common/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace rw::tools {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(std::llround(seconds));
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
}

std::string format_count(double v) {
  if (!std::isfinite(v)) return "?";
  if (std::abs(v) >= 1e6) return fmt::format("{:.2f}M", v / 1e6);
  if (std::abs(v) >= 1e3) return fmt::format("{:.1f}k", v / 1e3);
  return fmt::format("{:.0f}", v);
}

Progress::Progress(std::string label, int64_t total, std::FILE* out)
    : Progress(std::move(label), total, out, ::isatty(::fileno(out)) != 0) {}

Progress::Progress(std::string label, int64_t total, std::FILE* out, bool interactive,
                   double line_interval_seconds)
    : label_(std::move(label)),
      total_(std::max<int64_t>(total, 1)),
      out_(out),
      interactive_(interactive),
      line_interval_(line_interval_seconds),
      start_time_(std::chrono::steady_clock::now()),
      last_line_(start_time_) {}

std::string Progress::render(int64_t done, const ProgressFields& fields, bool with_bar) const {
  std::string line = label_;
  if (with_bar) {
    constexpr int kWidth = 24;
    const auto filled =
        static_cast<int>(kWidth * std::clamp<double>(static_cast<double>(done) / total_, 0, 1));
    line += fmt::format(" [{}{}]", std::string(filled, '#'), std::string(kWidth - filled, '.'));
  }
  line += fmt::format(" {}/{}", done, total_);
  for (const auto& [key, value] : fields) line += fmt::format(" {} {}", key, value);
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time_).count();
  const int64_t progressed = done - std::max<int64_t>(start_done_, 0);
  if (progressed > 0 && done < total_) {
    line += " ETA " + format_duration(elapsed / progressed * static_cast<double>(total_ - done));
  } else {
    line += " elapsed " + format_duration(elapsed);
  }
  return line;
}

void Progress::update(int64_t done, const ProgressFields& fields) {
  const auto now = std::chrono::steady_clock::now();
  if (start_done_ < 0) {
    start_done_ = done;
    start_time_ = now;
  }
  last_done_ = done;
  last_fields_ = fields;
  if (interactive_) {
    // \r and clear-to-end-of-line: a shorter line leaves no debris of the previous one.
    std::fprintf(out_, "\r%s\x1b[K", render(done, fields, true).c_str());
    std::fflush(out_);
    return;
  }
  if (std::chrono::duration<double>(now - last_line_).count() >= line_interval_) {
    std::fprintf(out_, "%s\n", render(done, fields, false).c_str());
    std::fflush(out_);
    last_line_ = now;
  }
}

void Progress::finish(const ProgressFields& fields) {
  const ProgressFields& shown = fields.empty() ? last_fields_ : fields;
  if (interactive_) {
    std::fprintf(out_, "\r%s\x1b[K\n", render(last_done_, shown, true).c_str());
  } else {
    std::fprintf(out_, "%s\n", render(last_done_, shown, false).c_str());
  }
  std::fflush(out_);
}

}  // namespace rw::tools
