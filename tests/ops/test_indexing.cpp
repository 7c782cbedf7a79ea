// gather, scatter_add, index_select, embedding, one_hot, sort and argsort: values (including
// dims other than 0, negative dims, large inputs on the parallel paths), gradients and errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>
#include <tuple>
#include <vector>

#include "core/ops.h"
#include "test_util.h"

namespace rw {

using namespace rw::test;

namespace {

// Deterministic pseudo-random integers in [0, n) without depending on the op under test.
std::vector<int64_t> lcg_ints(std::size_t count, int64_t n, uint64_t seed) {
  std::vector<int64_t> v(count);
  uint64_t s = seed;
  for (auto& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = static_cast<int64_t>((s >> 33) % static_cast<uint64_t>(n));
  }
  return v;
}

std::vector<double> iota_values(std::size_t n, double scale = 1) {
  std::vector<double> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<double>(i) * scale + 0.5;
  return v;
}

// The ascending order of the sort contract: NaNs last, -0 == +0, ties in input order.
template <typename T>
std::vector<int64_t> reference_argsort(const std::vector<T>& keys, bool descending) {
  std::vector<int64_t> order(keys.size());
  std::iota(order.begin(), order.end(), 0);
  auto before = [&](int64_t i, int64_t j) {
    T a = keys[static_cast<std::size_t>(i)], b = keys[static_cast<std::size_t>(j)];
    if constexpr (std::is_floating_point_v<T>) {
      if (std::isnan(a) || std::isnan(b)) {
        return descending ? std::isnan(a) && !std::isnan(b) : !std::isnan(a) && std::isnan(b);
      }
    }
    return descending ? b < a : a < b;
  };
  std::stable_sort(order.begin(), order.end(), before);
  return order;
}

}  // namespace

TEST_CASE("indexing: gather along each dim, negative dims and smaller index shapes") {
  Tensor x = f64({0, 1, 2, 10, 11, 12}, {2, 3});
  CHECK(gather(x, 1, i64({0, 0, 2, 1}, {2, 2})).to_vector<double>() ==
        std::vector<double>{0, 0, 12, 11});
  CHECK(gather(x, -1, i64({2, 1, 0, 0}, {2, 2})).to_vector<double>() ==
        std::vector<double>{2, 1, 10, 10});
  Tensor g0 = gather(x, 0, i64({1, 0, 1}, {1, 3}));
  CHECK(g0.shape() == Shape{1, 3});
  CHECK(g0.to_vector<double>() == std::vector<double>{10, 1, 12});
  // i32 indices are accepted.
  CHECK(gather(x, 1, from_vector<int32_t>({2, 0}, Shape{2, 1})).to_vector<double>() ==
        std::vector<double>{2, 10});

  // 3-D along the middle dim with an index smaller than x in the other dims (torch semantics):
  // out[i][j][k] = x[i][index[i][j][k]][k].
  Tensor x3 = from_vector(iota_values(2 * 4 * 3), Shape{2, 4, 3});
  std::vector<int64_t> idx = {3, 0, 1, 2, 2, 3};  // shape [1, 3, 2]
  Tensor out = gather(x3, -2, i64(idx, {1, 3, 2}));
  REQUIRE(out.shape() == Shape{1, 3, 2});
  auto xv = x3.to_vector<double>();
  auto ov = out.to_vector<double>();
  for (int j = 0; j < 3; ++j) {
    for (int k = 0; k < 2; ++k) {
      CHECK(ov[static_cast<std::size_t>(j * 2 + k)] ==
            xv[static_cast<std::size_t>(idx[static_cast<std::size_t>(j * 2 + k)] * 3 + k)]);
    }
  }
  // Half types and integers move unchanged.
  CHECK(gather(x.to(DType::bf16), 1, i64({2, 0}, {2, 1})).to_vector<float>() ==
        std::vector<float>{2, 10});
  CHECK(gather(x.to(DType::i32), 0, i64({1, 1, 0}, {1, 3})).to_vector<int32_t>() ==
        std::vector<int32_t>{10, 11, 2});
  // A non-contiguous input.
  CHECK(gather(x.mT(), 1, i64({1, 0, 0}, {3, 1})).to_vector<double>() ==
        std::vector<double>{10, 1, 2});
}

TEST_CASE("indexing: gather gradient scatters back and accumulates repeats") {
  Tensor x = f64({0, 1, 2, 10, 11, 12}, {2, 3});
  x.requires_grad_();
  Tensor out = gather(x, 1, i64({0, 0, 2, 1, 1, 1}, {2, 3}));
  backward(out, f64({1, 2, 3, 4, 5, 6}, {2, 3}));
  CHECK(x.grad().to_vector<double>() == std::vector<double>{3, 0, 3, 0, 15, 0});
}

TEST_CASE("indexing: scatter_add values, duplicates, dims and a larger src") {
  Tensor x = f64({1, 1, 1, 1, 1, 1}, {2, 3});
  // dim 1 with duplicate targets: row 0 adds 1+2 into column 2, row 1 adds 3 into 0, 4 into 1.
  Tensor out = scatter_add(x, 1, i64({2, 2, 0, 1}, {2, 2}), f64({1, 2, 3, 4}, {2, 2}));
  CHECK(out.to_vector<double>() == std::vector<double>{1, 1, 4, 4, 5, 1});
  CHECK(x.to_vector<double>() == std::vector<double>(6, 1));  // out of place
  // dim 0 (= -2), src larger than index: only src's leading [1, 3] block is used.
  Tensor src = f64({5, 6, 7, 100, 100, 100}, {2, 3});
  CHECK(scatter_add(x, -2, i64({1, 0, 1}, {1, 3}), src).to_vector<double>() ==
        std::vector<double>{1, 7, 1, 6, 1, 8});
  // Integer and bool dtypes.
  Tensor xi = zeros({4}, {.dtype = DType::i64});
  CHECK(scatter_add(xi, 0, i64({3, 3, 0, 3}), from_vector<int64_t>({1, 2, 3, 4}))
            .to_vector<int64_t>() == std::vector<int64_t>{3, 0, 0, 7});
  // f16 accumulates through float.
  Tensor xh = zeros({2}, {.dtype = DType::f16});
  CHECK(scatter_add(xh, 0, i64({1, 1, 1}), from_vector<float>({0.5f, 0.25f, 1}).to(DType::f16))
            .to_vector<float>() == std::vector<float>{0, 1.75f});
}

TEST_CASE("indexing: scatter_add gradient is g for x and gather(g) for src") {
  Tensor x = zeros({2, 3}, {.dtype = DType::f64, .requires_grad = true});
  Tensor src = f64({1, 2, 3, 4, 5, 6}, {2, 3});
  src.requires_grad_();
  // Index [2, 2]: src's last column gets no gradient.
  Tensor out = scatter_add(x, 1, i64({2, 0, 1, 1}, {2, 2}), src);
  Tensor g = f64({10, 20, 30, 40, 50, 60}, {2, 3});
  backward(out, g);
  CHECK(x.grad().to_vector<double>() == g.to_vector<double>());
  CHECK(src.grad().shape() == Shape{2, 3});
  CHECK(src.grad().to_vector<double>() == std::vector<double>{30, 10, 0, 50, 50, 0});
}

TEST_CASE("indexing: large scatter_add and gather agree with a plain loop on both parallel paths") {
  // Few outer slices (threads own ranges of the target dim) and many (threads own slices).
  for (auto [rows, extent, count] :
       {std::tuple<int64_t, int64_t, int64_t>{1, 1000, 100000}, {64, 50, 1000}}) {
    auto idx = lcg_ints(static_cast<std::size_t>(rows * count), extent, 7);
    std::vector<double> src_v(idx.size());
    for (std::size_t i = 0; i < src_v.size(); ++i) src_v[i] = static_cast<double>(i % 17) - 8;
    Tensor out = scatter_add(zeros({rows, extent}, {.dtype = DType::f64}), 1,
                             i64(idx, {rows, count}), from_vector(src_v, Shape{rows, count}));
    std::vector<double> expect(static_cast<std::size_t>(rows * extent), 0.0);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < count; ++c) {
        auto k = static_cast<std::size_t>(r * count + c);
        expect[static_cast<std::size_t>(r * extent + idx[k])] += src_v[k];
      }
    }
    CHECK(out.to_vector<double>() == expect);
    // gather reads the same positions back.
    Tensor table =
        from_vector(iota_values(static_cast<std::size_t>(rows * extent)), Shape{rows, extent});
    auto gv = gather(table, 1, i64(idx, {rows, count})).to_vector<double>();
    auto tv = table.to_vector<double>();
    bool all = true;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < count; ++c) {
        auto k = static_cast<std::size_t>(r * count + c);
        all = all && gv[k] == tv[static_cast<std::size_t>(r * extent + idx[k])];
      }
    }
    CHECK(all);
  }
}

TEST_CASE("indexing: index_select rows, columns, middle dims and its gradient") {
  Tensor x = f64({0, 1, 2, 10, 11, 12, 20, 21, 22}, {3, 3});
  CHECK(index_select(x, 0, i64({2, 0, 2})).to_vector<double>() ==
        std::vector<double>{20, 21, 22, 0, 1, 2, 20, 21, 22});
  Tensor cols = index_select(x, -1, i64({1, 1}));
  CHECK(cols.shape() == Shape{3, 2});
  CHECK(cols.to_vector<double>() == std::vector<double>{1, 1, 11, 11, 21, 21});
  CHECK(index_select(x, 0, i64({})).shape() == Shape{0, 3});
  // A middle dim of a 3-D tensor, bf16.
  Tensor x3 = from_vector(iota_values(24), Shape{2, 3, 4}).to(DType::bf16);
  Tensor mid = index_select(x3, 1, i64({2, 0}));
  REQUIRE(mid.shape() == Shape{2, 2, 4});
  auto xv = x3.to_vector<float>();
  auto mv = mid.to_vector<float>();
  for (int a = 0; a < 2; ++a) {
    for (int k = 0; k < 2; ++k) {
      for (int b = 0; b < 4; ++b) {
        int src_row = k == 0 ? 2 : 0;
        CHECK(mv[static_cast<std::size_t>((a * 2 + k) * 4 + b)] ==
              xv[static_cast<std::size_t>((a * 3 + src_row) * 4 + b)]);
      }
    }
  }
  // Gradient: index_add of g, repeats accumulate.
  Tensor w = f64({0, 1, 2, 10, 11, 12, 20, 21, 22}, {3, 3});
  w.requires_grad_();
  backward(index_select(w, 1, i64({2, 2, 0})), f64({1, 2, 3, 4, 5, 6, 7, 8, 9}, {3, 3}));
  CHECK(w.grad().to_vector<double>() == std::vector<double>{3, 0, 3, 6, 0, 9, 9, 0, 15});
}

TEST_CASE("indexing: index_select permutes [n_hashes * L, 64] rows and back (Reformer case)") {
  const int64_t rows = 8192, d = 64;
  Tensor keys = i64(lcg_ints(static_cast<std::size_t>(rows), 1 << 20, 3));
  Tensor perm = argsort(keys);
  Tensor inverse = argsort(perm);
  Tensor x = from_vector(iota_values(static_cast<std::size_t>(rows * d), 0.25), Shape{rows, d})
                 .to(DType::f32);
  x.requires_grad_();
  Tensor permuted = index_select(x, 0, perm);
  auto pv = permuted.to_vector<float>();
  auto xv = x.to_vector<float>();
  auto p = perm.to_vector<int64_t>();
  bool rows_match = true;
  for (int64_t r = 0; r < rows; ++r) {
    rows_match = rows_match && std::equal(pv.begin() + r * d, pv.begin() + (r + 1) * d,
                                          xv.begin() + p[static_cast<std::size_t>(r)] * d);
  }
  CHECK(rows_match);
  CHECK(index_select(permuted.detach(), 0, inverse).to_vector<float>() == xv);
  // Backward of a permutation is the inverse permutation (index_add over owned row ranges).
  Tensor g =
      from_vector(iota_values(static_cast<std::size_t>(rows * d)), Shape{rows, d}).to(DType::f32);
  backward(permuted, g);
  CHECK(x.grad().to_vector<float>() == index_select(g, 0, inverse).to_vector<float>());
}

TEST_CASE("indexing: embedding looks up rows for any index shape, gradient accumulates") {
  Tensor w = f64({0, 1, 10, 11, 20, 21, 30, 31}, {4, 2});
  w.requires_grad_();
  Tensor out = embedding(w, i64({3, 0, 3, 1}, {2, 2}));
  REQUIRE(out.shape() == Shape{2, 2, 2});
  CHECK(out.to_vector<double>() == std::vector<double>{30, 31, 0, 1, 30, 31, 10, 11});
  backward(out, f64({1, 2, 3, 4, 5, 6, 7, 8}, {2, 2, 2}));
  CHECK(w.grad().to_vector<double>() == std::vector<double>{3, 4, 7, 8, 0, 0, 6, 8});
  // 0-dim index gives [d]; i32 indices work.
  CHECK(embedding(w.detach(), scalar_tensor(2, {.dtype = DType::i64})).to_vector<double>() ==
        std::vector<double>{20, 21});
  CHECK(embedding(w.detach(), from_vector<int32_t>({1})).shape() == Shape{1, 2});
}

TEST_CASE("indexing: one_hot") {
  Tensor oh = one_hot(i64({2, 0, 1, 2}, {2, 2}), 3);
  CHECK(oh.shape() == Shape{2, 2, 3});
  CHECK(oh.dtype() == DType::f32);
  CHECK(oh.to_vector<float>() == std::vector<float>{0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1});
  CHECK(one_hot(i64({1}), 2, DType::i64).to_vector<int64_t>() == std::vector<int64_t>{0, 1});
  CHECK(contains(error_message([] { one_hot(i64({3}), 3); }),
                 "one_hot: index 3 out of range for extent 3"));
  CHECK(contains(error_message([] { one_hot(i64({0}), 0); }), "one_hot: num_classes"));
}

TEST_CASE("indexing: sort is stable, ascending and descending, along any dim") {
  Tensor keys = f64({3, 1, 2, 1, 3, 1}, {6});
  auto [v, i] = sort(keys);
  CHECK(v.to_vector<double>() == std::vector<double>{1, 1, 1, 2, 3, 3});
  CHECK(i.to_vector<int64_t>() == std::vector<int64_t>{1, 3, 5, 2, 0, 4});
  CHECK(i.dtype() == DType::i64);
  auto [vd, id] = sort(keys, 0, /*descending=*/true);
  CHECK(vd.to_vector<double>() == std::vector<double>{3, 3, 2, 1, 1, 1});
  CHECK(id.to_vector<int64_t>() == std::vector<int64_t>{0, 4, 2, 1, 3, 5});

  // Along dim 0 of a 2-D tensor (strided rows) and dim -1.
  Tensor m = f64({5, 0, 1, 9, 5, 2}, {3, 2});
  auto [v0, i0] = sort(m, 0);
  CHECK(v0.to_vector<double>() == std::vector<double>{1, 0, 5, 2, 5, 9});
  CHECK(i0.to_vector<int64_t>() == std::vector<int64_t>{1, 0, 0, 2, 2, 1});
  CHECK(argsort(m, -1, true).to_vector<int64_t>() == std::vector<int64_t>{0, 1, 1, 0, 0, 1});

  // Longer rows take the radix path: compare with std::stable_sort, ascending and descending,
  // for several key types.
  auto ints = lcg_ints(1000, 7, 11);
  for (bool desc : {false, true}) {
    auto expect = reference_argsort(ints, desc);
    CHECK(argsort(i64(ints), 0, desc).to_vector<int64_t>() == expect);
    CHECK(argsort(i64(ints).to(DType::i32), 0, desc).to_vector<int64_t>() == expect);
    CHECK(argsort(i64(ints).to(DType::u8), 0, desc).to_vector<int64_t>() == expect);
    CHECK(argsort(i64(ints).to(DType::f32), 0, desc).to_vector<int64_t>() == expect);
    CHECK(argsort(i64(ints).to(DType::bf16), 0, desc).to_vector<int64_t>() == expect);
  }
  std::vector<int64_t> bits = {1, 0, 0, 1, 1, 0};
  CHECK(argsort(i64(bits).to(DType::boolean)).to_vector<int64_t>() ==
        std::vector<int64_t>{1, 2, 5, 0, 3, 4});
}

TEST_CASE("indexing: sort places NaNs last ascending and first descending, -0 ties +0") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> keys = {nan, 1, -inf, nan, 0, -0.0, -2.5, inf};
  for (DType dt : {DType::f64, DType::f32, DType::bf16, DType::f16}) {
    CAPTURE(dt);
    Tensor x = f64(keys, {8}).to(dt);
    auto [v, i] = sort(x);
    CHECK(i.to_vector<int64_t>() == std::vector<int64_t>{2, 6, 4, 5, 1, 7, 0, 3});
    auto vv = v.to_vector<double>();
    CHECK(vv[0] == -inf);
    CHECK(std::signbit(vv[3]));  // the values are the input's, -0 kept
    CHECK(std::isnan(vv[6]));
    CHECK(std::isnan(vv[7]));
    CHECK(argsort(x, 0, true).to_vector<int64_t>() == std::vector<int64_t>{0, 3, 7, 1, 4, 5, 6, 2});
  }
  // The radix path (rows longer than 32) follows the same order.
  std::vector<double> many;
  for (int r = 0; r < 20; ++r) {
    for (double k : keys) many.push_back(k * (r % 3 + 1));
  }
  for (bool desc : {false, true}) {
    CHECK(argsort(f64(many, {static_cast<int64_t>(many.size())}), 0, desc).to_vector<int64_t>() ==
          reference_argsort(many, desc));
  }
}

TEST_CASE("indexing: argsort of 8 x 65536 int64 bucket keys is stable per row") {
  const int64_t rows = 8, n = 65536;
  auto keys = lcg_ints(static_cast<std::size_t>(rows * n), 64, 5);
  // Negative and very large keys in one row exercise every radix byte and the sign.
  for (int64_t k = 0; k < n; ++k) {
    keys[static_cast<std::size_t>(n + k)] =
        (keys[static_cast<std::size_t>(k)] - 32) * (int64_t{1} << 56) + (k % 3);
  }
  auto order = argsort(i64(keys, {rows, n})).to_vector<int64_t>();
  bool all = true;
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<int64_t> row(keys.begin() + r * n, keys.begin() + (r + 1) * n);
    auto expect = reference_argsort(row, false);
    all = all && std::equal(expect.begin(), expect.end(), order.begin() + r * n);
  }
  CHECK(all);
}

TEST_CASE("indexing: sort gradient goes back to where each value came from") {
  Tensor x = f64({3, 1, 2, 0}, {2, 2});
  x.requires_grad_();
  auto [v, i] = sort(x, 1);
  CHECK(!i.requires_grad());
  backward(v, f64({10, 20, 30, 40}, {2, 2}));
  CHECK(x.grad().to_vector<double>() == std::vector<double>{20, 10, 40, 30});
}

TEST_CASE("indexing: errors name the op, the index and the extent") {
  Tensor x = f64({0, 1, 2, 10, 11, 12}, {2, 3});
  CHECK(contains(error_message([&] {
                   gather(x, 1, i64({0, 5}, {2, 1}));
                 }),
                 "gather: index 5 out of range for extent 3"));
  CHECK(contains(error_message([&] {
                   gather(x, 0, i64({-1, 0}, {1, 2}));
                 }),
                 "gather: index -1 out of range for extent 2"));
  CHECK(contains(error_message([&] {
                   gather(x, 1, from_vector<float>({0, 1}, Shape{2, 1}));
                 }),
                 "gather: indices must be i64 or i32, got f32"));
  CHECK(contains(error_message([&] {
                   gather(x, 1, i64({0, 1}));
                 }),
                 "gather: index rank 1 must equal x rank 2"));
  CHECK(contains(error_message([&] {
                   gather(x, 1, i64({0, 0, 0, 0, 0, 0}, {3, 2}));
                 }),
                 "gather: index shape [3, 2] exceeds x shape [2, 3] in dim 0"));
  CHECK(contains(error_message([&] { gather(x, 2, i64({0}, {1, 1})); }), "gather"));
  CHECK(contains(error_message([&] { index_select(x, 0, i64({2})); }),
                 "index_select: index 2 out of range for extent 2"));
  CHECK(contains(error_message([&] {
                   index_select(x, 1, i64({0, 1}, {1, 2}));
                 }),
                 "index_select: index must be 1-D"));
  CHECK(contains(error_message([&] { index_select(x, 0, from_vector<uint8_t>({0})); }),
                 "index_select: indices must be i64 or i32, got u8"));
  CHECK(contains(error_message([&] {
                   scatter_add(x, 1, i64({3}, {1, 1}), x);
                 }),
                 "scatter_add: index 3 out of range for extent 3"));
  CHECK(contains(error_message([&] {
                   scatter_add(x, 1, i64({0}, {1, 1}), x.to(DType::f32));
                 }),
                 "scatter_add: src dtype f32 must equal x dtype f64"));
  CHECK(contains(error_message([&] { scatter_add(x, 1, i64({0}, {1}), x); }),
                 "scatter_add: index rank 1 must equal x rank 2"));
  CHECK(contains(error_message([&] {
                   scatter_add(x, 1, i64({0, 0}, {1, 2}), f64({1}, {1, 1}));
                 }),
                 "scatter_add: index shape [1, 2] exceeds src shape [1, 1] in dim 1"));
  CHECK(contains(error_message([&] {
                   embedding(x, i64({0, 2}));
                 }),
                 "embedding: index 2 out of range for extent 2"));
  CHECK(contains(error_message([&] {
                   embedding(f64({1, 2}, {2}), i64({0}));
                 }),
                 "embedding: weight must be 2-D"));
  CHECK(contains(error_message([&] { sort(x, 2); }), "sort"));
}

}  // namespace rw
