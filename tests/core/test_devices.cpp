// Cross-device misuse must be an rw::Error naming the op and both devices, raised by the op
// layer's checks before any backend runs. With a GPU the checks run on real cuda:0 tensors. In a
// build without CUDA they run on a stand-in "cuda:15" whose memory is host memory, registered
// only for the duration of the test (never in a CUDA build: it would replace the real allocator).
// A CUDA build without a GPU has neither, and skips.
#include <doctest/doctest.h>

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/ops.h"
#include "test_util.h"

namespace rw {
namespace {
using namespace rw::test;

constexpr Device kStandIn = Device::cuda(15);

Allocator* host_memory_allocator(int) { return &allocator_for(Device::cpu()); }

// Registers the host-memory stand-in allocator for the CUDA device type while alive.
struct StandInAllocator {
  StandInAllocator() { register_allocator(DeviceType::cuda, &host_memory_allocator); }
  ~StandInAllocator() { register_allocator(DeviceType::cuda, nullptr); }
  StandInAllocator(const StandInAllocator&) = delete;
  StandInAllocator& operator=(const StandInAllocator&) = delete;
};

// Every op given one tensor on the CPU and one on `gpu` must name itself, "cpu" and the device.
// `fillable`: whether the device has a backend (the stand-in has only an allocator, so its tensors
// stay uninitialised; the ops reject them before reading any element).
void check_cross_device_errors(Device gpu, bool fillable) {
  auto on_gpu = [&](DType dtype) {
    return fillable ? zeros({2, 3}, {.dtype = dtype, .device = gpu})
                    : empty({2, 3}, {.dtype = dtype, .device = gpu});
  };
  Tensor c = randn({2, 3}, default_generator());
  Tensor g = on_gpu(DType::f32);
  Tensor gi = on_gpu(DType::i64);
  Tensor ci = zeros({2, 3}, {.dtype = DType::i64});
  Tensor gb = on_gpu(DType::boolean);
  struct Case {
    const char* op;
    std::function<void()> run;
  };
  std::vector<Case> cases = {
      {"add", [&] { (void)add(c, g); }},
      {"mul", [&] { (void)mul(g, c); }},
      {"maximum", [&] { (void)maximum(c, g); }},
      {"where", [&] { (void)where(gb, c, c); }},
      {"matmul", [&] { (void)matmul(c, g.mT()); }},
      {"linear", [&] { (void)linear(c, g); }},
      {"gather", [&] { (void)gather(c, 1, gi); }},
      {"scatter_add", [&] { (void)scatter_add(c, 1, ci, g); }},
      {"index_select", [&] { (void)index_select(c, 0, gi.select(0, 0)); }},
      {"embedding", [&] { (void)embedding(c, gi); }},
      {"concat",
       [&] {
         (void)concat({c, g}, 0);
       }},
      {"layer_norm", [&] { (void)layer_norm(c, g.select(0, 0), Tensor()); }},
      {"cross_entropy", [&] { (void)cross_entropy(c, gi.select(1, 0)); }},
      {"add_",
       [&] {
         NoGradGuard no_grad;
         (void)add_(c, g);
       }},
  };
  for (const Case& k : cases) {
    CAPTURE(k.op);
    std::string msg = error_message(k.run);
    INFO("message: ", msg);
    CHECK(contains(msg, k.op));
    CHECK(contains(msg, "cpu"));
    CHECK(contains(msg, gpu.str()));
  }
}

TEST_CASE("a device with no backend is a clear error") {
  if (cuda_is_built()) {
    MESSAGE("skipped: this build has a CUDA backend (tests/cuda checks its device errors)");
    return;
  }
  std::string msg = error_message([] { (void)zeros({2}, {.device = kStandIn}); });
  CHECK(contains(msg, "cuda:15"));
  CHECK(contains(msg, "without"));
}

TEST_CASE("ops reject tensors on different devices, naming the op and both devices") {
  if (!cuda_is_built()) {
    StandInAllocator stand_in;
    check_cross_device_errors(kStandIn, /*fillable=*/false);
    return;
  }
  if (cuda_device_count() == 0) {
    std::puts("skipped: no GPU (no CUDA device visible to this process)");
    MESSAGE("skipped: no GPU");
    return;
  }
  check_cross_device_errors(Device::cuda(0), /*fillable=*/true);
}

}  // namespace
}  // namespace rw
