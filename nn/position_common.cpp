#include "nn/position_common.h"

#include "core/ops.h"

namespace rw::nn::detail {

void check_position_range(std::string_view module, int64_t start, int64_t length, int64_t capacity,
                          std::string_view capacity_text) {
  RW_CHECK(start >= 0 && length >= 0, "{}: start and length must be >= 0, got {} and {}", module,
           start, length);
  if (start == 0) {
    RW_CHECK(length <= capacity, "{}: sequence length {} exceeds {}", module, length,
             capacity_text);
  } else {
    RW_CHECK(start + length <= capacity, "{}: positions {}..{} (length {} from start {}) exceed {}",
             module, start, start + length - 1, length, start, capacity_text);
  }
}

int64_t position_input_length(std::string_view module, const Tensor& x, int64_t d) {
  RW_CHECK(x.defined(), "{}: x is undefined", module);
  RW_CHECK(x.dim() >= 2 && x.size(-1) == d, "{}: expected x of shape [..., length, {}], got {}",
           module, d, x.shape());
  RW_CHECK(is_floating(x.dtype()), "{}: x must be floating, got dtype {}", module, x.dtype());
  return x.size(-2);
}

Tensor add_positions(const Tensor& x, const Tensor& positions) {
  return add(x, positions.to(x.device()).to(x.dtype()));
}

}  // namespace rw::nn::detail
