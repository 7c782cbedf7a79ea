#pragma once
// Gathers, scatters, sorting and index-driven ops. Index tensors are i64 (i32 accepted and
// widened); out-of-range indices are an rw::Error naming the op, the index and the extent.
#include <utility>

#include "core/tensor.h"

namespace rw {

// out[i][j][k] = x[i][index[i][j][k]][k] (dim = 1); index has x's rank.
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
// x with src added at index along dim: out = x; out[i][index[i][j][k]][k] += src[i][j][k].
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);
// x taken at the 1-D `index` along dim.
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// weight[num, d] looked up at indices of any shape: out [..., d].
Tensor embedding(const Tensor& weight, const Tensor& indices);
// i64 indices -> [..., num_classes] in `dtype` (no gradient).
Tensor one_hot(const Tensor& indices, int64_t num_classes, DType dtype = DType::f32);
// Stable sort along dim: (values, i64 indices). Ties keep their input order.
std::pair<Tensor, Tensor> sort(const Tensor& x, int64_t dim = -1, bool descending = false);
Tensor argsort(const Tensor& x, int64_t dim = -1, bool descending = false);

}  // namespace rw
