// The CUDA allocator, one per device: the shared caching policy (core/caching_allocator.h) over
// cudaMalloc. Classes are multiples of 512 bytes up to 2 KiB (a scalar and a 2 KiB vector share few
// classes, so small tensors hit the cache often), then four per power of two up to 16 MiB (at most
// 20% of a block is slack), then whole 2 MiB (cudaMalloc's own granule for large blocks). The
// capacity that sets the budget is the device's total memory (cudaMemGetInfo).
//
// Stream semantics: every kernel and copy of a device runs on that device's one stream
// (cuda_context.h), so reusing a freed block at once is safe without events: work queued by its
// previous owner is ordered before anything its next owner queues, and host reads of device memory
// synchronise that stream first (the D2H copy waits for it). Only handing blocks back to the driver
// needs a wait: the stream is synchronised once before the cached blocks are cudaFree'd.
#include <utility>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_context.h"
#include "core/caching_allocator.h"
#include "core/error.h"

namespace rw {
namespace {

class DeviceMemory final : public RawMemory {
 public:
  explicit DeviceMemory(int device) : device_(device) {}

  void* allocate(std::size_t bytes) override {
    cuda::DeviceGuard guard(device_);
    void* ptr = nullptr;
    const cudaError_t error = cudaMalloc(&ptr, bytes);
    if (error == cudaSuccess) return ptr;
    (void)cudaGetLastError();  // not sticky: clear it so later launch checks do not see it
    if (error == cudaErrorMemoryAllocation) return nullptr;
    cuda::throw_cuda_error(error, "cudaMalloc", __FILE__, __LINE__);  // not a lack of memory
  }

  void free(void* ptr, std::size_t /*bytes*/) override {
    cuda::DeviceGuard guard(device_);
    RW_CUDA_CHECK(cudaFree(ptr));
  }

  // Queued kernels may still use the cached blocks; cudaFree would wait for the whole device
  // anyway, but the explicit wait on the device's stream states the dependency.
  void before_release() override {
    cuda::DeviceGuard guard(device_);
    RW_CUDA_CHECK(cudaStreamSynchronize(cuda::stream(device_)));
  }

  std::string name() const override { return fmt::format("cuda:{}", device_); }

  int64_t capacity() const override { return static_cast<int64_t>(memory_info().second); }

  std::string describe_free_memory() const override {
    const auto [free_bytes, total_bytes] = memory_info();
    if (total_bytes == 0) return "; the device's free memory is unknown (cudaMemGetInfo failed)";
    return fmt::format("; the device has {} bytes free of {} total", free_bytes, total_bytes);
  }

 private:
  // Free and total bytes, zeros if unknown: not thrown, as it also runs while reporting an OOM.
  std::pair<std::size_t, std::size_t> memory_info() const {
    cuda::DeviceGuard guard(device_);
    std::size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) (void)cudaGetLastError();
    return {free_bytes, total_bytes};
  }

  const int device_;
};

}  // namespace

// allocator_for calls this once per device, under its lock, and keeps the allocator for good
// (leaked on purpose, like the CPU one: tensors in static storage may outlive it).
Allocator* make_cuda_allocator(int index) {
  const int count = cuda::device_count();
  RW_CHECK(index >= 0 && index < count, "cuda:{}: no such CUDA device ({} visible{})", index, count,
           count == 0 ? "; no GPU or no usable NVIDIA driver on this machine" : "");
  return new CachingAllocator(
      std::make_unique<DeviceMemory>(index),
      SizeClasses{.small_step = 512, .small_max = 2048, .classes_per_octave = 4});
}

}  // namespace rw
