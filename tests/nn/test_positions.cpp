// Position embeddings (nn/positions.h): sinusoidal values against Vaswani et al.'s closed form,
// learned and axial tables (axial against the concatenation/sum formula, for the full grid and
// shorter lengths), forward adding to x, gradchecks of the learned modules, and errors.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/tape.h"
#include "core/generator_scope.h"
#include "core/ops.h"
#include "nn/nn_test_util.h"
#include "nn/positions.h"
#include "test_util.h"

namespace rw::nn {

using namespace rw::test;

namespace {

// The rows [start, start + length) of a row-major [rows, d] host table.
std::vector<double> rows_of(const std::vector<double>& table, int64_t d, int64_t start,
                            int64_t length) {
  return {table.begin() + start * d, table.begin() + (start + length) * d};
}

// Axial embedding of position p written from its definition: p's digits in the mixed radix
// `shape` (most significant first) pick one row per axis table; the rows are concatenated or
// summed. Tables are host copies, [shape[k], dims[k]] row-major.
std::vector<double> axial_formula(const std::vector<std::vector<double>>& tables,
                                  const std::vector<int64_t>& shape,
                                  const std::vector<int64_t>& dims, bool concat, int64_t length) {
  const std::size_t n = shape.size();
  std::vector<double> out;
  for (int64_t p = 0; p < length; ++p) {
    std::vector<int64_t> digit(n);
    int64_t rest = p;
    for (std::size_t k = n; k-- > 0;) {
      digit[k] = rest % shape[k];
      rest /= shape[k];
    }
    std::vector<double> row;
    for (std::size_t k = 0; k < n; ++k) {
      for (int64_t c = 0; c < dims[k]; ++c) {
        const double v = tables[k][digit[k] * dims[k] + c];
        if (concat || k == 0) {
          row.push_back(v);
        } else {
          row[c] += v;
        }
      }
    }
    out.insert(out.end(), row.begin(), row.end());
  }
  return out;
}

}  // namespace

// --- sinusoidal
// -----------------------------------------------------------------------------------

TEST_CASE("positions: sinusoidal values follow Vaswani et al.'s closed form") {
  for (int64_t d : {8, 7, 1}) {
    INFO("d = ", d);
    SinusoidalPositionalEmbedding pe(d);
    CHECK(pe.num_parameters() == 0);
    const int64_t L = 50;
    Tensor e = pe.embed(L, 0, {.dtype = DType::f64});
    REQUIRE(e.shape() == Shape{L, d});
    std::vector<double> expected;
    for (int64_t pos = 0; pos < L; ++pos) {
      for (int64_t j = 0; j < d; ++j) {
        // PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d)).
        const int64_t i = j / 2;
        const double angle = pos / std::pow(10000.0, 2.0 * i / d);
        expected.push_back(j % 2 == 0 ? std::sin(angle) : std::cos(angle));
      }
    }
    check_close(e, expected, 1e-12);
    // A window starting later is the same table's rows; the default dtype is f32.
    check_close(pe.embed(5, 40), rows_of(expected, d, 40, 5), 1e-6);
    CHECK(pe.embed(5, 40).dtype() == DType::f32);
  }
  // Any length: no table limits it.
  SinusoidalPositionalEmbedding pe(4, 100.0);
  Tensor far = pe.embed(2, 100000, {.dtype = DType::f64});
  // base 100, d 4: the second pair's frequency is 100^(-2/4) = 1/10. Angles near 1e5 carry about
  // 1e-11 of rounding, hence the tolerance.
  check_close(far,
              {std::sin(100000.0), std::cos(100000.0), std::sin(100000.0 / 10.0),
               std::cos(100000.0 / 10.0), std::sin(100001.0), std::cos(100001.0),
               std::sin(100001.0 / 10.0), std::cos(100001.0 / 10.0)},
              1e-9);
}

TEST_CASE("positions: sinusoidal forward adds the table in x's dtype") {
  SinusoidalPositionalEmbedding pe(6);
  for (DType dt : {DType::f32, DType::f64, DType::bf16}) {
    INFO("dtype = ", dt);
    Tensor x = randn64({2, 5, 6}, 1).to(dt);
    Tensor y = pe.forward(x);
    CHECK(y.dtype() == dt);
    Tensor expected = add(x, pe.embed(5, 0, {.dtype = dt}));
    CHECK(host(y) == host(expected));
  }
  Tensor x = randn64({3, 6}, 2);  // [L, d] without a batch dim
  check_close(pe.forward(x, 7), host(add(x, pe.embed(3, 7, {.dtype = DType::f64}))), 0);
}

// --- learned
// --------------------------------------------------------------------------------------

TEST_CASE("positions: learned embedding rows, forward and gradcheck") {
  Generator gen(4);
  auto pe = std::make_shared<LearnedPositionalEmbedding>(8, 3, gen);
  CHECK(pe->named_parameters().size() == 1);
  CHECK(pe->named_parameters()[0].first == "weight");
  CHECK(pe->weight.shape() == Shape{8, 3});
  const std::vector<double> w = host(pe->weight);
  check_close(pe->embed(8), w, 0);
  check_close(pe->embed(3, 5), rows_of(w, 3, 5, 3), 0);
  Tensor x = randn({2, 6, 3}, gen);
  check_close(pe->forward(x), host(add(x, pe->embed(6))), 0);

  pe->to(DType::f64);
  std::vector<Tensor> inputs{randn64({2, 5, 3}, 9).requires_grad_(),
                             pe->weight.detach().clone().requires_grad_()};
  for (int64_t start : {0, 3}) {
    INFO("start = ", start);
    GradcheckResult r = gradcheck(
        [&](const std::vector<Tensor>& in) {
          pe->weight = in[1];
          return mul(pe->forward(in[0], start), pe->forward(in[0], start));  // not linear in w
        },
        inputs);
    CHECK_MESSAGE(r.ok, r.message);
  }
  // Rows past the sequence get no gradient.
  pe->zero_grad();
  backward(sum(pe->forward(randn64({1, 5, 3}, 10))));
  std::vector<double> g = host(pe->weight.grad());
  for (int64_t i = 0; i < 8 * 3; ++i) CHECK(g[i] == (i < 5 * 3 ? 1.0 : 0.0));
}

TEST_CASE("positions: the learned initialisation is N(0, 1) from current_generator") {
  Generator a(11), scoped(11);
  LearnedPositionalEmbedding explicit_gen(512, 16, a);
  GeneratorScope scope(scoped);
  LearnedPositionalEmbedding from_scope(512, 16);
  CHECK(host(from_scope.weight) == host(explicit_gen.weight));
  const std::vector<double> v = host(explicit_gen.weight);
  double mean = 0, sq = 0;
  for (double e : v) mean += e, sq += e * e;
  mean /= double(v.size());
  CHECK(std::abs(mean) < 0.05);
  CHECK(std::sqrt(sq / double(v.size())) == doctest::Approx(1.0).epsilon(0.05));
}

// --- axial
// ----------------------------------------------------------------------------------------

TEST_CASE("positions: axial concat matches the formula for the full grid and shorter lengths") {
  const std::vector<int64_t> shape{3, 4}, dims{2, 3};
  Generator gen(5);
  AxialPositionalEmbedding pe(shape, 5, {.axis_dims = dims}, gen);
  CHECK(pe.max_len() == 12);
  CHECK(pe.num_parameters() == 3 * 2 + 4 * 3);
  std::vector<std::string> names;
  for (const auto& [name, p] : pe.named_parameters()) {
    names.push_back(fmt::format("{}{}", name, p.shape()));
  }
  CHECK(names == std::vector<std::string>{"weight_0[3, 2]", "weight_1[4, 3]"});
  const std::vector<std::vector<double>> tables{host(pe.weight(0)), host(pe.weight(1))};
  const std::vector<double> full = axial_formula(tables, shape, dims, true, 12);
  for (int64_t L : {12, 7, 1, 0}) {
    INFO("L = ", L);
    Tensor e = pe.embed(L);
    REQUIRE(e.shape() == Shape{L, 5});
    check_close(e, rows_of(full, 5, 0, L), 0);
  }
  check_close(pe.embed(5, 6), rows_of(full, 5, 6, 5), 0);
  Tensor x = randn({2, 7, 5}, gen);
  check_close(pe.forward(x), host(add(x, pe.embed(7))), 0);
}

TEST_CASE("positions: axial sum, even split and three axes match the formula") {
  Generator gen(6);
  {
    const std::vector<int64_t> shape{2, 3, 2};
    AxialPositionalEmbedding sum_pe(shape, 4, {.combine = AxialCombine::sum}, gen);
    CHECK(sum_pe.axis_dims() == std::vector<int64_t>{4, 4, 4});
    std::vector<std::vector<double>> tables;
    for (int64_t k = 0; k < 3; ++k) tables.push_back(host(sum_pe.weight(k)));
    for (int64_t L : {12, 9}) {
      check_close(sum_pe.embed(L), axial_formula(tables, shape, {4, 4, 4}, false, L), 1e-6);
    }
  }
  {
    // d = 8 over three axes: 3 + 3 + 2.
    const std::vector<int64_t> shape{2, 2, 3};
    AxialPositionalEmbedding split_pe(shape, 8, {}, gen);
    CHECK(split_pe.combine() == AxialCombine::concat);
    CHECK(split_pe.axis_dims() == std::vector<int64_t>{3, 3, 2});
    std::vector<std::vector<double>> tables;
    for (int64_t k = 0; k < 3; ++k) tables.push_back(host(split_pe.weight(k)));
    check_close(split_pe.embed(10), axial_formula(tables, shape, {3, 3, 2}, true, 10), 0);
  }
}

TEST_CASE("positions: gradcheck of the axial tables, concat and sum, L below the grid") {
  for (AxialCombine combine : {AxialCombine::concat, AxialCombine::sum}) {
    INFO("sum = ", combine == AxialCombine::sum);
    Generator gen(7);
    auto pe = std::make_shared<AxialPositionalEmbedding>(
        std::vector<int64_t>{3, 4}, 4,
        AxialPositionalEmbeddingOptions{.combine = combine,
                                        .axis_dims = combine == AxialCombine::concat
                                                         ? std::vector<int64_t>{1, 3}
                                                         : std::vector<int64_t>{}},
        gen);
    pe->to(DType::f64);
    std::vector<Tensor> inputs{randn64({2, 10, 4}, 8).requires_grad_(),
                               pe->weight(0).detach().clone().requires_grad_(),
                               pe->weight(1).detach().clone().requires_grad_()};
    GradcheckResult r = gradcheck(
        [&](const std::vector<Tensor>& in) {
          pe->weight(0) = in[1];
          pe->weight(1) = in[2];
          Tensor y = pe->forward(in[0], 1);
          return mul(y, y);
        },
        inputs);
    CHECK_MESSAGE(r.ok, r.message);
  }
}

// --- errors
// ---------------------------------------------------------------------------------------

TEST_CASE("positions: errors name the module and both numbers") {
  LearnedPositionalEmbedding learned(8, 4);
  CHECK(contains(error_message([&] { learned.embed(9); }),
                 "LearnedPositionalEmbedding: sequence length 9 exceeds max_len 8"));
  CHECK(contains(error_message([&] {
                   learned.forward(zeros({2, 9, 4}));
                 }),
                 "LearnedPositionalEmbedding: sequence length 9 exceeds max_len 8"));
  CHECK(contains(error_message([&] { learned.embed(4, 6); }),
                 "LearnedPositionalEmbedding: positions 6..9 (length 4 from start 6) exceed "
                 "max_len 8"));
  CHECK(
      contains(error_message([&] {
                 learned.forward(zeros({2, 3, 5}));
               }),
               "LearnedPositionalEmbedding: expected x of shape [..., length, 4], got [2, 3, 5]"));
  CHECK(contains(error_message([&] { learned.forward(zeros({4})); }),
                 "LearnedPositionalEmbedding: expected x of shape [..., length, 4], got [4]"));

  AxialPositionalEmbedding axial({3, 4}, 5);
  CHECK(contains(error_message([&] { axial.embed(13); }),
                 "AxialPositionalEmbedding: sequence length 13 exceeds the 12 positions of axial "
                 "shape [3, 4]"));
  CHECK(contains(error_message([&] {
                   axial.forward(zeros({1, 2, 6}));
                 }),
                 "AxialPositionalEmbedding: expected x of shape [..., length, 5], got [1, 2, 6]"));
  CHECK(contains(error_message([] {
                   AxialPositionalEmbedding({3, 4}, 6, {.axis_dims = {2, 3}});
                 }),
                 "AxialPositionalEmbedding: axis_dims [2, 3] sum to 5, expected d = 6"));
  CHECK(contains(error_message([] {
                   AxialPositionalEmbedding({3, 4}, 5, {.axis_dims = {5}});
                 }),
                 "AxialPositionalEmbedding: 1 axis_dims [5] for 2 axes [3, 4]"));
  CHECK(contains(error_message([] {
                   AxialPositionalEmbedding({3, 0}, 5);
                 }),
                 "AxialPositionalEmbedding: axial_shape [3, 0] must be positive"));
  CHECK(contains(
      error_message([] {
        AxialPositionalEmbedding({3, 4}, 5, {.combine = AxialCombine::sum, .axis_dims = {2, 3}});
      }),
      "AxialPositionalEmbedding: axis_dims [2, 3] apply to concat only"));
  CHECK(contains(error_message([&] { axial.weight(2); }),
                 "AxialPositionalEmbedding: axis 2 out of range [0, 2)"));

  SinusoidalPositionalEmbedding sinusoidal(6);
  CHECK(contains(
      error_message([&] {
        sinusoidal.forward(zeros({2, 3, 4}));
      }),
      "SinusoidalPositionalEmbedding: expected x of shape [..., length, 6], got [2, 3, 4]"));
  CHECK(contains(error_message([] { SinusoidalPositionalEmbedding(0); }),
                 "SinusoidalPositionalEmbedding: d must be positive, got 0"));
}

}  // namespace rw::nn
