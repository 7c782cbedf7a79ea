#pragma once
// Activation functions as modules (torch.nn.ReLU, GELU, SiLU) and the Activation choice that
// FeedForward takes.
#include <string>

#include "core/ops/elementwise.h"
#include "core/tensor.h"
#include "nn/module.h"

namespace rw::nn {

enum class Activation {
  relu,
  gelu,       // x * Phi(x), exact (erf), PyTorch's default GELU
  gelu_tanh,  // the tanh approximation of GELU (BERT, GPT-2)
  silu,       // x * sigmoid(x), a.k.a. swish
  // Gated: silu(x W1^T) * (x W3^T) (Shazeer 2020, "GLU Variants Improve Transformer"). Only a
  // FeedForward can apply it (it needs the second projection W3); activate() rejects it.
  swiglu,
};

// "relu", "gelu", "gelu_tanh", "silu", "swiglu".
std::string to_string(Activation activation);

// The elementwise activations (every one but swiglu).
Tensor activate(const Tensor& x, Activation activation);
// x * sigmoid(x).
Tensor silu(const Tensor& x);

class ReLU : public Module {
 public:
  std::string type_name() const override { return "ReLU"; }
  Tensor forward(const Tensor& x) override;
};

class GELU : public Module {
 public:
  explicit GELU(GeluApprox approximate = GeluApprox::none) : approximate_(approximate) {}
  std::string type_name() const override { return "GELU"; }
  Tensor forward(const Tensor& x) override;
  GeluApprox approximate() const { return approximate_; }

 private:
  GeluApprox approximate_;
};

class SiLU : public Module {
 public:
  std::string type_name() const override { return "SiLU"; }
  Tensor forward(const Tensor& x) override;
};

}  // namespace rw::nn
