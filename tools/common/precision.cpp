#include "common/precision.h"

#include "core/error.h"

namespace rw::tools {

DType precision_dtype(const std::string& precision) {
  if (precision == "f32") return DType::f32;
  if (precision == "bf16") return DType::bf16;
  if (precision == "f16") return DType::f16;
  throw Error(fmt::format("--precision: unknown precision '{}' (f32, bf16 or f16)", precision));
}

}  // namespace rw::tools
