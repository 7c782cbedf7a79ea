#pragma once
// Per-device CUDA state shared by the backend's kernel families: the stream every kernel of a
// device runs on (one stream per device, so work is ordered like the CPU backend's and no event
// bookkeeping is needed), the cuBLAS handle bound to it, and a guard that makes a device current.
// nvcc-safe (no fmt), so .cu launchers can take the stream from here.
#include <cublas_v2.h>
#include <cuda_runtime.h>

namespace rw::cuda {

// Number of visible CUDA devices; 0 when there is no GPU or no usable driver (never throws).
int device_count();
// The stream of `device` (created on first use, non-blocking with respect to the legacy stream).
cudaStream_t stream(int device);
// The cuBLAS handle of `device`, bound to stream(device).
cublasHandle_t cublas(int device);
// Waits for all work queued on stream(device); rethrows asynchronous kernel faults.
void synchronize(int device);

// Makes `device` current for the guard's lifetime (restores the previous one).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

}  // namespace rw::cuda
