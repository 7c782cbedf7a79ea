#pragma once
// The --precision flag of rewind-train and rewind-bench model: f32, or mixed precision with the
// forward and backward under rw::AutocastScope (core/autocast.h) in bf16 or f16, f32 master
// weights, and for f16 dynamic loss scaling (nn/grad_scaler.h).
#include <string>

#include "core/dtype.h"

namespace rw::tools {

// The autocast compute dtype of a --precision value: f32 (autocast off), bf16 or f16; an rw::Error
// naming the flag and the value otherwise.
DType precision_dtype(const std::string& precision);

}  // namespace rw::tools
