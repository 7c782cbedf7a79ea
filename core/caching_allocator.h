#pragma once
// The caching policy shared by the CPU and CUDA allocators; a device supplies only its raw memory
// (RawMemory) and size classes. Freed blocks are kept per size class and handed out again, since
// raw allocations are slow: fresh CPU pages fault in, cudaMalloc/cudaFree synchronise the device.
//
// Two rules keep what is held near what is allocated, which decides whether a long sequence fits
// at all (measured before them: 7.69 GB resident for a 5.44 GB peak at L = 262144):
// - blocks above 16 MiB are rounded to whole 2 MiB (under 12.5% slack, under 0.2% for 1 GiB);
// - before a raw allocation would take reserved_bytes past the budget (the memory limit if set,
//   else 85% of the device's capacity), the cached blocks are handed back. Under Linux overcommit
//   a failed allocation is never the first sign of running out; the OOM killer is.
// A raw allocation that fails anyway releases the whole cache and is retried once; a second
// failure throws OutOfMemoryError naming the device, the sizes, what is held and the budget.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/allocator.h"

namespace rw {

// A device's raw memory, below the cache. Called under the caching allocator's lock.
class RawMemory {
 public:
  virtual ~RawMemory() = default;
  // `bytes` aligned to Allocator::kAlignment; nullptr when the device lacks the memory, any other
  // failure throws.
  virtual void* allocate(std::size_t bytes) = 0;
  virtual void free(void* ptr, std::size_t bytes) = 0;
  // Called once before cached blocks are freed: waits for queued work that may still use them.
  virtual void before_release() {}
  virtual std::string name() const = 0;  // "cpu", "cuda:0": starts every error message
  // Total memory of the device in bytes; 0 if unknown (then only a memory limit is a budget).
  virtual int64_t capacity() const = 0;
  // Appended to an out-of-memory message, e.g. "; the device has N bytes free of M total".
  virtual std::string describe_free_memory() const { return {}; }
};

// Sizes round up to multiples of small_step up to small_max, to whole large_step above large_min,
// and between them to one of classes_per_octave (a power of two) classes per power of two.
struct SizeClasses {
  std::size_t small_step;
  std::size_t small_max;
  int classes_per_octave;
  std::size_t large_min = std::size_t{16} << 20;
  std::size_t large_step = std::size_t{2} << 20;

  std::size_t round(std::size_t n) const;
};

class CachingAllocator final : public Allocator {
 public:
  CachingAllocator(std::unique_ptr<RawMemory> raw, SizeClasses classes)
      : raw_(std::move(raw)), classes_(classes), default_budget_(default_budget(*raw_)) {}
  // Only tests' fake devices are destroyed: the real allocators are leaked on purpose (tensors
  // in static storage may outlive them).
  ~CachingAllocator() override { release_cache_locked(); }

  void* allocate(std::size_t nbytes) override;
  void deallocate(void* ptr, std::size_t nbytes) override {
    if (nbytes == 0) return;
    const std::size_t block = classes_.round(nbytes);
    std::lock_guard lock(mutex_);
    stats_.allocated_bytes -= static_cast<int64_t>(nbytes);
    cache_[block].push_back(ptr);
    cached_bytes_ += static_cast<int64_t>(block);
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

  // Bytes in the cache: reserved_bytes less the live blocks.
  int64_t cached_bytes() const {
    std::lock_guard lock(mutex_);
    return cached_bytes_;
  }
  // The reserved bytes past which the cache is released before a raw allocation.
  int64_t budget() const {
    std::lock_guard lock(mutex_);
    return budget_locked();
  }

 private:
  static int64_t default_budget(const RawMemory& raw);  // 85% of the capacity
  int64_t budget_locked() const { return limit_ > 0 ? limit_ : default_budget_; }
  void* raw_allocate_locked(std::size_t nbytes, std::size_t block);
  int64_t release_cache_locked();  // returns the bytes freed

  const std::unique_ptr<RawMemory> raw_;
  const SizeClasses classes_;
  const int64_t default_budget_;
  mutable std::mutex mutex_;
  std::unordered_map<std::size_t, std::vector<void*>> cache_;
  MemoryStats stats_;
  int64_t cached_bytes_ = 0;
  int64_t limit_ = 0;
  // Returned for zero-byte requests: non-null and aligned, never dereferenced.
  alignas(kAlignment) char zero_size_block_[kAlignment] = {};
};

}  // namespace rw
