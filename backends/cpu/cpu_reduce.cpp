// STUB: to be implemented.
#include "backends/cpu/cpu_backend.h"

namespace rw {
void CpuBackend::reduce(ReduceOp, const Tensor&, const Tensor&) {
  throw Error("cpu: void CpuBackend::reduce not implemented yet");
}
void CpuBackend::arg_reduce(ArgReduceOp, const Tensor&, int64_t, const Tensor&) {
  throw Error("cpu: void CpuBackend::arg_reduce not implemented yet");
}
void CpuBackend::cumsum(const Tensor&, int64_t, const Tensor&) {
  throw Error("cpu: void CpuBackend::cumsum not implemented yet");
}
}  // namespace rw
