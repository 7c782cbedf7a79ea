// STUB: to be implemented.
#include "backends/cpu/cpu_backend.h"

namespace rw {
void CpuBackend::random(RandomKind, PhiloxState, double, double, const Tensor&) {
  throw Error("cpu: void CpuBackend::random not implemented yet");
}
}  // namespace rw
