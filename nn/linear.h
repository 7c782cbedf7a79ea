#pragma once
// Linear: y = x W^T + b, as torch.nn.Linear. x [..., in_features] -> [..., out_features].
//
//   auto proj = std::make_shared<rw::nn::Linear>(512, 2048);        // with bias
//   auto head = std::make_shared<rw::nn::Linear>(512, 256, false);  // without
#include <cstdint>
#include <string>

#include "core/generator_scope.h"
#include "core/tensor.h"
#include "nn/module.h"

namespace rw::nn {

class Linear : public Module {
 public:
  // PyTorch's default initialisation: weight kaiming_uniform_(a = sqrt(5)), i.e.
  // U(-1/sqrt(in), 1/sqrt(in)), then bias U(-1/sqrt(in), 1/sqrt(in)), both drawn from `generator`
  // in that order. Parameters are f32 on the CPU; use to(dtype) / to(device) to change that.
  Linear(int64_t in_features, int64_t out_features, bool bias = true,
         Generator& generator = current_generator());

  std::string type_name() const override { return "Linear"; }
  Tensor forward(const Tensor& x) override;

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }

  Tensor weight;  // [out_features, in_features]
  Tensor bias;    // [out_features]; undefined (and not registered) without bias

 private:
  int64_t in_features_;
  int64_t out_features_;
};

}  // namespace rw::nn
