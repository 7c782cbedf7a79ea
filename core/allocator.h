#pragma once
// Every byte of tensor memory goes through an Allocator, which counts live and peak bytes per
// device so that memory claims (reversible layers, LSH attention) are testable exactly.
//
// allocated_bytes counts the bytes callers asked for (exact, independent of caching);
// reserved_bytes counts what the allocator holds from the system, including its cache.
#include <cstddef>
#include <cstdint>

#include "core/device.h"

namespace rw {

struct MemoryStats {
  int64_t allocated_bytes = 0;       // live bytes handed out
  int64_t peak_allocated_bytes = 0;  // max of allocated_bytes since the last reset_peak
  int64_t reserved_bytes = 0;        // bytes held from the system (live + cached)
  int64_t peak_reserved_bytes = 0;
  int64_t num_allocations = 0;         // calls to allocate() since process start
  int64_t num_system_allocations = 0;  // of which went to the system (cache misses)
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  // Returns memory aligned to at least kAlignment bytes; throws OutOfMemoryError naming the
  // device and the size asked. nbytes == 0 returns a non-null dummy pointer.
  virtual void* allocate(std::size_t nbytes) = 0;
  virtual void deallocate(void* ptr, std::size_t nbytes) = 0;
  virtual MemoryStats stats() const = 0;
  virtual void reset_peak() = 0;
  // Returns cached blocks to the system.
  virtual void empty_cache() = 0;
  // Caps allocated bytes (0 = no cap); an allocation past it throws OutOfMemoryError.
  virtual void set_limit(int64_t bytes) = 0;

  static constexpr std::size_t kAlignment = 64;  // AVX-512 lines
};

// The allocator of a device. Throws rw::Error for a device with no allocator (no CUDA build).
Allocator& allocator_for(Device device);
void register_allocator(DeviceType type, Allocator* (*factory)(int index));

MemoryStats memory_stats(Device device = Device::cpu());
void reset_peak_memory(Device device = Device::cpu());
void empty_cache(Device device = Device::cpu());
void set_memory_limit(Device device, int64_t bytes);

}  // namespace rw
