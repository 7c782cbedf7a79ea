#include "nn/layer_norm.h"

#include "core/ops.h"

namespace rw::nn {

LayerNorm::LayerNorm(int64_t dim, double eps, bool elementwise_affine) : dim_(dim), eps_(eps) {
  RW_CHECK(dim > 0, "LayerNorm: dim must be > 0, got {}", dim);
  RW_CHECK(eps >= 0, "LayerNorm: eps must be >= 0, got {}", eps);
  if (elementwise_affine) {
    weight = ones({dim});
    bias = zeros({dim});
    register_parameter("weight", weight);
    register_parameter("bias", bias);
  }
}

Tensor LayerNorm::forward(const Tensor& x) {
  RW_CHECK(x.defined(), "LayerNorm: the input is undefined");
  RW_CHECK(x.dim() >= 1 && x.size(-1) == dim_, "LayerNorm: expected input [..., {}], got shape {}",
           dim_, x.shape());
  return layer_norm(x, weight, bias, eps_);
}

}  // namespace rw::nn
