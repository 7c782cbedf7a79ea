#pragma once
// SinusoidalPositionalEmbedding: the fixed positions of Vaswani et al., "Attention Is All You
// Need" (2017), Sec. 3.5, interleaved as in the paper:
//   PE[p, 2i] = sin(p / base^(2i / d)),  PE[p, 2i + 1] = cos(p / base^(2i / d)),  base = 10000.
// No parameters; any length.
#include <cstdint>

#include "core/tensor.h"
#include "nn/module.h"

namespace rw::nn {

class SinusoidalPositionalEmbedding : public Module {
 public:
  explicit SinusoidalPositionalEmbedding(int64_t d, double base = 10000);

  std::string type_name() const override { return "SinusoidalPositionalEmbedding"; }

  // Positions start .. start + length - 1: [length, d], computed in f64 and converted to `options`.
  Tensor embed(int64_t length, int64_t start = 0, TensorOptions options = {}) const;
  // x [..., L, d] + embed(L, start) in x's dtype and device.
  Tensor forward(const Tensor& x) override { return forward(x, 0); }
  Tensor forward(const Tensor& x, int64_t start);

  int64_t dim() const { return d_; }
  double base() const { return base_; }

 private:
  int64_t d_;
  double base_;
};

}  // namespace rw::nn
