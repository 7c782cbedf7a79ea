#include "core/ops/op_utils.h"

#include <cmath>

#include "autograd/tape.h"
#include "core/ops/reduce.h"

namespace rw::detail {

void check_defined(std::string_view op, const Tensor& t, std::string_view what) {
  RW_CHECK(t.defined(), "{}: {} is an undefined tensor", op, what);
}

void check_same_device(std::string_view op, const Tensor& a, const Tensor& b) {
  RW_CHECK(a.device() == b.device(),
           "{}: tensors are on different devices ({} and {}); move one with .to(device)", op,
           a.device(), b.device());
}

void check_floating(std::string_view op, const Tensor& t) {
  RW_CHECK(is_floating(t.dtype()), "{}: expected a floating tensor, got dtype {} (shape {})", op,
           t.dtype(), t.shape());
}

void check_dtype(std::string_view op, const Tensor& t, DType expected, std::string_view what) {
  RW_CHECK(t.dtype() == expected, "{}: {} must have dtype {}, got {} (shape {})", op, what,
           expected, t.dtype(), t.shape());
}

Tensor index_as_i64(std::string_view op, const Tensor& index) {
  check_defined(op, index, "index");
  RW_CHECK(index.dtype() == DType::i64 || index.dtype() == DType::i32,
           "{}: indices must be i64 or i32, got {} (shape {})", op, index.dtype(), index.shape());
  return index.to(DType::i64).contiguous();
}

void check_index_range(std::string_view op, const Tensor& index, int64_t extent) {
  if (index.numel() == 0) return;
  NoGradGuard no_grad;
  auto lo = static_cast<int64_t>(min(index).item<int64_t>());
  auto hi = static_cast<int64_t>(max(index).item<int64_t>());
  RW_CHECK(lo >= 0 && hi < extent, "{}: index {} out of range for extent {}", op, lo < 0 ? lo : hi,
           extent);
}

void check_inplace(std::string_view op, const Tensor& self) {
  RW_CHECK(!(grad_mode_enabled() && self.requires_grad()),
           "{}: in-place update of a tensor that requires grad (shape {}) would corrupt autograd; "
           "run it under rw::NoGradGuard or use the out-of-place op",
           op, self.shape());
}

DType scalar_result_dtype(const Tensor& x, double scalar) {
  if (is_floating(x.dtype())) return x.dtype();
  return std::nearbyint(scalar) == scalar ? x.dtype() : DType::f32;
}

}  // namespace rw::detail
