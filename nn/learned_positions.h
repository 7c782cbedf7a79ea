#pragma once
// LearnedPositionalEmbedding: one trained vector per position (GPT-style absolute positions).
#include <cstdint>

#include "core/generator_scope.h"
#include "core/philox.h"
#include "core/tensor.h"
#include "nn/module.h"

namespace rw::nn {

class LearnedPositionalEmbedding : public Module {
 public:
  // weight [max_len, d] ~ N(0, 1), nn.Embedding's default.
  LearnedPositionalEmbedding(int64_t max_len, int64_t d,
                             Generator& generator = current_generator());

  std::string type_name() const override { return "LearnedPositionalEmbedding"; }

  // The embeddings of positions start .. start + length - 1: [length, d] (a view of weight).
  Tensor embed(int64_t length, int64_t start = 0) const;
  // x [..., L, d] + embed(L, start).
  Tensor forward(const Tensor& x) override { return forward(x, 0); }
  Tensor forward(const Tensor& x, int64_t start);

  int64_t max_len() const { return max_len_; }
  int64_t dim() const { return d_; }

  Tensor weight;  // [max_len, d]; the state_dict key is "weight"

 private:
  int64_t max_len_, d_;
};

}  // namespace rw::nn
