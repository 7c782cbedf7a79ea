// STUB: to be implemented.
#include "backends/cpu/cpu_backend.h"

namespace rw {
void CpuBackend::softmax(SoftmaxKind, const Tensor&, int64_t, const Tensor&) {
  throw Error("cpu: void CpuBackend::softmax not implemented yet");
}
void CpuBackend::softmax_backward(SoftmaxKind, const Tensor&, const Tensor&, int64_t,
                                  const Tensor&) {
  throw Error("cpu: void CpuBackend::softmax_backward not implemented yet");
}
}  // namespace rw
