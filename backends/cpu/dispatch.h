#pragma once
// Runs a generic lambda with `scalar_t` bound to the C++ type of a DType.
#include "core/dtype.h"
#include "core/error.h"
#include "core/half.h"

// Every dtype (bool is stored as uint8_t-sized bool).
#define RW_DISPATCH_ALL(DTYPE, NAME, ...)                                      \
  [&] {                                                                        \
    switch (DTYPE) {                                                           \
      case ::rw::DType::f32: {                                                 \
        using scalar_t = float;                                                \
        return __VA_ARGS__();                                                  \
      }                                                                        \
      case ::rw::DType::f64: {                                                 \
        using scalar_t = double;                                               \
        return __VA_ARGS__();                                                  \
      }                                                                        \
      case ::rw::DType::bf16: {                                                \
        using scalar_t = ::rw::bf16;                                           \
        return __VA_ARGS__();                                                  \
      }                                                                        \
      case ::rw::DType::f16: {                                                 \
        using scalar_t = ::rw::f16;                                            \
        return __VA_ARGS__();                                                  \
      }                                                                        \
      case ::rw::DType::i32: {                                                 \
        using scalar_t = int32_t;                                              \
        return __VA_ARGS__();                                                  \
      }                                                                        \
      case ::rw::DType::i64: {                                                 \
        using scalar_t = int64_t;                                              \
        return __VA_ARGS__();                                                  \
      }                                                                        \
      case ::rw::DType::u8: {                                                  \
        using scalar_t = uint8_t;                                              \
        return __VA_ARGS__();                                                  \
      }                                                                        \
      case ::rw::DType::boolean: {                                             \
        using scalar_t = bool;                                                 \
        return __VA_ARGS__();                                                  \
      }                                                                        \
    }                                                                          \
    throw ::rw::Error(::fmt::format("{}: unsupported dtype {}", NAME, DTYPE)); \
  }()

// f32 and f64 only: compute kernels. (bf16/f16 on the CPU compute in f32 via the op layer.)
#define RW_DISPATCH_FLOAT(DTYPE, NAME, ...)                                           \
  [&] {                                                                               \
    switch (DTYPE) {                                                                  \
      case ::rw::DType::f32: {                                                        \
        using scalar_t = float;                                                       \
        return __VA_ARGS__();                                                         \
      }                                                                               \
      case ::rw::DType::f64: {                                                        \
        using scalar_t = double;                                                      \
        return __VA_ARGS__();                                                         \
      }                                                                               \
      default:                                                                        \
        break;                                                                        \
    }                                                                                 \
    throw ::rw::Error(::fmt::format("{}: unsupported dtype {} on cpu", NAME, DTYPE)); \
  }()

// Every numeric dtype the CPU computes in directly (not bf16/f16).
#define RW_DISPATCH_COMPUTE(DTYPE, NAME, ...)                                         \
  [&] {                                                                               \
    switch (DTYPE) {                                                                  \
      case ::rw::DType::f32: {                                                        \
        using scalar_t = float;                                                       \
        return __VA_ARGS__();                                                         \
      }                                                                               \
      case ::rw::DType::f64: {                                                        \
        using scalar_t = double;                                                      \
        return __VA_ARGS__();                                                         \
      }                                                                               \
      case ::rw::DType::i32: {                                                        \
        using scalar_t = int32_t;                                                     \
        return __VA_ARGS__();                                                         \
      }                                                                               \
      case ::rw::DType::i64: {                                                        \
        using scalar_t = int64_t;                                                     \
        return __VA_ARGS__();                                                         \
      }                                                                               \
      case ::rw::DType::u8: {                                                         \
        using scalar_t = uint8_t;                                                     \
        return __VA_ARGS__();                                                         \
      }                                                                               \
      case ::rw::DType::boolean: {                                                    \
        using scalar_t = bool;                                                        \
        return __VA_ARGS__();                                                         \
      }                                                                               \
      default:                                                                        \
        break;                                                                        \
    }                                                                                 \
    throw ::rw::Error(::fmt::format("{}: unsupported dtype {} on cpu", NAME, DTYPE)); \
  }()
