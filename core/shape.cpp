#include "core/shape.h"

#include <algorithm>
#include <limits>

#include "core/error.h"

namespace rw {

int64_t shape_numel(std::span<const int64_t> shape) {
  int64_t n = 1;
  bool overflow = false;  // only an error when no later extent is 0
  for (int64_t d : shape) {
    RW_CHECK(d >= 0, "negative extent {} in shape {}", d, shape);
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) {
      overflow = true;
      continue;
    }
    n *= d;
  }
  if (overflow && n != 0) throw Error(fmt::format("shape {} has more than 2^63 elements", shape));
  return n;
}

Strides contiguous_strides(std::span<const int64_t> shape) {
  Strides s(shape.size());
  int64_t acc = 1;
  for (std::size_t i = shape.size(); i-- > 0;) {
    s[i] = acc;
    acc *= std::max<int64_t>(shape[i], 1);
  }
  return s;
}

bool is_contiguous_layout(std::span<const int64_t> shape, std::span<const int64_t> strides) {
  int64_t expected = 1;
  for (std::size_t i = shape.size(); i-- > 0;) {
    if (shape[i] == 1) continue;
    if (shape[i] == 0) return true;
    if (strides[i] != expected) return false;
    expected *= shape[i];
  }
  return true;
}

Shape broadcast_shapes(std::string_view op, std::span<const int64_t> a,
                       std::span<const int64_t> b) {
  std::size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (std::size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    RW_CHECK(da == db || da == 1 || db == 1,
             "{}: shapes {} and {} cannot be broadcast (dim {}: {} vs {})", op, a, b, i, da, db);
    out[i] = da == 1 ? db : da;
  }
  return out;
}

int64_t normalize_dim(std::string_view op, int64_t dim, int64_t rank) {
  int64_t lo = rank == 0 ? -1 : -rank;
  int64_t hi = rank == 0 ? 0 : rank - 1;
  RW_CHECK(dim >= lo && dim <= hi, "{}: dim {} out of range for a tensor of rank {}", op, dim,
           rank);
  return dim < 0 ? dim + std::max<int64_t>(rank, 1) : dim;
}

std::vector<int64_t> normalize_dims(std::string_view op, std::span<const int64_t> dims,
                                    int64_t rank) {
  std::vector<int64_t> out;
  if (dims.empty()) {
    for (int64_t i = 0; i < rank; ++i) out.push_back(i);
    return out;
  }
  for (int64_t d : dims)
    out.push_back(rank == 0 ? (normalize_dim(op, d, 0), 0) : normalize_dim(op, d, rank));
  std::sort(out.begin(), out.end());
  RW_CHECK(std::adjacent_find(out.begin(), out.end()) == out.end(), "{}: dims {} repeat a dim", op,
           dims);
  if (rank == 0) out.clear();
  return out;
}

}  // namespace rw
