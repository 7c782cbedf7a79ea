// The CPU caching allocator's exact counters, caching, alignment and memory limit.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/error.h"
#include "core/tensor.h"

namespace rw {
namespace {

const Device kCpu = Device::cpu();

int64_t allocated() { return memory_stats(kCpu).allocated_bytes; }

// Restores "no limit" however the test leaves.
struct LimitGuard {
  ~LimitGuard() { set_memory_limit(kCpu, 0); }
};

TEST_CASE("live bytes return exactly to the starting value") {
  const int64_t before = allocated();
  {
    Tensor a = empty({17, 3});                        // 204 bytes
    Tensor b = zeros({1000}, {.dtype = DType::f64});  // 8000 bytes
    Tensor c = ones({3}, {.dtype = DType::u8});       // 3 bytes
    CHECK(allocated() - before == 204 + 8000 + 3);
    Tensor view = b.narrow(0, 10, 10).transpose(0, 0);  // views allocate nothing
    CHECK(allocated() - before == 204 + 8000 + 3);
    Tensor copy = a.transpose(0, 1).contiguous();  // a copy does
    CHECK(allocated() - before == 2 * 204 + 8000 + 3);
    a = Tensor();
    CHECK(allocated() - before == 204 + 8000 + 3);
    // A view keeps its storage alive.
    b = Tensor();
    CHECK(allocated() - before == 204 + 8000 + 3);
  }
  CHECK(allocated() == before);
}

TEST_CASE("peak is exact") {
  const int64_t base = allocated();
  reset_peak_memory(kCpu);
  CHECK(memory_stats(kCpu).peak_allocated_bytes == base);
  {
    Tensor a = empty({250});   // 1000 bytes
    Tensor b = empty({1000});  // 4000 bytes
  }
  {
    Tensor c = empty({1200});  // 4800 bytes, alone: below the peak
  }
  MemoryStats s = memory_stats(kCpu);
  CHECK(s.peak_allocated_bytes - base == 5000);
  CHECK(s.allocated_bytes == base);
  // The raw allocator interface counts the same way.
  Allocator& alloc = allocator_for(kCpu);
  reset_peak_memory(kCpu);
  void* p = alloc.allocate(1000);
  void* q = alloc.allocate(4000);
  alloc.deallocate(p, 1000);
  alloc.deallocate(q, 4000);
  CHECK(memory_stats(kCpu).peak_allocated_bytes - base == 5000);
  reset_peak_memory(kCpu);
  CHECK(memory_stats(kCpu).peak_allocated_bytes == base);
}

TEST_CASE("reserved covers allocated and the counters are consistent") {
  Tensor keep = empty({12345});
  MemoryStats s = memory_stats(kCpu);
  CHECK(s.allocated_bytes >= 12345 * 4);
  CHECK(s.reserved_bytes >= s.allocated_bytes);
  CHECK(s.peak_reserved_bytes >= s.reserved_bytes);
  CHECK(s.peak_allocated_bytes >= s.allocated_bytes);
  CHECK(s.num_allocations >= s.num_system_allocations);
  CHECK(s.num_system_allocations > 0);
}

TEST_CASE("a steady loop reuses cached blocks") {
  auto step = [] {
    Tensor a = empty({64, 64});
    Tensor b = zeros({1000}, {.dtype = DType::f64});
    Tensor c = a.transpose(0, 1).contiguous();
    Tensor d = ones({7});
  };
  step();  // warm the cache
  MemoryStats before = memory_stats(kCpu);
  for (int i = 0; i < 50; ++i) step();
  MemoryStats after = memory_stats(kCpu);
  CHECK(after.num_allocations - before.num_allocations == 50 * 4);
  CHECK(after.num_system_allocations == before.num_system_allocations);
  CHECK(after.reserved_bytes == before.reserved_bytes);
  CHECK(after.allocated_bytes == before.allocated_bytes);
}

TEST_CASE("empty_cache returns cached blocks to the system") {
  { Tensor big = empty({1 << 20}); }  // 4 MiB now cached
  MemoryStats cached = memory_stats(kCpu);
  CHECK(cached.reserved_bytes - cached.allocated_bytes >= (int64_t{4} << 20));
  empty_cache(kCpu);
  MemoryStats emptied = memory_stats(kCpu);
  CHECK(emptied.allocated_bytes == cached.allocated_bytes);
  CHECK(emptied.reserved_bytes <= cached.reserved_bytes - (int64_t{4} << 20));
  CHECK(emptied.reserved_bytes >= emptied.allocated_bytes);
  // The next allocation of that size is a cache miss again.
  { Tensor big = empty({1 << 20}); }
  CHECK(memory_stats(kCpu).num_system_allocations == emptied.num_system_allocations + 1);
}

TEST_CASE("large blocks are rounded to whole 2 MiB, not to a size class") {
  Allocator& alloc = allocator_for(kCpu);
  empty_cache(kCpu);
  const int64_t reserved = memory_stats(kCpu).reserved_bytes;
  const std::size_t n = (std::size_t{40} << 20) + 1;  // a quarter-power class would give 48 MiB
  void* p = alloc.allocate(n);
  CHECK(memory_stats(kCpu).reserved_bytes - reserved == (int64_t{42} << 20));
  alloc.deallocate(p, n);
  // Another size in the same 2 MiB step reuses the block.
  const int64_t system = memory_stats(kCpu).num_system_allocations;
  void* q = alloc.allocate(std::size_t{41} << 20);
  CHECK(q == p);
  CHECK(memory_stats(kCpu).num_system_allocations == system);
  alloc.deallocate(q, std::size_t{41} << 20);
  empty_cache(kCpu);
}

TEST_CASE("cached blocks are released before a system allocation would pass the budget") {
  LimitGuard restore;
  Allocator& alloc = allocator_for(kCpu);
  empty_cache(kCpu);
  const MemoryStats start = memory_stats(kCpu);
  REQUIRE(start.reserved_bytes == start.allocated_bytes);  // nothing cached
  // The memory limit is the budget: 6 MiB above what is allocated now.
  set_memory_limit(kCpu, start.allocated_bytes + (int64_t{6} << 20));
  void* four = alloc.allocate(std::size_t{4} << 20);
  alloc.deallocate(four, std::size_t{4} << 20);  // 4 MiB cached
  CHECK(memory_stats(kCpu).reserved_bytes - start.reserved_bytes == (int64_t{4} << 20));
  // 3 MiB is another class: fetching it would hold 7 MiB, past the budget, so the cache goes.
  void* three = alloc.allocate(std::size_t{3} << 20);
  MemoryStats s = memory_stats(kCpu);
  CHECK(s.reserved_bytes - start.reserved_bytes == (int64_t{3} << 20));
  CHECK(s.allocated_bytes - start.allocated_bytes == (int64_t{3} << 20));
  alloc.deallocate(three, std::size_t{3} << 20);
  // Under the budget the cache stays: 3 MiB cached, and 1 MiB more fits beside it.
  void* one = alloc.allocate(std::size_t{1} << 20);
  CHECK(memory_stats(kCpu).reserved_bytes - start.reserved_bytes == (int64_t{4} << 20));
  alloc.deallocate(one, std::size_t{1} << 20);
  empty_cache(kCpu);
}

TEST_CASE("allocations are aligned, zero-size ones too") {
  Allocator& alloc = allocator_for(kCpu);
  for (std::size_t n : {std::size_t{1}, std::size_t{63}, std::size_t{100}, std::size_t{4097}}) {
    void* p = alloc.allocate(n);
    CHECK(reinterpret_cast<std::uintptr_t>(p) % Allocator::kAlignment == 0);
    alloc.deallocate(p, n);
  }
  const int64_t before = allocated();
  void* z = alloc.allocate(0);
  CHECK(z != nullptr);
  CHECK(reinterpret_cast<std::uintptr_t>(z) % Allocator::kAlignment == 0);
  CHECK(allocated() == before);
  alloc.deallocate(z, 0);
  CHECK(allocated() == before);
  Tensor t = empty({0, 5});
  CHECK(t.data_ptr() != nullptr);
  CHECK(reinterpret_cast<std::uintptr_t>(empty({3}).data_ptr()) % Allocator::kAlignment == 0);
}

TEST_CASE("a memory limit makes allocation throw OutOfMemoryError with the size asked") {
  LimitGuard restore;
  const int64_t base = allocated();
  set_memory_limit(kCpu, base + 10000);
  Tensor fits = empty({2000});  // 8000 bytes: under the limit
  try {
    Tensor too_big = empty({1000});  // 4000 more bytes: over it
    FAIL("expected OutOfMemoryError");
  } catch (const OutOfMemoryError& e) {
    std::string msg = e.what();
    CHECK(msg.find("4000 bytes") != std::string::npos);
    CHECK(msg.find("out of memory") != std::string::npos);
    CHECK(msg.find("cpu") != std::string::npos);
  }
  // It is an rw::Error, so generic handlers catch it.
  CHECK_THROWS_AS(empty({1000}), Error);
  // A failed allocation leaves the counters untouched.
  CHECK(allocated() == base + 8000);
  set_memory_limit(kCpu, 0);
  Tensor fine = empty({1000});
  CHECK(allocated() == base + 12000);
}

TEST_CASE("allocator_for rejects bad device indices") {
  std::string msg;
  try {
    allocator_for(Device{DeviceType::cpu, 99});
  } catch (const Error& e) {
    msg = e.what();
  }
  CHECK(msg.find("99") != std::string::npos);
  CHECK_THROWS_AS(allocator_for(Device{DeviceType::cpu, -1}), Error);
}

}  // namespace
}  // namespace rw
