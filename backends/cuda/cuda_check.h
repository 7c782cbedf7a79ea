#pragma once
// Error checks for CUDA runtime and cuBLAS calls: a failure becomes an rw::Error naming the call,
// the error and where it happened (out-of-memory becomes rw::OutOfMemoryError). Usable from .cu
// files too: the message is built in cuda_check.cpp, not with fmt in the header.
#include <cublas_v2.h>
#include <cuda_runtime.h>

namespace rw::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t error, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* call, const char* file,
                                     int line);

}  // namespace rw::cuda

#define RW_CUDA_CHECK(call)                                                    \
  do {                                                                         \
    cudaError_t rw_cuda_error_ = (call);                                       \
    if (rw_cuda_error_ != cudaSuccess) [[unlikely]] {                          \
      ::rw::cuda::throw_cuda_error(rw_cuda_error_, #call, __FILE__, __LINE__); \
    }                                                                          \
  } while (0)

#define RW_CUBLAS_CHECK(call)                                                       \
  do {                                                                              \
    cublasStatus_t rw_cublas_status_ = (call);                                      \
    if (rw_cublas_status_ != CUBLAS_STATUS_SUCCESS) [[unlikely]] {                  \
      ::rw::cuda::throw_cublas_error(rw_cublas_status_, #call, __FILE__, __LINE__); \
    }                                                                               \
  } while (0)

// After a kernel launch: reports launch-configuration errors at once (asynchronous faults surface
// at the next synchronising call, which is checked too).
#define RW_CUDA_CHECK_LAUNCH() RW_CUDA_CHECK(cudaGetLastError())
