// The core layers (nn/init.h, linear.h, embedding.h, layer_norm.h, dropout.h, activations.h):
// initialisers (fans, bounds, statistics, determinism), each layer's forward against the ops it is
// made of, f64 gradchecks with respect to the input and every parameter, dropout's eval identity
// and regenerable masks, and error messages.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <memory>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/tape.h"
#include "core/generator_scope.h"
#include "core/ops.h"
#include "nn/activations.h"
#include "nn/dropout.h"
#include "nn/embedding.h"
#include "nn/init.h"
#include "nn/layer_norm.h"
#include "nn/linear.h"
#include "nn/nn_test_util.h"
#include "test_util.h"

namespace rw::nn {

using namespace rw::test;

namespace {

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : host(t)) m = std::max(m, std::abs(v));
  return m;
}

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double e : v) s += e;
  return s / static_cast<double>(v.size());
}

double std_of(const std::vector<double>& v) {
  const double m = mean_of(v);
  double s = 0;
  for (double e : v) s += (e - m) * (e - m);
  return std::sqrt(s / static_cast<double>(v.size()));
}

// Overwrites every parameter of `m` with N(0, 0.5^2) f64 values, so that biases and norm weights
// are exercised by the gradchecks (their initial values are 0 or 1).
void randomize(Module& m, uint64_t seed) {
  m.to(DType::f64);
  Generator gen(seed);
  NoGradGuard no_grad;
  for (auto& [name, p] : m.named_parameters()) {
    copy_(p, mul(randn(p.shape(), gen, {.dtype = DType::f64}), 0.5));
  }
}

}  // namespace

// --- initialisers
// ---------------------------------------------------------------------------------

TEST_CASE("init: fans follow PyTorch for [out, in] and [out, in, k, k] weights") {
  init::Fans f = init::calculate_fans(zeros({7, 3}));
  CHECK(f.fan_in == 3);
  CHECK(f.fan_out == 7);
  f = init::calculate_fans(zeros({8, 4, 3, 5}));
  CHECK(f.fan_in == 4 * 15);
  CHECK(f.fan_out == 8 * 15);
  const std::string msg = error_message([] { init::calculate_fans(zeros({5})); });
  CHECK(contains(msg, "init::calculate_fans"));
  CHECK(contains(msg, "at least 2 dims"));
  CHECK(contains(msg, "[5]"));
  CHECK(contains(error_message([] { init::xavier_uniform_(zeros({4})); }), "[4]"));
}

TEST_CASE("init: gains match torch.nn.init.calculate_gain") {
  using init::Nonlinearity;
  CHECK(init::calculate_gain(Nonlinearity::linear) == 1.0);
  CHECK(init::calculate_gain(Nonlinearity::sigmoid) == 1.0);
  CHECK(init::calculate_gain(Nonlinearity::tanh) == doctest::Approx(5.0 / 3.0));
  CHECK(init::calculate_gain(Nonlinearity::relu) == doctest::Approx(std::sqrt(2.0)));
  CHECK(init::calculate_gain(Nonlinearity::leaky_relu, 0.2) ==
        doctest::Approx(std::sqrt(2.0 / 1.04)));
  CHECK(init::calculate_gain(Nonlinearity::selu) == 0.75);
}

TEST_CASE("init: uniform bounds and normal statistics of xavier and kaiming") {
  Generator gen(3);
  const int64_t out = 200, in = 300;  // 60000 draws: the sample std is within 1% w.h.p.
  Tensor w = empty({out, in});

  // Uniform: every value inside the bound, and the extremes close to it.
  const double xavier_bound = 2.0 * std::sqrt(6.0 / (in + out));
  init::xavier_uniform_(w, 2.0, gen);
  CHECK(max_abs(w) <= xavier_bound);
  CHECK(max_abs(w) > 0.99 * xavier_bound);
  CHECK(std_of(host(w)) == doctest::Approx(xavier_bound / std::sqrt(3.0)).epsilon(0.02));

  const double kaiming_bound = std::sqrt(2.0) * std::sqrt(3.0 / in);  // relu gain, fan_in
  init::kaiming_uniform_(w, {.nonlinearity = init::Nonlinearity::relu}, gen);
  CHECK(max_abs(w) <= kaiming_bound);
  CHECK(max_abs(w) > 0.99 * kaiming_bound);

  // Normal: the sample std is the formula's.
  init::xavier_normal_(w, 1.0, gen);
  CHECK(std_of(host(w)) == doctest::Approx(std::sqrt(2.0 / (in + out))).epsilon(0.02));
  CHECK(std::abs(mean_of(host(w))) < 0.05 * std::sqrt(2.0 / (in + out)));  // ~12 std errors
  init::kaiming_normal_(w, {.mode = init::FanMode::fan_out}, gen);         // default leaky_relu(0)
  CHECK(std_of(host(w)) == doctest::Approx(std::sqrt(2.0 / out)).epsilon(0.02));
  init::normal_(w, 3.0, 0.5, gen);
  CHECK(mean_of(host(w)) == doctest::Approx(3.0).epsilon(0.01));
  CHECK(std_of(host(w)) == doctest::Approx(0.5).epsilon(0.02));
  init::uniform_(w, -1.0, 2.0, gen);
  CHECK(mean_of(host(w)) == doctest::Approx(0.5).epsilon(0.02));
  CHECK(max_abs(w) <= 2.0);

  init::zeros_(w);
  CHECK(max_abs(w) == 0);
  init::ones_(w);
  CHECK(mean_of(host(w)) == 1.0);
  CHECK(std_of(host(w)) == 0.0);
}

TEST_CASE("init: same generator state gives bit-identical values, parameters stay leaves") {
  Tensor a = empty({5, 7}), b = empty({5, 7});
  Generator g1(42), g2(42);
  init::kaiming_uniform_(a, {}, g1);
  init::kaiming_uniform_(b, {}, g2);
  CHECK(host(a) == host(b));
  init::normal_(a, 0, 1, g1);  // the generators advanced identically
  init::normal_(b, 0, 1, g2);
  CHECK(host(a) == host(b));
  // Without a generator argument, initialisers draw from current_generator().
  Generator g3(42);
  {
    GeneratorScope scope(g3);
    init::kaiming_uniform_(a);
  }
  Generator g4(42);
  init::kaiming_uniform_(b, {}, g4);
  CHECK(host(a) == host(b));

  // On a parameter that requires grad, with grad mode on: no graph, still a leaf.
  Tensor p = zeros({3, 4}).requires_grad_();
  init::xavier_uniform_(p);
  CHECK(p.is_leaf());
  CHECK(p.requires_grad());
  CHECK(max_abs(p) > 0);
}

TEST_CASE("init: errors name the initialiser and the offending values") {
  CHECK(contains(error_message([] { init::uniform_(zeros({3}), 2.0, 1.0); }),
                 "init::uniform_: need finite low <= high, got low 2 and high 1"));
  CHECK(contains(error_message([] { init::normal_(zeros({3}), 0.0, -1.0); }), "std >= 0"));
  CHECK(contains(error_message([] { init::ones_(zeros({3}, {.dtype = DType::i64})); }),
                 "init::constant_: the tensor must be floating, got i64"));
  // A zero-element tensor has nothing to draw: a no-op that leaves the generator alone.
  Generator gen(1);
  init::kaiming_normal_(empty({3, 0}), {}, gen);
  CHECK(gen.state().counter == 0);
}

// --- Linear
// -----------------------------------------------------------------------------------------

TEST_CASE("Linear: parameters, PyTorch's default init bounds, and forward = x W^T + b") {
  Generator gen(1);
  Linear lin(64, 32, true, gen);
  CHECK(lin.type_name() == "Linear");
  CHECK(lin.weight.shape() == Shape{32, 64});
  CHECK(lin.bias.shape() == Shape{32});
  CHECK(lin.num_parameters() == 32 * 64 + 32);
  const double bound = 1.0 / std::sqrt(64.0);
  CHECK(max_abs(lin.weight) <= bound);
  CHECK(max_abs(lin.weight) > 0.95 * bound);
  CHECK(max_abs(lin.bias) <= bound);
  CHECK(max_abs(lin.bias) > 0.5 * bound);

  Tensor x = randn({2, 3, 64}, gen);
  Tensor expected = add(matmul(x, lin.weight.mT()), lin.bias);
  check_close(lin.forward(x), host(expected), 1e-5);

  Linear no_bias(4, 3, false, gen);
  CHECK_FALSE(no_bias.bias.defined());
  CHECK(no_bias.named_parameters().size() == 1);
  CHECK(no_bias.named_parameters()[0].first == "weight");
  Tensor x2 = randn({5, 4}, gen);
  check_close(no_bias(x2), host(matmul(x2, no_bias.weight.mT())), 1e-5);
}

TEST_CASE("Linear: gradcheck in f64 with and without bias") {
  for (bool bias : {true, false}) {
    INFO("bias=", bias);
    Generator gen(2);
    Linear lin(4, 3, bias, gen);
    randomize(lin, 7);
    std::vector<Tensor*> slots{&lin.weight};
    if (bias) slots.push_back(&lin.bias);
    const auto r = gradcheck_module(slots, randn64({2, 3, 4}, 8),
                                    [&](const Tensor& x) { return lin.forward(x); });
    CHECK_MESSAGE(r.ok, r.message);
  }
}

TEST_CASE("Linear: a wrong input width names the module and both sizes") {
  Linear lin(4, 3);
  const std::string msg = error_message([&] { lin.forward(zeros({2, 5})); });
  CHECK(contains(msg, "Linear: expected input [..., 4] (in_features), got shape [2, 5]"));
}

// --- Embedding
// --------------------------------------------------------------------------------------

TEST_CASE("Embedding: rows of the table, N(0, 1) init, gradcheck of the weight") {
  Generator gen(4);
  Embedding emb(10, 6, gen);
  CHECK(emb.weight.shape() == Shape{10, 6});
  Tensor idx = i64({3, 0, 9, 3, 5, 1}, {2, 3});
  Tensor y = emb(idx);
  CHECK(y.shape() == Shape{2, 3, 6});
  const std::vector<double> w = host(emb.weight), got = host(y);
  const std::vector<int64_t> ids = idx.to_vector<int64_t>();
  for (std::size_t r = 0; r < ids.size(); ++r) {
    for (std::size_t c = 0; c < 6; ++c) CHECK(got[r * 6 + c] == w[ids[r] * 6 + c]);
  }
  Embedding big(100, 100, gen);
  CHECK(std_of(host(big.weight)) == doctest::Approx(1.0).epsilon(0.03));
  CHECK(std::abs(mean_of(host(big.weight))) < 0.05);

  randomize(emb, 9);
  const auto r =
      gradcheck_module({&emb.weight}, idx, [&](const Tensor& i) { return emb.forward(i); });
  CHECK_MESSAGE(r.ok, r.message);
}

TEST_CASE("Embedding: float or out-of-range indices are errors") {
  Embedding emb(10, 6);
  CHECK(contains(error_message([&] { emb.forward(zeros({3})); }),
                 "Embedding: indices must be i64 or i32, got f32"));
  CHECK(contains(error_message([&] { emb.forward(i64({1, 10})); }), "10"));
  CHECK(contains(error_message([] { Embedding(0, 4); }),
                 "Embedding: num_embeddings and embedding_dim must be > 0, got 0 and 4"));
}

// --- LayerNorm
// --------------------------------------------------------------------------------------

TEST_CASE("LayerNorm: ones/zeros init and forward = (x - mean) / sqrt(var + eps) * w + b") {
  LayerNorm ln(5, 1e-3);
  CHECK(host(ln.weight) == std::vector<double>(5, 1.0));
  CHECK(host(ln.bias) == std::vector<double>(5, 0.0));
  randomize(ln, 11);
  Tensor x = randn64({3, 5}, 12);
  const std::vector<double> xs = host(x), w = host(ln.weight), b = host(ln.bias);
  std::vector<double> expected;
  for (int r = 0; r < 3; ++r) {
    double m = 0, v = 0;
    for (int c = 0; c < 5; ++c) m += xs[r * 5 + c] / 5;
    for (int c = 0; c < 5; ++c) v += (xs[r * 5 + c] - m) * (xs[r * 5 + c] - m) / 5;
    for (int c = 0; c < 5; ++c) {
      expected.push_back((xs[r * 5 + c] - m) / std::sqrt(v + 1e-3) * w[c] + b[c]);
    }
  }
  check_close(ln(x), expected, 1e-12);

  LayerNorm plain(5, 1e-5, false);
  CHECK(plain.num_parameters() == 0);
  CHECK_FALSE(plain.weight.defined());
  check_close(plain(x), host(layer_norm(x, Tensor(), Tensor(), 1e-5)), 1e-12);
}

TEST_CASE("LayerNorm: gradcheck in f64 of x, weight and bias, errors") {
  LayerNorm ln(4);
  randomize(ln, 13);
  const auto r = gradcheck_module({&ln.weight, &ln.bias}, randn64({2, 3, 4}, 14),
                                  [&](const Tensor& x) { return ln.forward(x); });
  CHECK_MESSAGE(r.ok, r.message);
  CHECK(contains(error_message([&] {
                   ln.forward(zeros({2, 5}));
                 }),
                 "LayerNorm: expected input [..., 4], got shape [2, 5]"));
  CHECK(contains(error_message([] { LayerNorm(4, -1.0); }), "LayerNorm: eps must be >= 0"));
}

// --- activations
// ------------------------------------------------------------------------------------

TEST_CASE("activations: modules equal their ops, swiglu is FeedForward-only") {
  Tensor x = randn64({3, 4}, 15);
  CHECK(host(ReLU().forward(x)) == host(relu(x)));
  CHECK(host(GELU().forward(x)) == host(gelu(x, GeluApprox::none)));
  CHECK(host(GELU(GeluApprox::tanh).forward(x)) == host(gelu(x, GeluApprox::tanh)));
  CHECK(host(GELU(GeluApprox::tanh).forward(x)) != host(gelu(x, GeluApprox::none)));
  // SiLU against its definition x * sigmoid(x) = x / (1 + e^-x).
  std::vector<double> expected;
  for (double v : host(x)) expected.push_back(v / (1 + std::exp(-v)));
  check_close(SiLU().forward(x), expected, 1e-12);
  CHECK(host(activate(x, Activation::gelu_tanh)) == host(gelu(x, GeluApprox::tanh)));
  const std::string msg = error_message([&] { activate(x, Activation::swiglu); });
  CHECK(contains(msg, "activate: swiglu is a gated activation"));
  CHECK(to_string(Activation::gelu_tanh) == "gelu_tanh");
}

TEST_CASE("activations: gradcheck of GELU (both forms), ReLU and SiLU in f64") {
  Tensor x = randn64({3, 5}, 16);
  std::vector<std::shared_ptr<Module>> modules{std::make_shared<GELU>(),
                                               std::make_shared<GELU>(GeluApprox::tanh),
                                               std::make_shared<ReLU>(), std::make_shared<SiLU>()};
  for (auto& m : modules) {
    INFO(m->type_name());
    const auto r = gradcheck_module({}, x, [&](const Tensor& in) { return m->forward(in); });
    CHECK_MESSAGE(r.ok, r.message);
  }
}

// --- Dropout
// ----------------------------------------------------------------------------------------

TEST_CASE("Dropout: identity in eval mode and with p = 0, errors") {
  Tensor x = randn64({4, 8}, 17);
  Dropout drop(0.5);
  drop.eval();
  CHECK(host(drop(x)) == host(x));
  CHECK(host(drop.forward(x, PhiloxState{1, 2, 3})) == host(x));
  Generator gen(5);
  const PhiloxState before = gen.state();
  {
    GeneratorScope scope(gen);
    drop(x);
    Dropout(0.0).forward(x);  // training, p = 0
  }
  CHECK(gen.state() == before);  // nothing was drawn
  CHECK(contains(error_message([] { Dropout(1.0); }), "Dropout: p must be in [0, 1), got 1"));
}

TEST_CASE("Dropout: in training the mask comes from current_generator and can be regenerated") {
  Tensor x = add(zeros({64, 64}, {.dtype = DType::f64}), 1.0);
  Dropout drop(0.25);
  Generator gen(21);
  const PhiloxState key = gen.state();  // the state forward will draw
  Tensor y;
  {
    GeneratorScope scope(gen);
    y = drop(x);
  }
  CHECK(gen.state().counter == key.counter + 64 * 64 / 4);  // it drew x.numel() values
  // Zeros or 1 / (1 - p), with about a quarter zeroed.
  int zeros_seen = 0;
  for (double v : host(y)) {
    CHECK((v == 0 || v == doctest::Approx(1 / 0.75)));
    zeros_seen += v == 0;
  }
  CHECK(zeros_seen == doctest::Approx(0.25 * 64 * 64).epsilon(0.1));
  // The same key gives the same mask, through the module and through rw::dropout.
  CHECK(host(drop.forward(x, key)) == host(y));
  CHECK(host(dropout(x, 0.25, key)) == host(y));
  // Another key gives another mask.
  PhiloxState other = key;
  other.counter += 1;
  CHECK(host(drop.forward(x, other)) != host(y));
}

TEST_CASE("dropout_slice: each slice equals the same slice of the whole tensor's dropout") {
  // Odd extents, so slices start at every offset within a Philox block of four words.
  const Shape full{3, 7, 5};
  const PhiloxState key{9, 4, 100};
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = add(rand(full, PhiloxState{1, 0, 0}, {.dtype = dt}), 0.5);
    const Tensor whole = dropout(x, 0.3, key);
    for (int64_t dim = 0; dim < 3; ++dim) {
      for (int64_t start = 0; start < full[dim]; start += 2) {
        const int64_t n = std::min<int64_t>(2, full[dim] - start);
        INFO("dtype ", dt, " dim ", dim, " start ", start);
        Tensor part = dropout_slice(x.narrow(dim, start, n), 0.3, key, full, dim, start);
        CHECK(host(part) == host(whole.narrow(dim, start, n)));
      }
    }
  }
  CHECK(contains(error_message([&] {
                   dropout_slice(zeros({3, 2, 5}), 0.3, key, full, 1, 6);
                 }),
                 "dropout_slice: a part of shape [3, 2, 5] starting at 6 along dim 1 is not a "
                 "slice of shape [3, 7, 5]"));
}

TEST_CASE("dropout_slice: gradcheck in f64 (the gradient is the mask)") {
  const Shape full{2, 6, 3};
  const PhiloxState key{3, 0, 7};
  const auto r = gradcheck(
      [&](const std::vector<Tensor>& in) { return dropout_slice(in[0], 0.4, key, full, 1, 2); },
      {randn64({2, 3, 3}, 18).requires_grad_()});
  CHECK_MESSAGE(r.ok, r.message);
}

}  // namespace rw::nn
