#pragma once
// Numerically stable building blocks of neural networks.
#include <cstdint>

#include "core/philox.h"
#include "core/tensor.h"

namespace rw {

Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);
// Normalises over the last dim; weight and bias [D] are optional (undefined tensors).
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);

enum class Reduction { none, mean, sum };
// logits [..., C], targets i64 [...] in [0, C) or ignore_index. mean averages over the targets
// that are not ignored (0 when all are ignored, like a sum over nothing).
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100,
                     Reduction reduction = Reduction::mean);
// Zeroes each element with probability p and scales the rest by 1/(1-p); the mask is a pure
// function of `state`, so a recomputation with the same state drops the same elements.
Tensor dropout(const Tensor& x, double p, PhiloxState state);

}  // namespace rw
