#pragma once
// AxialPositionalEmbedding (Reformer; trax's AxialPositionalEncoding): positions are laid out on a
// grid axial_shape = {a1, ..., an} in row-major order (the last axis varies fastest), position p
// having grid coordinates (i1, ..., in); each axis k has a trained table weight_k [a_k, d_k] and
// the embedding of p combines the rows weight_k[i_k]:
// - concat (the default, as trax and the Reformer paper): [weight_1[i1], ..., weight_n[in]], the
//   axis_dims d_k summing to d;
// - sum (lucidrains' default when no axis dims are given): weight_1[i1] + ... + weight_n[in], every
//   d_k = d.
// Parameters: a1 * d1 + ... + an * dn numbers instead of (a1 * ... * an) * d.
//
// Any length L <= a1 * ... * an works: the first L positions of the flattened grid are used, so the
// sequence length is not locked to the grid (a complaint about the public implementations).
#include <cstdint>
#include <vector>

#include "core/generator_scope.h"
#include "core/philox.h"
#include "core/tensor.h"
#include "nn/module.h"

namespace rw::nn {

enum class AxialCombine { concat, sum };

struct AxialPositionalEmbeddingOptions {
  AxialCombine combine = AxialCombine::concat;
  // concat only: d_k per axis, summing to d; empty = d split as evenly as possible (the first
  // d % n axes one wider).
  std::vector<int64_t> axis_dims{};
};

class AxialPositionalEmbedding : public Module {
 public:
  // Every weight_k ~ N(0, 1) (as trax and lucidrains).
  AxialPositionalEmbedding(std::vector<int64_t> axial_shape, int64_t d,
                           AxialPositionalEmbeddingOptions options = {},
                           Generator& generator = current_generator());

  std::string type_name() const override { return "AxialPositionalEmbedding"; }

  // Positions start .. start + length - 1 of the flattened grid: [length, d].
  Tensor embed(int64_t length, int64_t start = 0) const;
  // x [..., L, d] + embed(L, start).
  Tensor forward(const Tensor& x) override { return forward(x, 0); }
  Tensor forward(const Tensor& x, int64_t start);

  const std::vector<int64_t>& axial_shape() const { return axial_shape_; }
  const std::vector<int64_t>& axis_dims() const { return axis_dims_; }
  AxialCombine combine() const { return combine_; }
  int64_t dim() const { return d_; }
  int64_t max_len() const { return max_len_; }  // a1 * ... * an

  // The table of axis k, [a_k, d_k]; its state_dict key is "weight_<k>". Assigning a tensor of
  // the same shape replaces the parameter (as assigning a PyTorch module attribute).
  Tensor& weight(int64_t axis);

 private:
  std::vector<int64_t> axial_shape_, axis_dims_;
  AxialCombine combine_;
  int64_t d_, max_len_;
  std::vector<Tensor> weights_;  // sized once: the registry points at its elements
};

}  // namespace rw::nn
