// Host side of the CUDA reductions (reduce, arg_reduce, cumsum): splits x's dims into kept and
// reduced groups (the CPU backend's layout: each group sorted by x stride and coalesced), provides
// scratch memory from rewind's allocator and launches on the device's stream. Kernels are in
// reduce_kernels.cu.
#include <algorithm>
#include <numeric>
#include <vector>

#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_context.h"
#include "backends/cuda/reduce_kernels.h"
#include "core/error.h"

namespace rw::cuda {
namespace {

struct DimGroup {
  std::vector<int64_t> size, x_stride, out_stride;
};

// Orders a group by decreasing x stride (stable) and merges neighbours that form one dense run in
// x (and in out, when the group has out strides).
DimGroup sort_and_coalesce(const DimGroup& g, bool with_out) {
  std::vector<std::size_t> order(g.size.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return g.x_stride[a] > g.x_stride[b]; });
  DimGroup r;
  for (std::size_t i : order) {
    if (!r.size.empty() && r.x_stride.back() == g.x_stride[i] * g.size[i] &&
        (!with_out || r.out_stride.back() == g.out_stride[i] * g.size[i])) {
      r.size.back() *= g.size[i];
      r.x_stride.back() = g.x_stride[i];
      if (with_out) r.out_stride.back() = g.out_stride[i];
      continue;
    }
    r.size.push_back(g.size[i]);
    r.x_stride.push_back(g.x_stride[i]);
    if (with_out) r.out_stride.push_back(g.out_stride[i]);
  }
  return r;
}

// Reduced dims are those where out's extent is 1 and x's is not; extent-1 dims of x take no part.
ReduceGeometry reduce_geometry(const char* op, const Tensor& x, const Tensor& out) {
  RW_CHECK(x.dim() == out.dim(),
           "{} (cuda): out must have x's rank in keepdim layout; x has shape {}, out {}", op,
           x.shape(), out.shape());
  DimGroup kept, reduced;
  for (int64_t d = 0; d < x.dim(); ++d) {
    const int64_t xs = x.size(d), os = out.size(d);
    if (xs == 1) continue;
    if (os == 1) {
      reduced.size.push_back(xs);
      reduced.x_stride.push_back(x.stride(d));
    } else {
      RW_CHECK(
          os == xs,
          "{} (cuda): out's extent {} at dim {} is neither x's ({}) nor 1 (x shape {}, out {})", op,
          os, d, xs, x.shape(), out.shape());
      kept.size.push_back(xs);
      kept.x_stride.push_back(x.stride(d));
      kept.out_stride.push_back(out.stride(d));
    }
  }
  kept = sort_and_coalesce(kept, true);
  reduced = sort_and_coalesce(reduced, false);
  RW_CHECK(static_cast<int>(kept.size.size()) <= kMaxDims &&
               static_cast<int>(reduced.size.size()) <= kMaxDims,
           "{} (cuda): x of shape {} and strides {} has {} kept and {} reduced dims after merging; "
           "at most {} of each are supported (make it contiguous first)",
           op, x.shape(), x.strides(), kept.size.size(), reduced.size.size(), kMaxDims);
  ReduceGeometry g;
  g.kept_rank = static_cast<int>(kept.size.size());
  g.red_rank = static_cast<int>(reduced.size.size());
  for (int d = 0; d < g.kept_rank; ++d) {
    g.kept_sizes[d] = kept.size[d];
    g.kept_x_strides[d] = kept.x_stride[d];
    g.kept_out_strides[d] = kept.out_stride[d];
    g.n_out *= kept.size[d];
  }
  for (int d = 0; d < g.red_rank; ++d) {
    g.red_sizes[d] = reduced.size[d];
    g.red_x_strides[d] = reduced.x_stride[d];
    g.n_red *= reduced.size[d];
  }
  g.column = g.kept_rank > 0 && g.red_rank > 0 && kept.x_stride.back() < reduced.x_stride.back();
  return g;
}

// A device block of `bytes` (none for 0), alive until the host call returns; safe while the
// kernels are still queued, since every later user of the block runs on the same stream.
Tensor scratch_block(std::size_t bytes, Device device) {
  if (bytes == 0) return Tensor();
  return empty({static_cast<int64_t>(bytes)}, {.dtype = DType::u8, .device = device});
}

void* data_or_null(const Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

}  // namespace

void CudaBackend::reduce(ReduceOp op, const Tensor& x, const Tensor& out) {
  if (out.numel() == 0) return;
  const ReduceGeometry g = reduce_geometry("reduce", x, out);
  DeviceGuard guard(device_);
  Tensor scratch = scratch_block(reduce_scratch_bytes(op, x.dtype(), g), x.device());
  launch_reduce(op, x.data_ptr(), x.dtype(), out.data_ptr(), out.dtype(), g, data_or_null(scratch),
                stream(device_));
}

void CudaBackend::arg_reduce(ArgReduceOp op, const Tensor& x, int64_t dim, const Tensor& out) {
  if (out.numel() == 0) return;
  Shape kept = x.shape();
  if (!kept.empty()) kept[static_cast<std::size_t>(dim)] = 1;
  RW_CHECK(out.shape() == kept && out.dtype() == DType::i64,
           "arg_reduce (cuda): out must be i64 of shape {} (x {} along dim {}), got {} of shape {}",
           kept, x.shape(), dim, out.dtype(), out.shape());
  const ReduceGeometry g = reduce_geometry("arg_reduce", x, out);
  DeviceGuard guard(device_);
  Tensor scratch = scratch_block(arg_reduce_scratch_bytes(x.dtype(), g), x.device());
  launch_arg_reduce(op, x.data_ptr(), x.dtype(), out.data<int64_t>(), g, data_or_null(scratch),
                    stream(device_));
}

void CudaBackend::cumsum(const Tensor& x, int64_t dim, const Tensor& out) {
  RW_CHECK(x.is_contiguous() && out.is_contiguous() && x.shape() == out.shape(),
           "cumsum (cuda): x and out must be contiguous of one shape (x {} strides {}, out {} "
           "strides {})",
           x.shape(), x.strides(), out.shape(), out.strides());
  RW_CHECK(out.dtype() == x.dtype() || out.dtype() == DType::i64,
           "cumsum (cuda): output dtype {} for input dtype {} (expected the same or i64)",
           out.dtype(), x.dtype());
  ScanGeometry g;
  const Shape& s = x.shape();
  if (!s.empty()) {
    for (int64_t d = 0; d < dim; ++d) g.outer *= s[static_cast<std::size_t>(d)];
    g.n = s[static_cast<std::size_t>(dim)];
    for (auto d = static_cast<std::size_t>(dim) + 1; d < s.size(); ++d) g.inner *= s[d];
  }
  if (g.outer * g.n * g.inner == 0) return;
  DeviceGuard guard(device_);
  Tensor scratch = scratch_block(cumsum_scratch_bytes(g), x.device());
  launch_cumsum(x.data_ptr(), x.dtype(), out.data_ptr(), out.dtype(), g, data_or_null(scratch),
                stream(device_));
}

}  // namespace rw::cuda
