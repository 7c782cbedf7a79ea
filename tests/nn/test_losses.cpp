// Losses (nn/losses.h): chunked_cross_entropy against rw::cross_entropy(linear(...)) in values and
// gradients (ignored targets, with and without bias, chunk sizes that do not divide L), f64
// gradcheck, the peak-memory claim, errors, and the bits-per-byte / bits-per-dim conversions.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <numbers>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/tape.h"
#include "core/allocator.h"
#include "core/ops.h"
#include "nn/losses.h"
#include "nn/nn_test_util.h"
#include "test_util.h"

namespace rw::nn {

using namespace rw::test;

namespace {

// Random targets in [0, vocab) with every third one replaced by ignore_index (-100).
Tensor targets_with_ignored(Shape shape, int64_t vocab, uint64_t seed) {
  Generator gen(seed);
  std::vector<int64_t> t = randint(0, vocab, shape, gen).to_vector<int64_t>();
  for (std::size_t i = 0; i < t.size(); i += 3) t[i] = -100;
  return from_vector<int64_t>(t, shape);
}

}  // namespace

TEST_CASE("chunked_cross_entropy: equals cross_entropy(linear(...)) in value and gradients, f64") {
  struct Case {
    Shape hidden_shape;
    int64_t chunk_size;
    bool bias;
  };
  const int64_t d = 5, V = 11;
  for (const Case& c :
       {Case{{2, 7, d}, 3, true}, Case{{2, 7, d}, 3, false}, Case{{9, d}, 4, true},
        Case{{2, 6, d}, 2, true}, Case{{2, 6, d}, 50, true}, Case{{3, 2, 5, d}, 2, false}}) {
    INFO("hidden ", c.hidden_shape, " chunk ", c.chunk_size, " bias ", c.bias);
    Shape t_shape(c.hidden_shape.begin(), c.hidden_shape.end() - 1);
    Tensor targets = targets_with_ignored(t_shape, V, 1);
    Tensor h1 = randn64(c.hidden_shape, 2).requires_grad_();
    Tensor w1 = randn64({V, d}, 3).requires_grad_();
    Tensor b1 = c.bias ? randn64({V}, 4).requires_grad_() : Tensor();
    Tensor h2 = h1.detach().clone().requires_grad_();
    Tensor w2 = w1.detach().clone().requires_grad_();
    Tensor b2 = c.bias ? b1.detach().clone().requires_grad_() : Tensor();

    Tensor expected = cross_entropy(linear(h1, w1, b1), targets);
    Tensor got = chunked_cross_entropy(h2, w2, b2, targets, c.chunk_size);
    CHECK(got.dim() == 0);
    CHECK(got.dtype() == DType::f64);
    check_close(got, host(expected), 1e-12);
    backward(mul(expected, 1.7));  // a non-unit upstream gradient
    backward(mul(got, 1.7));
    check_close(h2.grad(), host(h1.grad()), 1e-12);
    check_close(w2.grad(), host(w1.grad()), 1e-12);
    if (c.bias) check_close(b2.grad(), host(b1.grad()), 1e-12);
  }
}

TEST_CASE("chunked_cross_entropy: gradcheck in f64 with ignored targets") {
  const int64_t d = 3, V = 4;
  Tensor targets = targets_with_ignored({2, 5}, V, 5);
  for (bool bias : {true, false}) {
    INFO("bias ", bias);
    std::vector<Tensor> inputs{randn64({2, 5, d}, 6).requires_grad_(),
                               randn64({V, d}, 7).requires_grad_()};
    if (bias) inputs.push_back(randn64({V}, 8).requires_grad_());
    const auto r = gradcheck(
        [&](const std::vector<Tensor>& in) {
          return chunked_cross_entropy(in[0], in[1], bias ? in[2] : Tensor(), targets, 2);
        },
        inputs);
    CHECK_MESSAGE(r.ok, r.message);
  }
}

TEST_CASE("chunked_cross_entropy: all targets ignored gives 0 and zero gradients, f32 agrees") {
  Tensor h = randn64({2, 4, 3}, 9).requires_grad_();
  Tensor w = randn64({5, 3}, 10).requires_grad_();
  Tensor ignored = full({2, 4}, -1, {.dtype = DType::i64});
  Tensor loss = chunked_cross_entropy(h, w, Tensor(), ignored, 3, -1);
  CHECK(loss.item() == 0.0);
  backward(loss);
  CHECK(host(h.grad()) == std::vector<double>(8 * 3, 0.0));
  CHECK(host(w.grad()) == std::vector<double>(5 * 3, 0.0));

  Tensor h32 = h.detach().to(DType::f32), w32 = w.detach().to(DType::f32);
  Tensor targets = targets_with_ignored({2, 4}, 5, 11);
  check_close(chunked_cross_entropy(h32, w32, Tensor(), targets, 3),
              host(cross_entropy(linear(h32, w32), targets)), 1e-6);
  CHECK(chunked_cross_entropy(h32, w32, Tensor(), targets, 3).dtype() == DType::f32);
}

TEST_CASE("chunked_cross_entropy: never holds the whole logit matrix (peak memory)") {
  // hidden [B, L, d] against a vocabulary V much wider than d, in f32; forward + backward.
  const int64_t B = 2, L = 64, d = 16, V = 1024, chunk = 8;
  const int64_t num_chunks = L / chunk;
  const int64_t chunk_logit_bytes = B * chunk * V * 4;  // one chunk's [B, chunk, V] logits
  Generator gen(12);
  Tensor w = mul(randn({V, d}, gen), 0.1).detach().requires_grad_();
  Tensor b = zeros({V}).requires_grad_();

  auto run = [&](bool chunked, int64_t length) {
    Tensor h = randn({B, length, d}, gen).requires_grad_();
    Tensor targets = randint(0, V, {B, length}, gen);
    w.zero_grad();
    b.zero_grad();
    return peak_bytes([&] {
      // A statement of its own: the plain logits (a temporary) die here, before backward.
      Tensor loss = chunked ? chunked_cross_entropy(h, w, b, targets, chunk)
                            : cross_entropy(linear(h, w, b), targets);
      backward(loss);
    });
  };
  const int64_t plain_peak = run(false, L);
  const int64_t chunked_peak = run(true, L);
  MESSAGE("peak bytes: plain ", plain_peak, ", chunked ", chunked_peak, ", one chunk's logits ",
          chunk_logit_bytes);
  // The bound asserted: peak(plain) - peak(chunked) >= (num_chunks - 1) * chunk_logit_bytes.
  // Both runs allocate the same gradients of h, w and b; the plain loss also holds the whole
  // [B, L, V] logits (num_chunks chunks' worth; their log-softmax is kept for backward), where
  // the chunked one holds a few chunks' worth at most.
  CHECK(plain_peak - chunked_peak >= (num_chunks - 1) * chunk_logit_bytes);
  // Doubling L adds only d-wide tensors (the gradient of h) to the chunked peak.
  const int64_t chunked_peak_2l = run(true, 2 * L);
  MESSAGE("at 2L: chunked ", chunked_peak_2l);
  CHECK(chunked_peak_2l - chunked_peak < chunk_logit_bytes);
}

TEST_CASE("chunked_cross_entropy: errors name the function and the offending values") {
  Tensor h = zeros({2, 4, 3}), w = zeros({5, 3});
  Tensor t = zeros({2, 4}, {.dtype = DType::i64});
  CHECK(contains(error_message([&] {
                   chunked_cross_entropy(h, zeros({5, 4}), {}, t, 2);
                 }),
                 "chunked_cross_entropy: weight must be [V, 3] (d of hidden [2, 4, 3]), got shape "
                 "[5, 4]"));
  CHECK(contains(error_message([&] { chunked_cross_entropy(h, w, zeros({4}), t, 2); }),
                 "chunked_cross_entropy: bias must have shape [5]"));
  CHECK(contains(error_message([&] {
                   chunked_cross_entropy(h, w, {}, zeros({2, 3}, {.dtype = DType::i64}), 2);
                 }),
                 "chunked_cross_entropy: targets shape [2, 3] must equal the hidden shape [2, 4, "
                 "3] without its feature dim"));
  CHECK(contains(error_message([&] {
                   chunked_cross_entropy(h, w, {}, zeros({2, 4}), 2);
                 }),
                 "chunked_cross_entropy: targets must be i64 or i32, got f32"));
  CHECK(contains(error_message([&] { chunked_cross_entropy(h, w, {}, t, 0); }),
                 "chunked_cross_entropy: chunk_size must be > 0, got 0"));
  CHECK(contains(error_message([&] {
                   chunked_cross_entropy(h, w, {}, i64({0, 1, 2, 5, 0, 1, -100, 3}, {2, 4}), 2);
                 }),
                 "chunked_cross_entropy: target 5 out of range for 5 classes (ignore_index -100)"));
  CHECK(contains(error_message([&] { chunked_cross_entropy(zeros({3}), w, {}, t, 2); }),
                 "chunked_cross_entropy: hidden must be [..., L, d], got shape [3]"));
}

TEST_CASE("bits_per_byte and bits_per_dim: nats / ln 2") {
  // A model that is uniform over the 256 byte values loses ln 256 nats per byte: 8 bits.
  Tensor uniform_logits = zeros({3, 256}, {.dtype = DType::f64});
  const double nats = cross_entropy(uniform_logits, i64({0, 97, 255})).item();
  CHECK(nats == doctest::Approx(std::log(256.0)).epsilon(1e-12));
  CHECK(bits_per_byte(nats) == doctest::Approx(8.0).epsilon(1e-12));
  CHECK(bits_per_byte(std::numbers::ln2) == doctest::Approx(1.0).epsilon(1e-15));
  CHECK(bits_per_dim(2.5) == 2.5 / std::numbers::ln2);
  CHECK(bits_per_dim(0.0) == 0.0);
}

}  // namespace rw::nn
