#include "nn/activations.h"

#include "core/ops.h"

namespace rw::nn {

std::string to_string(Activation activation) {
  switch (activation) {
    case Activation::relu:
      return "relu";
    case Activation::gelu:
      return "gelu";
    case Activation::gelu_tanh:
      return "gelu_tanh";
    case Activation::silu:
      return "silu";
    case Activation::swiglu:
      return "swiglu";
  }
  return "unknown";
}

Tensor silu(const Tensor& x) { return mul(x, sigmoid(x)); }

Tensor activate(const Tensor& x, Activation activation) {
  switch (activation) {
    case Activation::relu:
      return relu(x);
    case Activation::gelu:
      return gelu(x, GeluApprox::none);
    case Activation::gelu_tanh:
      return gelu(x, GeluApprox::tanh);
    case Activation::silu:
      return silu(x);
    case Activation::swiglu:
      break;
  }
  throw Error(fmt::format(
      "activate: {} is a gated activation that needs a second projection; use a FeedForward "
      "with activation swiglu",
      to_string(activation)));
}

Tensor ReLU::forward(const Tensor& x) { return relu(x); }
Tensor GELU::forward(const Tensor& x) { return gelu(x, approximate_); }
Tensor SiLU::forward(const Tensor& x) { return silu(x); }

}  // namespace rw::nn
