// Gathers, scatters, lookups and sorting. Each op validates once (rank, index dtype, index range
// naming the op, the index and the extent), computes on the backend under NoGradGuard (so its
// internal views and copies record nothing) and records one node for its own gradient.
#include "core/ops/indexing.h"

#include <span>

#include "autograd/tape.h"
#include "core/ops/op_utils.h"

namespace rw {
namespace {

// Rank of x as seen by dim-taking ops: a 0-dim tensor behaves like one element along dim 0.
int64_t dim_rank(const Tensor& x) { return std::max<int64_t>(x.dim(), 1); }

// Torch's rule for gather/scatter_add: the index has x's rank and is no larger in any dim but
// `dim` (and, for scatter_add, no larger than src in any dim).
void check_index_shape(const char* op, const Tensor& index, const Tensor& data, int64_t dim,
                       const char* data_name) {
  RW_CHECK(index.dim() == data.dim(),
           "{}: index rank {} must equal {} rank {} (index shape {}, {} shape {})", op, index.dim(),
           data_name, data.dim(), index.shape(), data_name, data.shape());
  for (int64_t d = 0; d < index.dim(); ++d) {
    RW_CHECK(d == dim || index.size(d) <= data.size(d),
             "{}: index shape {} exceeds {} shape {} in dim {} (only dim {} may differ)", op,
             index.shape(), data_name, data.shape(), d, dim);
  }
}

// src narrowed to `shape` (its leading part in every dim), contiguous.
Tensor narrow_to(const Tensor& src, const Shape& shape) {
  Tensor t = src;
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (t.size(static_cast<int64_t>(d)) != shape[d])
      t = t.narrow(static_cast<int64_t>(d), 0, shape[d]);
  }
  return t.contiguous();
}

// zeros(shape) with `values` scattered-added at index along dim (no gradient).
Tensor scatter_add_into_zeros(const Shape& shape, int64_t dim, const Tensor& index,
                              const Tensor& values) {
  Tensor out = zeros(shape, options_of(values));
  detail::backend_of(out).scatter_add(out, dim, index, values.contiguous());
  return out;
}

// zeros(shape) with index_add of `values` along dim (no gradient).
Tensor index_add_into_zeros(const Shape& shape, int64_t dim, const Tensor& index,
                            const Tensor& values) {
  Tensor out = zeros(shape, options_of(values));
  detail::backend_of(out).index_add(out, dim, index, values.contiguous());
  return out;
}

std::pair<Tensor, Tensor> sort_values_indices(const char* op, const Tensor& x, int64_t& dim,
                                              bool descending) {
  detail::check_defined(op, x, "x");
  dim = normalize_dim(op, dim, dim_rank(x));
  NoGradGuard no_grad;
  Tensor xc = x.detach().contiguous();
  Tensor values = empty(x.shape(), options_of(x));
  Tensor indices = empty(x.shape(), {.dtype = DType::i64, .device = x.device()});
  if (x.numel() > 0) detail::backend_of(x).sort(xc, dim, descending, values, indices);
  return {values, indices};
}

}  // namespace

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  detail::check_defined("gather", x, "x");
  detail::check_defined("gather", index, "index");
  detail::check_same_device("gather", x, index);
  dim = normalize_dim("gather", dim, dim_rank(x));
  check_index_shape("gather", index, x, dim, "x");
  Tensor idx = detail::index_as_i64("gather", index);
  detail::check_index_range("gather", idx, x.dim() == 0 ? 1 : x.size(dim));
  Tensor out = empty(index.shape(), options_of(x));
  {
    NoGradGuard no_grad;
    if (out.numel() > 0) detail::backend_of(x).gather(x.detach().contiguous(), dim, idx, out);
  }
  if (needs_grad({&x})) {
    record("gather", {x}, out,
           [si = SavedTensor(idx), dim, shape = x.shape()](std::span<const Tensor> g) {
             return std::vector<Tensor>{scatter_add_into_zeros(shape, dim, si.get("gather"), g[0])};
           });
  }
  return out;
}

Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  detail::check_defined("scatter_add", x, "x");
  detail::check_defined("scatter_add", index, "index");
  detail::check_defined("scatter_add", src, "src");
  detail::check_same_device("scatter_add", x, index);
  detail::check_same_device("scatter_add", x, src);
  RW_CHECK(src.dtype() == x.dtype(), "scatter_add: src dtype {} must equal x dtype {}", src.dtype(),
           x.dtype());
  dim = normalize_dim("scatter_add", dim, dim_rank(x));
  check_index_shape("scatter_add", index, x, dim, "x");
  RW_CHECK(index.dim() == src.dim(),
           "scatter_add: index rank {} must equal src rank {} (index shape {}, src shape {})",
           index.dim(), src.dim(), index.shape(), src.shape());
  for (int64_t d = 0; d < index.dim(); ++d) {
    RW_CHECK(index.size(d) <= src.size(d),
             "scatter_add: index shape {} exceeds src shape {} in dim {}", index.shape(),
             src.shape(), d);
  }
  Tensor idx = detail::index_as_i64("scatter_add", index);
  detail::check_index_range("scatter_add", idx, x.dim() == 0 ? 1 : x.size(dim));
  Tensor out;
  {
    NoGradGuard no_grad;
    out = x.detach().clone();
    if (idx.numel() > 0) {
      detail::backend_of(x).scatter_add(out, dim, idx, narrow_to(src.detach(), index.shape()));
    }
  }
  if (needs_grad({&x, &src})) {
    record("scatter_add", {x, src}, out,
           [si = SavedTensor(idx), dim, src_shape = src.shape(),
            index_shape = index.shape()](std::span<const Tensor> g) {
             const Tensor& idx = si.get("scatter_add");
             Tensor g_src = empty(index_shape, options_of(g[0]));
             if (g_src.numel() > 0) {
               detail::backend_of(g[0]).gather(g[0].contiguous(), dim, idx, g_src);
             }
             if (index_shape != src_shape) {  // src entries outside the index get no gradient
               Tensor full_src = zeros(src_shape, options_of(g[0]));
               Tensor region = full_src;
               for (std::size_t d = 0; d < index_shape.size(); ++d) {
                 region = region.narrow(static_cast<int64_t>(d), 0, index_shape[d]);
               }
               if (g_src.numel() > 0) detail::backend_of(g_src).copy(g_src, region);
               g_src = full_src;
             }
             return std::vector<Tensor>{g[0], g_src};
           });
  }
  return out;
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  detail::check_defined("index_select", x, "x");
  detail::check_defined("index_select", index, "index");
  detail::check_same_device("index_select", x, index);
  RW_CHECK(x.dim() >= 1, "index_select: x must have at least one dim, got shape {}", x.shape());
  RW_CHECK(index.dim() <= 1, "index_select: index must be 1-D, got shape {}", index.shape());
  dim = normalize_dim("index_select", dim, x.dim());
  Tensor idx = detail::index_as_i64("index_select", index).reshape({-1});
  detail::check_index_range("index_select", idx, x.size(dim));
  Shape shape = x.shape();
  shape[static_cast<std::size_t>(dim)] = idx.numel();
  Tensor out = empty(shape, options_of(x));
  {
    NoGradGuard no_grad;
    if (out.numel() > 0) {
      detail::backend_of(x).index_select(x.detach().contiguous(), dim, idx, out);
    }
  }
  if (needs_grad({&x})) {
    record("index_select", {x}, out,
           [si = SavedTensor(idx), dim, shape = x.shape()](std::span<const Tensor> g) {
             return std::vector<Tensor>{
                 index_add_into_zeros(shape, dim, si.get("index_select"), g[0])};
           });
  }
  return out;
}

Tensor embedding(const Tensor& weight, const Tensor& indices) {
  detail::check_defined("embedding", weight, "weight");
  detail::check_defined("embedding", indices, "indices");
  detail::check_same_device("embedding", weight, indices);
  RW_CHECK(weight.dim() == 2, "embedding: weight must be 2-D [num, d], got shape {}",
           weight.shape());
  Tensor idx = detail::index_as_i64("embedding", indices).reshape({-1});
  detail::check_index_range("embedding", idx, weight.size(0));
  const int64_t d = weight.size(1);
  Shape shape = indices.shape();
  shape.push_back(d);
  Tensor out = empty(shape, options_of(weight));
  {
    NoGradGuard no_grad;
    if (out.numel() > 0) {
      detail::backend_of(weight).index_select(weight.detach().contiguous(), 0, idx,
                                              out.view({idx.numel(), d}));
    }
  }
  if (needs_grad({&weight})) {
    record("embedding", {weight}, out,
           [si = SavedTensor(idx), shape = weight.shape()](std::span<const Tensor> g) {
             const Tensor& idx = si.get("embedding");
             return std::vector<Tensor>{
                 index_add_into_zeros(shape, 0, idx, g[0].reshape({idx.numel(), shape[1]}))};
           });
  }
  return out;
}

Tensor one_hot(const Tensor& indices, int64_t num_classes, DType dtype) {
  RW_CHECK(num_classes > 0, "one_hot: num_classes must be positive, got {}", num_classes);
  Tensor idx = detail::index_as_i64("one_hot", indices);
  detail::check_index_range("one_hot", idx, num_classes);
  Shape shape = indices.shape();
  shape.push_back(num_classes);
  Tensor out = zeros(shape, {.dtype = dtype, .device = indices.device()});
  const int64_t n = idx.numel();
  if (n > 0) {
    NoGradGuard no_grad;
    Tensor ones_col = ones({n, 1}, {.dtype = dtype, .device = indices.device()});
    detail::backend_of(out).scatter_add(out.view({n, num_classes}), 1, idx.reshape({n, 1}),
                                        ones_col);
  }
  return out;
}

std::pair<Tensor, Tensor> sort(const Tensor& x, int64_t dim, bool descending) {
  auto [values, indices] = sort_values_indices("sort", x, dim, descending);
  if (needs_grad({&x})) {
    // Only the values are differentiable: each gradient goes back to where its value came from.
    record("sort", {x}, values,
           [si = SavedTensor(indices), dim, shape = x.shape()](std::span<const Tensor> g) {
             return std::vector<Tensor>{scatter_add_into_zeros(shape, dim, si.get("sort"), g[0])};
           });
  }
  return {values, indices};
}

Tensor argsort(const Tensor& x, int64_t dim, bool descending) {
  return sort_values_indices("argsort", x, dim, descending).second;
}

}  // namespace rw
