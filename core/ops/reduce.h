#pragma once
// Reductions over any set of dims (empty = all dims), with keepdim.
#include <optional>
#include <vector>

#include "core/tensor.h"

namespace rw {

Tensor sum(const Tensor& x, std::vector<int64_t> dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, std::vector<int64_t> dims = {}, bool keepdim = false);
// max/min: the gradient is split evenly between tied extremes.
Tensor max(const Tensor& x, std::vector<int64_t> dims = {}, bool keepdim = false);
Tensor min(const Tensor& x, std::vector<int64_t> dims = {}, bool keepdim = false);
Tensor prod(const Tensor& x, std::vector<int64_t> dims = {}, bool keepdim = false);
Tensor logsumexp(const Tensor& x, std::vector<int64_t> dims = {}, bool keepdim = false);
// Variance with Bessel's correction by default (correction = 1), as PyTorch.
Tensor var(const Tensor& x, std::vector<int64_t> dims = {}, bool keepdim = false,
           int64_t correction = 1);
// Index (i64) of the first extreme along dim; no dim = over the flattened tensor.
Tensor argmax(const Tensor& x, std::optional<int64_t> dim = std::nullopt, bool keepdim = false);
Tensor argmin(const Tensor& x, std::optional<int64_t> dim = std::nullopt, bool keepdim = false);
// Inclusive prefix sum along dim.
Tensor cumsum(const Tensor& x, int64_t dim);
// Sums a broadcast gradient back to `shape` (the inverse of broadcasting): used by backward rules.
Tensor sum_to(const Tensor& x, const Shape& shape);

}  // namespace rw
