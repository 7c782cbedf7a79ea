// Host side of the CUDA softmax / log_softmax (forward and backward): views the contiguous tensors
// as [outer, C, inner] around the softmax dim and launches on the device's stream. The kernels are
// in softmax_kernels.cu.
#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_context.h"
#include "backends/cuda/softmax_kernels.h"
#include "core/error.h"

namespace rw::cuda {
namespace {

SoftmaxGeometry split_at(const Tensor& x, int64_t dim) {
  SoftmaxGeometry g;
  const Shape& s = x.shape();
  for (int64_t d = 0; d < x.dim(); ++d) {
    const int64_t e = s[static_cast<std::size_t>(d)];
    if (d < dim) g.outer *= e;
    if (d == dim) g.C = e;
    if (d > dim) g.inner *= e;
  }
  return g;
}

void check_operand(const char* op, const char* what, const Tensor& t, const Tensor& like) {
  RW_CHECK(
      t.is_contiguous() && t.shape() == like.shape() && t.dtype() == like.dtype(),
      "{} (cuda): {} must be contiguous with the shape and dtype of the first operand ({} {}), "
      "got {} {} with strides {}",
      op, what, like.dtype(), like.shape(), t.dtype(), t.shape(), t.strides());
}

}  // namespace

void CudaBackend::softmax(SoftmaxKind kind, const Tensor& x, int64_t dim, const Tensor& out) {
  if (out.numel() == 0) return;
  check_operand("softmax", "x", x, x);
  check_operand("softmax", "out", out, x);
  DeviceGuard guard(device_);
  launch_softmax(kind, x.data_ptr(), out.data_ptr(), x.dtype(), split_at(x, dim), stream(device_));
}

void CudaBackend::softmax_backward(SoftmaxKind kind, const Tensor& y, const Tensor& dy, int64_t dim,
                                   const Tensor& dx) {
  if (dx.numel() == 0) return;
  check_operand("softmax_backward", "y", y, y);
  check_operand("softmax_backward", "dy", dy, y);
  check_operand("softmax_backward", "dx", dx, y);
  DeviceGuard guard(device_);
  launch_softmax_backward(kind, y.data_ptr(), dy.data_ptr(), dx.data_ptr(), y.dtype(),
                          split_at(y, dim), stream(device_));
}

}  // namespace rw::cuda
