// The CUDA caching allocator, one per device, with the CPU allocator's counters and semantics
// (core/allocator.h, core/cpu_allocator.cpp): allocated_bytes counts the bytes asked for,
// reserved_bytes what is held from cudaMalloc (live blocks and the cache).
//
// cudaMalloc and cudaFree are slow (cudaFree also synchronises the device), so freed blocks are
// kept in per-size free lists and handed out again. Sizes are rounded up to size classes: to a
// multiple of 512 bytes up to 2 KiB (a scalar and a 2 KiB vector share few classes, so small
// tensors hit the cache often), then four classes per power of two (2^k * 1.25, 1.5, 1.75, 2), so
// at most 20% of a large block is slack.
//
// Reusing a freed block at once is safe without events because every kernel and copy of a device
// runs on that device's one stream (cuda_context.h): work queued by the block's previous owner is
// ordered before anything its next owner queues. Host reads of device memory synchronise that
// stream first (the D2H copy waits for it).
#include <algorithm>
#include <array>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_context.h"
#include "core/allocator.h"
#include "core/error.h"

namespace rw {
namespace {

class CudaCachingAllocator final : public Allocator {
 public:
  explicit CudaCachingAllocator(int device) : device_(device) {}

  void* allocate(std::size_t nbytes) override {
    // Never dereferenced: a tensor with no elements launches no kernel and copies nothing.
    if (nbytes == 0) return &zero_size_block_;
    const std::size_t block = size_class(nbytes);
    std::lock_guard lock(mutex_);
    if (limit_ > 0 && stats_.allocated_bytes + static_cast<int64_t>(nbytes) > limit_) {
      throw OutOfMemoryError(
          fmt::format("cuda:{}: out of memory: tried to allocate {} bytes with {} bytes in use "
                      "(limit {} bytes)",
                      device_, nbytes, stats_.allocated_bytes, limit_));
    }
    ++stats_.num_allocations;
    void* ptr = nullptr;
    auto& bucket = cache_[block];
    if (!bucket.empty()) {
      ptr = bucket.back();
      bucket.pop_back();
    } else {
      ptr = system_allocate_locked(nbytes, block);
      ++stats_.num_system_allocations;
      stats_.reserved_bytes += static_cast<int64_t>(block);
      stats_.peak_reserved_bytes = std::max(stats_.peak_reserved_bytes, stats_.reserved_bytes);
    }
    stats_.allocated_bytes += static_cast<int64_t>(nbytes);
    stats_.peak_allocated_bytes = std::max(stats_.peak_allocated_bytes, stats_.allocated_bytes);
    return ptr;
  }

  void deallocate(void* ptr, std::size_t nbytes) override {
    if (nbytes == 0) return;
    const std::size_t block = size_class(nbytes);
    std::lock_guard lock(mutex_);
    stats_.allocated_bytes -= static_cast<int64_t>(nbytes);
    // Kernels still queued on the device's stream may read or write the block; its next owner's
    // work is queued on the same stream, after them (see the top of the file).
    cache_[block].push_back(ptr);
  }

  MemoryStats stats() const override {
    std::lock_guard lock(mutex_);
    return stats_;
  }

  void reset_peak() override {
    std::lock_guard lock(mutex_);
    stats_.peak_allocated_bytes = stats_.allocated_bytes;
    stats_.peak_reserved_bytes = stats_.reserved_bytes;
  }

  void empty_cache() override {
    std::lock_guard lock(mutex_);
    release_cache_locked();
  }

  void set_limit(int64_t bytes) override {
    std::lock_guard lock(mutex_);
    limit_ = bytes;
  }

 private:
  static std::size_t size_class(std::size_t n) {
    constexpr std::size_t kSmallGranularity = 512;
    if (n <= 4 * kSmallGranularity) {
      return (n + kSmallGranularity - 1) / kSmallGranularity * kSmallGranularity;
    }
    const int log2 = 63 - __builtin_clzll(n - 1);  // 2^log2 < n <= 2^(log2+1), log2 >= 11
    const std::size_t step = std::size_t{1} << (log2 - 2);
    return (n + step - 1) / step * step;
  }

  // cudaMalloc of `block` bytes; on failure frees the cache and tries once more, then throws
  // OutOfMemoryError with what rewind holds and what the device has left.
  void* system_allocate_locked(std::size_t nbytes, std::size_t block) {
    cuda::DeviceGuard guard(device_);
    void* ptr = nullptr;
    cudaError_t error = cudaMalloc(&ptr, block);
    if (error == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();  // not sticky: clear it so later launch checks do not see it
      release_cache_locked();
      error = cudaMalloc(&ptr, block);
    }
    if (error == cudaSuccess) return ptr;
    if (error != cudaErrorMemoryAllocation) {
      cuda::throw_cuda_error(error, "cudaMalloc", __FILE__, __LINE__);  // not a lack of memory
    }
    (void)cudaGetLastError();
    std::size_t free_bytes = 0, total_bytes = 0;
    const bool have_info = cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess;
    (void)cudaGetLastError();
    throw OutOfMemoryError(fmt::format(
        "cuda:{}: out of memory: tried to allocate {} bytes (a block of {} bytes) with {} bytes "
        "allocated and {} bytes reserved by rewind (its cache was freed and the allocation "
        "retried); {}",
        device_, nbytes, block, stats_.allocated_bytes, stats_.reserved_bytes,
        have_info ? fmt::format("the device has {} bytes free of {} total", free_bytes, total_bytes)
                  : std::string("the device's free memory is unknown (cudaMemGetInfo failed)")));
  }

  void release_cache_locked() {
    bool any = false;
    for (const auto& entry : cache_) any = any || !entry.second.empty();
    if (!any) return;
    cuda::DeviceGuard guard(device_);
    // The cached blocks may still be used by queued work; cudaFree would wait for the whole
    // device anyway, but the explicit wait on our stream states the dependency.
    RW_CUDA_CHECK(cudaStreamSynchronize(cuda::stream(device_)));
    for (auto& [block, ptrs] : cache_) {
      for (void* p : ptrs) RW_CUDA_CHECK(cudaFree(p));
      stats_.reserved_bytes -= static_cast<int64_t>(block * ptrs.size());
      ptrs.clear();
    }
  }

  const int device_;
  mutable std::mutex mutex_;
  std::unordered_map<std::size_t, std::vector<void*>> cache_;
  MemoryStats stats_;
  int64_t limit_ = 0;
  alignas(kAlignment) char zero_size_block_[kAlignment] = {};
};

}  // namespace

// One allocator per device, created on first use (allocator_for calls this under its lock); a
// device that does not exist is the error make_cuda_backend gives.
Allocator* make_cuda_allocator(int index) {
  static std::mutex mutex;
  // Leaked on purpose, like the CPU allocator: tensors in static storage may outlive them.
  static std::array<CudaCachingAllocator*, kMaxDevicesPerType> allocators{};
  const int count = cuda::device_count();
  RW_CHECK(index >= 0 && index < count, "cuda:{}: no such CUDA device ({} visible{})", index, count,
           count == 0 ? "; no GPU or no usable NVIDIA driver on this machine" : "");
  std::lock_guard lock(mutex);
  auto& slot = allocators[static_cast<std::size_t>(index)];
  if (slot == nullptr) slot = new CudaCachingAllocator(index);
  return slot;
}

}  // namespace rw
