// Host side of the CUDA layer norm (forward and backward): checks the operands' layout against the
// backend contract (contiguous [rows, D], parameters [D] of x's dtype, statistics f32/f64 [rows]),
// provides scratch memory for the parameter gradients' partial sums and launches on the device's
// stream. The kernels are in layer_norm_kernels.cu.
#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_context.h"
#include "backends/cuda/layer_norm_kernels.h"
#include "core/error.h"

namespace rw::cuda {
namespace {

void check_rows(const char* op, const char* what, const Tensor& t, const Tensor& x) {
  RW_CHECK(t.is_contiguous() && t.shape() == x.shape() && t.dtype() == x.dtype(),
           "{} (cuda): {} must be contiguous {} {} like x, got {} {} with strides {}", op, what,
           x.dtype(), x.shape(), t.dtype(), t.shape(), t.strides());
}

void check_param(const char* op, const char* what, const Tensor& t, const Tensor& x) {
  if (!t.defined()) return;
  RW_CHECK(t.is_contiguous() && t.shape() == Shape{x.size(1)} && t.dtype() == x.dtype(),
           "{} (cuda): {} must be contiguous {} [{}] (x is {}), got {} {}", op, what, x.dtype(),
           x.size(1), x.shape(), t.dtype(), t.shape());
}

void check_stat(const char* op, const char* what, const Tensor& t, const Tensor& x) {
  RW_CHECK(t.is_contiguous() && t.shape() == Shape{x.size(0)} &&
               (t.dtype() == DType::f32 || t.dtype() == DType::f64),
           "{} (cuda): {} must be contiguous f32 or f64 [{}] (x is {}), got {} {}", op, what,
           x.size(0), x.shape(), t.dtype(), t.shape());
}

LayerNormArgs args_of(const char* op, const Tensor& x, const Tensor& mean, const Tensor& rstd) {
  RW_CHECK(x.dim() == 2 && x.is_contiguous(), "{} (cuda): x must be contiguous [rows, D], got {}",
           op, x.shape());
  check_stat(op, "mean", mean, x);
  check_stat(op, "rstd", rstd, x);
  RW_CHECK(mean.dtype() == rstd.dtype(), "{} (cuda): mean is {} but rstd is {}", op, mean.dtype(),
           rstd.dtype());
  return {.rows = x.size(0), .D = x.size(1), .dtype = x.dtype(), .stat_dtype = mean.dtype()};
}

const void* data_or_null(const Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }
void* mutable_data_or_null(const Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

}  // namespace

void CudaBackend::layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                             const Tensor& out, const Tensor& mean, const Tensor& rstd) {
  if (x.numel() == 0) return;
  const LayerNormArgs a = args_of("layer_norm", x, mean, rstd);
  check_param("layer_norm", "weight", weight, x);
  check_param("layer_norm", "bias", bias, x);
  check_rows("layer_norm", "out", out, x);
  DeviceGuard guard(device_);
  launch_layer_norm(a, x.data_ptr(), data_or_null(weight), data_or_null(bias), eps, out.data_ptr(),
                    mean.data_ptr(), rstd.data_ptr(), stream(device_));
}

void CudaBackend::layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                      const Tensor& mean, const Tensor& rstd, const Tensor& dx,
                                      const Tensor& dweight, const Tensor& dbias) {
  if (x.numel() == 0) return;
  const LayerNormArgs a = args_of("layer_norm_backward", x, mean, rstd);
  check_rows("layer_norm_backward", "dy", dy, x);
  if (dx.defined()) check_rows("layer_norm_backward", "dx", dx, x);
  check_param("layer_norm_backward", "weight", weight, x);
  check_param("layer_norm_backward", "dweight", dweight, x);
  check_param("layer_norm_backward", "dbias", dbias, x);
  DeviceGuard guard(device_);
  const bool parameter_grads = dweight.defined() || dbias.defined();
  const std::size_t bytes = layer_norm_backward_scratch_bytes(a, parameter_grads);
  Tensor scratch;
  if (bytes > 0) {
    scratch = empty({static_cast<int64_t>(bytes)}, {.dtype = DType::u8, .device = x.device()});
  }
  // The scratch block is released on return while the kernels may still be queued: safe, since
  // every later user of the block runs on the same stream.
  launch_layer_norm_backward(a, dy.data_ptr(), x.data_ptr(), data_or_null(weight), mean.data_ptr(),
                             rstd.data_ptr(), mutable_data_or_null(dx),
                             mutable_data_or_null(dweight), mutable_data_or_null(dbias),
                             mutable_data_or_null(scratch), stream(device_));
}

}  // namespace rw::cuda
