#pragma once
// Element types. f32 is the default; f64 is for gradient checks; bf16/f16 are GPU fast paths
// (on the CPU they are storage types: ops compute in f32 and round).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <fmt/format.h>

#include "core/dtype_id.h"

namespace rw {

std::size_t dtype_size(DType t);
std::string_view dtype_name(DType t);
bool is_floating(DType t);
bool is_integral(DType t);  // includes boolean
// Type promotion for binary ops, like PyTorch's for tensor-tensor operands: floating beats
// integral, wider beats narrower, bf16 + f16 -> f32.
DType promote_types(DType a, DType b);
// Parses "f32", "float32", ... ; throws rw::Error on an unknown name.
DType dtype_from_name(std::string_view name);

// Maps a C++ type to its DType (used by from_vector / item<T>).
template <typename T>
struct dtype_of;
template <>
struct dtype_of<float> {
  static constexpr DType value = DType::f32;
};
template <>
struct dtype_of<double> {
  static constexpr DType value = DType::f64;
};
template <>
struct dtype_of<int32_t> {
  static constexpr DType value = DType::i32;
};
template <>
struct dtype_of<int64_t> {
  static constexpr DType value = DType::i64;
};
template <>
struct dtype_of<uint8_t> {
  static constexpr DType value = DType::u8;
};
template <>
struct dtype_of<bool> {
  static constexpr DType value = DType::boolean;
};
template <typename T>
inline constexpr DType dtype_of_v = dtype_of<T>::value;

}  // namespace rw

template <>
struct fmt::formatter<rw::DType> : fmt::formatter<std::string_view> {
  auto format(rw::DType t, format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(rw::dtype_name(t), ctx);
  }
};
