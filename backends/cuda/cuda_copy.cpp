// Host side of copy, fill and arange on a CUDA device. copy also moves data between the host and
// a device (the op layer's copy_as hands every host <-> device copy to the device's backend) and
// between two devices; kernels are in copy_kernels.cu.
//
// Host <-> device transfers are synchronous, like PyTorch's non_blocking=False: the stream is
// synchronised before returning, so the host memory (a temporary, or the caller's tensor) can be
// reused, written or read as soon as copy returns.
#include <cuda_runtime.h>

#include "backends/cuda/copy_kernels.h"
#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_context.h"
#include "core/error.h"

namespace rw::cuda {
namespace {

// `t` itself when it is contiguous with dtype `dtype`, else a contiguous copy of it with that
// dtype, made on t's device (by the CPU backend for a host tensor, by a kernel on a GPU).
Tensor contiguous_as(const Tensor& t, DType dtype) {
  if (t.is_contiguous() && t.dtype() == dtype) return t;
  Tensor out = empty(t.shape(), {.dtype = dtype, .device = t.device()});
  if (t.device().is_cpu()) {
    backend_for(Device::cpu()).copy(t, out);
  } else {
    DeviceGuard guard(t.device().index);
    launch_copy(arg(t, "copy"), arg(out, "copy"), stream(t.device().index));
  }
  return out;
}

void copy_on_device(const Tensor& src, const Tensor& dst) {
  const int device = dst.device().index;
  DeviceGuard guard(device);
  if (src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous()) {
    RW_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), dst.nbytes(),
                                  cudaMemcpyDeviceToDevice, stream(device)));
    return;
  }
  launch_copy(arg(src, "copy"), arg(dst, "copy"), stream(device));
}

void copy_host_to_device(const Tensor& src, const Tensor& dst) {
  const int device = dst.device().index;
  // Converted (and made contiguous) on the host by the CPU backend, then one transfer.
  Tensor host = contiguous_as(src, dst.dtype());
  DeviceGuard guard(device);
  cudaStream_t st = stream(device);
  Tensor staged = dst.is_contiguous() ? dst : empty(dst.shape(), options_of(dst));
  RW_CUDA_CHECK(cudaMemcpyAsync(staged.data_ptr(), host.data_ptr(), host.nbytes(),
                                cudaMemcpyHostToDevice, st));
  if (!staged.is_same(dst)) launch_copy(arg(staged, "copy"), arg(dst, "copy"), st);
  // `host` may be a temporary about to be freed (and reused by the CPU allocator).
  RW_CUDA_CHECK(cudaStreamSynchronize(st));
}

void copy_device_to_host(const Tensor& src, const Tensor& dst) {
  const int device = src.device().index;
  // Converted (and made contiguous) on the device, then one transfer.
  Tensor gathered = contiguous_as(src, dst.dtype());
  Tensor host = dst.is_contiguous() ? dst : empty(dst.shape(), {.dtype = dst.dtype()});
  DeviceGuard guard(device);
  cudaStream_t st = stream(device);
  RW_CUDA_CHECK(cudaMemcpyAsync(host.data_ptr(), gathered.data_ptr(), gathered.nbytes(),
                                cudaMemcpyDeviceToHost, st));
  // The caller reads the host memory as soon as copy returns.
  RW_CUDA_CHECK(cudaStreamSynchronize(st));
  if (!host.is_same(dst)) backend_for(Device::cpu()).copy(host, dst);
}

// Between two GPUs: gathered and converted on the source device, moved with one peer copy, then
// scattered into dst's strides on its own device. Each device's stream orders its own work; the
// host waits at the hand-over points so neither side touches memory the other still uses.
void copy_between_devices(const Tensor& src, const Tensor& dst) {
  const int from = src.device().index, to = dst.device().index;
  Tensor gathered = contiguous_as(src, dst.dtype());
  Tensor staged = dst.is_contiguous() ? dst : empty(dst.shape(), options_of(dst));
  synchronize(to);  // staged may be a recycled block still in use by queued work on `to`
  {
    DeviceGuard guard(from);
    RW_CUDA_CHECK(cudaMemcpyPeerAsync(staged.data_ptr(), to, gathered.data_ptr(), from,
                                      gathered.nbytes(), stream(from)));
  }
  synchronize(from);  // the data has arrived; `gathered` may now be freed and reused on `from`
  if (!staged.is_same(dst)) {
    DeviceGuard guard(to);
    launch_copy(arg(staged, "copy"), arg(dst, "copy"), stream(to));
  }
}

}  // namespace

void CudaBackend::copy(const Tensor& src, const Tensor& dst) {
  RW_CHECK(src.shape() == dst.shape(), "cuda copy: shapes differ: {} -> {}", src.shape(),
           dst.shape());
  RW_CHECK(src.device().is_cuda() || dst.device().is_cuda(),
           "cuda copy: {} -> {} involves no CUDA device", src.device(), dst.device());
  if (dst.numel() == 0) return;
  if (src.device().is_cpu()) {
    copy_host_to_device(src, dst);
  } else if (dst.device().is_cpu()) {
    copy_device_to_host(src, dst);
  } else if (src.device() == dst.device()) {
    copy_on_device(src, dst);
  } else {
    copy_between_devices(src, dst);
  }
}

void CudaBackend::fill(const Tensor& dst, double value) {
  if (dst.numel() == 0) return;
  DeviceGuard guard(device_);
  launch_fill(arg(dst, "fill"), value, stream(device_));
}

void CudaBackend::arange(const Tensor& out, double start, double step) {
  if (out.numel() == 0) return;
  DeviceGuard guard(device_);
  launch_arange(arg(out, "arange"), start, step, stream(device_));
}

}  // namespace rw::cuda
