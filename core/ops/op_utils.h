#pragma once
// Shared argument checks and helpers of the op layer (not part of the public API).
#include <string_view>

#include "backends/backend.h"
#include "core/tensor.h"

namespace rw::detail {

inline Backend& backend_of(const Tensor& t) { return backend_for(t.device()); }

void check_defined(std::string_view op, const Tensor& t, std::string_view what = "input");
void check_same_device(std::string_view op, const Tensor& a, const Tensor& b);
void check_floating(std::string_view op, const Tensor& t);
void check_dtype(std::string_view op, const Tensor& t, DType expected, std::string_view what);
// i64 view of an index tensor (i32 widened); error for other dtypes.
Tensor index_as_i64(std::string_view op, const Tensor& index);
// Error unless every index lies in [0, extent).
void check_index_range(std::string_view op, const Tensor& index, int64_t extent);
// Refuses an in-place write into a tensor that takes part in autograd while grad mode is on.
void check_inplace(std::string_view op, const Tensor& self);
// The dtype of x op scalar: x's dtype unless x is integral and the scalar is not an integer.
DType scalar_result_dtype(const Tensor& x, double scalar);

}  // namespace rw::detail
