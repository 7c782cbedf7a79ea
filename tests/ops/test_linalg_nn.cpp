// matmul, linear, softmax, log_softmax, layer_norm, cross_entropy and dropout: hand-computed
// values, layouts (transposed and broadcast views, 1-D operands), dtypes, error messages and
// backward rules. (Finite-difference gradchecks of every op live in the op table.)
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "backends/cpu/onednn_cache.h"
#include "core/allocator.h"
#include "core/ops.h"
#include "test_util.h"

namespace rw {

using namespace rw::test;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
// This file's check_close tolerance where a case gives none (looser than the shared default).
constexpr double kTol = 1e-5;

// Host reference: C[b] = A[b] @ B[b] for contiguous row-major [batch, M, K] and [batch, K, N].
std::vector<double> host_bmm(const std::vector<double>& A, const std::vector<double>& B,
                             int64_t batch, int64_t M, int64_t K, int64_t N) {
  std::vector<double> C(static_cast<std::size_t>(batch * M * N), 0.0);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t k = 0; k < K; ++k)
        for (int64_t j = 0; j < N; ++j)
          C[(b * M + i) * N + j] += A[(b * M + i) * K + k] * B[(b * K + k) * N + j];
  return C;
}

Tensor seeded_normal(Shape shape, uint64_t seed, DType dt = DType::f32) {
  Generator gen(seed);
  return randn(std::move(shape), gen, {.dtype = dt});
}

// --- matmul -------------------------------------------------------------------------------------

TEST_CASE("matmul: 2-D values in f32 and f64") {
  // [[1,2,3],[4,5,6]] @ [[7,8],[9,10],[11,12]] = [[58,64],[139,154]]
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor a = f64({1, 2, 3, 4, 5, 6}, {2, 3}).to(dt);
    Tensor b = f64({7, 8, 9, 10, 11, 12}, {3, 2}).to(dt);
    Tensor c = matmul(a, b);
    CHECK(c.shape() == Shape{2, 2});
    CHECK(c.dtype() == dt);
    check_close(c, {58, 64, 139, 154}, kTol);
  }
}

TEST_CASE("matmul: transposed views are used without copying the operands") {
  for (DType dt : {DType::f32, DType::f64}) {
    // a^T and b^T stored: the views are the matrices of the previous test.
    Tensor at = f64({1, 4, 2, 5, 3, 6}, {3, 2}).to(dt);
    Tensor bt = f64({7, 9, 11, 8, 10, 12}, {2, 3}).to(dt);
    Tensor a = at.mT(), b = bt.mT();
    REQUIRE_FALSE(a.is_contiguous());
    const int64_t before = memory_stats().allocated_bytes;
    reset_peak_memory();
    Tensor c = matmul(a, b);
    const int64_t peak = memory_stats().peak_allocated_bytes;
    if (dt == DType::f32) {
      // oneDNN reads the strides: the only bytes allocated are the output's.
      CHECK(peak - before == static_cast<int64_t>(c.nbytes()));
    }
    check_close(c, {58, 64, 139, 154}, kTol);
  }
}

TEST_CASE("matmul: batched transposed views, q @ k^T style") {
  Tensor q = seeded_normal({2, 3, 4, 5}, 1);                  // [b, h, t, d]
  Tensor k = seeded_normal({2, 4, 3, 5}, 2).transpose(1, 2);  // [b, h, t, d] from [b, t, h, d]
  Tensor scores = matmul(q, k.mT());
  REQUIRE(scores.shape() == Shape{2, 3, 4, 4});
  // Against the same product of contiguous copies computed on the host in f64.
  std::vector<double> Q = q.to_vector<double>();
  std::vector<double> KT = k.mT().contiguous().to_vector<double>();
  check_close(scores, host_bmm(Q, KT, 6, 4, 5, 4), 1e-5);
}

TEST_CASE("matmul: an expanded (stride-0) batch operand is read in place") {
  Tensor w = seeded_normal({1, 4, 3}, 24);
  Tensor we = w.expand({5, 4, 3});
  Tensor x = seeded_normal({5, 2, 4}, 25);
  const int64_t before = memory_stats().allocated_bytes;
  reset_peak_memory();
  Tensor y = matmul(x, we);
  CHECK(memory_stats().peak_allocated_bytes - before == static_cast<int64_t>(y.nbytes()));
  check_close(y, matmul(x, we.contiguous()).to_vector<double>(), kTol);
}

TEST_CASE("matmul: operands copied to a dense layout keep their expanded batch dims broadcast") {
  // a: K-strided (oneDNN needs a copy) and expanded along dim 1; b: transposed and expanded along
  // dim 0 (the f64 loops pack it). Both copies must keep the layout the batch merging assumed.
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor a = seeded_normal({2, 1, 4, 12}, 26, dt).slice(-1, 0, 12, 2).expand({2, 3, 4, 6});
    Tensor b = seeded_normal({1, 3, 5, 6}, 27, dt).mT().expand({2, 3, 6, 5});
    Tensor c = matmul(a, b);
    REQUIRE(c.shape() == Shape{2, 3, 4, 5});
    check_close(c, matmul(a.contiguous(), b.contiguous()).to_vector<double>(), 1e-5);
  }
}

TEST_CASE("matmul: 1-D operands are promoted and the added dim removed") {
  Tensor v = f32({1, 2, 3}, {3});
  Tensor m = f32({1, 0, 0, 1, 1, 1}, {3, 2});
  Tensor dot = matmul(v, v);
  CHECK(dot.dim() == 0);
  CHECK(dot.item() == doctest::Approx(14));
  Tensor vm = matmul(v, m);  // [3] @ [3, 2] -> [2]
  CHECK(vm.shape() == Shape{2});
  check_close(vm, {4, 5}, kTol);
  Tensor mv = matmul(m.mT(), v);  // [2, 3] @ [3] -> [2]
  CHECK(mv.shape() == Shape{2});
  check_close(mv, {4, 5}, kTol);
  Tensor bm = stack({m, mul(m, 2.0)});  // [2, 3, 2]
  Tensor vb = matmul(v, bm);            // [3] @ [2, 3, 2] -> [2, 2]
  CHECK(vb.shape() == Shape{2, 2});
  check_close(vb, {4, 5, 8, 10}, kTol);
}

TEST_CASE("matmul: batch dims broadcast") {
  Tensor a = seeded_normal({2, 1, 2, 3}, 3);
  Tensor b = seeded_normal({3, 3, 4}, 4);
  Tensor c = matmul(a, b);
  REQUIRE(c.shape() == Shape{2, 3, 2, 4});
  // Expand both on the host and compare per batch element.
  std::vector<double> A = a.expand({2, 3, 2, 3}).contiguous().to_vector<double>();
  std::vector<double> B = b.expand({2, 3, 3, 4}).contiguous().to_vector<double>();
  check_close(c, host_bmm(A, B, 6, 2, 3, 4), kTol);
  // A shared 2-D right operand (folded into one GEMM by the backend).
  Tensor w = seeded_normal({3, 5}, 5);
  Tensor cw = matmul(a, w);
  REQUIRE(cw.shape() == Shape{2, 1, 2, 5});
  std::vector<double> W = w.expand({2, 3, 5}).contiguous().to_vector<double>();
  check_close(cw, host_bmm(a.to_vector<double>(), W, 2, 2, 3, 5), kTol);
}

TEST_CASE("matmul: f32 matches f64 on odd sizes and awkward layouts") {
  Tensor a64 = seeded_normal({37, 53}, 6, DType::f64);
  Tensor b64 = seeded_normal({29, 53}, 7, DType::f64).mT();  // transposed f64 operand: packed
  Tensor ref = matmul(a64, b64);
  check_close(matmul(a64.to(DType::f32), b64.to(DType::f32)), ref.to_vector<double>(), 1e-4);
  // K-strided (every other column) and stride-0 (expanded) operands: oneDNN cannot take these
  // strides, so the backend copies them first; the values must not change.
  Tensor wide = seeded_normal({37, 106}, 8);
  Tensor strided = wide.slice(-1, 0, 106, 2);
  Tensor dense = strided.contiguous();
  Tensor b = b64.to(DType::f32);
  check_close(matmul(strided, b), matmul(dense, b).to_vector<double>(), 1e-5);
  Tensor row = seeded_normal({1, 53}, 9);
  Tensor rows = row.expand({37, 53});
  check_close(matmul(rows, b), matmul(rows.contiguous(), b).to_vector<double>(), 1e-5);
}

TEST_CASE("matmul: bf16 and f16 operands") {
  Tensor a = f32({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = f32({7, 8, 9, 10, 11, 12}, {3, 2});
  for (DType dt : {DType::bf16, DType::f16}) {
    Tensor c = matmul(a.to(dt), b.to(dt));
    CHECK(c.dtype() == dt);
    check_close(c, {58, 64, 139, 154}, 1e-2);
  }
}

TEST_CASE("matmul: repeated shapes reuse the cached primitive") {
  // Batched: plain 2-D products go to dnnl_sgemm, which has no primitive to cache.
  Tensor a = seeded_normal({3, 17, 19}, 10), b = seeded_normal({3, 19, 23}, 11);
  (void)matmul(a, b);
  const auto before = cpu::primitive_cache_stats();
  for (int i = 0; i < 5; ++i) (void)matmul(a, b);
  const auto after = cpu::primitive_cache_stats();
  CHECK(after.misses == before.misses);
  CHECK(after.hits >= before.hits + 5);
}

TEST_CASE("matmul: dtype promotion and errors") {
  Tensor a = f32({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = f64({7, 8, 9, 10, 11, 12}, {3, 2});
  Tensor c = matmul(a, b);
  CHECK(c.dtype() == DType::f64);
  check_close(c, {58, 64, 139, 154}, kTol);

  CHECK(error_message([] {
          matmul(zeros({2, 3}), zeros({4, 5}));
        }) == "matmul: inner dims differ: [2, 3] @ [4, 5]");
  CHECK(error_message([] { matmul(zeros({3}), zeros({4})); }) ==
        "matmul: inner dims differ: [3] @ [4]");
  CHECK(error_message([] {
          matmul(scalar_tensor(1), zeros({2}));
        }).starts_with("matmul: both operands need at least one dim"));
  std::string msg = error_message([] {
    matmul(zeros({2, 3}, {.dtype = DType::i64}), zeros({3, 2}, {.dtype = DType::i64}));
  });
  CHECK(msg.find("matmul: expected floating tensors") != std::string::npos);
  CHECK(msg.find("i64") != std::string::npos);
  CHECK(error_message([] {
          matmul(zeros({2, 2, 3}), zeros({3, 3, 4}));
        }) == "matmul: batch dims [2] and [3] cannot be broadcast: [2, 2, 3] @ [3, 3, 4]");
}

TEST_CASE("matmul: gradients, including broadcast batch dims and 1-D operands") {
  // d sum(A @ B) / dA = ones @ B^T: every row of dA holds B's row sums; dB = A^T @ ones.
  Tensor a = f64({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = f64({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, {3, 4});
  a.requires_grad_();
  b.requires_grad_();
  backward(sum(matmul(a, b)));
  check_close(a.grad(), {10, 26, 42, 10, 26, 42}, kTol);
  check_close(b.grad(), {5, 5, 5, 5, 7, 7, 7, 7, 9, 9, 9, 9}, kTol);

  // A shared 2-D b under a batched a: dB sums over the batch.
  Tensor x = f64({1, 2, 3, 4, 5, 6, 1, 1, 1, 2, 2, 2}, {2, 2, 3});
  Tensor w = f64({1, 2, 3, 4, 5, 6}, {3, 2});
  x.requires_grad_();
  w.requires_grad_();
  backward(sum(matmul(x, w)));
  CHECK(x.grad().shape() == Shape{2, 2, 3});
  check_close(x.grad(), {3, 7, 11, 3, 7, 11, 3, 7, 11, 3, 7, 11}, kTol);
  check_close(w.grad(), {8, 8, 10, 10, 12, 12}, kTol);  // column sums of x over all rows

  // A broadcast [1, 3, 2] b (general path: batched product, then summed).
  Tensor w3 = f64({1, 2, 3, 4, 5, 6}, {1, 3, 2});
  w3.requires_grad_();
  backward(sum(matmul(x.detach(), w3)));
  CHECK(w3.grad().shape() == Shape{1, 3, 2});
  check_close(w3.grad(), {8, 8, 10, 10, 12, 12}, kTol);

  // 1-D: d (v . u) / dv = u.
  Tensor v = f64({1, 2, 3}, {3});
  Tensor u = f64({4, 5, 6}, {3});
  v.requires_grad_();
  u.requires_grad_();
  backward(matmul(v, u));
  check_close(v.grad(), {4, 5, 6}, kTol);
  check_close(u.grad(), {1, 2, 3}, kTol);

  // Mixed dtypes: each gradient comes back in its input's dtype.
  Tensor a32 = f32({1, 2, 3, 4, 5, 6}, {2, 3});
  a32.requires_grad_();
  backward(sum(matmul(a32, b.detach())));
  CHECK(a32.grad().dtype() == DType::f32);
  check_close(a32.grad(), {10, 26, 42, 10, 26, 42}, kTol);
}

TEST_CASE("matmul: an input that needs no gradient gets none") {
  Tensor a = f64({1, 2, 3, 4}, {2, 2});
  Tensor b = f64({1, 0, 0, 1}, {2, 2});
  b.requires_grad_();
  backward(sum(matmul(a, b)));
  CHECK_FALSE(a.grad().defined());
  check_close(b.grad(), {4, 4, 6, 6}, kTol);
}

// --- linear -------------------------------------------------------------------------------------

TEST_CASE("linear: values with and without bias, any leading dims") {
  Tensor x = f32({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor w = f32({1, 0, 0, 0, 1, 1}, {2, 3});  // y0 = x0, y1 = x1 + x2
  Tensor bias = f32({10, 20}, {2});
  check_close(linear(x, w), {1, 5, 4, 11}, kTol);
  check_close(linear(x, w, bias), {11, 25, 14, 31}, kTol);
  Tensor y1 = linear(f32({1, 2, 3}, {3}), w, bias);
  CHECK(y1.shape() == Shape{2});
  check_close(y1, {11, 25}, kTol);
  Tensor x3 = stack({x, x});  // [2, 2, 3]
  Tensor y3 = linear(x3, w, bias);
  CHECK(y3.shape() == Shape{2, 2, 2});
  check_close(y3, {11, 25, 14, 31, 11, 25, 14, 31}, kTol);
  // A non-contiguous x (transposed rows) takes the batched path.
  Tensor xt = f32({1, 4, 2, 5, 3, 6}, {3, 2}).mT();
  check_close(linear(xt, w, bias), {11, 25, 14, 31}, kTol);
  check_close(linear(x.to(DType::f64), w.to(DType::f64), bias.to(DType::f64)), {11, 25, 14, 31},
              kTol);
}

TEST_CASE("linear: gradients of x, weight and bias") {
  Tensor x = f64({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor w = f64({1, 0, 0, 0, 1, 1}, {2, 3});
  Tensor bias = f64({10, 20}, {2});
  x.requires_grad_();
  w.requires_grad_();
  bias.requires_grad_();
  Tensor g = f64({1, 2, 3, 4}, {2, 2});  // upstream gradient
  backward(linear(x, w, bias), g);
  check_close(x.grad(), {1, 2, 2, 3, 4, 4}, kTol);        // g @ W
  check_close(w.grad(), {13, 17, 21, 18, 24, 30}, kTol);  // g^T @ x
  check_close(bias.grad(), {4, 6}, kTol);                 // sum of g over rows
  // Without bias: two inputs' gradients only.
  x.zero_grad();
  w.zero_grad();
  backward(sum(linear(x, w)));
  check_close(w.grad(), {5, 7, 9, 5, 7, 9}, kTol);
}

TEST_CASE("linear: errors name the op and the shapes") {
  CHECK(error_message([] {
          linear(zeros({2, 3}), zeros({4, 5}));
        }) == "linear: input features differ: x [2, 3] vs weight [4, 5] (expects [..., 5])");
  CHECK(error_message([] {
          linear(zeros({2, 3}), zeros({3}));
        }).starts_with("linear: weight must be 2-D"));
  CHECK(error_message([] {
          linear(zeros({2, 3}), zeros({4, 3}), zeros({3}));
        }).starts_with("linear: bias must have shape [4]"));
}

// --- softmax and log_softmax
// ------------------------------------------------------------------------

TEST_CASE("softmax: values, rows sum to one, any dim, f32 and f64") {
  const double e1 = std::exp(1.0), e2 = std::exp(2.0), e3 = std::exp(3.0), s = e1 + e2 + e3;
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = f64({1, 2, 3, 3, 2, 1}, {2, 3}).to(dt);
    check_close(softmax(x, -1), {e1 / s, e2 / s, e3 / s, e3 / s, e2 / s, e1 / s}, kTol);
    check_close(log_softmax(x, 1),
                {1 - std::log(s), 2 - std::log(s), 3 - std::log(s), 3 - std::log(s),
                 2 - std::log(s), 1 - std::log(s)},
                kTol);
    // Along dim 0 of the transposed layout: same numbers.
    Tensor xt = f64({1, 3, 2, 2, 3, 1}, {3, 2}).to(dt);
    check_close(softmax(xt, 0).mT().contiguous(), {e1 / s, e2 / s, e3 / s, e3 / s, e2 / s, e1 / s},
                kTol);
    // A middle dim of a 3-D tensor: sums over it are one.
    Tensor r = softmax(seeded_normal({3, 5, 4}, 12, dt), 1);
    check_close(sum(r, {1}), std::vector<double>(12, 1.0), kTol);
  }
  CHECK(softmax(scalar_tensor(3.0), 0).item() == doctest::Approx(1.0));
}

TEST_CASE("log_softmax: stable for large logits, an all -inf row gives NaN") {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = f64({1e4, 0, -1e4}, {3}).to(dt);
    check_close(log_softmax(x, 0), {0, -1e4, -2e4}, kTol);
    check_close(softmax(x, 0), {1, 0, 0}, kTol);
    Tensor dead = f64({-kInf, -kInf}, {2}).to(dt);
    std::vector<double> y = softmax(dead, 0).to_vector<double>();
    CHECK(std::isnan(y[0]));
    CHECK(std::isnan(y[1]));
  }
}

TEST_CASE("softmax and log_softmax: backward") {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = seeded_normal({4, 6}, 13, dt);
    x.requires_grad_();
    // sum over the softmax dim is constant: zero gradient.
    backward(sum(softmax(x, -1)));
    check_close(x.grad(), std::vector<double>(24, 0.0), 1e-6);
    // d/dx of y_0 = softmax(x)_0 for one row: y_0 * (onehot_0 - y).
    Tensor v = f64({1, 2, 3}, {3}).to(dt);
    v.requires_grad_();
    Tensor y = softmax(v, 0);
    backward(y.select(0, 0));
    std::vector<double> p = y.to_vector<double>();
    check_close(v.grad(), {p[0] * (1 - p[0]), -p[0] * p[1], -p[0] * p[2]}, kTol);
    // log_softmax: d sum(log_softmax(v) * g) = g - softmax(v) * sum(g).
    Tensor w = f64({1, 2, 3}, {3}).to(dt);
    w.requires_grad_();
    backward(log_softmax(w, 0), f64({1, 0, 2}, {3}).to(dt));
    check_close(w.grad(), {1 - 3 * p[0], -3 * p[1], 2 - 3 * p[2]}, kTol);
  }
}

// --- layer_norm
// -------------------------------------------------------------------------------------

TEST_CASE("layer_norm: each row has mean 0 and variance 1, weight and bias apply after") {
  for (DType dt : {DType::f32, DType::f64}) {
    const int64_t rows = 6, D = 257;
    Tensor x = add(mul(seeded_normal({2, 3, D}, 14, dt), 3.0), 5.0);
    Tensor y = layer_norm(x, Tensor(), Tensor(), 0.0);
    std::vector<double> v = y.to_vector<double>();
    for (int64_t r = 0; r < rows; ++r) {
      double m = 0, s2 = 0;
      for (int64_t j = 0; j < D; ++j) m += v[r * D + j];
      m /= D;
      for (int64_t j = 0; j < D; ++j) s2 += (v[r * D + j] - m) * (v[r * D + j] - m);
      CHECK(std::abs(m) < 1e-5);
      CHECK(s2 / D == doctest::Approx(1).epsilon(1e-4));
    }
    Tensor w = seeded_normal({D}, 15, dt), b = seeded_normal({D}, 16, dt);
    Tensor yw = layer_norm(x, w, b, 0.0);
    check_close(yw, add(mul(y, w), b).to_vector<double>(), 1e-5);
  }
  // A hand-computed row: [1, 2, 3] -> mean 2, var 2/3.
  const double r = 1 / std::sqrt(2.0 / 3 + 1e-5);
  check_close(layer_norm(f32({1, 2, 3}, {3}), Tensor(), Tensor()), {-r, 0, r}, kTol);
}

TEST_CASE("layer_norm: backward") {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = seeded_normal({5, 8}, 17, dt);
    Tensor w = seeded_normal({8}, 18, dt), b = seeded_normal({8}, 19, dt);
    x.requires_grad_();
    w.requires_grad_();
    b.requires_grad_();
    Tensor g = seeded_normal({5, 8}, 20, dt);
    Tensor y = layer_norm(x, w, b);
    backward(y, g);
    // db = sum of g over rows; dw = sum of g * xhat over rows.
    check_close(b.grad(), sum(g, {0}).to_vector<double>(), 1e-5);
    Tensor xhat = layer_norm(x.detach(), Tensor(), Tensor());
    check_close(w.grad(), sum(mul(g, xhat), {0}).to_vector<double>(), 1e-4);
    // A shift of x along a row changes nothing: each row of dx sums to zero.
    check_close(sum(x.grad(), {1}), std::vector<double>(5, 0.0), 1e-4);

    // Without weight and bias, only x gets a gradient.
    Tensor x2 = seeded_normal({3, 4}, 21, dt);
    x2.requires_grad_();
    backward(sum(mul(layer_norm(x2, Tensor(), Tensor()), seeded_normal({3, 4}, 22, dt))));
    check_close(sum(x2.grad(), {1}), std::vector<double>(3, 0.0), 1e-4);
  }
}

TEST_CASE("layer_norm: errors") {
  CHECK(error_message([] {
          layer_norm(zeros({2, 3}), zeros({4}), Tensor());
        }) == "layer_norm: weight must have shape [3] (the last dim of x [2, 3]), got [4]");
  CHECK(error_message([] {
          layer_norm(zeros({2, 3}), Tensor(), zeros({2, 3}));
        }).starts_with("layer_norm: bias must have shape [3]"));
  CHECK(error_message([] {
          layer_norm(zeros({2, 3}, {.dtype = DType::i64}), Tensor(), Tensor());
        }).starts_with("layer_norm: expected a floating tensor"));
}

// --- cross_entropy ------------------------------------------------------------------------------

TEST_CASE("cross_entropy: values, reductions and ignore_index") {
  // Row 0: logits [1, 2, 3], target 2; row 1: [1, 1, 1], target 0.
  const double l0 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 3;
  const double l1 = std::log(3.0);
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor logits = f64({1, 2, 3, 1, 1, 1}, {2, 3}).to(dt);
    Tensor t = i64({2, 0}, {2});
    check_close(cross_entropy(logits, t, -100, Reduction::none), {l0, l1}, kTol);
    check_close(cross_entropy(logits, t, -100, Reduction::sum), {l0 + l1}, kTol);
    check_close(cross_entropy(logits, t), {(l0 + l1) / 2}, kTol);
    CHECK(cross_entropy(logits, t).dtype() == dt);
    // An ignored row counts neither in the sum nor in the mean's denominator.
    Tensor ti = i64({2, -100}, {2});
    check_close(cross_entropy(logits, ti, -100, Reduction::none), {l0, 0}, kTol);
    check_close(cross_entropy(logits, ti), {l0}, kTol);
    check_close(cross_entropy(logits, i64({7, 0}, {2}), 7), {l1}, kTol);
    // Everything ignored: the mean of nothing is 0.
    check_close(cross_entropy(logits, i64({-100, -100}, {2})), {0}, kTol);
    // i32 targets are accepted; leading dims of any rank.
    check_close(cross_entropy(logits.reshape({1, 2, 3}), t.to(DType::i32).reshape({1, 2})),
                {(l0 + l1) / 2}, kTol);
  }
  // Stable for large logits.
  Tensor big = f32({1e4, 0, -1e4}, {1, 3});
  check_close(cross_entropy(big, i64({1}, {1})), {1e4}, kTol);
  // bf16 logits: computed in f32 inside, returned in bf16.
  Tensor half = f32({1, 2, 3, 1, 1, 1}, {2, 3}).to(DType::bf16);
  Tensor lh = cross_entropy(half, i64({2, 0}, {2}));
  CHECK(lh.dtype() == DType::bf16);
  check_close(lh, {(l0 + l1) / 2}, 1e-2);
}

TEST_CASE("cross_entropy: gradient is (softmax - onehot) / count, zero on ignored rows") {
  Tensor logits = f64({1, 2, 3, 1, 1, 1, 0, 0, 5}, {3, 3});
  logits.requires_grad_();
  Tensor t = i64({2, -100, 0}, {3});
  backward(cross_entropy(logits, t));
  std::vector<double> p = softmax(logits.detach(), -1).to_vector<double>();
  std::vector<double> expected(9, 0.0);
  for (int c = 0; c < 3; ++c) {
    expected[c] = (p[c] - (c == 2 ? 1 : 0)) / 2;
    expected[6 + c] = (p[6 + c] - (c == 0 ? 1 : 0)) / 2;
  }
  check_close(logits.grad(), expected, 1e-9);
  // Reduction::none with an upstream gradient per row.
  logits.zero_grad();
  backward(cross_entropy(logits, t, -100, Reduction::none), f64({2, 5, 3}, {3}));
  for (int c = 0; c < 3; ++c) {
    expected[c] = 2 * (p[c] - (c == 2 ? 1 : 0));
    expected[6 + c] = 3 * (p[6 + c] - (c == 0 ? 1 : 0));
  }
  check_close(logits.grad(), expected, 1e-9);
}

TEST_CASE("cross_entropy: errors") {
  Tensor logits = zeros({2, 3});
  CHECK(error_message([&] {
          cross_entropy(logits, i64({3, 0}, {2}));
        }) == "cross_entropy: index 3 out of range for extent 3");
  CHECK(error_message([&] {
          cross_entropy(logits, i64({-1, 0}, {2}));
        }) == "cross_entropy: index -1 out of range for extent 3");
  CHECK(error_message([&] {
          cross_entropy(logits, i64({0, 0, 0}, {3}));
        }).starts_with("cross_entropy: targets shape [3] must equal the logits shape [2, 3]"));
  CHECK(error_message([&] {
          cross_entropy(logits, zeros({2}));
        }).starts_with("cross_entropy: indices must be i64 or i32"));
}

// --- dropout ------------------------------------------------------------------------------------

TEST_CASE("dropout: deterministic in the state, identity at p = 0, mean preserved") {
  Tensor x = ones({100000});
  const PhiloxState s1{.seed = 1, .stream = 0, .counter = 0};
  const PhiloxState s2{.seed = 2, .stream = 0, .counter = 0};
  Tensor a = dropout(x, 0.3, s1), b = dropout(x, 0.3, s1), c = dropout(x, 0.3, s2);
  std::vector<float> va = a.to_vector<float>(), vb = b.to_vector<float>(),
                     vc = c.to_vector<float>();
  CHECK(va == vb);
  CHECK(va != vc);
  // Kept elements are scaled by 1/(1-p); about p of them are dropped; the mean stays about 1.
  int64_t dropped = 0;
  for (float v : va) {
    if (v == 0) {
      ++dropped;
    } else {
      CHECK(v == doctest::Approx(1 / 0.7));
    }
  }
  CHECK(static_cast<double>(dropped) / 100000 == doctest::Approx(0.3).epsilon(0.02));
  CHECK(mean(a).item() == doctest::Approx(1.0).epsilon(0.02));
  CHECK(dropout(x, 0.0, s1).is_same(x));
  CHECK(error_message([&] { dropout(x, 1.0, s1); }) == "dropout: p must be in [0, 1), got 1");
  CHECK(error_message([&] { dropout(x, -0.1, s1); }).starts_with("dropout: p must be in [0, 1)"));
}

TEST_CASE("dropout: the gradient uses the forward's mask") {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = seeded_normal({1000}, 23, dt);
    x.requires_grad_();
    const PhiloxState s{.seed = 7, .stream = 3, .counter = 11};
    Tensor y = dropout(x, 0.5, s);
    backward(sum(y));
    std::vector<double> yv = y.to_vector<double>(), g = x.grad().to_vector<double>();
    for (std::size_t i = 0; i < g.size(); ++i) {
      INFO("element ", i);
      CHECK(g[i] == (yv[i] == 0 ? 0.0 : 2.0));
    }
  }
}

}  // namespace
}  // namespace rw
