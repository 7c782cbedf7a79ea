#include "nn/linear.h"

#include <cmath>

#include "core/ops.h"
#include "nn/init.h"

namespace rw::nn {

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, Generator& generator)
    : in_features_(in_features), out_features_(out_features) {
  RW_CHECK(in_features >= 0 && out_features >= 0,
           "Linear: in_features and out_features must be >= 0, got {} and {}", in_features,
           out_features);
  weight = empty({out_features, in_features});
  init::kaiming_uniform_(weight, {.a = std::sqrt(5.0)}, generator);
  register_parameter("weight", weight);
  if (bias) {
    this->bias = empty({out_features});
    const double bound = in_features > 0 ? 1.0 / std::sqrt(static_cast<double>(in_features)) : 0;
    init::uniform_(this->bias, -bound, bound, generator);
    register_parameter("bias", this->bias);
  }
}

Tensor Linear::forward(const Tensor& x) {
  RW_CHECK(x.defined(), "Linear: the input is undefined");
  RW_CHECK(x.dim() >= 1 && x.size(-1) == in_features_,
           "Linear: expected input [..., {}] (in_features), got shape {}", in_features_, x.shape());
  return linear(x, weight, bias);
}

}  // namespace rw::nn
