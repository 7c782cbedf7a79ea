#include "nn/learned_positions.h"

#include <fmt/format.h>

#include "core/ops.h"
#include "nn/position_common.h"

namespace rw::nn {

LearnedPositionalEmbedding::LearnedPositionalEmbedding(int64_t max_len, int64_t d,
                                                       Generator& generator)
    : max_len_(max_len), d_(d) {
  RW_CHECK(max_len > 0 && d > 0,
           "LearnedPositionalEmbedding: max_len and d must be positive, got {} and {}", max_len, d);
  weight = randn({max_len, d}, generator);
  register_parameter("weight", weight);
}

Tensor LearnedPositionalEmbedding::embed(int64_t length, int64_t start) const {
  detail::check_position_range(type_name(), start, length, max_len_,
                               fmt::format("max_len {}", max_len_));
  return weight.narrow(0, start, length);
}

Tensor LearnedPositionalEmbedding::forward(const Tensor& x, int64_t start) {
  const int64_t L = detail::position_input_length(type_name(), x, d_);
  return detail::add_positions(x, embed(L, start));
}

}  // namespace rw::nn
