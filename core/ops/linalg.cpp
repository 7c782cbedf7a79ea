// matmul and linear. Operands reach the backend as (transposed, broadcast) views: the CPU backend
// describes their strides to oneDNN, so neither the forward nor the backward copies an operand.
#include "core/ops/linalg.h"

#include <algorithm>

#include "autograd/tape.h"
#include "core/autocast.h"
#include "core/ops/op_utils.h"
#include "core/ops/reduce.h"

namespace rw {
namespace {

DType floating_result(const char* op, const Tensor& a, const Tensor& b) {
  RW_CHECK(is_floating(a.dtype()) && is_floating(b.dtype()),
           "{}: expected floating tensors, got dtypes {} and {} (shapes {} and {})", op, a.dtype(),
           b.dtype(), a.shape(), b.shape());
  return promote_types(a.dtype(), b.dtype());
}

// x with leading extent-1 dims up to `rank` (a view).
Tensor lift(const Tensor& x, int64_t rank) {
  if (x.dim() == rank) return x;
  Shape s(static_cast<std::size_t>(rank - x.dim()), 1);
  s.insert(s.end(), x.shape().begin(), x.shape().end());
  return x.reshape(std::move(s));
}

Shape batch_of(const Tensor& x) { return Shape(x.shape().begin(), x.shape().end() - 2); }

// a [..., M, K] @ b [..., K, N] (+ bias [N]) with broadcast batch dims; no recording. Inputs must
// be free of autograd metadata or run under NoGradGuard.
Tensor product(const Tensor& a, const Tensor& b, const Tensor& bias) {
  Shape batch = broadcast_shapes("matmul", batch_of(a), batch_of(b));
  const auto rank = static_cast<int64_t>(batch.size()) + 2;
  Shape out_shape = batch;
  out_shape.push_back(a.size(-2));
  out_shape.push_back(b.size(-1));
  Tensor out = empty(out_shape, options_of(a));
  detail::backend_of(a).matmul(lift(a, rank), lift(b, rank), bias, out);
  return out;
}

// The gradient of one operand of a batched product, summed back over the dims it was broadcast
// along, reshaped to its original shape and dtype.
Tensor reduce_to(const Tensor& grad, const Shape& lifted, const Shape& original, DType dtype) {
  Tensor g = grad.shape() == lifted ? grad : sum_to(grad, lifted);
  return g.reshape(original).to(dtype);
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  detail::check_defined("matmul", a, "a");
  detail::check_defined("matmul", b, "b");
  if (autocast_enabled()) {
    // Autocast (core/autocast.h): the product of the operands cast to the compute dtype; the casts
    // are recorded, so f32 operands get their gradients back in f32.
    Tensor a_low = detail::autocast_lower(a), b_low = detail::autocast_lower(b);
    if (!a_low.is_same(a) || !b_low.is_same(b)) return matmul(a_low, b_low);
  }
  detail::check_same_device("matmul", a, b);
  RW_CHECK(a.dim() >= 1 && b.dim() >= 1,
           "matmul: both operands need at least one dim, got shapes {} @ {}", a.shape(), b.shape());
  const DType dt = floating_result("matmul", a, b);
  const int64_t k_b = b.dim() == 1 ? b.size(0) : b.size(-2);
  RW_CHECK(a.size(-1) == k_b, "matmul: inner dims differ: {} @ {}", a.shape(), b.shape());
  const bool a_vec = a.dim() == 1, b_vec = b.dim() == 1;
  {
    const Shape ba = a.dim() > 2 ? batch_of(a) : Shape{}, bb = b.dim() > 2 ? batch_of(b) : Shape{};
    bool ok = true;
    for (std::size_t i = 1; i <= std::min(ba.size(), bb.size()); ++i) {
      const int64_t x = ba[ba.size() - i], y = bb[bb.size() - i];
      ok = ok && (x == y || x == 1 || y == 1);
    }
    RW_CHECK(ok, "matmul: batch dims {} and {} cannot be broadcast: {} @ {}", ba, bb, a.shape(),
             b.shape());
  }

  Tensor result;
  Shape a2_shape, b2_shape;  // the operands as matrices (1-D promoted)
  {
    NoGradGuard no_grad;
    Tensor a2 = a.detach().to(dt), b2 = b.detach().to(dt);
    if (a_vec) a2 = a2.unsqueeze(0);
    if (b_vec) b2 = b2.unsqueeze(-1);
    a2_shape = a2.shape();
    b2_shape = b2.shape();
    Tensor out = product(a2, b2, Tensor());
    Shape final_shape = out.shape();
    // The promoted dims go again: M (second to last) for a 1-D a, N (last) for a 1-D b.
    if (a_vec) final_shape.erase(final_shape.end() - 2);
    if (b_vec) final_shape.erase(final_shape.end() - 1);
    result = final_shape == out.shape() ? out : out.view(final_shape);
  }
  if (needs_grad({&a, &b})) {
    const bool need_a = a.requires_grad(), need_b = b.requires_grad();
    // Each operand is needed only for the other's gradient.
    record(
        "matmul", {a, b}, result,
        [sa = need_b ? SavedTensor(a) : SavedTensor(), sb = need_a ? SavedTensor(b) : SavedTensor(),
         a_shape = a.shape(), b_shape = b.shape(), a_dt = a.dtype(), b_dt = b.dtype(), dt, a_vec,
         b_vec, a2_shape, b2_shape](std::span<const Tensor> g) -> std::vector<Tensor> {
          // The output gradient as [..., M, N] (the dims removed for 1-D operands restored).
          Tensor G = g[0].to(dt);
          if (a_vec) G = G.unsqueeze(G.dim() - (b_vec ? 0 : 1));
          if (b_vec) G = G.unsqueeze(-1);
          Tensor da, db;
          if (sb.defined()) {
            Tensor B = sb.get("matmul").to(dt).reshape(b2_shape);
            da = reduce_to(product(G, B.mT(), Tensor()), a2_shape, a_shape, a_dt);
          }
          if (sa.defined()) {
            Tensor A = sa.get("matmul").to(dt).reshape(a2_shape);
            if (b2_shape.size() == 2 && A.dim() > 2) {
              // b was shared by every batch element: one [K, rows] @ [rows, N] product
              // instead of a batch of products summed afterwards.
              const int64_t K = A.size(-1), N = G.size(-1);
              const int64_t rows = shape_numel(Shape(G.shape().begin(), G.shape().end() - 1));
              db = product(A.reshape({rows, K}).mT(), G.reshape({rows, N}), Tensor());
              db = db.reshape(b_shape).to(b_dt);
            } else {
              db = reduce_to(product(A.mT(), G, Tensor()), b2_shape, b_shape, b_dt);
            }
          }
          return {da, db};
        });
  }
  return result;
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  detail::check_defined("linear", x, "x");
  detail::check_defined("linear", weight, "weight");
  if (autocast_enabled()) {
    // As matmul: the weight (an f32 master copy) is cast for this product only.
    Tensor x_low = detail::autocast_lower(x), w_low = detail::autocast_lower(weight);
    Tensor b_low = detail::autocast_lower(bias);
    if (!x_low.is_same(x) || !w_low.is_same(weight) || !b_low.is_same(bias)) {
      return linear(x_low, w_low, b_low);
    }
  }
  detail::check_same_device("linear", x, weight);
  RW_CHECK(weight.dim() == 2,
           "linear: weight must be 2-D [out_features, in_features], got shape {}", weight.shape());
  RW_CHECK(x.dim() >= 1, "linear: x must have at least one dim, got shape {}", x.shape());
  const int64_t in = weight.size(1), out_f = weight.size(0);
  RW_CHECK(x.size(-1) == in, "linear: input features differ: x {} vs weight {} (expects [..., {}])",
           x.shape(), weight.shape(), in);
  DType dt = floating_result("linear", x, weight);
  if (bias.defined()) {
    detail::check_same_device("linear", x, bias);
    RW_CHECK(bias.dim() == 1 && bias.size(0) == out_f,
             "linear: bias must have shape [{}] (out_features of weight {}), got {}", out_f,
             weight.shape(), bias.shape());
    dt = promote_types(dt, floating_result("linear", x, bias));
  }

  Shape out_shape(x.shape().begin(), x.shape().end() - 1);
  out_shape.push_back(out_f);
  Tensor out = empty(out_shape, {.dtype = dt, .device = x.device()});
  {
    NoGradGuard no_grad;
    Tensor X = x.detach().to(dt);
    if (X.dim() == 1) X = X.unsqueeze(0);
    const int64_t rank = X.dim();
    Tensor Wt = lift(weight.detach().to(dt).mT(), rank);  // [1.., in, out]: a transposed view
    Tensor B = bias.defined() ? bias.detach().to(dt).contiguous() : Tensor();
    Tensor O = x.dim() == 1 ? out.view({1, out_f}) : out;
    // The bias rides in the matmul epilogue: no second pass over the output.
    if (out.numel() > 0) detail::backend_of(x).matmul(X, Wt, B, O);
  }
  if (needs_grad({&x, &weight, &bias})) {
    const bool need_x = x.requires_grad(), need_w = weight.requires_grad();
    const bool need_b = bias.defined() && bias.requires_grad();
    record("linear", {x, weight, bias}, out,
           [sx = need_w ? SavedTensor(x) : SavedTensor(),
            sw = need_x ? SavedTensor(weight) : SavedTensor(), need_b, x_shape = x.shape(),
            x_dt = x.dtype(), w_dt = weight.dtype(), b_dt = bias.defined() ? bias.dtype() : dt, dt,
            in, out_f](std::span<const Tensor> g) -> std::vector<Tensor> {
             const int64_t rows = shape_numel(Shape(x_shape.begin(), x_shape.end() - 1));
             Tensor G = g[0].to(dt).reshape({rows, out_f});  // [rows, out]
             Tensor dx, dw, db;
             if (sw.defined()) {
               Tensor W = sw.get("linear").to(dt);
               dx = product(G, W, Tensor()).reshape(x_shape).to(x_dt);
             }
             if (sx.defined()) {
               Tensor X = sx.get("linear").to(dt).reshape({rows, in});
               dw = product(G.mT(), X, Tensor()).to(w_dt);
             }
             if (need_b) db = sum(G, {0}).to(b_dt);
             return {dx, dw, db};
           });
  }
  return out;
}

}  // namespace rw
