#pragma once
// Random tensors from the counter-based Philox stream. Each op comes in two forms: one draws the
// next state from a Generator (default: the thread's default_generator()), the other takes an
// explicit PhiloxState so the same tensor can be regenerated later.
#include "core/philox.h"
#include "core/tensor.h"

namespace rw {

Tensor rand(Shape shape, PhiloxState state, TensorOptions options = {});  // U[0, 1)
Tensor randn(Shape shape, PhiloxState state, TensorOptions options = {});
Tensor uniform(Shape shape, double low, double high, PhiloxState state, TensorOptions options = {});
Tensor normal(Shape shape, double mean, double std, PhiloxState state, TensorOptions options = {});
Tensor bernoulli(Shape shape, double p, PhiloxState state, TensorOptions options = {});
Tensor randint(int64_t low, int64_t high, Shape shape, PhiloxState state,
               TensorOptions options = {.dtype = DType::i64});

Tensor rand(Shape shape, Generator& gen = default_generator(), TensorOptions options = {});
Tensor randn(Shape shape, Generator& gen = default_generator(), TensorOptions options = {});
Tensor uniform(Shape shape, double low, double high, Generator& gen = default_generator(),
               TensorOptions options = {});
Tensor normal(Shape shape, double mean, double std, Generator& gen = default_generator(),
              TensorOptions options = {});
Tensor bernoulli(Shape shape, double p, Generator& gen = default_generator(),
                 TensorOptions options = {});
Tensor randint(int64_t low, int64_t high, Shape shape, Generator& gen = default_generator(),
               TensorOptions options = {.dtype = DType::i64});

}  // namespace rw
