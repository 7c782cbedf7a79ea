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
