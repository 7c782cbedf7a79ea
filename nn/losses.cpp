#include "nn/losses.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <span>
#include <vector>

#include "autograd/function.h"
#include "autograd/tape.h"
#include "core/ops.h"

namespace rw::nn {
namespace {

void check_chunked_ce_args(const Tensor& hidden, const Tensor& weight, const Tensor& bias,
                           const Tensor& targets, int64_t chunk_size) {
  constexpr const char* op = "chunked_cross_entropy";
  RW_CHECK(hidden.defined() && weight.defined() && targets.defined(),
           "{}: hidden, weight and targets must be defined", op);
  RW_CHECK(is_floating(hidden.dtype()) && is_floating(weight.dtype()),
           "{}: hidden and weight must be floating, got {} and {}", op, hidden.dtype(),
           weight.dtype());
  RW_CHECK(hidden.dim() >= 2, "{}: hidden must be [..., L, d], got shape {}", op, hidden.shape());
  RW_CHECK(weight.dim() == 2 && weight.size(1) == hidden.size(-1),
           "{}: weight must be [V, {}] (d of hidden {}), got shape {}", op, hidden.size(-1),
           hidden.shape(), weight.shape());
  if (bias.defined()) {
    RW_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0),
             "{}: bias must have shape [{}] (V of weight {}), got {}", op, weight.size(0),
             weight.shape(), bias.shape());
  }
  const Shape lead(hidden.shape().begin(), hidden.shape().end() - 1);
  RW_CHECK(targets.shape() == lead,
           "{}: targets shape {} must equal the hidden shape {} without its feature dim", op,
           targets.shape(), hidden.shape());
  RW_CHECK(targets.dtype() == DType::i64 || targets.dtype() == DType::i32,
           "{}: targets must be i64 or i32, got {}", op, targets.dtype());
  RW_CHECK(chunk_size > 0, "{}: chunk_size must be > 0, got {}", op, chunk_size);
}

}  // namespace

Tensor chunked_cross_entropy(const Tensor& hidden, const Tensor& weight, const Tensor& bias,
                             const Tensor& targets, int64_t chunk_size, int64_t ignore_index) {
  check_chunked_ce_args(hidden, weight, bias, targets, chunk_size);
  const int64_t vocab = weight.size(0);
  const int64_t seq_dim = hidden.dim() - 2;  // of hidden; targets chunk along their last dim
  const int64_t length = hidden.size(seq_dim);
  DType dt = promote_types(hidden.dtype(), weight.dtype());
  if (bias.defined()) dt = promote_types(dt, bias.dtype());
  // As rw::cross_entropy: the mean is taken in f32 at least (bf16 cannot count past 256).
  const DType acc_dt = dt == DType::f64 ? DType::f64 : DType::f32;

  Tensor labels, count;
  {
    NoGradGuard no_grad;
    labels = targets.to(DType::i64);
    Tensor valid = ne(labels, static_cast<double>(ignore_index));
    if (labels.numel() > 0) {
      // Checked once here, so a bad target fails before any chunk is computed.
      Tensor in_range = where(valid, labels, 0.0);
      const auto lo = min(in_range).item<int64_t>(), hi = max(in_range).item<int64_t>();
      RW_CHECK(lo >= 0 && hi < vocab,
               "chunked_cross_entropy: target {} out of range for {} classes (ignore_index {})",
               lo < 0 ? lo : hi, vocab, ignore_index);
    }
    count = maximum(sum(valid.to(acc_dt)), 1.0);  // all ignored: 0 / 1 = 0
  }

  // The summed loss of the chunk of hidden starting at `start` (its logits are a temporary).
  auto chunk_loss = [=](const Tensor& h_chunk, const Tensor& w, const Tensor& b, int64_t start) {
    return cross_entropy(linear(h_chunk, w, b),
                         labels.narrow(seq_dim, start, h_chunk.size(seq_dim)), ignore_index,
                         Reduction::sum);
  };

  const CustomFunction fn{
      .name = "chunked_cross_entropy",
      .forward =
          [=](FunctionContext& ctx, std::span<const Tensor> in) {
            ctx.save_for_backward({in[0], in[1], in[2]});
            Tensor total = zeros({}, {.dtype = acc_dt, .device = in[0].device()});
            for (int64_t start = 0; start < length; start += chunk_size) {
              const int64_t n = std::min(chunk_size, length - start);
              Tensor h_chunk = in[0].narrow(seq_dim, start, n);
              total = add(total, chunk_loss(h_chunk, in[1], in[2], start).to(acc_dt));
            }
            return std::vector<Tensor>{div(total, count).to(dt)};
          },
      .backward =
          [=](FunctionContext& ctx, std::span<const Tensor> grad) {
            const std::vector<Tensor> saved = ctx.saved_tensors();
            // Leaves standing in for weight and bias: each chunk's backward adds to their grad().
            std::vector<Tensor> leaves(3);
            for (std::size_t i = 1; i < 3; ++i) {
              if (!saved[i].defined()) continue;
              leaves[i] = saved[i].detach();
              if (ctx.needs_input_grad(i)) leaves[i].requires_grad_();
            }
            const Tensor& h = saved[0];
            // Every chunk writes its slice: no zero fill needed.
            Tensor dh = ctx.needs_input_grad(0) ? empty(h.shape(), options_of(h)) : Tensor();
            // d loss / d (a chunk's summed loss) = grad / count, the same for every chunk.
            const Tensor scale = div(grad[0].to(acc_dt), count).to(dt);
            for (int64_t start = 0; start < length; start += chunk_size) {
              const int64_t n = std::min(chunk_size, length - start);
              Tensor h_chunk = h.narrow(seq_dim, start, n).detach();
              if (dh.defined()) h_chunk.requires_grad_();
              {
                TapeScope scope;  // the chunk's logits die with its local graph
                backward(chunk_loss(h_chunk, leaves[1], leaves[2], start), scale);
              }
              if (dh.defined()) copy_(dh.narrow(seq_dim, start, n), h_chunk.grad());
            }
            std::vector<Tensor> grads{dh, Tensor(), Tensor()};
            for (std::size_t i = 1; i < 3; ++i) {
              if (leaves[i].defined() && leaves[i].requires_grad()) grads[i] = leaves[i].grad();
            }
            return grads;
          },
  };
  return fn.apply1({hidden, weight, bias});
}

double bits_per_byte(double nats_per_token) { return nats_per_token / std::numbers::ln2; }
double bits_per_dim(double nats_per_dim) { return nats_per_dim / std::numbers::ln2; }

}  // namespace rw::nn
