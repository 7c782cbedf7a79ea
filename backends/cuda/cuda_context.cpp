// Per-device CUDA state: the device count, one stream and one cuBLAS handle per device, created
// on first use. They are never destroyed: tensors in static storage may be freed after main
// returns, and destroying streams or handles while the driver shuts down crashes, so they live
// until the process ends (the driver reclaims them).
#include "backends/cuda/cuda_context.h"

#include <algorithm>
#include <array>
#include <mutex>

#include "backends/cuda/cuda_check.h"
#include "core/device.h"
#include "core/error.h"

namespace rw::cuda {
namespace {

struct DeviceState {
  std::once_flag stream_once;
  cudaStream_t stream = nullptr;
  std::once_flag cublas_once;
  cublasHandle_t cublas = nullptr;
};

DeviceState& state_of(int device) {
  static std::array<DeviceState, kMaxDevicesPerType> states;
  const int count = device_count();
  RW_CHECK(device >= 0 && device < count, "cuda:{}: no such CUDA device ({} visible{})", device,
           count, count == 0 ? "; no GPU or no usable NVIDIA driver on this machine" : "");
  return states[static_cast<std::size_t>(device)];
}

}  // namespace

int device_count() {
  // Asked once: the set of visible devices does not change while a process runs. Without a
  // driver or a GPU the call fails (cudaErrorNoDevice, cudaErrorInsufficientDriver, ...): 0.
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      (void)cudaGetLastError();  // so no later check reports this failure
      return 0;
    }
    return std::min(n, kMaxDevicesPerType);
  }();
  return count;
}

cudaStream_t stream(int device) {
  DeviceState& s = state_of(device);
  // call_once: threads racing on the first use all get the one stream (an exception leaves the
  // flag unset, so a later call tries again).
  std::call_once(s.stream_once, [&] {
    DeviceGuard guard(device);
    cudaStream_t created = nullptr;
    // Non-blocking: the legacy default stream (used by libraries that pass stream 0) does not
    // serialise with rewind's kernels.
    RW_CUDA_CHECK(cudaStreamCreateWithFlags(&created, cudaStreamNonBlocking));
    s.stream = created;
  });
  return s.stream;
}

cublasHandle_t cublas(int device) {
  DeviceState& s = state_of(device);
  std::call_once(s.cublas_once, [&] {
    DeviceGuard guard(device);  // a handle belongs to the device current at its creation
    cublasHandle_t handle = nullptr;
    RW_CUBLAS_CHECK(cublasCreate(&handle));
    // cuBLAS work is ordered with the device's kernels by running on the same stream.
    const cublasStatus_t bound = cublasSetStream(handle, stream(device));
    if (bound != CUBLAS_STATUS_SUCCESS) {
      cublasDestroy(handle);
      RW_CUBLAS_CHECK(bound);
    }
    s.cublas = handle;
  });
  return s.cublas;
}

void synchronize(int device) {
  cudaStream_t st = stream(device);
  DeviceGuard guard(device);
  RW_CUDA_CHECK(cudaStreamSynchronize(st));
}

DeviceGuard::DeviceGuard(int device) {
  int current = -1;
  RW_CUDA_CHECK(cudaGetDevice(&current));
  if (current != device) {
    RW_CUDA_CHECK(cudaSetDevice(device));
    previous_ = current;  // restored by the destructor; -1 means nothing to restore
  }
}

DeviceGuard::~DeviceGuard() {
  // A destructor cannot throw; restoring a device that was current a moment ago does not fail.
  if (previous_ >= 0) (void)cudaSetDevice(previous_);
}

}  // namespace rw::cuda
