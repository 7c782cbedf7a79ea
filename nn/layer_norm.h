#pragma once
// LayerNorm over the last dim, as torch.nn.LayerNorm(dim): y = (x - mean) / sqrt(var + eps) *
// weight
// + bias, with the biased variance. x [..., dim] -> [..., dim].
#include <cstdint>
#include <string>

#include "core/tensor.h"
#include "nn/module.h"

namespace rw::nn {

class LayerNorm : public Module {
 public:
  // With elementwise_affine, weight = 1 and bias = 0 (PyTorch's init; nothing random is drawn).
  explicit LayerNorm(int64_t dim, double eps = 1e-5, bool elementwise_affine = true);

  std::string type_name() const override { return "LayerNorm"; }
  Tensor forward(const Tensor& x) override;

  int64_t dim() const { return dim_; }
  double eps() const { return eps_; }

  Tensor weight;  // [dim]; undefined (and not registered) without elementwise_affine
  Tensor bias;    // [dim]; likewise

 private:
  int64_t dim_;
  double eps_;
};

}  // namespace rw::nn
