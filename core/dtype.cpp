#include "core/dtype.h"

#include "core/error.h"

namespace rw {

std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::f64:
    case DType::i64:
      return 8;
    case DType::f32:
    case DType::i32:
      return 4;
    case DType::bf16:
    case DType::f16:
      return 2;
    case DType::u8:
    case DType::boolean:
      return 1;
  }
  return 0;
}

std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::f32:
      return "f32";
    case DType::f64:
      return "f64";
    case DType::bf16:
      return "bf16";
    case DType::f16:
      return "f16";
    case DType::i32:
      return "i32";
    case DType::i64:
      return "i64";
    case DType::u8:
      return "u8";
    case DType::boolean:
      return "bool";
  }
  return "?";
}

bool is_floating(DType t) {
  return t == DType::f32 || t == DType::f64 || t == DType::bf16 || t == DType::f16;
}
bool is_integral(DType t) { return !is_floating(t); }

namespace {
// Rank within a kind: higher wins.
int rank(DType t) {
  switch (t) {
    case DType::boolean:
      return 0;
    case DType::u8:
      return 1;
    case DType::i32:
      return 2;
    case DType::i64:
      return 3;
    case DType::f16:
    case DType::bf16:
      return 4;
    case DType::f32:
      return 5;
    case DType::f64:
      return 6;
  }
  return 0;
}
}  // namespace

DType promote_types(DType a, DType b) {
  if (a == b) return a;
  if ((a == DType::bf16 && b == DType::f16) || (a == DType::f16 && b == DType::bf16)) {
    return DType::f32;
  }
  return rank(a) >= rank(b) ? a : b;
}

DType dtype_from_name(std::string_view name) {
  struct Alias {
    std::string_view name;
    DType t;
  };
  static constexpr Alias kAliases[] = {
      {"f32", DType::f32},     {"float32", DType::f32},   {"float", DType::f32},
      {"f64", DType::f64},     {"float64", DType::f64},   {"double", DType::f64},
      {"bf16", DType::bf16},   {"bfloat16", DType::bf16}, {"f16", DType::f16},
      {"float16", DType::f16}, {"half", DType::f16},      {"i32", DType::i32},
      {"int32", DType::i32},   {"i64", DType::i64},       {"int64", DType::i64},
      {"u8", DType::u8},       {"uint8", DType::u8},      {"bool", DType::boolean},
  };
  for (const auto& a : kAliases) {
    if (a.name == name) return a.t;
  }
  throw Error(fmt::format(
      "unknown dtype '{}' (expected one of f32, f64, bf16, f16, i32, i64, u8, bool)", name));
}

}  // namespace rw
