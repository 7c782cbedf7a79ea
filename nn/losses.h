#pragma once
// Losses beyond the ops in core/ops/nn_ops.h (rw::cross_entropy), and unit conversions for
// reporting them.
#include <cstdint>

#include "core/tensor.h"

namespace rw::nn {

// The language-model loss mean(cross_entropy(linear(hidden, weight, bias), targets)) over the
// targets that are not ignore_index, computed chunk_size positions at a time so that the
// [..., L, V] logits never exist: at most one chunk's [..., chunk_size, V] logits are live, in
// forward and in backward (which recomputes each chunk's logits on a local tape). This is what
// makes a large vocabulary affordable at long sequence lengths.
//
//   hidden [..., L, d], weight [V, d] (the output projection, [out, in] as rw::linear), bias [V]
//   or undefined, targets i64 (or i32) [..., L] in [0, V) or ignore_index. Returns a 0-dim tensor
//   of the logits' dtype; 0 when every target is ignored (as rw::cross_entropy).
// Equal to rw::cross_entropy(rw::linear(hidden, weight, bias), targets, ignore_index) up to the
// order of the sums; gradients flow to hidden, weight and bias.
Tensor chunked_cross_entropy(const Tensor& hidden, const Tensor& weight, const Tensor& bias,
                             const Tensor& targets, int64_t chunk_size,
                             int64_t ignore_index = -100);

// A mean cross-entropy in nats per token as bits per byte, for byte-level tokens (one token per
// byte): nats / ln 2. The unit in which character-level LM results (enwik8) are reported.
double bits_per_byte(double nats_per_token);
// The same conversion, nats / ln 2, named for image models (one token per pixel channel value):
// bits per dim (imagenet64 results in the Reformer paper).
double bits_per_dim(double nats_per_dim);

}  // namespace rw::nn
