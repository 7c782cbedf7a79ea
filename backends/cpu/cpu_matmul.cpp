// STUB: to be implemented.
#include "backends/cpu/cpu_backend.h"

namespace rw {
void CpuBackend::matmul(const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  throw Error("cpu: void CpuBackend::matmul not implemented yet");
}
}  // namespace rw
