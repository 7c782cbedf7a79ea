// The fused shared-QK inputs (models/reformer/shared_qk_inputs.h) against the ops they replace.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/gradcheck.h"
#include "autograd/tape.h"
#include "core/ops.h"
#include "models/reformer/shared_qk_inputs.h"
#include "nn/attention.h"

namespace {

using namespace rw;
using rw::reformer::shared_qk_inputs;

// What lsh_attention computed before the fusion: scale, unit-normalise, pad, [B H, Lp, d].
Tensor padded(const Tensor& x, int64_t Lp) {
  const int64_t extra = Lp - x.size(2);
  Tensor p = extra == 0 ? x : pad(x, {0, 0, 0, extra}, 0);
  return p.reshape({x.size(0) * x.size(1), Lp, x.size(3)}).contiguous();
}

double max_diff(const Tensor& a, const Tensor& b) {
  return max(abs(sub(a.to(DType::f64), b.to(DType::f64)))).item<double>();
}

// The heads of a [B, L, H d] projection: a transposed, non-contiguous view, as in
// LSHSelfAttention::project.
Tensor heads_view(const Tensor& projected, int64_t H) {
  const int64_t B = projected.size(0), L = projected.size(1), d = projected.size(2) / H;
  return projected.reshape({B, L, H, d}).transpose(1, 2);
}

}  // namespace

TEST_CASE("shared_qk_inputs equals scale + unit_normalize + pad, forward and backward") {
  for (const DType dt : {DType::f32, DType::f64}) {
    for (const int64_t Lp : {13, 16}) {
      INFO("dtype ", dt, " Lp ", Lp);
      Generator gen(5);
      Tensor base = randn({2, 13, 3 * 8}, gen, {.dtype = dt});
      Tensor cot_q = randn({6, Lp, 8}, gen, {.dtype = dt});
      Tensor cot_k = randn({6, Lp, 8}, gen, {.dtype = dt});
      const double scale = 0.35, tol = dt == DType::f64 ? 1e-12 : 1e-5;

      Tensor x1 = base.clone().requires_grad_();
      auto fused = shared_qk_inputs(heads_view(x1, 3), scale, Lp);
      CHECK(fused.q.is_contiguous());
      CHECK(fused.k.is_contiguous());
      CHECK(fused.q.shape() == Shape{6, Lp, 8});
      backward(add(sum(mul(fused.q, cot_q)), sum(mul(fused.k, cot_k))));

      Tensor x2 = base.clone().requires_grad_();
      Tensor qk2 = heads_view(x2, 3);
      Tensor q2 = padded(mul(qk2, scale), Lp), k2 = padded(nn::unit_normalize(qk2), Lp);
      backward(add(sum(mul(q2, cot_q)), sum(mul(k2, cot_k))));

      CHECK(max_diff(fused.q, q2) < tol);
      CHECK(max_diff(fused.k, k2) < tol);
      CHECK(max_diff(x1.grad(), x2.grad()) < tol);
      // Padding rows are exactly zero.
      if (Lp > 13) CHECK(max(abs(fused.k.narrow(1, 13, Lp - 13))).item<double>() == 0.0);
    }
  }
}

TEST_CASE("shared_qk_inputs: float64 gradcheck, a zero row stays finite") {
  Generator gen(9);
  Tensor x = randn({1, 7, 2 * 4}, gen, {.dtype = DType::f64});
  auto r = gradcheck(
      [](const std::vector<Tensor>& in) {
        auto out = shared_qk_inputs(heads_view(in[0], 2), 0.5, 8);
        return add(out.q, mul(out.k, 3.0));
      },
      {x.requires_grad_()});
  INFO(r.message);
  CHECK(r.ok);

  Tensor z = zeros({1, 2, 3, 4}, {.dtype = DType::f32}).requires_grad_();
  auto out = shared_qk_inputs(z, 1.0, 4);
  backward(sum(out.k));
  CHECK(std::isfinite(sum(z.grad()).item<double>()));
  CHECK(max(abs(out.k)).item<double>() == 0.0);
}

TEST_CASE("shared_qk_inputs: a bad shape names the op") {
  Tensor x = zeros({2, 3, 4});
  CHECK_THROWS_WITH_AS(shared_qk_inputs(x, 1.0, 4), doctest::Contains("shared_qk_inputs"),
                       rw::Error);
  CHECK_THROWS_WITH_AS(shared_qk_inputs(zeros({1, 1, 5, 4}), 1.0, 4), doctest::Contains("Lp 4"),
                       rw::Error);
}
