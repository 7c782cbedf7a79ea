#pragma once
// Dropout, as torch.nn.Dropout: in training, zeroes each element with probability p and scales the
// rest by 1/(1-p); in eval mode (or with p = 0) the identity.
//
// The mask is a pure function of a PhiloxState key (rw::dropout), so it can be regenerated:
// forward(x) draws the key from rw::current_generator() (the reversible API replays it by
// installing the same generator), and forward(x, key) takes it explicitly.
#include <cstdint>
#include <string>

#include "core/philox.h"
#include "core/tensor.h"
#include "nn/module.h"

namespace rw::nn {

class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5);

  std::string type_name() const override { return "Dropout"; }
  // In training with p > 0: draws current_generator().next(x.numel()) and applies the mask.
  Tensor forward(const Tensor& x) override;
  // The mask of `key` (in training with p > 0; the identity otherwise, key unused).
  Tensor forward(const Tensor& x, PhiloxState key);

  double p() const { return p_; }

 private:
  double p_;
};

// Dropout of one slice of a larger tensor, consistent with dropping out the whole: when `part` is
// full.narrow(dim, start, part.size(dim)) of a tensor `full` of shape full_shape, the result equals
// rw::dropout(full, p, key).narrow(dim, start, part.size(dim)) bit for bit. Chunked layers use it
// to drop, chunk by chunk, exactly what the unchunked layer drops. Differentiable in `part`.
Tensor dropout_slice(const Tensor& part, double p, PhiloxState key, const Shape& full_shape,
                     int64_t dim, int64_t start);

}  // namespace rw::nn
