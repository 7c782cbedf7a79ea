#pragma once
// TensorArg: what a CUDA kernel needs of a tensor (pointer, dtype, sizes, strides), as a plain
// struct passed by value to kernels. The host side (cuda_*.cpp, compiled by the C++ compiler)
// builds it from a Tensor; the kernels (*.cu, compiled by nvcc) never include tensor.h, whose fmt
// format strings nvcc cannot compile.
#include <cstdint>

#include "core/dtype_id.h"

namespace rw::cuda {

// Ranks above this are collapsed (adjacent dims that are contiguous with each other merge) before
// a launch; the host side raises an error naming the op if a tensor still has more.
inline constexpr int kMaxDims = 10;

struct TensorArg {
  void* data = nullptr;  // at the view's first element
  DType dtype = DType::f32;
  int rank = 0;
  int64_t numel = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};  // in elements
  bool contiguous = false;         // row-major with no gaps: element i is data[i]
};

}  // namespace rw::cuda
