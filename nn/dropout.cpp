#include "nn/dropout.h"

#include "autograd/tape.h"
#include "core/generator_scope.h"
#include "core/ops.h"

namespace rw::nn {

Dropout::Dropout(double p) : p_(p) {
  RW_CHECK(p >= 0 && p < 1, "Dropout: p must be in [0, 1), got {}", p);
}

Tensor Dropout::forward(const Tensor& x) {
  RW_CHECK(x.defined(), "Dropout: the input is undefined");
  if (!is_training() || p_ == 0) return x;
  return dropout(x, p_, current_generator().next(x.numel()));
}

Tensor Dropout::forward(const Tensor& x, PhiloxState key) {
  RW_CHECK(x.defined(), "Dropout: the input is undefined");
  if (!is_training() || p_ == 0) return x;
  return dropout(x, p_, key);
}

Tensor dropout_slice(const Tensor& part, double p, PhiloxState key, const Shape& full_shape,
                     int64_t dim, int64_t start) {
  RW_CHECK(part.defined(), "dropout_slice: the input is undefined");
  RW_CHECK(is_floating(part.dtype()), "dropout_slice: the input must be floating, got {}",
           part.dtype());
  RW_CHECK(p >= 0 && p < 1, "dropout_slice: p must be in [0, 1), got {}", p);
  const int64_t rank = static_cast<int64_t>(full_shape.size());
  RW_CHECK(dim >= 0 && dim < rank && part.dim() == rank,
           "dropout_slice: dim {} and a part of shape {} do not fit the full shape {}", dim,
           part.shape(), full_shape);
  const int64_t length = part.size(dim);
  for (int64_t d = 0; d < rank; ++d) {
    RW_CHECK(
        d == dim ? start >= 0 && start + length <= full_shape[d] : part.size(d) == full_shape[d],
        "dropout_slice: a part of shape {} starting at {} along dim {} is not a slice of "
        "shape {}",
        part.shape(), start, dim, full_shape);
  }
  if (p == 0) return part;

  // Element e of the full tensor uses word e % 4 of Philox block key.counter + e / 4
  // (core/philox.h), whatever the tensor's size. The slice is `outer` runs of length * inner
  // consecutive elements; each run is regenerated from the block holding its first element, with
  // the run's offset into that block cut off.
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= full_shape[d];
  for (int64_t d = dim + 1; d < rank; ++d) inner *= full_shape[d];
  const int64_t run = length * inner;
  const DType dt = part.dtype();
  // As rw::dropout: the keep-mask is drawn in f32 (f64 for f64) whatever the storage type, scaled,
  // then converted, so both compute the same products.
  const DType mask_dt = dt == DType::f64 ? DType::f64 : DType::f32;
  Tensor mask;
  {
    NoGradGuard no_grad;
    mask = empty({outer, run}, {.dtype = mask_dt, .device = part.device()});
    for (int64_t o = 0; o < outer && run > 0; ++o) {
      const int64_t first = (o * full_shape[dim] + start) * inner;
      const int64_t skip = first % 4;
      PhiloxState state = key;
      state.counter += static_cast<uint64_t>(first / 4);
      Tensor words =
          bernoulli({skip + run}, 1 - p, state, {.dtype = mask_dt, .device = part.device()});
      copy_(mask.select(0, o), words.narrow(0, skip, run));
    }
    mul_(mask, 1 / (1 - p));
    mask = mask.view(part.shape()).to(dt);
  }
  return mul(part, mask);
}

}  // namespace rw::nn
