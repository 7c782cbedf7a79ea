#pragma once
// A wall-clock budget for one benchmark invocation (--time-budget), so that a run under an outer
// `timeout` (tools/gpu_session.sh) ends on its own and still prints what it measured, instead of
// being killed in its longest row and printing nothing. A series stops before a row whose
// estimated time would overrun the budget; the estimate scales the last row's wall time as
// length^exponent (1 for LSH attention and the Reformer, 2 for full attention), with a safety
// factor of 1.5.
//
//   TimeBudget budget(o.time_budget_s);  // 0: unlimited
//   if (!budget.fits(TimeBudget::next_row_estimate(last_wall_s, last_length, length, 1))) {...}
#include <chrono>
#include <cmath>
#include <cstdint>

namespace rw::bench {

class TimeBudget {
 public:
  explicit TimeBudget(double seconds) : seconds_(seconds) {}

  double elapsed() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }
  // Whether a row expected to take `estimate_s` more seconds still fits (always, unlimited).
  bool fits(double estimate_s) const { return seconds_ <= 0 || elapsed() + estimate_s <= seconds_; }
  // The next row's expected wall time from the last one of the same series (0 without one).
  static double next_row_estimate(double last_wall_s, int64_t last_length, int64_t length,
                                  double exponent) {
    if (last_length <= 0) return 0;
    const double ratio = static_cast<double>(length) / static_cast<double>(last_length);
    return 1.5 * last_wall_s * std::pow(ratio, exponent);
  }

 private:
  double seconds_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace rw::bench
