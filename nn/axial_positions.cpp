#include "nn/axial_positions.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <limits>
#include <numeric>
#include <utility>

#include "core/ops.h"
#include "nn/position_common.h"

namespace rw::nn {

AxialPositionalEmbedding::AxialPositionalEmbedding(std::vector<int64_t> axial_shape, int64_t d,
                                                   AxialPositionalEmbeddingOptions options,
                                                   Generator& generator)
    : axial_shape_(std::move(axial_shape)),
      axis_dims_(std::move(options.axis_dims)),
      combine_(options.combine),
      d_(d),
      max_len_(1) {
  const auto n = static_cast<int64_t>(axial_shape_.size());
  RW_CHECK(n > 0, "AxialPositionalEmbedding: axial_shape must have at least one axis");
  RW_CHECK(d > 0, "AxialPositionalEmbedding: d must be positive, got {}", d);
  for (int64_t a : axial_shape_) {
    RW_CHECK(a > 0, "AxialPositionalEmbedding: axial_shape [{}] must be positive",
             fmt::join(axial_shape_, ", "));
    RW_CHECK(max_len_ <= std::numeric_limits<int64_t>::max() / a,
             "AxialPositionalEmbedding: axial_shape [{}] has too many positions",
             fmt::join(axial_shape_, ", "));
    max_len_ *= a;
  }
  if (combine_ == AxialCombine::sum) {
    RW_CHECK(axis_dims_.empty(),
             "AxialPositionalEmbedding: axis_dims [{}] apply to concat only (sum uses d = {} on "
             "every axis)",
             fmt::join(axis_dims_, ", "), d);
    axis_dims_.assign(static_cast<std::size_t>(n), d);
  } else if (axis_dims_.empty()) {
    RW_CHECK(d >= n, "AxialPositionalEmbedding: d = {} cannot be split over {} axes", d, n);
    for (int64_t k = 0; k < n; ++k) axis_dims_.push_back(d / n + (k < d % n ? 1 : 0));
  } else {
    RW_CHECK(static_cast<int64_t>(axis_dims_.size()) == n,
             "AxialPositionalEmbedding: {} axis_dims [{}] for {} axes [{}]", axis_dims_.size(),
             fmt::join(axis_dims_, ", "), n, fmt::join(axial_shape_, ", "));
    int64_t total = 0;
    for (int64_t dk : axis_dims_) {
      RW_CHECK(dk > 0, "AxialPositionalEmbedding: axis_dims [{}] must be positive",
               fmt::join(axis_dims_, ", "));
      total += dk;
    }
    RW_CHECK(total == d, "AxialPositionalEmbedding: axis_dims [{}] sum to {}, expected d = {}",
             fmt::join(axis_dims_, ", "), total, d);
  }
  weights_.resize(static_cast<std::size_t>(n));
  for (int64_t k = 0; k < n; ++k) {
    weights_[k] = randn({axial_shape_[k], axis_dims_[k]}, generator);
    register_parameter(fmt::format("weight_{}", k), weights_[k]);
  }
}

Tensor& AxialPositionalEmbedding::weight(int64_t axis) {
  const auto n = static_cast<int64_t>(weights_.size());
  RW_CHECK(axis >= 0 && axis < n, "AxialPositionalEmbedding: axis {} out of range [0, {})", axis,
           n);
  return weights_[axis];
}

Tensor AxialPositionalEmbedding::embed(int64_t length, int64_t start) const {
  detail::check_position_range(
      type_name(), start, length, max_len_,
      fmt::format("the {} positions of axial shape [{}]", max_len_, fmt::join(axial_shape_, ", ")));
  // Grid coordinate of each position along each axis (row-major: the last axis fastest); only the
  // rows the sequence uses are gathered, never the whole grid.
  const auto n = static_cast<int64_t>(axial_shape_.size());
  std::vector<Tensor> parts;
  int64_t stride = max_len_;
  for (int64_t k = 0; k < n; ++k) {
    stride /= axial_shape_[k];
    std::vector<int64_t> index(static_cast<std::size_t>(length));
    for (int64_t p = 0; p < length; ++p) index[p] = (start + p) / stride % axial_shape_[k];
    const Tensor& w = weights_[k];
    parts.push_back(embedding(w, from_vector<int64_t>(index).to(w.device())));
  }
  if (combine_ == AxialCombine::concat) return concat(parts, -1);
  Tensor total = parts[0];
  for (int64_t k = 1; k < n; ++k) total = add(total, parts[k]);
  return total;
}

Tensor AxialPositionalEmbedding::forward(const Tensor& x, int64_t start) {
  const int64_t L = detail::position_input_length(type_name(), x, d_);
  return detail::add_positions(x, embed(L, start));
}

}  // namespace rw::nn
