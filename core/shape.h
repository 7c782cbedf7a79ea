#pragma once
// Shapes and strides: row-major, strides counted in elements (not bytes).
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace rw {

using Shape = std::vector<int64_t>;
using Strides = std::vector<int64_t>;

// Product of the extents; throws rw::Error if it overflows int64.
int64_t shape_numel(std::span<const int64_t> shape);
Strides contiguous_strides(std::span<const int64_t> shape);
// True when `strides` describe a dense row-major layout of `shape` (size-1 dims ignored).
bool is_contiguous_layout(std::span<const int64_t> shape, std::span<const int64_t> strides);
// NumPy broadcasting of two shapes; `op` names the op in the error message.
Shape broadcast_shapes(std::string_view op, std::span<const int64_t> a, std::span<const int64_t> b);
// Wraps a possibly negative dim into [0, rank); `op` names the op in the error message.
int64_t normalize_dim(std::string_view op, int64_t dim, int64_t rank);
// Normalised, sorted, de-duplicated dims; empty `dims` means all dims.
std::vector<int64_t> normalize_dims(std::string_view op, std::span<const int64_t> dims,
                                    int64_t rank);

}  // namespace rw
