// The CUDA backend's infrastructure: the caching allocator's exact counters and errors, the
// per-device context (stream, cuBLAS handle, error checks), copies between host and device and on
// the device (every dtype, strided and broadcast views, dtype conversions), fill, arange and the
// Philox random kernels. Every GPU result is compared with the CPU backend's for the same inputs,
// bit for bit except normal samples (libm differences, see the random cases).
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "backends/backend.h"
#include "core/allocator.h"
#include "core/ops.h"
#include "cuda/cuda_test_util.h"
#include "test_util.h"

// The context checks call the CUDA runtime directly; they need its headers on the include path
// (the CUDA toolkit's include directory is not propagated to the test targets by CMake).
#if __has_include(<cuda_runtime.h>) && __has_include(<cublas_v2.h>)
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_context.h"
#define RW_TEST_CUDA_HEADERS 1
#else
#define RW_TEST_CUDA_HEADERS 0
#endif

namespace rw::cuda {
// Declared in kernel_utils.cuh (nvcc-only); defined in cuda_check.cpp.
[[noreturn]] void unsupported_dtype(const char* function, DType dtype);
}  // namespace rw::cuda

namespace rw {
namespace {
using namespace rw::test;

constexpr Device kGpu = Device::cuda(0);
constexpr Device kCpu = Device::cpu();
const std::vector<DType> kAllDTypes = {DType::f32, DType::f64, DType::bf16, DType::f16,
                                       DType::i32, DType::i64, DType::u8,   DType::boolean};
const std::vector<DType> kFloatingDTypes = {DType::f32, DType::f64, DType::bf16, DType::f16};

// --- comparison helpers ----------------------------------------------------------------------

uint64_t element_bits(const uint8_t* p, std::size_t size) {
  uint64_t bits = 0;
  std::memcpy(&bits, p, size);  // little-endian: the low bytes
  return bits;
}

// "" when `got` (on any device) equals `want` element for element and bit for bit (for floating
// dtypes any NaN equals any NaN: payloads of converted NaNs differ between CPU and GPU); else a
// description of the first differences with both values and their bits.
std::string compare_exact(const Tensor& got_any, const Tensor& want_any) {
  NoGradGuard no_grad;
  Tensor got = got_any.to(kCpu).contiguous();
  Tensor want = want_any.to(kCpu).contiguous();
  if (got.dtype() != want.dtype()) {
    return fmt::format("dtype {} vs expected {}", got.dtype(), want.dtype());
  }
  if (got.shape() != want.shape()) {
    return fmt::format("shape {} vs expected {}", got.shape(), want.shape());
  }
  const std::size_t size = dtype_size(got.dtype());
  const auto* g = static_cast<const uint8_t*>(got.data_ptr());
  const auto* w = static_cast<const uint8_t*>(want.data_ptr());
  const std::vector<double> gv = got.to_vector<double>(), wv = want.to_vector<double>();
  std::string report;
  int64_t differing = 0;
  for (int64_t i = 0; i < got.numel(); ++i) {
    const auto k = static_cast<std::size_t>(i);
    if (std::memcmp(g + k * size, w + k * size, size) == 0) continue;
    if (is_floating(got.dtype()) && std::isnan(gv[k]) && std::isnan(wv[k])) continue;
    if (differing++ < 4) {
      report += fmt::format(
          "; at flat index {}: got {:.17g} (bits {:#x}), expected {:.17g} (bits {:#x})", i, gv[k],
          element_bits(g + k * size, size), wv[k], element_bits(w + k * size, size));
    }
  }
  if (differing == 0) return "";
  return fmt::format("{} of {} elements differ (dtype {}, shape {}){}", differing, got.numel(),
                     got.dtype(), got.shape(), report);
}

#define RW_CHECK_SAME(got, want, what)                                  \
  do {                                                                  \
    const std::string rw_m_ = compare_exact((got), (want));             \
    CHECK_MESSAGE(rw_m_.empty(), (what) << " (gpu vs cpu): " << rw_m_); \
  } while (0)

// The rw::OutOfMemoryError message that `f` throws; fails the test if it throws anything else.
template <typename F>
std::string oom_message(F&& f) {
  try {
    f();
  } catch (const OutOfMemoryError& e) {
    return e.what();
  } catch (const Error& e) {
    FAIL("expected rw::OutOfMemoryError, got a plain rw::Error: " << e.what());
    return {};
  }
  FAIL("expected rw::OutOfMemoryError, nothing was thrown");
  return {};
}

// Clears the memory cap of cuda:0 however the test ends.
struct LimitReset {
  ~LimitReset() { set_memory_limit(kGpu, 0); }
};

// Host values of `dtype` with every bit pattern (any NaN payload, subnormals, infinities), from a
// fixed seed: round trips must preserve them exactly. bool takes 0 and 1 only.
Tensor random_bits(DType dtype, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> bytes(static_cast<std::size_t>(n) * dtype_size(dtype));
  for (auto& b : bytes) b = static_cast<uint8_t>(dtype == DType::boolean ? rng() % 2 : rng());
  return from_blob_copy(bytes.data(), {n}, dtype);
}

// ==============================================================================================
// Allocator
// ==============================================================================================

TEST_CASE("cuda allocator: exact counters for allocations, frees and cache hits on cuda:0") {
  RW_REQUIRE_GPU();
  Allocator& alloc = allocator_for(kGpu);
  alloc.empty_cache();  // every later allocation of a new size class is then a cache miss
  alloc.reset_peak();
  const MemoryStats s0 = alloc.stats();
  INFO("stats at the start: allocated ", s0.allocated_bytes, ", reserved ", s0.reserved_bytes,
       ", allocations ", s0.num_allocations, ", system allocations ", s0.num_system_allocations);
  CHECK(s0.peak_allocated_bytes == s0.allocated_bytes);

  // 1000 bytes take the 1024-byte class (multiples of 512 bytes up to 2 KiB).
  void* a = alloc.allocate(1000);
  REQUIRE(a != nullptr);
  CHECK(reinterpret_cast<uintptr_t>(a) % Allocator::kAlignment == 0);
  MemoryStats s = alloc.stats();
  CHECK(s.allocated_bytes == s0.allocated_bytes + 1000);
  CHECK(s.num_allocations == s0.num_allocations + 1);
  CHECK(s.num_system_allocations == s0.num_system_allocations + 1);
  CHECK(s.reserved_bytes == s0.reserved_bytes + 1024);

  // A power of two is its own class.
  void* b = alloc.allocate(4096);
  s = alloc.stats();
  CHECK(s.allocated_bytes == s0.allocated_bytes + 5096);
  CHECK(s.peak_allocated_bytes == s0.allocated_bytes + 5096);
  CHECK(s.reserved_bytes == s0.reserved_bytes + 1024 + 4096);
  CHECK(s.peak_reserved_bytes == s0.reserved_bytes + 1024 + 4096);
  CHECK(s.num_system_allocations == s0.num_system_allocations + 2);

  // A free keeps the block (reserved unchanged) and lowers allocated, not the peak.
  alloc.deallocate(a, 1000);
  s = alloc.stats();
  CHECK(s.allocated_bytes == s0.allocated_bytes + 4096);
  CHECK(s.peak_allocated_bytes == s0.allocated_bytes + 5096);
  CHECK(s.reserved_bytes == s0.reserved_bytes + 1024 + 4096);

  // 900 bytes are in the same class: a cache hit on the block just freed.
  void* c = alloc.allocate(900);
  s = alloc.stats();
  CHECK(c == a);
  CHECK(s.num_allocations == s0.num_allocations + 3);
  CHECK(s.num_system_allocations == s0.num_system_allocations + 2);
  CHECK(s.reserved_bytes == s0.reserved_bytes + 1024 + 4096);
  CHECK(s.allocated_bytes == s0.allocated_bytes + 4096 + 900);

  // 1025 bytes need the next class (1536): a miss.
  void* d = alloc.allocate(1025);
  s = alloc.stats();
  CHECK(s.num_system_allocations == s0.num_system_allocations + 3);
  CHECK(s.reserved_bytes == s0.reserved_bytes + 1024 + 4096 + 1536);
  CHECK(s.allocated_bytes == s0.allocated_bytes + 4096 + 900 + 1025);
  CHECK(s.peak_allocated_bytes == s0.allocated_bytes + 4096 + 900 + 1025);

  alloc.deallocate(b, 4096);
  alloc.reset_peak();
  s = alloc.stats();
  CHECK(s.peak_allocated_bytes == s.allocated_bytes);
  CHECK(s.peak_reserved_bytes == s.reserved_bytes);
  CHECK(s.allocated_bytes == s0.allocated_bytes + 900 + 1025);

  alloc.deallocate(c, 900);
  alloc.deallocate(d, 1025);
  s = alloc.stats();
  CHECK(s.allocated_bytes == s0.allocated_bytes);
  CHECK(s.reserved_bytes == s0.reserved_bytes + 1024 + 4096 + 1536);  // all cached

  // The rw:: functions read the same allocator.
  CHECK(memory_stats(kGpu).allocated_bytes == s.allocated_bytes);
  CHECK(memory_stats(kGpu).num_allocations == s.num_allocations);

  // Tensors count the bytes of their elements exactly.
  {
    Tensor t = empty({256}, {.dtype = DType::f32, .device = kGpu});
    CHECK(memory_stats(kGpu).allocated_bytes == s0.allocated_bytes + 1024);
    CHECK(memory_stats(kGpu).num_system_allocations == s.num_system_allocations);  // cached 1024
    Tensor u = empty({3, 5}, {.dtype = DType::f64, .device = kGpu});
    CHECK(memory_stats(kGpu).allocated_bytes == s0.allocated_bytes + 1024 + 120);
  }
  CHECK(memory_stats(kGpu).allocated_bytes == s0.allocated_bytes);

  alloc.empty_cache();
  CHECK(alloc.stats().reserved_bytes == s0.reserved_bytes);
}

TEST_CASE("cuda allocator: zero-byte allocations are non-null and not counted, empty_cache") {
  RW_REQUIRE_GPU();
  Allocator& alloc = allocator_for(kGpu);
  const MemoryStats s0 = alloc.stats();
  void* z = alloc.allocate(0);
  CHECK(z != nullptr);
  alloc.deallocate(z, 0);
  CHECK(alloc.stats().num_allocations == s0.num_allocations);
  CHECK(alloc.stats().allocated_bytes == s0.allocated_bytes);
  {
    Tensor e = empty({0, 4}, {.device = kGpu});
    CHECK(e.numel() == 0);
    CHECK(e.to(kCpu).shape() == Shape{0, 4});
  }

  // empty_cache returns every cached block (reserved = live blocks only) and keeps live ones.
  Tensor live = full({1000}, 3.0, {.device = kGpu});
  { Tensor dropped = empty({1 << 18}, {.device = kGpu}); }  // 1 MiB, cached once dropped
  const MemoryStats before = alloc.stats();
  alloc.empty_cache();
  const MemoryStats after = alloc.stats();
  CHECK(after.reserved_bytes <= before.reserved_bytes - (int64_t{1} << 20));
  CHECK(after.allocated_bytes == before.allocated_bytes);
  empty_cache(kGpu);  // idempotent
  CHECK(alloc.stats().reserved_bytes == after.reserved_bytes);
  // The live tensor's block was not freed.
  CHECK(live.to_vector<float>() == std::vector<float>(1000, 3.0f));
  // A new allocation after empty_cache is a system allocation again.
  { Tensor again = empty({1 << 18}, {.device = kGpu}); }
  CHECK(alloc.stats().num_system_allocations == after.num_system_allocations + 1);
}

TEST_CASE("cuda allocator: set_memory_limit makes an allocation past the cap an OutOfMemoryError") {
  RW_REQUIRE_GPU();
  LimitReset reset;
  const MemoryStats s0 = memory_stats(kGpu);
  const int64_t limit = s0.allocated_bytes + 4096;
  set_memory_limit(kGpu, limit);
  Tensor fits = empty({1024}, {.device = kGpu});  // exactly up to the cap
  CHECK(memory_stats(kGpu).allocated_bytes == limit);
  const std::string msg = oom_message([] { (void)empty({2}, {.device = kGpu}); });
  INFO("message: ", msg);
  CHECK(contains(msg, "cuda:0"));
  CHECK(contains(msg, "out of memory"));
  CHECK(contains(msg, "tried to allocate 8 bytes"));
  CHECK(contains(msg, fmt::format("{} bytes in use", limit)));
  CHECK(contains(msg, fmt::format("limit {} bytes", limit)));
  // A refused allocation changes no counter (like the CPU allocator).
  CHECK(memory_stats(kGpu).allocated_bytes == limit);
  CHECK(memory_stats(kGpu).num_allocations == s0.num_allocations + 1);
  // Lifting the cap allows it again.
  set_memory_limit(kGpu, 0);
  CHECK(empty({2}, {.device = kGpu}).numel() == 2);
}

TEST_CASE(
    "cuda allocator: a failed cudaMalloc frees the cache, retries, then throws OutOfMemoryError "
    "with the device's free and total memory") {
  RW_REQUIRE_GPU();
  Allocator& alloc = allocator_for(kGpu);
  alloc.empty_cache();
  const MemoryStats s0 = alloc.stats();
  { Tensor cached = empty({1 << 18}, {.device = kGpu}); }  // leaves a 1 MiB block in the cache
  CHECK(alloc.stats().reserved_bytes == s0.reserved_bytes + (int64_t{1} << 20));

  const std::size_t huge = std::size_t{1} << 50;  // 1 PiB: more than any GPU has
  const std::string msg = oom_message([&] { (void)alloc.allocate(huge); });
  INFO("message: ", msg);
  CHECK(contains(msg, "cuda:0"));
  CHECK(contains(msg, "out of memory"));
  CHECK(contains(msg, fmt::format("tried to allocate {} bytes", huge)));
  CHECK(contains(msg, fmt::format("{} bytes allocated", s0.allocated_bytes)));
  CHECK(contains(msg, fmt::format("{} bytes reserved", s0.reserved_bytes)));  // after the retry
  CHECK(contains(msg, "free of"));
  CHECK(contains(msg, "total"));

  const MemoryStats s = alloc.stats();
  CHECK_MESSAGE(s.reserved_bytes == s0.reserved_bytes,
                "the cached 1 MiB block should have been freed before the retry");
  CHECK(s.allocated_bytes == s0.allocated_bytes);
  CHECK(s.num_allocations == s0.num_allocations + 2);  // the 1 MiB tensor and the failed attempt
  CHECK(s.num_system_allocations == s0.num_system_allocations + 1);

  // The failure left no error behind: kernels launch and copies work.
  CHECK(full({5}, 2.5, {.device = kGpu}).to_vector<float>() == std::vector<float>(5, 2.5f));
  CHECK(arange(0, 4, 1, {.dtype = DType::i64, .device = kGpu}).to_vector<int64_t>() ==
        std::vector<int64_t>{0, 1, 2, 3});
}

TEST_CASE("cuda allocator: concurrent allocations from several threads keep exact counters") {
  RW_REQUIRE_GPU();
  Allocator& alloc = allocator_for(kGpu);
  const MemoryStats s0 = alloc.stats();
  constexpr int kThreadCount = 8, kRounds = 300;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreadCount; ++t) {
    threads.emplace_back([&, t] {
      try {
        std::vector<std::pair<void*, std::size_t>> held;
        for (int i = 0; i < kRounds; ++i) {
          const std::size_t n = static_cast<std::size_t>((i * 7919 + t * 104729) % 70000 + 1);
          held.emplace_back(alloc.allocate(n), n);
          if (i % 3 == 2) {  // free two of every three, in a different order than allocated
            for (int k = 0; k < 2; ++k) {
              alloc.deallocate(held.front().first, held.front().second);
              held.erase(held.begin());
            }
          }
        }
        for (auto& [p, n] : held) alloc.deallocate(p, n);
      } catch (...) {
        ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures == 0);
  const MemoryStats s = alloc.stats();
  CHECK(s.allocated_bytes == s0.allocated_bytes);
  CHECK(s.num_allocations == s0.num_allocations + kThreadCount * kRounds);
  CHECK(s.num_system_allocations - s0.num_system_allocations <= kThreadCount * kRounds);
  alloc.empty_cache();
}

// ==============================================================================================
// Devices and context
// ==============================================================================================

TEST_CASE("cuda: without a GPU a CUDA tensor is an error saying there is no such device") {
  // Runs everywhere (no RW_REQUIRE_GPU): with no GPU, cuda:0 does not exist; with one, cuda:15.
  const int count = cuda_device_count();
  if (count >= kMaxDevicesPerType) {
    MESSAGE("every device index up to cuda:15 exists; nothing to check");
    return;
  }
  const int missing = count == 0 ? 0 : kMaxDevicesPerType - 1;
  const Device device = Device::cuda(missing);
  const std::string msg = error_message([&] { (void)zeros({2}, {.device = device}); });
  INFO("message: ", msg);
  CHECK(contains(msg, "no such CUDA device"));
  CHECK(contains(msg, device.str()));
  CHECK(contains(msg, fmt::format("({} visible", count)));
  if (count == 0) CHECK(contains(msg, "no GPU"));
}

TEST_CASE("cuda: a device that does not exist is an error naming it and the device count") {
  RW_REQUIRE_GPU();
  const int count = cuda_device_count();
  if (count >= kMaxDevicesPerType) {
    MESSAGE("every device index up to cuda:15 exists; nothing to check");
    return;
  }
  const Device missing = Device::cuda(count <= 7 ? 7 : count);
  const std::vector<std::pair<const char*, std::function<void()>>> uses = {
      {"zeros", [&] { (void)zeros({2}, {.device = missing}); }},
      {"to", [&] { (void)ones({2}).to(missing); }},
      {"backend_for", [&] { (void)backend_for(missing); }},
      {"allocator_for", [&] { (void)allocator_for(missing); }},
      {"memory_stats", [&] { (void)memory_stats(missing); }},
  };
  for (const auto& [what, use] : uses) {
    CAPTURE(what);
    const std::string msg = error_message(use);
    INFO("message: ", msg);
    CHECK(contains(msg, missing.str()));
    CHECK(contains(msg, "no such CUDA device"));
    CHECK(contains(msg, fmt::format("({} visible", count)));
  }
  // The failed lookups did not break the real device.
  CHECK(ones({3}, {.device = kGpu}).to_vector<float>() == std::vector<float>{1, 1, 1});
}

#if RW_TEST_CUDA_HEADERS
TEST_CASE("cuda context: one non-blocking stream per device, created once across threads") {
  RW_REQUIRE_GPU();
  std::vector<cudaStream_t> seen(16, nullptr);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < seen.size(); ++t) {
    threads.emplace_back([&, t] { seen[t] = cuda::stream(0); });
  }
  for (auto& th : threads) th.join();
  const cudaStream_t s = cuda::stream(0);
  REQUIRE(s != nullptr);
  for (cudaStream_t other : seen) CHECK(other == s);
  unsigned int flags = 0;
  REQUIRE(cudaStreamGetFlags(s, &flags) == cudaSuccess);
  CHECK(flags == cudaStreamNonBlocking);

  // The cuBLAS handle is created once and runs on the device's stream.
  cublasHandle_t h = cuda::cublas(0);
  REQUIRE(h != nullptr);
  CHECK(cuda::cublas(0) == h);
  cudaStream_t bound = nullptr;
  REQUIRE(cublasGetStream(h, &bound) == CUBLAS_STATUS_SUCCESS);
  CHECK(bound == s);

  cuda::synchronize(0);  // nothing queued: returns at once

  // DeviceGuard makes the device current and restores the previous one.
  int before = -1;
  REQUIRE(cudaGetDevice(&before) == cudaSuccess);
  const int other = cuda::device_count() > 1 ? 1 : 0;
  {
    cuda::DeviceGuard guard(other);
    int inside = -1;
    REQUIRE(cudaGetDevice(&inside) == cudaSuccess);
    CHECK(inside == other);
  }
  int after = -1;
  REQUIRE(cudaGetDevice(&after) == cudaSuccess);
  CHECK(after == before);

  // A device that does not exist has no stream.
  const std::string msg = error_message([] { (void)cuda::stream(kMaxDevicesPerType - 1); });
  CHECK(contains(msg, "no such CUDA device"));
  CHECK(contains(msg, fmt::format("cuda:{}", kMaxDevicesPerType - 1)));
}

TEST_CASE(
    "cuda context: CUDA and cuBLAS failures become errors naming the call, the error and "
    "the place") {
  RW_REQUIRE_GPU();
  std::string msg = error_message(
      [] { cuda::throw_cuda_error(cudaErrorInvalidValue, "cudaFoo(p, n)", "x.cu", 12); });
  INFO("message: ", msg);
  CHECK(contains(msg, "cudaFoo(p, n)"));
  CHECK(contains(msg, cudaGetErrorString(cudaErrorInvalidValue)));
  CHECK(contains(msg, "cudaErrorInvalidValue"));
  CHECK(contains(msg, "x.cu:12"));

  // Out of memory is an OutOfMemoryError, so callers can catch it as such.
  msg = oom_message(
      [] { cuda::throw_cuda_error(cudaErrorMemoryAllocation, "cudaMalloc(&p, n)", "y.cpp", 3); });
  CHECK(contains(msg, "cudaMalloc(&p, n)"));
  CHECK(contains(msg, "y.cpp:3"));

  msg = error_message([] {
    cuda::throw_cublas_error(CUBLAS_STATUS_INVALID_VALUE, "cublasGemmEx(...)", "z.cpp", 7);
  });
  CHECK(contains(msg, "cublasGemmEx(...)"));
  CHECK(contains(msg, "CUBLAS_STATUS_INVALID_VALUE"));
  CHECK(contains(msg, "z.cpp:7"));

  // RW_CUDA_CHECK throws on a failing call and names it.
  msg = error_message([] { RW_CUDA_CHECK(cudaSetDevice(-5)); });
  CHECK(contains(msg, "cudaSetDevice(-5)"));
  CHECK(contains(msg, "test_cuda_core.cpp"));
  // ... and leaves no error behind for the next launch check.
  CHECK(cudaGetLastError() == cudaSuccess);

  msg = error_message([] { cuda::unsupported_dtype("launch_thing", DType::u8); });
  CHECK(contains(msg, "launch_thing"));
  CHECK(contains(msg, "u8"));
}
#else
TEST_CASE("cuda context: checks not compiled") {
  RW_REQUIRE_GPU();
  MESSAGE(
      "cuda_runtime.h is not on the test include path: the stream, cuBLAS handle and "
      "error-check cases were not compiled");
}
#endif

// ==============================================================================================
// Copies
// ==============================================================================================

TEST_CASE("cuda copy: host -> device -> host round trips of every dtype are bit exact") {
  RW_REQUIRE_GPU();
  const int64_t live = memory_stats(kGpu).allocated_bytes;
  for (DType dtype : kAllDTypes) {
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{1000}, int64_t{100003}}) {
      CAPTURE(dtype);
      CAPTURE(n);
      Tensor host =
          random_bits(dtype, n, static_cast<uint32_t>(n) * 31 + static_cast<uint32_t>(dtype));
      Tensor dev = host.to(kGpu);
      CHECK(dev.device() == kGpu);
      CHECK(dev.dtype() == dtype);
      Tensor back = dev.to(kCpu);
      CHECK(back.device() == kCpu);
      REQUIRE(back.nbytes() == host.nbytes());
      CHECK_MESSAGE(
          std::memcmp(back.data_ptr(), host.data_ptr(), host.nbytes()) == 0,
          "round trip changed the bytes of a " << dtype << " tensor of " << n << " elements");
      // Device -> device (same dtype, contiguous) keeps the bytes too.
      Tensor cloned = dev.clone();
      CHECK(cloned.data_ptr() != dev.data_ptr());
      Tensor back2 = cloned.to(kCpu);
      CHECK_MESSAGE(std::memcmp(back2.data_ptr(), host.data_ptr(), host.nbytes()) == 0,
                    "device clone changed the bytes of a " << dtype << " tensor");
    }
  }
  {  // A 0-dim tensor.
    Tensor s = scalar_tensor(-7.25, {.dtype = DType::f64}).to(kGpu);
    CHECK(s.dim() == 0);
    CHECK(s.item<double>() == -7.25);
  }
  CHECK(memory_stats(kGpu).allocated_bytes == live);  // no temporary outlived its copy
}

// A view of a base tensor, applied alike on the host and on the device.
struct ViewCase {
  const char* name;
  Shape base;
  std::function<Tensor(const Tensor&)> view;
};

std::vector<ViewCase> view_cases() {
  return {
      {"transposed 5x7", {5, 7}, [](const Tensor& t) { return t.mT(); }},
      {"stepped slices",
       {10, 6},
       [](const Tensor& t) { return t.slice(0, 1, 9, 3).slice(1, 2, 6, 2); }},
      {"broadcast row",
       {1, 5},
       [](const Tensor& t) {
         return t.expand({4, 5});
       }},
      {"broadcast middle dim",
       {3, 1, 2},
       [](const Tensor& t) {
         return t.expand({3, 4, 2});
       }},
      {"permuted 3-D",
       {2, 3, 4},
       [](const Tensor& t) {
         return t.permute({2, 0, 1});
       }},
      {"selected row (offset)", {4, 5}, [](const Tensor& t) { return t.select(0, 2); }},
      {"narrowed column block", {6, 8}, [](const Tensor& t) { return t.narrow(1, 3, 4); }},
      {"permuted 5-D",
       {2, 3, 2, 3, 2},
       [](const Tensor& t) {
         return t.permute({4, 2, 0, 3, 1});
       }},
      {"large transposed", {300, 257}, [](const Tensor& t) { return t.mT(); }},
      {"single element",
       {1, 1},
       [](const Tensor& t) {
         return t.expand({1, 1});
       }},
  };
}

TEST_CASE("cuda copy: strided, transposed, broadcast and offset views cross host and device") {
  RW_REQUIRE_GPU();
  NoGradGuard no_grad;
  const int64_t live = memory_stats(kGpu).allocated_bytes;
  for (const ViewCase& c : view_cases()) {
    for (DType dtype : {DType::f32, DType::f64, DType::bf16, DType::i64, DType::u8}) {
      // iota's values must fit u8 (a float -> u8 conversion out of range is undefined).
      if (dtype == DType::u8 && shape_numel(c.base) > 250) continue;
      CAPTURE(c.name);
      CAPTURE(dtype);
      Tensor base_cpu = iota(c.base).to(dtype);
      Tensor base_gpu = base_cpu.to(kGpu);
      Tensor view_cpu = c.view(base_cpu);
      Tensor view_gpu = c.view(base_gpu);
      Tensor want = view_cpu.contiguous();
      // A host view to the device (gathered on the host, one transfer).
      RW_CHECK_SAME(view_cpu.to(kGpu), want, "host view -> device");
      // A device view to the host (gathered by a kernel, one transfer).
      RW_CHECK_SAME(view_gpu.to(kCpu), want, "device view -> host");
      // A device view made contiguous on the device.
      Tensor gathered = view_gpu.contiguous();
      CHECK(gathered.is_contiguous());
      RW_CHECK_SAME(gathered, want, "device view -> contiguous on the device");

      // Strided destinations: a view of a sentinel-filled tensor; the rest must stay untouched.
      // (Broadcast views are not written to: their elements alias each other.)
      if (contains(c.name, "broadcast") || contains(c.name, "single")) continue;
      const double sentinel = 99;
      Tensor src_cpu = add(iota(c.view(base_cpu).shape()), 1.0).to(dtype);
      Tensor want_dst = full(c.base, sentinel, {.dtype = dtype});
      backend_for(kCpu).copy(src_cpu, c.view(want_dst));

      Tensor dev_dst = full(c.base, sentinel, {.dtype = dtype, .device = kGpu});
      backend_for(kGpu).copy(src_cpu, c.view(dev_dst));  // host -> strided device view
      RW_CHECK_SAME(dev_dst, want_dst, "host -> strided device view");

      Tensor host_dst = full(c.base, sentinel, {.dtype = dtype});
      backend_for(kGpu).copy(src_cpu.to(kGpu), c.view(host_dst));  // device -> strided host view
      RW_CHECK_SAME(host_dst, want_dst, "device -> strided host view");

      Tensor dev_dst2 = full(c.base, sentinel, {.dtype = dtype, .device = kGpu});
      backend_for(kGpu).copy(src_cpu.to(kGpu), c.view(dev_dst2));  // device -> strided device
      RW_CHECK_SAME(dev_dst2, want_dst, "device -> strided device view");
    }
  }
  CHECK(memory_stats(kGpu).allocated_bytes == live);  // every temporary was freed
}

TEST_CASE("cuda copy: a view with more than 10 unmergeable dims is an error naming copy") {
  RW_REQUIRE_GPU();
  Shape shape(11, 2);
  std::vector<int64_t> reversed;
  for (int64_t d = 10; d >= 0; --d) reversed.push_back(d);
  Tensor view = iota(shape).to(kGpu).permute(reversed);
  const std::string msg = error_message([&] { (void)view.contiguous(); });
  INFO("message: ", msg);
  CHECK(contains(msg, "copy"));
  CHECK(contains(msg, "at most 10"));
  // On the host the same view is gathered by the CPU backend first, so it reaches the device.
  Tensor host_view = iota(shape).permute(reversed);
  RW_CHECK_SAME(host_view.to(kGpu), host_view.contiguous(), "rank-11 host view -> device");
}

// Values that stress conversions: signed zeros, halves for rounding, integer limits, f16 overflow
// and rounding thresholds, values below f32's smallest subnormal, non-finite values.
const std::vector<double> kConversionValues = {0.0,
                                               -0.0,
                                               1.0,
                                               -1.0,
                                               0.5,
                                               -0.5,
                                               1.5,
                                               2.5,
                                               -2.5,
                                               3.7,
                                               -3.7,
                                               100.25,
                                               127.0,
                                               128.0,
                                               200.9,
                                               255.0,
                                               256.0,
                                               -129.0,
                                               1000.5,
                                               2049.0,
                                               65504.0,
                                               65519.0,
                                               65520.0,
                                               70000.0,
                                               1e-3,
                                               3e-5,
                                               6e-8,
                                               1e-8,
                                               1e-40,
                                               1e-50,
                                               3e38,
                                               4e38,
                                               1e300,
                                               16777217.0,
                                               2147483520.0,
                                               2147483647.0,
                                               -2147483648.0,
                                               4294967296.5,
                                               9007199254740993.0,
                                               1e18,
                                               -1e18,
                                               std::numeric_limits<double>::infinity(),
                                               -std::numeric_limits<double>::infinity(),
                                               std::numeric_limits<double>::quiet_NaN()};

// Whether converting `v` to `dtype` is defined in C++ (float -> integer needs the truncated value
// in range; everything else is defined, IEEE overflow to infinity included).
bool convertible(double v, DType dtype) {
  if (!is_integral(dtype) || dtype == DType::boolean) return true;
  if (!std::isfinite(v)) return false;
  const double t = std::trunc(v);
  switch (dtype) {
    case DType::u8:
      return t >= 0 && t <= 255;
    case DType::i32:
      return t >= -2147483648.0 && t <= 2147483647.0;
    case DType::i64:
      return t >= -9223372036854775808.0 && t < 9223372036854775808.0;
    default:
      return true;
  }
}

TEST_CASE(
    "cuda copy: dtype conversions on the device, host -> device and device -> host match the "
    "CPU for every pair") {
  RW_REQUIRE_GPU();
  NoGradGuard no_grad;
  for (DType from : kAllDTypes) {
    // The source values the CPU can represent in `from`.
    std::vector<double> in_from;
    for (double v : kConversionValues) {
      if (convertible(v, from)) in_from.push_back(v);
    }
    const std::vector<double> as_from = from_vector<double>(in_from).to(from).to_vector<double>();
    for (DType to : kAllDTypes) {
      CAPTURE(from);
      CAPTURE(to);
      // Integer -> integer wraps (defined); floating -> integer must be in range.
      std::vector<double> values;
      for (double v : as_from) {
        if (is_integral(from) || convertible(v, to)) values.push_back(v);
      }
      REQUIRE(!values.empty());
      const auto n = static_cast<int64_t>(values.size());
      Tensor src = from_vector<double>(values).to(from);
      Tensor want = src.to(to);  // the CPU backend's conversion
      Tensor src_gpu = src.to(kGpu);
      RW_CHECK_SAME(src_gpu.to(to), want, fmt::format("device {} -> {}", from, to));

      // Strided source on the device: every other element of an interleaved copy.
      Tensor doubled = stack({src, src}, 1).reshape({2 * n});
      Tensor strided_gpu = doubled.to(kGpu).slice(0, 0, 2 * n, 2);
      CHECK(!strided_gpu.is_contiguous());
      RW_CHECK_SAME(strided_gpu.to(to), want, fmt::format("strided device {} -> {}", from, to));

      // Host -> device with conversion (converted by the CPU backend, then moved).
      Tensor dst_gpu = empty({n}, {.dtype = to, .device = kGpu});
      backend_for(kGpu).copy(src, dst_gpu);
      RW_CHECK_SAME(dst_gpu, want, fmt::format("host {} -> device {}", from, to));

      // Device -> host with conversion (converted by a kernel, then moved).
      Tensor dst_host = empty({n}, {.dtype = to});
      backend_for(kGpu).copy(src_gpu, dst_host);
      RW_CHECK_SAME(dst_host, want, fmt::format("device {} -> host {}", from, to));
    }
  }
}

TEST_CASE("cuda copy: between two GPUs") {
  RW_REQUIRE_GPU();
  if (cuda_device_count() < 2) {
    MESSAGE("only one GPU: the cuda:0 -> cuda:1 copy is not checked on this machine");
    return;
  }
  NoGradGuard no_grad;
  const Device other = Device::cuda(1);
  Tensor host = iota({40, 30});
  Tensor a = host.to(kGpu);
  RW_CHECK_SAME(a.to(other), host, "cuda:0 -> cuda:1");
  CHECK(a.to(other).device() == other);
  RW_CHECK_SAME(a.mT().to(other), host.mT().contiguous(), "transposed cuda:0 -> cuda:1");
  Tensor dst = zeros({30, 40}, {.dtype = DType::f64, .device = other});
  backend_for(kGpu).copy(a, dst.mT());
  RW_CHECK_SAME(dst, host.to(DType::f64).mT().contiguous(), "cuda:0 f32 -> strided cuda:1 f64");
}

// ==============================================================================================
// fill and arange
// ==============================================================================================

TEST_CASE("cuda fill matches the CPU for every dtype, on contiguous and strided destinations") {
  RW_REQUIRE_GPU();
  NoGradGuard no_grad;
  const std::vector<double> values = {0.0,
                                      -0.0,
                                      1.0,
                                      -2.5,
                                      0.1,
                                      1e-50,
                                      200.7,
                                      65519.9,
                                      1e6,
                                      3e38,
                                      std::numeric_limits<double>::quiet_NaN(),
                                      -std::numeric_limits<double>::infinity()};
  for (DType dtype : kAllDTypes) {
    for (double v : values) {
      if (!convertible(v, dtype)) continue;
      CAPTURE(dtype);
      CAPTURE(v);
      RW_CHECK_SAME(full({1000, 3}, v, {.dtype = dtype, .device = kGpu}),
                    full({1000, 3}, v, {.dtype = dtype}), fmt::format("full({}) {}", v, dtype));
      // A strided view of a sentinel tensor: only the view's elements change.
      Tensor g = full({6, 8}, 7, {.dtype = dtype, .device = kGpu});
      Tensor c = full({6, 8}, 7, {.dtype = dtype});
      backend_for(kGpu).fill(g.slice(1, 1, 7, 2).mT(), v);
      backend_for(kCpu).fill(c.slice(1, 1, 7, 2).mT(), v);
      RW_CHECK_SAME(g, c, fmt::format("strided fill({}) {}", v, dtype));
    }
  }
}

TEST_CASE("cuda arange matches the CPU for every dtype") {
  RW_REQUIRE_GPU();
  struct Range {
    double start, end, step;
  };
  const std::vector<Range> signed_ranges = {
      {0, 10, 1},     {-3, 5, 0.7},       {10, -10, -1.5}, {0, 1, 0.1}, {-1e6, 1e6, 12345.678},
      {0, 100003, 1}, {0.5, 3000.5, 1.25}};
  const std::vector<Range> unsigned_ranges = {{0, 10, 1}, {0, 255, 0.7}, {250, 0, -3.3}};
  for (DType dtype : kAllDTypes) {
    const auto& ranges = dtype == DType::u8 ? unsigned_ranges : signed_ranges;
    for (const Range& r : ranges) {
      CAPTURE(dtype);
      CAPTURE(r.start);
      CAPTURE(r.end);
      CAPTURE(r.step);
      RW_CHECK_SAME(arange(r.start, r.end, r.step, {.dtype = dtype, .device = kGpu}),
                    arange(r.start, r.end, r.step, {.dtype = dtype}),
                    fmt::format("arange({}, {}, {}) {}", r.start, r.end, r.step, dtype));
    }
  }
  // A strided 1-D destination gets the values at its own positions.
  Tensor g = full({20}, -1, {.device = kGpu});
  backend_for(kGpu).arange(g.slice(0, 1, 20, 2), 2.0, 0.5);
  Tensor want = full({20}, -1);
  copy_(want.slice(0, 1, 20, 2), arange(2.0, 7.0, 0.5, {.dtype = DType::f32}));
  RW_CHECK_SAME(g, want, "arange into a stride-2 view");
}

// ==============================================================================================
// random
// ==============================================================================================

const std::vector<PhiloxState> kStates = {
    {.seed = 42, .stream = 0, .counter = 0},
    // The counter's low word overflows within the first blocks (carry into the high word).
    {.seed = 0xDEADBEEFCAFEF00Dull, .stream = 7, .counter = 0xFFFFFFFEull},
    {.seed = 1, .stream = uint64_t{1} << 40, .counter = 123456789},
};

const char* kind_name(RandomKind kind) {
  switch (kind) {
    case RandomKind::uniform:
      return "uniform";
    case RandomKind::normal:
      return "normal";
    case RandomKind::bernoulli:
      return "bernoulli";
    case RandomKind::randint:
      return "randint";
  }
  return "?";
}

struct RandomParams {
  RandomKind kind;
  double a, b;
};

// Parameters whose results are defined for `dtype` (no negative value into u8, ranges that fit).
std::vector<RandomParams> exact_params(DType dtype) {
  std::vector<RandomParams> p = {{RandomKind::bernoulli, 0.3, 0},
                                 {RandomKind::bernoulli, 0.0, 0},
                                 {RandomKind::bernoulli, 1.0, 0}};
  switch (dtype) {
    case DType::boolean:
      p.push_back({RandomKind::randint, 0, 2});
      p.push_back({RandomKind::uniform, 0, 1});
      break;
    case DType::u8:
      p.push_back({RandomKind::randint, 0, 256});
      p.push_back({RandomKind::randint, 3, 7});
      p.push_back({RandomKind::uniform, 0, 200});
      break;
    case DType::i32:
      p.push_back({RandomKind::randint, -5, 7});
      p.push_back({RandomKind::randint, -2147483648.0, 2147483647.0});
      p.push_back({RandomKind::uniform, -3, 5});
      break;
    case DType::i64:
      p.push_back({RandomKind::randint, -5, 7});
      p.push_back({RandomKind::randint, -1099511627776.0, 1099511627776.0});
      p.push_back({RandomKind::randint, 0, 9007199254740992.0});
      p.push_back({RandomKind::uniform, -3, 5});
      break;
    default:                                     // floating
      p.push_back({RandomKind::uniform, 0, 1});  // bf16 often rounds up to 1: clamped
      p.push_back({RandomKind::uniform, -3, 5});
      p.push_back({RandomKind::uniform, 0.25, 0.2500001});
      p.push_back({RandomKind::randint, -5, 7});
      p.push_back({RandomKind::randint, 0, 2048});
      break;
  }
  return p;
}

TEST_CASE("cuda random: uniform, bernoulli and randint equal the CPU's numbers bit for bit") {
  RW_REQUIRE_GPU();
  for (DType dtype : kAllDTypes) {
    for (const RandomParams& p : exact_params(dtype)) {
      for (std::size_t si = 0; si < kStates.size(); ++si) {
        const PhiloxState& state = kStates[si];
        // The largest size only once per case, to stay quick.
        std::vector<int64_t> sizes = {1, 3, 4, 5, 1001};
        if (si == 0) sizes.push_back((int64_t{1} << 18) + 3);
        for (int64_t n : sizes) {
          CAPTURE(dtype);
          CAPTURE(kind_name(p.kind));
          CAPTURE(p.a);
          CAPTURE(p.b);
          CAPTURE(si);
          CAPTURE(n);
          Tensor g = empty({n}, {.dtype = dtype, .device = kGpu});
          Tensor c = empty({n}, {.dtype = dtype});
          backend_for(kGpu).random(p.kind, state, p.a, p.b, g);
          backend_for(kCpu).random(p.kind, state, p.a, p.b, c);
          RW_CHECK_SAME(g, c,
                        fmt::format("{}({}, {}) {} n={} state #{}", kind_name(p.kind), p.a, p.b,
                                    dtype, n, si));
        }
      }
    }
  }
}

TEST_CASE(
    "cuda random: the op layer's rand, uniform, bernoulli and randint on cuda:0 equal the "
    "CPU's") {
  RW_REQUIRE_GPU();
  const PhiloxState state = kStates[1];
  const TensorOptions gpu32{.dtype = DType::f32, .device = kGpu};
  RW_CHECK_SAME(rand({37, 11}, state, gpu32), rand({37, 11}, state), "rand f32");
  for (DType dtype : kFloatingDTypes) {
    CAPTURE(dtype);
    RW_CHECK_SAME(uniform({333}, -2, 0.5, state, {.dtype = dtype, .device = kGpu}),
                  uniform({333}, -2, 0.5, state, {.dtype = dtype}), "uniform");
  }
  RW_CHECK_SAME(bernoulli({17, 3}, 0.7, state, {.dtype = DType::boolean, .device = kGpu}),
                bernoulli({17, 3}, 0.7, state, {.dtype = DType::boolean}), "bernoulli bool");
  RW_CHECK_SAME(randint(-100, 100, {501}, state, {.dtype = DType::i64, .device = kGpu}),
                randint(-100, 100, {501}, state, {.dtype = DType::i64}), "randint i64");
  // A generator advances the same way whatever the device.
  Generator gc(99), gg(99);
  Tensor c1 = rand({10}, gc), g1 = rand({10}, gg, gpu32);
  RW_CHECK_SAME(g1, c1, "rand from a generator");
  CHECK(gc.state() == gg.state());
}

TEST_CASE("cuda random: element i uses block counter + i / 4 whatever the launch") {
  RW_REQUIRE_GPU();
  // Generating from counter c + 10 gives the elements from index 40 on of a draw at c.
  for (RandomKind kind : {RandomKind::uniform, RandomKind::normal}) {
    CAPTURE(kind_name(kind));
    const PhiloxState at = kStates[1];
    const PhiloxState later{at.seed, at.stream, at.counter + 10};
    Tensor whole = empty({1001}, {.dtype = DType::f64, .device = kGpu});
    Tensor tail = empty({961}, {.dtype = DType::f64, .device = kGpu});
    backend_for(kGpu).random(kind, at, 0, 1, whole);
    backend_for(kGpu).random(kind, later, 0, 1, tail);
    RW_CHECK_SAME(whole.slice(0, 40, 1001), tail, "tail of a draw vs a draw from a later counter");
  }
}

// Normal samples go through log, sin and cos, whose CUDA f64 versions differ from glibc's in the
// last bits (CUDA documents at most 1 ulp for log and 2 for sin and cos). Expected: f64 samples
// within a few ulp of the CPU's (relative to |mean| + |sample - mean|, since mean + std * z can
// cancel); narrower dtypes equal except, rarely, one unit where the f64 values straddle a rounding
// boundary. The measured differences are printed, so the run shows what this GPU gives.
TEST_CASE("cuda random: normal samples equal the CPU's to within a few f64 ulp") {
  RW_REQUIRE_GPU();
  struct Normal {
    double mean, std;
  };
  for (DType dtype : kFloatingDTypes) {
    for (const Normal& p : {Normal{0, 1}, Normal{0.5, 2}, Normal{-3, 0.01}}) {
      for (std::size_t si = 0; si < kStates.size(); ++si) {
        const int64_t n = si == 0 ? (int64_t{1} << 18) + 1 : 4099;
        CAPTURE(dtype);
        CAPTURE(p.mean);
        CAPTURE(p.std);
        CAPTURE(si);
        Tensor g = empty({n}, {.dtype = dtype, .device = kGpu});
        Tensor c = empty({n}, {.dtype = dtype});
        backend_for(kGpu).random(RandomKind::normal, kStates[si], p.mean, p.std, g);
        backend_for(kCpu).random(RandomKind::normal, kStates[si], p.mean, p.std, c);
        const std::vector<double> gv = g.to_vector<double>(), cv = c.to_vector<double>();
        // One unit in the last place of the dtype, relative.
        const double unit = dtype == DType::f64    ? 0x1p-52
                            : dtype == DType::f32  ? 0x1p-23
                            : dtype == DType::bf16 ? 0x1p-7
                                                   : 0x1p-10;
        int64_t differing = 0, beyond = 0;
        double worst_ulps = 0;
        std::string report;
        for (std::size_t i = 0; i < gv.size(); ++i) {
          if (gv[i] == cv[i]) continue;
          ++differing;
          const double scale = std::fabs(p.mean) + std::fabs(cv[i] - p.mean) + 1e-300;
          const double ulps = std::fabs(gv[i] - cv[i]) / (unit * scale);
          worst_ulps = std::max(worst_ulps, ulps);
          // f64: a few ulp; narrower: one unit of the dtype (the straddled rounding boundary).
          const double allowed = dtype == DType::f64 ? 8.0 : 2.0;
          if (!std::isfinite(gv[i]) || ulps > allowed) {
            if (beyond++ < 4) {
              report += fmt::format("; at {}: gpu {:.17g} vs cpu {:.17g} ({:.2f} ulp)", i, gv[i],
                                    cv[i], ulps);
            }
          }
        }
        MESSAGE(
            fmt::format("normal({}, {}) {} state #{}: {} of {} samples differ from the CPU's, "
                        "worst {:.2f} ulp of the dtype",
                        p.mean, p.std, dtype, si, differing, n, worst_ulps));
        CHECK_MESSAGE(beyond == 0, beyond << " samples beyond tolerance" << report);
        if (dtype != DType::f64) {
          // Narrow dtypes differ only where the f64 sample lies within a few f64 ulp of a
          // rounding boundary: far below one in a thousand.
          CHECK_MESSAGE(differing <= n / 1000 + 1,
                        differing << " of " << n << " " << dtype << " samples differ");
        }
      }
    }
  }
}

}  // namespace
}  // namespace rw
