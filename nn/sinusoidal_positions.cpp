#include "nn/sinusoidal_positions.h"

#include <cmath>
#include <vector>

#include "core/ops.h"
#include "nn/position_common.h"

namespace rw::nn {

SinusoidalPositionalEmbedding::SinusoidalPositionalEmbedding(int64_t d, double base)
    : d_(d), base_(base) {
  RW_CHECK(d > 0, "SinusoidalPositionalEmbedding: d must be positive, got {}", d);
  RW_CHECK(base > 1, "SinusoidalPositionalEmbedding: base must be > 1, got {}", base);
}

Tensor SinusoidalPositionalEmbedding::embed(int64_t length, int64_t start,
                                            TensorOptions options) const {
  RW_CHECK(start >= 0 && length >= 0,
           "SinusoidalPositionalEmbedding: start and length must be >= 0, got {} and {}", start,
           length);
  RW_CHECK(is_floating(options.dtype),
           "SinusoidalPositionalEmbedding: positions need a floating dtype, got {}", options.dtype);
  // A table on the host: d frequencies, then one sin or cos per element (the values are cheap and
  // exact in f64, and the op layer has nothing faster for a [length, d] constant).
  std::vector<double> inv_freq(static_cast<std::size_t>(d_));
  for (int64_t j = 0; j < d_; ++j) {
    inv_freq[j] = std::pow(base_, -static_cast<double>(j - j % 2) / static_cast<double>(d_));
  }
  std::vector<double> table(static_cast<std::size_t>(length * d_));
  for (int64_t p = 0; p < length; ++p) {
    const auto pos = static_cast<double>(start + p);
    for (int64_t j = 0; j < d_; ++j) {
      const double angle = pos * inv_freq[j];
      table[p * d_ + j] = j % 2 == 0 ? std::sin(angle) : std::cos(angle);
    }
  }
  return from_vector<double>(table, Shape{length, d_})
      .to(options.dtype)
      .to(options.device)
      .requires_grad_(options.requires_grad);
}

Tensor SinusoidalPositionalEmbedding::forward(const Tensor& x, int64_t start) {
  const int64_t L = detail::position_input_length(type_name(), x, d_);
  return detail::add_positions(x, embed(L, start, options_of(x)));
}

}  // namespace rw::nn
