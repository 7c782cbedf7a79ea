#pragma once
// Ops that assemble or rearrange tensors (all differentiable where the inputs are floating).
#include <vector>

#include "core/tensor.h"

namespace rw {

Tensor concat(const std::vector<Tensor>& tensors, int64_t dim = 0);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);
// Views of consecutive pieces of split_size along dim (the last may be smaller).
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim = 0);
// `chunks` views of near-equal size along dim (like torch.chunk).
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim = 0);
// Constant padding. pads lists (before, after) pairs starting from the LAST dim, as
// torch.nn.functional.pad: {left, right} pads the last dim, {l, r, top, bottom} the last two.
// Negative pads crop.
Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, double value = 0);
// Shifts elements along dim by `shift` with wrap-around (torch.roll).
Tensor roll(const Tensor& x, int64_t shift, int64_t dim);
// Lower/upper triangle of the last two dims (diagonal offset k); the rest zeroed.
Tensor tril(const Tensor& x, int64_t k = 0);
Tensor triu(const Tensor& x, int64_t k = 0);
// A bool [rows, cols] mask that is true on and below (tril) / above (triu) diagonal k.
Tensor tril_mask(int64_t rows, int64_t cols, int64_t k = 0, Device device = Device::cpu());
Tensor triu_mask(int64_t rows, int64_t cols, int64_t k = 0, Device device = Device::cpu());

}  // namespace rw
