// rw::synchronize and rw::device_name (core/device_sync.h). Compiled into every build; the CUDA
// parts only where the backend is built (REWIND_WITH_CUDA is private to librewind, so this file,
// not the header, decides).
#include "core/device_sync.h"

#include "core/error.h"

#ifdef REWIND_WITH_CUDA
#include <cuda_runtime.h>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_context.h"
#endif

namespace rw {
namespace {

// rw::Error unless `device` is a CUDA device this build and machine can use.
void check_usable(Device device) {
  RW_CHECK(cuda_is_built(),
           "{}: rewind was built without CUDA support (configure with -DREWIND_CUDA=ON on a "
           "machine with the CUDA toolkit)",
           device);
  const int count = cuda_device_count();
  RW_CHECK(device.index < count, "{}: no such CUDA device ({} visible{})", device, count,
           count == 0 ? "; no GPU or no usable NVIDIA driver on this machine" : "");
}

}  // namespace

void synchronize(Device device) {
  if (device.is_cpu()) return;
  check_usable(device);
#ifdef REWIND_WITH_CUDA
  cuda::synchronize(device.index);
#endif
}

std::string device_name(Device device) {
  if (device.is_cpu()) return "cpu";
  check_usable(device);
#ifdef REWIND_WITH_CUDA
  cudaDeviceProp prop{};
  RW_CUDA_CHECK(cudaGetDeviceProperties(&prop, device.index));
  return prop.name;
#else
  return device.str();  // not reached: check_usable threw
#endif
}

}  // namespace rw
