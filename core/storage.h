#pragma once
// A block of device memory shared by a tensor and its views. The version counter is bumped by
// every in-place write so autograd can reject a backward through a tensor saved for backward and
// modified afterwards.
#include <cstddef>
#include <cstdint>

#include "core/allocator.h"

namespace rw {

class Storage {
 public:
  Storage(std::size_t nbytes, Device device)
      : data_(allocator_for(device).allocate(nbytes)), nbytes_(nbytes), device_(device) {}
  ~Storage() { allocator_for(device_).deallocate(data_, nbytes_); }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  std::size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  uint64_t version() const { return version_; }
  void bump_version() { ++version_; }

 private:
  void* data_;
  std::size_t nbytes_;
  Device device_;
  uint64_t version_ = 0;
};

}  // namespace rw
