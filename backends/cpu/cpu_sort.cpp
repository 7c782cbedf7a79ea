// STUB: to be implemented.
#include "backends/cpu/cpu_backend.h"

namespace rw {
void CpuBackend::sort(const Tensor&, int64_t, bool, const Tensor&, const Tensor&) {
  throw Error("cpu: void CpuBackend::sort not implemented yet");
}
}  // namespace rw
