// Cross-device misuse must be an rw::Error naming the op and both devices. No GPU is needed: a
// stand-in "cuda:15" whose memory is host memory exists only for the duration of these tests, and
// every op must reject the mix in its checks, before any backend runs.
#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/ops.h"
#include "test_util.h"

namespace rw {
namespace {
using namespace rw::test;

constexpr Device kFakeGpu = Device::cuda(15);

Allocator* host_memory_allocator(int) { return &allocator_for(Device::cpu()); }

// True when this build has a real CUDA allocator (then these tests are not needed to reach the
// checks, and must not replace it).
bool cuda_is_built() {
  try {
    allocator_for(kFakeGpu);
    return true;
  } catch (const Error&) {
    return false;
  }
}

TEST_CASE("a device with no backend is a clear error") {
  if (cuda_is_built()) {
    MESSAGE("skipped: this build has a CUDA backend");
    return;
  }
  std::string msg = error_message([] { (void)zeros({2}, {.device = kFakeGpu}); });
  CHECK(contains(msg, "cuda:15"));
  CHECK(contains(msg, "without"));
}

TEST_CASE("ops reject tensors on different devices, naming the op and both devices") {
  if (cuda_is_built()) {
    MESSAGE("skipped: this build has a CUDA backend");
    return;
  }
  register_allocator(DeviceType::cuda, &host_memory_allocator);
  Tensor c = randn({2, 3}, default_generator());
  Tensor g = empty({2, 3}, {.device = kFakeGpu});
  Tensor gi = empty({2, 3}, {.dtype = DType::i64, .device = kFakeGpu});
  Tensor ci = zeros({2, 3}, {.dtype = DType::i64});
  Tensor gb = empty({2, 3}, {.dtype = DType::boolean, .device = kFakeGpu});
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
    CHECK(contains(msg, k.op));
    CHECK(contains(msg, "cpu"));
    CHECK(contains(msg, "cuda:15"));
  }
  register_allocator(DeviceType::cuda, nullptr);
}

}  // namespace
}  // namespace rw
