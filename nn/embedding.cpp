#include "nn/embedding.h"

#include "core/ops.h"
#include "nn/init.h"

namespace rw::nn {

Embedding::Embedding(int64_t num_embeddings, int64_t embedding_dim, Generator& generator)
    : num_embeddings_(num_embeddings), embedding_dim_(embedding_dim) {
  RW_CHECK(num_embeddings > 0 && embedding_dim > 0,
           "Embedding: num_embeddings and embedding_dim must be > 0, got {} and {}", num_embeddings,
           embedding_dim);
  weight = empty({num_embeddings, embedding_dim});
  init::normal_(weight, 0, 1, generator);
  register_parameter("weight", weight);
}

Tensor Embedding::forward(const Tensor& indices) {
  RW_CHECK(indices.defined(), "Embedding: the indices are undefined");
  RW_CHECK(indices.dtype() == DType::i64 || indices.dtype() == DType::i32,
           "Embedding: indices must be i64 or i32, got {}", indices.dtype());
  return embedding(weight, indices);
}

}  // namespace rw::nn
