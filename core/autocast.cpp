#include "core/autocast.h"

#include "core/error.h"
#include "core/tensor.h"

namespace rw {
namespace {

thread_local DType t_autocast = DType::f32;

bool is_half(DType t) { return t == DType::bf16 || t == DType::f16; }

}  // namespace

DType autocast_dtype() { return t_autocast; }

bool autocast_enabled() { return t_autocast != DType::f32; }

AutocastScope::AutocastScope(DType compute) : previous_(t_autocast) {
  RW_CHECK(compute == DType::f32 || is_half(compute),
           "AutocastScope: the compute dtype must be bf16 or f16 (or f32 to turn autocast off), "
           "got {}",
           compute);
  t_autocast = compute;
}

AutocastScope::~AutocastScope() { t_autocast = previous_; }

namespace detail {

Tensor autocast_lower(const Tensor& x) {
  const DType to = t_autocast;
  if (to == DType::f32 || !x.defined()) return x;
  const DType from = x.dtype();
  return (from == DType::f32 || is_half(from)) && from != to ? x.to(to) : x;
}

Tensor autocast_upcast(const Tensor& x) {
  if (t_autocast == DType::f32 || !x.defined() || !is_half(x.dtype())) return x;
  return x.to(DType::f32);
}

}  // namespace detail
}  // namespace rw
