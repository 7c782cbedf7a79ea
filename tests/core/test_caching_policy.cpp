// The caching policy shared by the CPU and CUDA allocators (core/caching_allocator.h), over a fake
// device whose raw memory is only bookkeeping: size classes, reuse, exact counters, the budget
// rule, and a failed raw allocation (cache released and retried once, then OutOfMemoryError).
#include <doctest/doctest.h>

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>

#include "core/caching_allocator.h"
#include "core/error.h"
#include "test_util.h"

namespace rw {
namespace {
using namespace rw::test;

constexpr std::size_t kMiB = std::size_t{1} << 20;
constexpr int64_t kMiB64 = int64_t{1} << 20;

const SizeClasses kCpuClasses{.small_step = 64, .small_max = 256, .classes_per_octave = 2};
const SizeClasses kCudaClasses{.small_step = 512, .small_max = 2048, .classes_per_octave = 4};

// What the fake device saw; owned by the test so that it outlives the allocator.
struct FakeLog {
  int64_t available = INT64_MAX;  // raw allocations past this many held bytes fail
  int64_t capacity = 0;           // what the device reports (sets the budget)
  std::map<uintptr_t, std::size_t> held;
  int64_t held_bytes = 0;
  int attempts = 0;  // raw allocate calls, failed ones included
  int frees = 0;
  int releases = 0;  // before_release calls
};

// Hands out distinct aligned addresses that are never dereferenced, so "allocations" of any size
// cost nothing.
class FakeMemory final : public RawMemory {
 public:
  explicit FakeMemory(FakeLog& log) : log_(log) {}
  void* allocate(std::size_t bytes) override {
    ++log_.attempts;
    if (log_.held_bytes + static_cast<int64_t>(bytes) > log_.available) return nullptr;
    const uintptr_t address = next_;
    next_ += (bytes + Allocator::kAlignment - 1) / Allocator::kAlignment * Allocator::kAlignment;
    log_.held[address] = bytes;
    log_.held_bytes += static_cast<int64_t>(bytes);
    return reinterpret_cast<void*>(address);
  }
  void free(void* ptr, std::size_t bytes) override {
    auto it = log_.held.find(reinterpret_cast<uintptr_t>(ptr));
    CHECK(it != log_.held.end());  // not REQUIRE: this also runs in the allocator's destructor
    if (it == log_.held.end()) return;
    CHECK(it->second == bytes);
    log_.held_bytes -= static_cast<int64_t>(bytes);
    log_.held.erase(it);
    ++log_.frees;
  }
  void before_release() override { ++log_.releases; }
  std::string name() const override { return "fake:3"; }
  int64_t capacity() const override { return log_.capacity; }
  std::string describe_free_memory() const override {
    return fmt::format("; the fake has {} bytes held", log_.held_bytes);
  }

 private:
  FakeLog& log_;
  uintptr_t next_ = 1 << 16;
};

std::unique_ptr<CachingAllocator> make_fake(FakeLog& log, SizeClasses classes = kCpuClasses) {
  return std::make_unique<CachingAllocator>(std::make_unique<FakeMemory>(log), classes);
}

// reserved_bytes is exactly what the device holds, and the cache is the rest beyond live blocks.
void check_consistent(const CachingAllocator& alloc, const FakeLog& log, int64_t live_blocks) {
  const MemoryStats s = alloc.stats();
  CHECK(s.reserved_bytes == log.held_bytes);
  CHECK(alloc.cached_bytes() == s.reserved_bytes - live_blocks);
}

TEST_CASE("caching policy: size classes follow the documented rules") {
  // Small sizes: whole steps.
  CHECK(kCpuClasses.round(1) == 64);
  CHECK(kCpuClasses.round(64) == 64);
  CHECK(kCpuClasses.round(65) == 128);
  CHECK(kCpuClasses.round(256) == 256);
  CHECK(kCudaClasses.round(1) == 512);
  CHECK(kCudaClasses.round(1000) == 1024);
  CHECK(kCudaClasses.round(2048) == 2048);
  // Two classes per power of two (x1.5, x2) for the CPU, four (x1.25 .. x2) for CUDA.
  CHECK(kCpuClasses.round(257) == 384);
  CHECK(kCpuClasses.round(385) == 512);
  CHECK(kCpuClasses.round(4097) == 6144);
  CHECK(kCudaClasses.round(2049) == 2560);
  CHECK(kCudaClasses.round(4097) == 5120);
  CHECK(kCudaClasses.round(7 * kMiB + 1) == 8 * kMiB);
  // Up to 16 MiB inclusive by class; above it, whole 2 MiB.
  CHECK(kCpuClasses.round(16 * kMiB) == 16 * kMiB);
  CHECK(kCpuClasses.round(16 * kMiB + 1) == 18 * kMiB);
  CHECK(kCpuClasses.round(40 * kMiB + 1) == 42 * kMiB);
  CHECK(kCudaClasses.round(40 * kMiB + 1) == 42 * kMiB);

  // Over many sizes: a class holds the size, is its own class, grows with it, and wastes less
  // than a third (CPU) or a fifth (CUDA) of a mid-sized block and under 2 MiB of a large one.
  std::mt19937_64 rng(7);
  for (const auto& [classes, slack_divisor] :
       {std::pair{kCpuClasses, 3}, std::pair{kCudaClasses, 5}}) {
    for (int i = 0; i < 20000; ++i) {
      const std::size_t n = 1 + rng() % (64 * kMiB);
      const std::size_t r = classes.round(n);
      INFO("n = ", n, ", class = ", r);
      REQUIRE(r >= n);
      REQUIRE(classes.round(r) == r);
      REQUIRE(classes.round(n + 1) >= r);
      REQUIRE(r % Allocator::kAlignment == 0);
      if (n > classes.small_max && n <= classes.large_min) {
        REQUIRE((r - n) * slack_divisor < r);
      } else if (n > classes.large_min) {
        REQUIRE(r % (2 * kMiB) == 0);
        REQUIRE(r - n < 2 * kMiB);
      }
    }
  }
}

TEST_CASE("caching policy: freed blocks are reused, counters exact after every step") {
  FakeLog log;
  auto alloc = make_fake(log);
  void* a = alloc->allocate(1000);  // class 1024
  MemoryStats s = alloc->stats();
  CHECK(s.allocated_bytes == 1000);
  CHECK(s.peak_allocated_bytes == 1000);
  CHECK(s.reserved_bytes == 1024);
  CHECK(s.num_allocations == 1);
  CHECK(s.num_system_allocations == 1);
  check_consistent(*alloc, log, 1024);

  void* b = alloc->allocate(4000);  // class 4096
  s = alloc->stats();
  CHECK(s.allocated_bytes == 5000);
  CHECK(s.peak_allocated_bytes == 5000);
  CHECK(s.reserved_bytes == 1024 + 4096);
  CHECK(s.peak_reserved_bytes == 1024 + 4096);
  CHECK(s.num_system_allocations == 2);

  alloc->deallocate(a, 1000);  // kept: reserved unchanged, allocated down, peak kept
  s = alloc->stats();
  CHECK(s.allocated_bytes == 4000);
  CHECK(s.peak_allocated_bytes == 5000);
  CHECK(s.reserved_bytes == 1024 + 4096);
  check_consistent(*alloc, log, 4096);

  void* c = alloc->allocate(900);  // same class: the freed block, no raw allocation
  CHECK(c == a);
  s = alloc->stats();
  CHECK(s.allocated_bytes == 4900);
  CHECK(s.num_allocations == 3);
  CHECK(s.num_system_allocations == 2);
  CHECK(log.attempts == 2);
  check_consistent(*alloc, log, 1024 + 4096);

  void* d = alloc->allocate(1025);  // the next class (1536): a miss
  CHECK(d != a);
  s = alloc->stats();
  CHECK(s.reserved_bytes == 1024 + 4096 + 1536);
  CHECK(s.peak_allocated_bytes == 4900 + 1025);
  CHECK(s.num_system_allocations == 3);

  alloc->deallocate(b, 4000);
  alloc->reset_peak();
  s = alloc->stats();
  CHECK(s.peak_allocated_bytes == 900 + 1025);
  CHECK(s.peak_reserved_bytes == 1024 + 4096 + 1536);

  // Zero bytes: non-null, aligned, not counted, never reaches the device.
  void* z = alloc->allocate(0);
  CHECK(z != nullptr);
  CHECK(reinterpret_cast<uintptr_t>(z) % Allocator::kAlignment == 0);
  alloc->deallocate(z, 0);
  CHECK(alloc->stats().num_allocations == 4);
  CHECK(log.attempts == 3);

  alloc->deallocate(c, 900);
  alloc->deallocate(d, 1025);
  CHECK(alloc->stats().allocated_bytes == 0);
  check_consistent(*alloc, log, 0);
  CHECK(alloc->cached_bytes() == 1024 + 4096 + 1536);

  alloc->empty_cache();
  CHECK(alloc->stats().reserved_bytes == 0);
  CHECK(log.held.empty());
  CHECK(log.frees == 3);
  CHECK(log.releases == 1);
  alloc->empty_cache();  // nothing cached: the device is not asked to wait
  CHECK(log.releases == 1);

  // Destroying the allocator hands back what it caches.
  void* e = alloc->allocate(100);
  alloc->deallocate(e, 100);
  CHECK(log.held_bytes == 128);
  alloc.reset();
  CHECK(log.held.empty());
}

TEST_CASE("caching policy: the budget is 85% of the capacity, or the memory limit") {
  FakeLog log;
  log.capacity = 100 * kMiB64;
  auto alloc = make_fake(log);
  CHECK(alloc->budget() == 100 * kMiB64 * 17 / 20);
  alloc->set_limit(50 * kMiB64);
  CHECK(alloc->budget() == 50 * kMiB64);
  alloc->set_limit(0);
  CHECK(alloc->budget() == 85 * kMiB64);

  FakeLog unknown;  // capacity 0: no budget unless a limit is set
  auto unbounded = make_fake(unknown);
  CHECK(unbounded->budget() == INT64_MAX);
  unbounded->set_limit(kMiB64);
  CHECK(unbounded->budget() == kMiB64);
}

TEST_CASE("caching policy: cached blocks are released before a raw allocation passes the budget") {
  FakeLog log;
  log.capacity = 100 * kMiB64;  // budget 85 MiB
  auto alloc = make_fake(log);
  void* keep = alloc->allocate(8 * kMiB);
  void* sixty = alloc->allocate(60 * kMiB);
  alloc->deallocate(sixty, 60 * kMiB);  // 60 MiB cached, 68 MiB reserved
  CHECK(alloc->cached_bytes() == 60 * kMiB64);

  // 16 MiB more fits in the budget (84 MiB): the cache stays.
  void* sixteen = alloc->allocate(16 * kMiB);
  CHECK(alloc->stats().reserved_bytes == 84 * kMiB64);
  CHECK(alloc->cached_bytes() == 60 * kMiB64);
  CHECK(log.releases == 0);
  alloc->deallocate(sixteen, 16 * kMiB);

  // 20 MiB is another class: holding it beside the cache would pass 85 MiB, so both cached
  // blocks go first, then one raw allocation.
  const int attempts = log.attempts;
  void* twenty = alloc->allocate(20 * kMiB);
  MemoryStats s = alloc->stats();
  CHECK(log.releases == 1);
  CHECK(log.attempts == attempts + 1);
  CHECK(s.reserved_bytes == 28 * kMiB64);
  CHECK(s.allocated_bytes == 28 * kMiB64);
  CHECK(s.peak_reserved_bytes == 84 * kMiB64);
  CHECK(s.num_system_allocations == 4);
  check_consistent(*alloc, log, 28 * kMiB64);

  // A memory limit is the budget instead: 40 MiB.
  alloc->set_limit(40 * kMiB64);
  void* six = alloc->allocate(6 * kMiB);  // 34 MiB reserved: under it
  alloc->deallocate(six, 6 * kMiB);
  CHECK(alloc->cached_bytes() == 6 * kMiB64);
  void* five = alloc->allocate(5 * kMiB);  // class 6 MiB: a cache hit, no budget check
  CHECK(five == six);
  CHECK(log.releases == 1);
  alloc->deallocate(five, 5 * kMiB);
  void* eight = alloc->allocate(8 * kMiB);  // 34 + 8 MiB would pass 40: the 6 MiB go first
  CHECK(log.releases == 2);
  CHECK(alloc->cached_bytes() == 0);
  CHECK(alloc->stats().reserved_bytes == 36 * kMiB64);
  check_consistent(*alloc, log, 36 * kMiB64);
  alloc->deallocate(eight, 8 * kMiB);
  alloc->deallocate(twenty, 20 * kMiB);
  alloc->deallocate(keep, 8 * kMiB);
}

TEST_CASE("caching policy: a failed raw allocation releases the cache and retries once") {
  FakeLog log;
  log.available = 10 * kMiB64;  // the device holds less than it reports: no budget catches it
  auto alloc = make_fake(log);
  void* six = alloc->allocate(6 * kMiB);
  alloc->deallocate(six, 6 * kMiB);
  void* one = alloc->allocate(kMiB);  // 7 MiB held
  const MemoryStats before = alloc->stats();
  const int attempts = log.attempts;

  void* eight = alloc->allocate(8 * kMiB);  // 15 MiB > 10: fails, the 6 MiB go, then fits
  CHECK(eight != nullptr);
  CHECK(log.attempts == attempts + 2);
  CHECK(log.releases == 1);
  const MemoryStats s = alloc->stats();
  CHECK(s.allocated_bytes == before.allocated_bytes + 8 * kMiB64);
  CHECK(s.reserved_bytes == 9 * kMiB64);
  CHECK(s.peak_reserved_bytes == 9 * kMiB64);
  CHECK(s.num_allocations == before.num_allocations + 1);
  CHECK(s.num_system_allocations == before.num_system_allocations + 1);
  CHECK(alloc->cached_bytes() == 0);
  check_consistent(*alloc, log, 9 * kMiB64);
  alloc->deallocate(eight, 8 * kMiB);
  alloc->deallocate(one, kMiB);
}

TEST_CASE("caching policy: a second failure throws OutOfMemoryError with the sizes and budget") {
  FakeLog log;
  log.available = 10 * kMiB64;
  log.capacity = 20 * kMiB64;  // budget 17 MiB
  auto alloc = make_fake(log);
  void* live = alloc->allocate(3 * kMiB);
  void* four = alloc->allocate(4 * kMiB);
  alloc->deallocate(four, 4 * kMiB);  // 7 MiB reserved, 4 cached
  alloc->reset_peak();
  const MemoryStats before = alloc->stats();
  const int attempts = log.attempts;

  const std::size_t asked = 7 * kMiB + 5;  // class 8 MiB: fits the budget, not the device
  const std::string msg = error_message([&] { (void)alloc->allocate(asked); });
  INFO("message: ", msg);
  CHECK(contains(msg, "fake:3: out of memory"));
  CHECK(contains(msg,
                 fmt::format("tried to allocate {} bytes (a block of {} bytes)", asked, 8 * kMiB)));
  CHECK(contains(msg, fmt::format("{} bytes allocated", 3 * kMiB)));
  CHECK(contains(msg, fmt::format("{} bytes reserved", 3 * kMiB)));
  CHECK(contains(msg, "0 bytes cached"));
  CHECK(contains(msg, fmt::format("after freeing {} cached bytes and retrying", 4 * kMiB)));
  CHECK(contains(msg, fmt::format("budget {} bytes", 20 * kMiB64 / 20 * 17)));
  CHECK(contains(msg, fmt::format("the fake has {} bytes held", 3 * kMiB)));
  CHECK_THROWS_AS((void)alloc->allocate(asked), OutOfMemoryError);

  // Two attempts per call, the cache released once, nothing counted but the calls.
  CHECK(log.attempts == attempts + 4);
  CHECK(log.releases == 1);
  const MemoryStats s = alloc->stats();
  CHECK(s.allocated_bytes == before.allocated_bytes);
  CHECK(s.peak_allocated_bytes == before.peak_allocated_bytes);
  CHECK(s.reserved_bytes == 3 * kMiB64);
  CHECK(s.num_allocations == before.num_allocations + 2);
  CHECK(s.num_system_allocations == before.num_system_allocations);
  check_consistent(*alloc, log, 3 * kMiB64);

  // The allocator still works: what fits is allocated.
  void* fits = alloc->allocate(6 * kMiB);
  CHECK(fits != nullptr);
  CHECK(alloc->stats().reserved_bytes == 9 * kMiB64);
  alloc->deallocate(fits, 6 * kMiB);
  alloc->deallocate(live, 3 * kMiB);

  // With no capacity and no limit the message says the budget is unknown.
  FakeLog tiny;
  tiny.available = 1000;
  auto unknown = make_fake(tiny);
  const std::string unknown_msg = error_message([&] { (void)unknown->allocate(2000); });
  CHECK(contains(unknown_msg, "budget unknown"));
}

TEST_CASE("caching policy: a memory limit refuses an allocation before the device is asked") {
  FakeLog log;
  auto alloc = make_fake(log);
  alloc->set_limit(10000);
  void* fits = alloc->allocate(8000);
  const int attempts = log.attempts;
  const MemoryStats before = alloc->stats();
  const std::string msg = error_message([&] { (void)alloc->allocate(4000); });
  CHECK(contains(msg,
                 "fake:3: out of memory: tried to allocate 4000 bytes with 8000 bytes in use "
                 "(limit 10000 bytes)"));
  const MemoryStats s = alloc->stats();
  CHECK(log.attempts == attempts);
  CHECK(s.num_allocations == before.num_allocations);
  CHECK(s.allocated_bytes == 8000);
  CHECK(s.reserved_bytes == before.reserved_bytes);
  alloc->deallocate(fits, 8000);
}

}  // namespace
}  // namespace rw
