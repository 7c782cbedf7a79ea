// The CPU caching allocator. Freed blocks are kept in size classes and handed out again, so a
// steady training loop takes no fresh page faults: faulting in new pages can cost half of an
// attention layer's time on a small CPU.
//
// Two rules keep what it holds near what is allocated, which decides whether a long sequence fits
// at all (measured before them: 7.69 GB resident for a 5.44 GB peak at L = 262144):
// - classes are two per power of two up to 16 MiB (at most a third of a small block is slack),
//   and whole 2 MiB pages above it (under 12.5% slack, under 0.2% for a 1 GiB block);
// - before asking the system for a block that would take the reserved bytes past a budget (the
//   memory limit when one is set, else 85% of the physical memory), the cached blocks are handed
//   back first. Under Linux overcommit a failed aligned_alloc is never the first sign of running
//   out; the OOM killer is.
#include <unistd.h>

#include <cstdlib>
#include <limits>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/allocator.h"
#include "core/error.h"

namespace rw {
namespace {

class CpuCachingAllocator final : public Allocator {
 public:
  ~CpuCachingAllocator() override { empty_cache(); }

  void* allocate(std::size_t nbytes) override {
    if (nbytes == 0) return &zero_size_block_;
    std::size_t block = size_class(nbytes);
    std::lock_guard lock(mutex_);
    if (limit_ > 0 && stats_.allocated_bytes + static_cast<int64_t>(nbytes) > limit_) {
      throw OutOfMemoryError(fmt::format(
          "cpu: out of memory: tried to allocate {} bytes with {} bytes in use (limit {} bytes)",
          nbytes, stats_.allocated_bytes, limit_));
    }
    ++stats_.num_allocations;
    void* ptr = nullptr;
    auto& bucket = cache_[block];
    if (!bucket.empty()) {
      ptr = bucket.back();
      bucket.pop_back();
      cached_bytes_ -= static_cast<int64_t>(block);
    } else {
      if (cached_bytes_ > 0 && stats_.reserved_bytes + static_cast<int64_t>(block) > budget()) {
        release_cache_locked();
      }
      ptr = std::aligned_alloc(kAlignment, block);
      if (ptr == nullptr) {
        release_cache_locked();
        ptr = std::aligned_alloc(kAlignment, block);
      }
      if (ptr == nullptr) {
        throw OutOfMemoryError(fmt::format(
            "cpu: out of memory: tried to allocate {} bytes with {} bytes in use and {} reserved",
            nbytes, stats_.allocated_bytes, stats_.reserved_bytes));
      }
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
    std::size_t block = size_class(nbytes);
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

 private:
  static constexpr std::size_t kLargeBlock = std::size_t{16} << 20;
  static constexpr std::size_t kLargeGranule = std::size_t{2} << 20;

  // Rounds up to 64 bytes below 256 bytes, to whole 2 MiB above 16 MiB, else to one of two
  // classes per power of two.
  static std::size_t size_class(std::size_t n) {
    if (n <= 256) return (n + kAlignment - 1) / kAlignment * kAlignment;
    if (n > kLargeBlock) return (n + kLargeGranule - 1) / kLargeGranule * kLargeGranule;
    int log2 = 63 - __builtin_clzll(n - 1);  // 2^log2 < n <= 2^(log2+1)
    std::size_t quarter = std::size_t{1} << (log2 - 1);
    return (n + quarter - 1) / quarter * quarter;
  }

  // The reserved bytes above which cached blocks are released before a new system allocation.
  int64_t budget() const {
    if (limit_ > 0) return limit_;
    static const int64_t physical = [] {
      const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
      return pages > 0 && page_size > 0 ? static_cast<int64_t>(pages) * page_size
                                        : std::numeric_limits<int64_t>::max();
    }();
    return physical == std::numeric_limits<int64_t>::max() ? physical : physical / 20 * 17;
  }

  void release_cache_locked() {
    for (auto& [block, ptrs] : cache_) {
      for (void* p : ptrs) std::free(p);
      stats_.reserved_bytes -= static_cast<int64_t>(block * ptrs.size());
      ptrs.clear();
    }
    cached_bytes_ = 0;
  }

  mutable std::mutex mutex_;
  std::unordered_map<std::size_t, std::vector<void*>> cache_;
  MemoryStats stats_;
  int64_t cached_bytes_ = 0;
  int64_t limit_ = 0;
  alignas(kAlignment) char zero_size_block_[kAlignment] = {};
};

}  // namespace

Allocator* make_cpu_allocator(int /*index*/) {
  // Leaked on purpose: tensors in static storage may outlive any destructor order we pick.
  static auto* alloc = new CpuCachingAllocator();
  return alloc;
}

}  // namespace rw
