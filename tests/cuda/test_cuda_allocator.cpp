// The CUDA allocator's use of the shared caching policy (core/caching_allocator.h): the budget
// from the device's total memory, 2 MiB rounding of large blocks, the budget release, and an
// out-of-memory error with the sizes after which the allocator still works. The policy itself is
// tested on the CPU with a fake device (tests/core/test_caching_policy.cpp).
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/caching_allocator.h"
#include "core/error.h"
#include "core/ops.h"
#include "cuda/cuda_test_util.h"
#include "test_util.h"

namespace rw {
namespace {
using namespace rw::test;

constexpr Device kGpu = Device::cuda(0);
constexpr int64_t kMiB = int64_t{1} << 20;

CachingAllocator& gpu_allocator() {
  auto* caching = dynamic_cast<CachingAllocator*>(&allocator_for(kGpu));
  REQUIRE(caching != nullptr);
  return *caching;
}

struct LimitReset {
  ~LimitReset() { set_memory_limit(kGpu, 0); }
};

std::string oom_message(std::size_t nbytes) {
  try {
    void* p = allocator_for(kGpu).allocate(nbytes);
    allocator_for(kGpu).deallocate(p, nbytes);
  } catch (const OutOfMemoryError& e) {
    return e.what();
  }
  FAIL("expected rw::OutOfMemoryError for " << nbytes << " bytes");
  return {};
}

// The number after `label` in `msg`, -1 if absent.
int64_t number_after(const std::string& msg, const std::string& label) {
  const std::size_t at = msg.find(label);
  if (at == std::string::npos) return -1;
  return std::stoll(msg.substr(at + label.size()));
}

TEST_CASE(
    "cuda allocator: asking more than the device has names the sizes and budget, it works on") {
  RW_REQUIRE_GPU();
  CachingAllocator& alloc = gpu_allocator();
  alloc.empty_cache();
  { Tensor cached = empty({1 << 18}, {.device = kGpu}); }  // 1 MiB cached
  const MemoryStats s0 = alloc.stats();
  REQUIRE(alloc.cached_bytes() == kMiB);

  const std::size_t huge = std::size_t{1} << 50;  // 1 PiB
  const std::string msg = oom_message(huge);
  INFO("message: ", msg);
  CHECK(contains(msg, "cuda:0: out of memory"));
  CHECK(contains(msg, fmt::format("tried to allocate {} bytes (a block of {} bytes)", huge, huge)));
  CHECK(contains(msg, fmt::format("{} bytes allocated", s0.allocated_bytes)));
  CHECK(contains(msg, fmt::format("{} bytes reserved", s0.reserved_bytes - kMiB)));
  CHECK(contains(msg, "0 bytes cached"));
  CHECK(contains(msg, fmt::format("after freeing {} cached bytes", kMiB)));
  // The budget is 85% of the device's total memory, which the message also names.
  const int64_t total = number_after(msg, "bytes free of ");
  REQUIRE(total > 0);
  CHECK(alloc.budget() == total / 20 * 17);
  CHECK(contains(msg, fmt::format("budget {} bytes", total / 20 * 17)));

  const MemoryStats s = alloc.stats();
  CHECK(s.allocated_bytes == s0.allocated_bytes);
  CHECK(s.reserved_bytes == s0.reserved_bytes - kMiB);
  CHECK(s.num_allocations == s0.num_allocations + 1);
  CHECK(s.num_system_allocations == s0.num_system_allocations);
  CHECK(alloc.cached_bytes() == 0);

  // It still allocates, counts and computes.
  void* p = alloc.allocate(3000);
  CHECK(alloc.stats().allocated_bytes == s0.allocated_bytes + 3000);
  CHECK(alloc.stats().num_system_allocations == s0.num_system_allocations + 1);
  alloc.deallocate(p, 3000);
  CHECK(full({5}, 2.5, {.device = kGpu}).to_vector<float>() == std::vector<float>(5, 2.5f));
}

TEST_CASE("cuda allocator: blocks above 16 MiB are rounded to whole 2 MiB and reused") {
  RW_REQUIRE_GPU();
  CachingAllocator& alloc = gpu_allocator();
  alloc.empty_cache();
  const MemoryStats s0 = alloc.stats();
  const std::size_t n = (std::size_t{40} << 20) + 1;  // four classes per octave would give 48 MiB
  void* p = alloc.allocate(n);
  CHECK(alloc.stats().reserved_bytes == s0.reserved_bytes + 42 * kMiB);
  alloc.deallocate(p, n);
  void* q = alloc.allocate(std::size_t{41} << 20);  // the same 2 MiB step: the cached block
  CHECK(q == p);
  CHECK(alloc.stats().num_system_allocations == s0.num_system_allocations + 1);
  alloc.deallocate(q, std::size_t{41} << 20);
  alloc.empty_cache();
  CHECK(alloc.stats().reserved_bytes == s0.reserved_bytes);
}

TEST_CASE("cuda allocator: cached blocks are released before cudaMalloc would pass the budget") {
  RW_REQUIRE_GPU();
  LimitReset reset;
  CachingAllocator& alloc = gpu_allocator();
  alloc.empty_cache();
  const MemoryStats s0 = alloc.stats();
  set_memory_limit(kGpu, s0.reserved_bytes + 64 * kMiB);  // the limit is the budget
  CHECK(alloc.budget() == s0.reserved_bytes + 64 * kMiB);
  void* forty = alloc.allocate(std::size_t{40} << 20);
  alloc.deallocate(forty, std::size_t{40} << 20);
  CHECK(alloc.cached_bytes() == 40 * kMiB);
  // 30 MiB is another block: beside the cached 40 MiB it would pass the budget.
  void* thirty = alloc.allocate(std::size_t{30} << 20);
  const MemoryStats s = alloc.stats();
  CHECK(alloc.cached_bytes() == 0);
  CHECK(s.reserved_bytes == s0.reserved_bytes + 30 * kMiB);
  CHECK(s.allocated_bytes == s0.allocated_bytes + 30 * kMiB);
  CHECK(s.peak_reserved_bytes >= s0.reserved_bytes + 40 * kMiB);
  alloc.deallocate(thirty, std::size_t{30} << 20);
  alloc.empty_cache();
}

}  // namespace
}  // namespace rw
