// STUB: to be implemented.
#include "backends/cpu/cpu_backend.h"

namespace rw {
void CpuBackend::layer_norm(const Tensor&, const Tensor&, const Tensor&, double, const Tensor&,
                            const Tensor&, const Tensor&) {
  throw Error("cpu: void CpuBackend::layer_norm not implemented yet");
}
void CpuBackend::layer_norm_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                     const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  throw Error("cpu: void CpuBackend::layer_norm_backward not implemented yet");
}
}  // namespace rw
