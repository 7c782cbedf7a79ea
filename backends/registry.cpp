#include <array>

#include "backends/backend.h"

namespace rw {
namespace {

std::array<Backend*, 2>& backends() {
  static std::array<Backend*, 2> table{};
  return table;
}
thread_local std::array<Backend*, 2> t_overrides{};

}  // namespace

Backend* make_cpu_backend();
#ifdef REWIND_WITH_CUDA
Backend* make_cuda_backend(int device);  // backends/cuda/cuda_backend.cpp
namespace cuda {
int device_count();
}
#endif

bool cuda_is_built() {
#ifdef REWIND_WITH_CUDA
  return true;
#else
  return false;
#endif
}

int cuda_device_count() {
#ifdef REWIND_WITH_CUDA
  return cuda::device_count();
#else
  return 0;
#endif
}

bool is_comparison(BinaryOp op) {
  switch (op) {
    case BinaryOp::eq:
    case BinaryOp::ne:
    case BinaryOp::lt:
    case BinaryOp::le:
    case BinaryOp::gt:
    case BinaryOp::ge:
      return true;
    default:
      return false;
  }
}

void register_backend(DeviceType type, Backend* backend) {
  backends()[static_cast<int>(type)] = backend;
}

Backend& backend_for(Device device) {
  auto t = static_cast<int>(device.type);
  if (Backend* o = t_overrides[t]) return *o;
  Backend*& b = backends()[t];
  if (b == nullptr && device.is_cpu()) b = make_cpu_backend();
#ifdef REWIND_WITH_CUDA
  // One backend per GPU; a backend registered for the type (a test's stand-in) takes precedence.
  if (b == nullptr && device.is_cuda()) return *make_cuda_backend(device.index);
#endif
  RW_CHECK(b != nullptr,
           "{}: no backend: rewind was built without CUDA support (configure with "
           "-DREWIND_CUDA=ON on a machine with the CUDA toolkit)",
           device);
  return *b;
}

BackendOverride::BackendOverride(DeviceType type, Backend& backend)
    : type_(type), previous_(t_overrides[static_cast<int>(type)]) {
  t_overrides[static_cast<int>(type)] = &backend;
}

BackendOverride::~BackendOverride() { t_overrides[static_cast<int>(type_)] = previous_; }

}  // namespace rw
