// STUB: to be implemented.
#include "backends/cpu/cpu_backend.h"

namespace rw {
void CpuBackend::gather(const Tensor&, int64_t, const Tensor&, const Tensor&) {
  throw Error("cpu: void CpuBackend::gather not implemented yet");
}
void CpuBackend::scatter_add(const Tensor&, int64_t, const Tensor&, const Tensor&) {
  throw Error("cpu: void CpuBackend::scatter_add not implemented yet");
}
void CpuBackend::index_select(const Tensor&, int64_t, const Tensor&, const Tensor&) {
  throw Error("cpu: void CpuBackend::index_select not implemented yet");
}
void CpuBackend::index_add(const Tensor&, int64_t, const Tensor&, const Tensor&) {
  throw Error("cpu: void CpuBackend::index_add not implemented yet");
}
}  // namespace rw
