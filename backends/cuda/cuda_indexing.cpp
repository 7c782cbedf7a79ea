// gather, scatter_add, index_select and index_add on the GPU: the host side reduces each call to
// the geometry its kernel needs (indexing_kernels.h) and launches on the device's stream.
//
// scatter_add and index_add accumulate with atomic adds: where several indices name one
// destination element, floating-point sums are formed in a nondeterministic order (last-bit
// differences between runs and from the CPU backend, which adds in index order).
#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_context.h"
#include "backends/cuda/indexing_kernels.h"
#include "core/error.h"

namespace rw::cuda {
namespace {

// The geometry of an index of shape `index_shape` addressing contiguous data of `data_shape`
// along `dim`: dims of extent 1 go, and a dim merges into the previous kept one (never into or
// out of `dim`) when together they walk the data with one stride.
IndexedGeometry indexed_geometry(const char* op, const Shape& index_shape, const Shape& data_shape,
                                 int64_t dim) {
  IndexedGeometry g;
  g.numel = shape_numel(index_shape);
  if (index_shape.empty()) {  // a 0-dim tensor is one element along dim 0
    g.rank = 1;
    g.sizes[0] = 1;
    g.data_strides[0] = 1;
    return g;
  }
  const Strides data_strides = contiguous_strides(data_shape);
  int rank = 0;
  int dim_pos = -1;
  for (int64_t d = 0; d < static_cast<int64_t>(index_shape.size()); ++d) {
    const int64_t size = index_shape[static_cast<std::size_t>(d)];
    const int64_t stride = data_strides[static_cast<std::size_t>(d)];
    if (d != dim && size == 1) continue;
    if (d != dim && rank > 0 && rank - 1 != dim_pos && g.data_strides[rank - 1] == size * stride) {
      g.sizes[rank - 1] *= size;
      g.data_strides[rank - 1] = stride;
      continue;
    }
    RW_CHECK(rank < kMaxDims,
             "{} (cuda): index of shape {} into data of shape {} along dim {} needs more than {} "
             "dims after merging",
             op, index_shape, data_shape, dim, kMaxDims);
    if (d == dim) dim_pos = rank;
    g.sizes[rank] = size;
    g.data_strides[rank] = stride;
    ++rank;
  }
  g.rank = rank;
  g.dim = dim_pos;
  return g;
}

// The data tensor as [A, N, B] around dim and the selection as [A, K, B] (0-dim: [1, 1, 1]).
SliceGeometry slice_geometry(const Shape& data_shape, int64_t dim, int64_t K) {
  SliceGeometry g;
  g.K = K;
  if (data_shape.empty()) return g;
  for (int64_t d = 0; d < dim; ++d) g.A *= data_shape[static_cast<std::size_t>(d)];
  g.N = data_shape[static_cast<std::size_t>(dim)];
  for (auto d = static_cast<std::size_t>(dim) + 1; d < data_shape.size(); ++d) {
    g.B *= data_shape[d];
  }
  return g;
}

void check_contiguous(const char* op, const Tensor& t, const char* name) {
  RW_CHECK(t.is_contiguous(), "{} (cuda): {} must be contiguous (shape {}, strides {})", op, name,
           t.shape(), t.strides());
}

}  // namespace

void CudaBackend::gather(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) {
  if (out.numel() == 0) return;
  check_contiguous("gather", x, "x");
  check_contiguous("gather", index, "index");
  DeviceGuard guard(device_);
  launch_gather(x.data_ptr(), index.data<int64_t>(), out.data_ptr(), x.dtype(),
                indexed_geometry("gather", index.shape(), x.shape(), dim), stream(device_));
}

void CudaBackend::scatter_add(const Tensor& dst, int64_t dim, const Tensor& index,
                              const Tensor& src) {
  if (index.numel() == 0) return;
  check_contiguous("scatter_add", dst, "dst");
  check_contiguous("scatter_add", index, "index");
  check_contiguous("scatter_add", src, "src");
  DeviceGuard guard(device_);
  launch_scatter_add(dst.data_ptr(), index.data<int64_t>(), src.data_ptr(), dst.dtype(),
                     indexed_geometry("scatter_add", index.shape(), dst.shape(), dim),
                     stream(device_));
}

void CudaBackend::index_select(const Tensor& x, int64_t dim, const Tensor& index,
                               const Tensor& out) {
  if (out.numel() == 0) return;
  check_contiguous("index_select", x, "x");
  check_contiguous("index_select", index, "index");
  DeviceGuard guard(device_);
  launch_index_select(x.data_ptr(), index.data<int64_t>(), out.data_ptr(), x.dtype(),
                      slice_geometry(x.shape(), dim, index.numel()), stream(device_));
}

void CudaBackend::index_add(const Tensor& dst, int64_t dim, const Tensor& index,
                            const Tensor& src) {
  if (src.numel() == 0) return;
  check_contiguous("index_add", dst, "dst");
  check_contiguous("index_add", index, "index");
  check_contiguous("index_add", src, "src");
  DeviceGuard guard(device_);
  launch_index_add(dst.data_ptr(), index.data<int64_t>(), src.data_ptr(), dst.dtype(),
                   slice_geometry(dst.shape(), dim, index.numel()), stream(device_));
}

}  // namespace rw::cuda
