#pragma once
// Waiting for a device and naming it, for code outside the backends (benchmarks, tools) that must
// not include CUDA headers. A CUDA device queues its kernels on one stream per device
// (backends/cuda/cuda_context.h), so a wall-clock time is only meaningful between two
// synchronize() calls:
//
//   rw::synchronize(device);
//   auto t0 = clock::now();
//   ... work on `device` ...
//   rw::synchronize(device);  // now clock::now() - t0 covers the work
#include <string>

#include "core/device.h"

namespace rw {

// Waits until every kernel queued on `device` has finished and rethrows an asynchronous kernel
// fault as rw::Error. No-op on the CPU (its kernels run synchronously). rw::Error for a CUDA
// device that this build or this machine lacks.
void synchronize(Device device);

// What `device` is, for reports: the GPU's product name for a CUDA device ("NVIDIA H100 80GB
// HBM3"), "cpu" for the CPU. rw::Error for a CUDA device that this build or this machine lacks.
std::string device_name(Device device);

}  // namespace rw
