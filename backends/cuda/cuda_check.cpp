// The error paths of RW_CUDA_CHECK / RW_CUBLAS_CHECK (cuda_check.h) and of the dtype dispatch in
// kernel_utils.cuh: the messages are built here, with fmt, so the headers stay nvcc-safe.
#include "backends/cuda/cuda_check.h"

#include "backends/cuda/kernel_utils.cuh"
#include "core/dtype.h"
#include "core/error.h"

namespace rw::cuda {

void throw_cuda_error(cudaError_t error, const char* call, const char* file, int line) {
  // Reset the runtime's "last error" so that a later RW_CUDA_CHECK_LAUNCH() does not report this
  // failure a second time (sticky errors, such as a kernel fault, stay: the context is unusable).
  (void)cudaGetLastError();
  std::string message = fmt::format("CUDA error: {} failed: {} ({}) at {}:{}", call,
                                    cudaGetErrorString(error), cudaGetErrorName(error), file, line);
  if (error == cudaErrorMemoryAllocation) throw OutOfMemoryError(message);
  throw Error(message);
}

void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  throw Error(fmt::format("cuBLAS error: {} failed: {} ({}) at {}:{}", call,
                          cublasGetStatusName(status), cublasGetStatusString(status), file, line));
}

void unsupported_dtype(const char* function, DType dtype) {
  throw Error(fmt::format("cuda {}: dtype {} is not supported", function, dtype));
}

}  // namespace rw::cuda
