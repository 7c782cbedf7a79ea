#pragma once
// Checks and helpers shared by the position embeddings (nn/positions.h).
#include <cstdint>
#include <string_view>

#include "core/tensor.h"

namespace rw::nn::detail {

// Error unless positions [start, start + length) lie in [0, capacity). `capacity_text` names the
// bound with its value, for the message ("max_len 512", "the 64 positions of axial shape [4, 16]").
void check_position_range(std::string_view module, int64_t start, int64_t length, int64_t capacity,
                          std::string_view capacity_text);

// The sequence length of x [..., L, d] (rank >= 2, last dim d); an error naming the module and
// the shape otherwise.
int64_t position_input_length(std::string_view module, const Tensor& x, int64_t d);

// x + positions [L, d], the positions converted to x's dtype and device.
Tensor add_positions(const Tensor& x, const Tensor& positions);

}  // namespace rw::nn::detail
