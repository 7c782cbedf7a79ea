// STUB: to be implemented.
#include "backends/cpu/cpu_backend.h"

namespace rw {
void CpuBackend::unary(UnaryOp, const Tensor&, const Tensor&, UnaryParams) {
  throw Error("cpu: void CpuBackend::unary not implemented yet");
}
void CpuBackend::unary_backward(UnaryOp, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                UnaryParams) {
  throw Error("cpu: void CpuBackend::unary_backward not implemented yet");
}
void CpuBackend::binary(BinaryOp, const Tensor&, const Tensor&, const Tensor&) {
  throw Error("cpu: void CpuBackend::binary not implemented yet");
}
void CpuBackend::where(const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  throw Error("cpu: void CpuBackend::where not implemented yet");
}
}  // namespace rw
