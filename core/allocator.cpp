#include "core/allocator.h"

#include <array>
#include <mutex>

#include "core/error.h"

namespace rw {

Allocator* make_cpu_allocator(int index);
#ifdef REWIND_WITH_CUDA
Allocator* make_cuda_allocator(int index);  // backends/cuda/cuda_allocator.cpp
#else
constexpr Allocator* (*make_cuda_allocator)(int) = nullptr;
#endif

namespace {

struct AllocatorRegistry {
  std::mutex mutex;
  std::array<Allocator* (*)(int), 2> factories{&make_cpu_allocator, make_cuda_allocator};
  std::array<std::array<Allocator*, kMaxDevicesPerType>, 2> instances{};
};

AllocatorRegistry& registry() {
  static auto* r = new AllocatorRegistry();
  return *r;
}

}  // namespace

void register_allocator(DeviceType type, Allocator* (*factory)(int index)) {
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  r.factories[static_cast<int>(type)] = factory;
}

Allocator& allocator_for(Device device) {
  auto& r = registry();
  auto t = static_cast<int>(device.type);
  RW_CHECK(device.index >= 0 && device.index < kMaxDevicesPerType, "device index {} out of range",
           device.index);
  Allocator*& slot = r.instances[t][device.index];
  if (slot != nullptr) [[likely]]
    return *slot;
  std::lock_guard lock(r.mutex);
  if (slot == nullptr) {
    RW_CHECK(r.factories[t] != nullptr,
             "{}: no allocator: rewind was built without support for this device "
             "(configure with -DREWIND_CUDA=ON on a machine with the CUDA toolkit)",
             device);
    slot = r.factories[t](device.index);
  }
  return *slot;
}

MemoryStats memory_stats(Device device) { return allocator_for(device).stats(); }
void reset_peak_memory(Device device) { allocator_for(device).reset_peak(); }
void empty_cache(Device device) { allocator_for(device).empty_cache(); }
void set_memory_limit(Device device, int64_t bytes) { allocator_for(device).set_limit(bytes); }

}  // namespace rw
