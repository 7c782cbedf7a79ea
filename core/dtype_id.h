#pragma once
// The DType enumeration alone, without fmt: CUDA kernels (compiled by nvcc, which cannot parse
// fmt's headers) switch on it. Everything else about dtypes is in core/dtype.h.
#include <cstdint>

namespace rw {

enum class DType : uint8_t { f32, f64, bf16, f16, i32, i64, u8, boolean };

}  // namespace rw
