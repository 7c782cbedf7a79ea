// The CPU allocator: the shared caching policy (core/caching_allocator.h) over aligned_alloc.
// Classes are multiples of 64 bytes up to 256 bytes, then two per power of two up to 16 MiB (at
// most a third of a small block is slack), then whole 2 MiB pages. The capacity that sets the
// budget is the physical memory.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "core/caching_allocator.h"

namespace rw {
namespace {

constexpr std::size_t kHugePage = std::size_t{2} << 20;

class HostMemory final : public RawMemory {
 public:
  void* allocate(std::size_t bytes) override {
    if (bytes < kHugePage) return std::aligned_alloc(Allocator::kAlignment, bytes);
    // Big blocks on 2 MiB boundaries, marked for transparent huge pages (where the kernel's
    // policy is "madvise", as on Debian, nothing else gets them). The LSH attention gathers rows
    // in bucket order from tensors of tens of MB: with 4 KiB pages nearly every row costs a TLB
    // miss, and the first touch of a block costs one fault per 4 KiB instead of per 2 MiB.
    void* p = std::aligned_alloc(kHugePage, (bytes + kHugePage - 1) / kHugePage * kHugePage);
    if (p != nullptr) madvise(p, bytes, MADV_HUGEPAGE);  // advice only: failure is harmless
    return p;
  }
  void free(void* ptr, std::size_t /*bytes*/) override { std::free(ptr); }
  std::string name() const override { return "cpu"; }
  int64_t capacity() const override {  // 0 (unknown) if sysconf fails
    return std::max(0L, sysconf(_SC_PHYS_PAGES)) * std::max(0L, sysconf(_SC_PAGESIZE));
  }
};

}  // namespace

Allocator* make_cpu_allocator(int /*index*/) {
  // Leaked on purpose: tensors in static storage may outlive any destructor order we pick.
  static auto* alloc = new CachingAllocator(
      std::make_unique<HostMemory>(),
      SizeClasses{.small_step = Allocator::kAlignment, .small_max = 256, .classes_per_octave = 2});
  return alloc;
}

}  // namespace rw
