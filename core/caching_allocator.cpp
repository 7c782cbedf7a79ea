#include "core/caching_allocator.h"

#include <algorithm>
#include <limits>

#include "core/error.h"

namespace rw {

std::size_t SizeClasses::round(std::size_t n) const {
  auto round_up = [n](std::size_t step) { return (n + step - 1) / step * step; };
  if (n <= small_max) return round_up(small_step);
  if (n > large_min) return round_up(large_step);
  // 2^log2 < n <= 2^(log2+1): the octave's 2^log2 bytes split into classes_per_octave steps.
  const int log2 = 63 - __builtin_clzll(n - 1);
  return round_up(std::size_t{1} << (log2 - __builtin_ctz(unsigned(classes_per_octave))));
}

void* CachingAllocator::allocate(std::size_t nbytes) {
  if (nbytes == 0) return &zero_size_block_;
  const std::size_t block = classes_.round(nbytes);
  const auto n = static_cast<int64_t>(nbytes);
  std::lock_guard lock(mutex_);
  if (limit_ > 0 && stats_.allocated_bytes + n > limit_) {
    throw OutOfMemoryError(fmt::format(
        "{}: out of memory: tried to allocate {} bytes with {} bytes in use (limit {} bytes)",
        raw_->name(), nbytes, stats_.allocated_bytes, limit_));
  }
  ++stats_.num_allocations;
  void* ptr = nullptr;
  if (auto& bucket = cache_[block]; !bucket.empty()) {
    ptr = bucket.back();
    bucket.pop_back();
    cached_bytes_ -= static_cast<int64_t>(block);
  } else {
    ptr = raw_allocate_locked(nbytes, block);
  }
  stats_.allocated_bytes += n;
  stats_.peak_allocated_bytes = std::max(stats_.peak_allocated_bytes, stats_.allocated_bytes);
  return ptr;
}

void* CachingAllocator::raw_allocate_locked(std::size_t nbytes, std::size_t block) {
  const auto b = static_cast<int64_t>(block);
  int64_t released = 0;
  if (stats_.reserved_bytes + b > budget_locked()) released += release_cache_locked();
  void* ptr = raw_->allocate(block);
  if (ptr == nullptr) {
    released += release_cache_locked();
    ptr = raw_->allocate(block);
  }
  if (ptr == nullptr) {
    const int64_t budget = budget_locked();
    throw OutOfMemoryError(fmt::format(
        "{}: out of memory: tried to allocate {} bytes (a block of {} bytes) with {} bytes "
        "allocated, {} bytes reserved and {} bytes cached by rewind, after freeing {} cached bytes "
        "and retrying (budget {}){}",
        raw_->name(), nbytes, block, stats_.allocated_bytes, stats_.reserved_bytes, cached_bytes_,
        released,
        budget == std::numeric_limits<int64_t>::max() ? "unknown" : fmt::format("{} bytes", budget),
        raw_->describe_free_memory()));
  }
  ++stats_.num_system_allocations;
  stats_.reserved_bytes += b;
  stats_.peak_reserved_bytes = std::max(stats_.peak_reserved_bytes, stats_.reserved_bytes);
  return ptr;
}

int64_t CachingAllocator::default_budget(const RawMemory& raw) {
  const int64_t capacity = raw.capacity();
  return capacity > 0 ? capacity / 20 * 17 : std::numeric_limits<int64_t>::max();
}

int64_t CachingAllocator::release_cache_locked() {
  const int64_t released = cached_bytes_;
  if (released == 0) return 0;  // spares a device synchronisation
  raw_->before_release();
  for (auto& [block, ptrs] : cache_) {
    for (; !ptrs.empty(); ptrs.pop_back()) {  // one at a time: exact counters if a free throws
      raw_->free(ptrs.back(), block);
      stats_.reserved_bytes -= static_cast<int64_t>(block);
      cached_bytes_ -= static_cast<int64_t>(block);
    }
  }
  return released;
}

}  // namespace rw
