#pragma once
// Embedding: a lookup table, as torch.nn.Embedding. Integer indices of any shape [...] ->
// [..., embedding_dim]; an index outside [0, num_embeddings) is an rw::Error.
#include <cstdint>
#include <string>

#include "core/generator_scope.h"
#include "core/tensor.h"
#include "nn/module.h"

namespace rw::nn {

class Embedding : public Module {
 public:
  // weight ~ N(0, 1), PyTorch's default, drawn from `generator`.
  Embedding(int64_t num_embeddings, int64_t embedding_dim,
            Generator& generator = current_generator());

  std::string type_name() const override { return "Embedding"; }
  Tensor forward(const Tensor& indices) override;

  int64_t num_embeddings() const { return num_embeddings_; }
  int64_t embedding_dim() const { return embedding_dim_; }

  Tensor weight;  // [num_embeddings, embedding_dim]

 private:
  int64_t num_embeddings_;
  int64_t embedding_dim_;
};

}  // namespace rw::nn
