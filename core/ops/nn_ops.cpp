// softmax, log_softmax, layer_norm, cross_entropy and dropout. Each records one tape node; the
// work inside runs on detached tensors (or under NoGradGuard), and the backward rules use the
// backend's paired *_backward kernels where one exists.
#include "core/ops/nn_ops.h"

#include <utility>

#include "autograd/tape.h"
#include "core/autocast.h"
#include "core/ops/elementwise.h"
#include "core/ops/indexing.h"
#include "core/ops/op_utils.h"
#include "core/ops/random.h"
#include "core/ops/reduce.h"

namespace rw {
namespace {

Tensor softmax_op(const char* name, SoftmaxKind kind, const Tensor& x, int64_t dim) {
  detail::check_defined(name, x, "x");
  detail::check_floating(name, x);
  // A 0-dim tensor is a softmax over one element (as in PyTorch): run it as shape [1].
  const bool scalar = x.dim() == 0;
  const int64_t d = normalize_dim(name, dim, scalar ? 1 : x.dim());
  Tensor out = empty(x.shape(), options_of(x));
  if (x.numel() > 0) {
    NoGradGuard no_grad;
    Tensor xc = x.detach().contiguous();
    detail::backend_of(x).softmax(kind, scalar ? xc.reshape({1}) : xc, d,
                                  scalar ? out.view({1}) : out);
  }
  if (needs_grad({&x})) {
    record(name, {x}, out,
           [y = SavedTensor(out), kind, d, name,
            scalar](std::span<const Tensor> g) -> std::vector<Tensor> {
             const Tensor& yv = y.get(name);
             Tensor dy = g[0].contiguous();
             Tensor dx = empty(yv.shape(), options_of(yv));
             if (yv.numel() > 0) {
               detail::backend_of(yv).softmax_backward(kind, scalar ? yv.reshape({1}) : yv,
                                                       scalar ? dy.reshape({1}) : dy, d,
                                                       scalar ? dx.view({1}) : dx);
             }
             return {dx};
           });
  }
  return out;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) {
  // Autocast (core/autocast.h): bf16/f16 logits are normalised in f32.
  if (Tensor xf = detail::autocast_upcast(x); !xf.is_same(x)) return softmax(xf, dim);
  return softmax_op("softmax", SoftmaxKind::softmax, x, dim);
}

Tensor log_softmax(const Tensor& x, int64_t dim) {
  if (Tensor xf = detail::autocast_upcast(x); !xf.is_same(x)) return log_softmax(xf, dim);
  return softmax_op("log_softmax", SoftmaxKind::log_softmax, x, dim);
}

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  detail::check_defined("layer_norm", x, "x");
  // Autocast: a bf16/f16 input (a projection's output) is normalised in f32, and so returned.
  if (Tensor xf = detail::autocast_upcast(x); !xf.is_same(x)) {
    return layer_norm(xf, detail::autocast_upcast(weight), detail::autocast_upcast(bias), eps);
  }
  detail::check_floating("layer_norm", x);
  RW_CHECK(x.dim() >= 1, "layer_norm: x must have at least one dim, got shape {}", x.shape());
  RW_CHECK(eps >= 0, "layer_norm: eps must be >= 0, got {}", eps);
  const int64_t D = x.size(-1);
  DType dt = x.dtype();
  using Param = std::pair<const Tensor*, const char*>;
  for (const auto& [t, what] : {Param{&weight, "weight"}, Param{&bias, "bias"}}) {
    if (!t->defined()) continue;
    detail::check_same_device("layer_norm", x, *t);
    detail::check_floating("layer_norm", *t);
    RW_CHECK(t->dim() == 1 && t->size(0) == D,
             "layer_norm: {} must have shape [{}] (the last dim of x {}), got {}", what, D,
             x.shape(), t->shape());
    dt = promote_types(dt, t->dtype());
  }
  const int64_t rows = shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));
  // Statistics stay in f32 for f32 and the half types (which the CPU computes in f32).
  const DType stat_dt = dt == DType::f64 ? DType::f64 : DType::f32;

  Tensor out = empty(x.shape(), {.dtype = dt, .device = x.device()});
  Tensor mean = empty({rows}, {.dtype = stat_dt, .device = x.device()});
  Tensor rstd = empty({rows}, {.dtype = stat_dt, .device = x.device()});
  Tensor X, W, B;
  {
    NoGradGuard no_grad;
    X = x.detach().to(dt).contiguous().reshape({rows, D});
    if (weight.defined()) W = weight.detach().to(dt).contiguous();
    if (bias.defined()) B = bias.detach().to(dt).contiguous();
    if (x.numel() > 0) {
      detail::backend_of(x).layer_norm(X, W, B, eps, out.view({rows, D}), mean, rstd);
    }
  }
  if (needs_grad({&x, &weight, &bias})) {
    const bool need_w = weight.defined() && weight.requires_grad();
    const bool need_b = bias.defined() && bias.requires_grad();
    record(
        "layer_norm", {x, weight, bias}, out,
        [sx = SavedTensor(X), sw = SavedTensor(W), smean = SavedTensor(mean),
         srstd = SavedTensor(rstd), need_w, need_b, x_shape = x.shape(), x_dt = x.dtype(),
         w_dt = weight.defined() ? weight.dtype() : dt, b_dt = bias.defined() ? bias.dtype() : dt,
         dt, rows, D](std::span<const Tensor> g) -> std::vector<Tensor> {
          const Tensor& Xs = sx.get("layer_norm");
          Tensor dy = g[0].to(dt).contiguous().reshape({rows, D});
          Tensor dx = empty({rows, D}, options_of(Xs));
          Tensor dw = need_w ? empty({D}, options_of(Xs)) : Tensor();
          Tensor db = need_b ? empty({D}, options_of(Xs)) : Tensor();
          if (rows > 0 && D > 0) {
            Tensor Ws = sw.defined() ? sw.get("layer_norm") : Tensor();
            detail::backend_of(Xs).layer_norm_backward(dy, Xs, Ws, smean.get("layer_norm"),
                                                       srstd.get("layer_norm"), dx, dw, db);
          } else {  // nothing to normalise: the parameter gradients are sums over no rows
            if (dw.defined()) dw = zeros({D}, options_of(Xs));
            if (db.defined()) db = zeros({D}, options_of(Xs));
          }
          return {dx.view(x_shape).to(x_dt), dw.defined() ? dw.to(w_dt) : Tensor(),
                  db.defined() ? db.to(b_dt) : Tensor()};
        });
  }
  return out;
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                     Reduction reduction) {
  detail::check_defined("cross_entropy", logits, "logits");
  detail::check_defined("cross_entropy", targets, "targets");
  // Autocast: bf16/f16 logits are scored in f32 (the loss and its gradient in f32).
  if (Tensor lf = detail::autocast_upcast(logits); !lf.is_same(logits)) {
    return cross_entropy(lf, targets, ignore_index, reduction);
  }
  detail::check_same_device("cross_entropy", logits, targets);
  detail::check_floating("cross_entropy", logits);
  RW_CHECK(logits.dim() >= 1, "cross_entropy: logits must be [..., C], got shape {}",
           logits.shape());
  const Shape lead(logits.shape().begin(), logits.shape().end() - 1);
  RW_CHECK(targets.shape() == lead,
           "cross_entropy: targets shape {} must equal the logits shape {} without its class dim",
           targets.shape(), logits.shape());
  const int64_t C = logits.size(-1);
  const int64_t class_dim = logits.dim() - 1;
  const DType dt = logits.dtype();
  const DType acc_dt = dt == DType::f64 ? DType::f64 : DType::f32;

  Tensor loss, lsm, safe_targets, valid, count;
  {
    NoGradGuard no_grad;
    Tensor t = detail::index_as_i64("cross_entropy", targets);
    valid = ne(t, static_cast<double>(ignore_index));
    // Ignored entries point at class 0 so the pick below stays in range; their loss is masked.
    safe_targets = where(valid, t, 0.0);
    detail::check_index_range("cross_entropy", safe_targets, C);
    lsm = log_softmax(logits.detach(), -1);
    Tensor picked = gather(lsm, class_dim, safe_targets.unsqueeze(-1)).squeeze(-1);
    Tensor nll = where(valid, neg(picked), 0.0);
    switch (reduction) {
      case Reduction::none:
        loss = nll;
        break;
      case Reduction::sum:
        loss = sum(nll);
        break;
      case Reduction::mean:
        // A tensor, not a host number: no device sync. All ignored -> 0 / 1 = 0. Counted in
        // f32 at least: bf16 cannot hold counts above 256 exactly.
        count = maximum(sum(valid.to(acc_dt)), 1.0);
        loss = div(sum(nll.to(acc_dt)), count).to(dt);
        break;
    }
  }
  if (needs_grad({&logits})) {
    // The targets are data, not a differentiable input.
    record("cross_entropy", {logits}, loss,
           [slsm = SavedTensor(lsm), safe_targets, valid, count, reduction,
            class_dim](std::span<const Tensor> g) -> std::vector<Tensor> {
             // d loss_i / d logits_i = w_i * (softmax_i - onehot(target_i)), w_i the weight of
             // row i in the reduction (0 for ignored rows).
             const Tensor& lsm_saved = slsm.get("cross_entropy");
             const DType dt = lsm_saved.dtype();
             Tensor w = reduction == Reduction::mean ? div(g[0], count).to(dt) : g[0];
             w = where(valid, w, 0.0).unsqueeze(-1);
             Tensor grad = mul(exp(lsm_saved), w).contiguous();
             // Subtract w at each row's target in place: grad is a fresh tensor owned here.
             Tensor src = neg(w).expand(safe_targets.unsqueeze(-1).shape()).contiguous();
             detail::backend_of(grad).scatter_add(grad, class_dim, safe_targets.unsqueeze(-1), src);
             return {grad};
           });
  }
  return loss;
}

Tensor dropout(const Tensor& x, double p, PhiloxState state) {
  detail::check_defined("dropout", x, "x");
  detail::check_floating("dropout", x);
  RW_CHECK(p >= 0 && p < 1, "dropout: p must be in [0, 1), got {}", p);
  if (p == 0) return x;
  // The scaled keep-mask. bernoulli draws in f32 (or f64) whatever x's dtype, so the dropped
  // elements do not depend on the storage type.
  auto make_mask = [shape = x.shape(), p, state, dt = x.dtype(), device = x.device()] {
    const DType mask_dt = dt == DType::f64 ? DType::f64 : DType::f32;
    Tensor m = bernoulli(shape, 1 - p, state, {.dtype = mask_dt, .device = device});
    mul_(m, 1 / (1 - p));
    return m.to(dt);
  };
  Tensor out;
  {
    NoGradGuard no_grad;
    out = mul(x.detach(), make_mask());
  }
  if (needs_grad({&x})) {
    // The mask is a pure function of `state`: regenerate it in backward instead of keeping an
    // x-sized tensor alive between forward and backward.
    record("dropout", {x}, out, [make_mask](std::span<const Tensor> g) -> std::vector<Tensor> {
      return {mul(g[0], make_mask())};
    });
  }
  return out;
}

}  // namespace rw
