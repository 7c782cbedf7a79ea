#include "models/reformer/shared_qk_inputs.h"

#include <cmath>
#include <vector>

#include "autograd/function.h"
#include "core/ops.h"
#include "nn/attention.h"

namespace rw::reformer {
namespace {

// 1e-24 under the root, as nn::unit_normalize (F.normalize's eps = 1e-12 on the norm).
constexpr double kNormEps = 1e-24;

SharedQKInputs with_ops(const Tensor& qk, double scale, int64_t Lp) {
  return {.q = pad_rows(mul(qk, scale), Lp), .k = pad_rows(nn::unit_normalize(qk), Lp)};
}

// Row (b, h, i) of a strided [B, H, L, d] tensor with unit stride in d.
struct Rows {
  int64_t B, H, L, d, sb, sh, sl;
  explicit Rows(const Tensor& t)
      : B(t.size(0)),
        H(t.size(1)),
        L(t.size(2)),
        d(t.size(3)),
        sb(t.stride(0)),
        sh(t.stride(1)),
        sl(t.stride(2)) {}
  int64_t offset(int64_t bh, int64_t i) const { return bh / H * sb + bh % H * sh + i * sl; }
};

template <typename T>
std::vector<Tensor> forward_cpu(const Tensor& qk, double scale, int64_t Lp) {
  const Rows r(qk);
  const TensorOptions opts{.dtype = qk.dtype(), .device = qk.device()};
  Tensor q = empty({r.B * r.H, Lp, r.d}, opts), k = empty({r.B * r.H, Lp, r.d}, opts);
  Tensor inv_norm = empty({r.B * r.H, r.L}, opts);
  const T* x = qk.data<T>();
  T *qp = q.data<T>(), *kp = k.data<T>(), *np = inv_norm.data<T>();
  const T s = static_cast<T>(scale);
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < r.B * r.H * Lp; ++row) {
    const int64_t bh = row / Lp, i = row % Lp;
    T* qr = qp + row * r.d;
    T* kr = kp + row * r.d;
    if (i >= r.L) {
      for (int64_t e = 0; e < r.d; ++e) qr[e] = kr[e] = T(0);
      continue;
    }
    const T* xr = x + r.offset(bh, i);
    T sq = 0;
#pragma omp simd reduction(+ : sq)
    for (int64_t e = 0; e < r.d; ++e) sq += xr[e] * xr[e];
    const T inv = T(1) / std::sqrt(sq + static_cast<T>(kNormEps));
    np[bh * r.L + i] = inv;
#pragma omp simd
    for (int64_t e = 0; e < r.d; ++e) {
      qr[e] = xr[e] * s;
      kr[e] = xr[e] * inv;
    }
  }
  return {q, k, inv_norm};
}

// d qk = scale dq + (dk - k (k . dk)) / |qk|, k the unit key.
template <typename T>
Tensor backward_cpu(const Tensor& qk, const Tensor& k, const Tensor& inv_norm, const Tensor& dq_in,
                    const Tensor& dk_in, double scale) {
  const Rows r(qk);
  const int64_t Lp = k.size(1);
  const Tensor dq = dq_in.contiguous(), dk = dk_in.contiguous();
  Tensor dqk = empty({r.B, r.H, r.L, r.d}, {.dtype = qk.dtype(), .device = qk.device()});
  const T *kp = k.data<T>(), *np = inv_norm.data<T>(), *gq = dq.data<T>(), *gk = dk.data<T>();
  T* out = dqk.data<T>();
  const T s = static_cast<T>(scale);
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < r.B * r.H * r.L; ++row) {
    const int64_t bh = row / r.L, i = row % r.L, from = (bh * Lp + i) * r.d;
    const T *kr = kp + from, *gqr = gq + from, *gkr = gk + from;
    T dot = 0;
#pragma omp simd reduction(+ : dot)
    for (int64_t e = 0; e < r.d; ++e) dot += kr[e] * gkr[e];
    const T inv = np[row];
    T* o = out + row * r.d;
#pragma omp simd
    for (int64_t e = 0; e < r.d; ++e) o[e] = s * gqr[e] + (gkr[e] - kr[e] * dot) * inv;
  }
  return dqk;
}

bool fused_applies(const Tensor& qk) {
  return qk.device().is_cpu() && (qk.dtype() == DType::f32 || qk.dtype() == DType::f64) &&
         qk.stride(3) == 1;
}

}  // namespace

Tensor pad_rows(const Tensor& x, int64_t Lp) {
  const int64_t extra = Lp - x.size(2);
  Tensor padded = extra == 0 ? x : pad(x, {0, 0, 0, extra}, 0);
  return padded.reshape({x.size(0) * x.size(1), Lp, x.size(3)}).contiguous();
}

SharedQKInputs shared_qk_inputs(const Tensor& qk, double scale, int64_t Lp) {
  RW_CHECK(qk.defined() && qk.dim() == 4 && Lp >= qk.size(2),
           "shared_qk_inputs: expected qk [batch, heads, length, d_head] and Lp >= length, got {} "
           "and Lp {}",
           qk.defined() ? fmt::format("{}", qk.shape()) : std::string("undefined"), Lp);
  if (!fused_applies(qk)) return with_ops(qk, scale, Lp);
  // Built per call: the lambdas capture the call's scale and Lp.
  const CustomFunction fused{
      .name = "shared_qk_inputs",
      .forward =
          [scale, Lp](FunctionContext& ctx, std::span<const Tensor> in) {
            std::vector<Tensor> res = in[0].dtype() == DType::f64
                                          ? forward_cpu<double>(in[0], scale, Lp)
                                          : forward_cpu<float>(in[0], scale, Lp);
            ctx.save_for_backward({in[0], res[1], res[2]});
            return std::vector<Tensor>{res[0], res[1]};
          },
      .backward =
          [scale](FunctionContext& ctx, std::span<const Tensor> grad) {
            const Tensor &qk = ctx.saved(0), &k = ctx.saved(1), &inv_norm = ctx.saved(2);
            return std::vector<Tensor>{
                qk.dtype() == DType::f64
                    ? backward_cpu<double>(qk, k, inv_norm, grad[0], grad[1], scale)
                    : backward_cpu<float>(qk, k, inv_norm, grad[0], grad[1], scale)};
          },
  };
  std::vector<Tensor> out = fused.apply({qk});
  return {.q = out[0], .k = out[1]};
}

}  // namespace rw::reformer
