#include "nn/attention_mask.h"

#include "autograd/tape.h"
#include "core/ops.h"

namespace rw::nn {

AttentionPenalties attention_penalties(DType dtype) {
  RW_CHECK(is_floating(dtype), "attention_penalties: expected a floating dtype, got {}", dtype);
  if (dtype == DType::f16) return {.masked = -3e4, .self = -1e4};
  return {.masked = -1e9, .self = -1e5};
}

void check_attention_mask(const char* op, const AttentionMaskSpec& spec, const Shape& logits_shape,
                          Device device) {
  const Tensor& pad = spec.key_padding_mask;
  if (!pad.defined()) return;
  const auto rank = static_cast<int64_t>(logits_shape.size());
  RW_CHECK(rank >= 3,
           "{}: a key_padding_mask needs a batch dim: queries must be [batch, ..., L, d], got "
           "attention logits of shape {}",
           op, logits_shape);
  const int64_t batch = logits_shape.front(), Lk = logits_shape.back();
  RW_CHECK(pad.dtype() == DType::boolean,
           "{}: key_padding_mask must be bool (true = real token), got dtype {}", op, pad.dtype());
  RW_CHECK(pad.dim() == 2 && pad.size(0) == batch && pad.size(1) == Lk,
           "{}: key_padding_mask must have shape [batch, key length] = [{}, {}], got {}", op, batch,
           Lk, pad.shape());
  RW_CHECK(pad.device() == device, "{}: key_padding_mask is on {} but the inputs are on {}", op,
           pad.device(), device);
}

Tensor attention_allowed_mask(const AttentionMaskSpec& spec, int64_t rank, int64_t Lq, int64_t Lk,
                              Device device) {
  NoGradGuard no_grad;
  Tensor allowed;
  if (spec.causal) allowed = tril_mask(Lq, Lk, 0, device);
  if (spec.key_padding_mask.defined()) {
    // [batch, Lk] -> [batch, 1, ..., 1, Lk] with `rank` dims: the same keys for every query.
    Shape s(static_cast<std::size_t>(rank), 1);
    s.front() = spec.key_padding_mask.size(0);
    s.back() = Lk;
    Tensor pad = spec.key_padding_mask.reshape(std::move(s));
    allowed = allowed.defined() ? logical_and(allowed, pad) : pad;
  }
  return allowed;
}

Tensor attention_bias(const AttentionMaskSpec& spec, int64_t rank, int64_t Lq, int64_t Lk,
                      DType dtype, Device device) {
  NoGradGuard no_grad;
  const AttentionPenalties penalty = attention_penalties(dtype);
  Tensor soft;  // the penalty on keys that are allowed
  if (spec.mask_self) {
    Tensor diagonal = logical_and(tril_mask(Lq, Lk, 0, device), triu_mask(Lq, Lk, 0, device));
    soft = where(diagonal, full({}, penalty.self, {.dtype = dtype, .device = device}), 0.0);
  }
  Tensor allowed = attention_allowed_mask(spec, rank, Lq, Lk, device);
  if (!allowed.defined()) return soft;
  if (!soft.defined()) soft = zeros({}, {.dtype = dtype, .device = device});
  return where(allowed, soft, penalty.masked);
}

}  // namespace rw::nn
