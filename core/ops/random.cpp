// Random tensors. The PhiloxState forms are pure functions of (shape, parameters, state); the
// Generator forms validate first (so a rejected call does not advance the generator), then draw
// gen.next(numel) and call the PhiloxState form.
#include "core/ops/random.h"

#include <cmath>
#include <limits>

#include "core/ops/op_utils.h"

namespace rw {
namespace {

int64_t checked_numel(const char* op, const Shape& shape) {
  for (int64_t extent : shape) {
    RW_CHECK(extent >= 0, "{}: negative extent in shape {}", op, shape);
  }
  return shape_numel(shape);
}

void check_floating_dtype(const char* op, DType dtype) {
  RW_CHECK(is_floating(dtype), "{}: dtype must be floating (f32, f64, bf16, f16), got {}", op,
           dtype);
}

void check_uniform(const char* op, double low, double high, const TensorOptions& options) {
  check_floating_dtype(op, options.dtype);
  RW_CHECK(std::isfinite(low) && std::isfinite(high) && low < high,
           "{}: need finite low < high, got low {} and high {}", op, low, high);
}

void check_normal(const char* op, double mean, double std, const TensorOptions& options) {
  check_floating_dtype(op, options.dtype);
  RW_CHECK(std::isfinite(mean) && std::isfinite(std) && std >= 0,
           "{}: need a finite mean and a finite std >= 0, got mean {} and std {}", op, mean, std);
}

void check_bernoulli(double p) {
  RW_CHECK(p >= 0 && p <= 1, "bernoulli: probability p must lie in [0, 1], got {}", p);
}

// [low, high) must be non-empty and representable in the output dtype.
void check_randint(int64_t low, int64_t high, const TensorOptions& options) {
  RW_CHECK(low < high, "randint: need low < high, got low {} and high {}", low, high);
  int64_t lo = std::numeric_limits<int64_t>::min(), hi = std::numeric_limits<int64_t>::max();
  switch (options.dtype) {
    case DType::boolean:
      lo = 0, hi = 1;
      break;
    case DType::u8:
      lo = 0, hi = 255;
      break;
    case DType::i32:
      lo = std::numeric_limits<int32_t>::min(), hi = std::numeric_limits<int32_t>::max();
      break;
    default:
      break;
  }
  RW_CHECK(low >= lo && high - 1 <= hi, "randint: range [{}, {}) does not fit dtype {}", low, high,
           options.dtype);
}

Tensor generate(const char* op, const Shape& shape, RandomKind kind, double a, double b,
                PhiloxState state, TensorOptions options) {
  checked_numel(op, shape);
  const bool requires_grad = options.requires_grad;
  options.requires_grad = false;
  Tensor out = empty(shape, options);
  if (out.numel() > 0) detail::backend_of(out).random(kind, state, a, b, out);
  if (requires_grad) out.requires_grad_();
  return out;
}

}  // namespace

Tensor rand(Shape shape, PhiloxState state, TensorOptions options) {
  check_uniform("rand", 0.0, 1.0, options);
  return generate("rand", shape, RandomKind::uniform, 0.0, 1.0, state, options);
}

Tensor randn(Shape shape, PhiloxState state, TensorOptions options) {
  check_normal("randn", 0.0, 1.0, options);
  return generate("randn", shape, RandomKind::normal, 0.0, 1.0, state, options);
}

Tensor uniform(Shape shape, double low, double high, PhiloxState state, TensorOptions options) {
  check_uniform("uniform", low, high, options);
  return generate("uniform", shape, RandomKind::uniform, low, high, state, options);
}

Tensor normal(Shape shape, double mean, double std, PhiloxState state, TensorOptions options) {
  check_normal("normal", mean, std, options);
  return generate("normal", shape, RandomKind::normal, mean, std, state, options);
}

Tensor bernoulli(Shape shape, double p, PhiloxState state, TensorOptions options) {
  check_bernoulli(p);
  return generate("bernoulli", shape, RandomKind::bernoulli, p, 0.0, state, options);
}

Tensor randint(int64_t low, int64_t high, Shape shape, PhiloxState state, TensorOptions options) {
  check_randint(low, high, options);
  return generate("randint", shape, RandomKind::randint, static_cast<double>(low),
                  static_cast<double>(high), state, options);
}

Tensor rand(Shape shape, Generator& gen, TensorOptions options) {
  check_uniform("rand", 0.0, 1.0, options);
  PhiloxState state = gen.next(checked_numel("rand", shape));
  return rand(std::move(shape), state, options);
}

Tensor randn(Shape shape, Generator& gen, TensorOptions options) {
  check_normal("randn", 0.0, 1.0, options);
  PhiloxState state = gen.next(checked_numel("randn", shape));
  return randn(std::move(shape), state, options);
}

Tensor uniform(Shape shape, double low, double high, Generator& gen, TensorOptions options) {
  check_uniform("uniform", low, high, options);
  PhiloxState state = gen.next(checked_numel("uniform", shape));
  return uniform(std::move(shape), low, high, state, options);
}

Tensor normal(Shape shape, double mean, double std, Generator& gen, TensorOptions options) {
  check_normal("normal", mean, std, options);
  PhiloxState state = gen.next(checked_numel("normal", shape));
  return normal(std::move(shape), mean, std, state, options);
}

Tensor bernoulli(Shape shape, double p, Generator& gen, TensorOptions options) {
  check_bernoulli(p);
  PhiloxState state = gen.next(checked_numel("bernoulli", shape));
  return bernoulli(std::move(shape), p, state, options);
}

Tensor randint(int64_t low, int64_t high, Shape shape, Generator& gen, TensorOptions options) {
  check_randint(low, high, options);
  PhiloxState state = gen.next(checked_numel("randint", shape));
  return randint(low, high, std::move(shape), state, options);
}

}  // namespace rw
