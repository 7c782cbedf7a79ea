// The CPU allocator: the shared caching policy (core/caching_allocator.h) over aligned_alloc.
// Classes are multiples of 64 bytes up to 256 bytes, then two per power of two up to 16 MiB (at
// most a third of a small block is slack), then whole 2 MiB pages. The capacity that sets the
// budget is the physical memory.
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "core/caching_allocator.h"

namespace rw {
namespace {

class HostMemory final : public RawMemory {
 public:
  void* allocate(std::size_t bytes) override {
    return std::aligned_alloc(Allocator::kAlignment, bytes);
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
