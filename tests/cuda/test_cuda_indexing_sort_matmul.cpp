// The CUDA backend's indexing (gather, scatter_add, index_select, index_add), sort and matmul
// against the CPU backend on the same inputs: moving kernels must match bit for bit, accumulating
// ones within a tolerance scaled by the magnitudes summed (atomic adds and GEMM blocking change the
// order of floating-point sums), sorts exactly (values, NaN payloads, signs of zero, and the
// indices, which makes stability visible).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "backends/cuda/cuda_backend.h"
#include "core/ops.h"
#include "cuda/cuda_test_util.h"
#include "test_util.h"

namespace rw {
namespace {

const Device kGpu = Device::cuda(0);
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

Tensor gpu(const Tensor& t) { return t.to(kGpu); }
Tensor host(const Tensor& t) { return t.to(Device::cpu()).contiguous(); }

const std::vector<DType> kAllDTypes = {DType::f32, DType::f64, DType::bf16, DType::f16,
                                       DType::i32, DType::i64, DType::u8,   DType::boolean};

// Deterministic pseudo-random integers in [0, n), independent of the ops under test.
std::vector<int64_t> lcg_ints(std::size_t count, int64_t n, uint64_t seed) {
  std::vector<int64_t> v(count);
  uint64_t s = seed;
  for (auto& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = static_cast<int64_t>((s >> 33) % static_cast<uint64_t>(n));
  }
  return v;
}

// Random contents of any dtype: normal floats, integers in [-50, 50), u8 over its whole range
// (sums wrap), bools.
Tensor random_tensor(const Shape& shape, DType dtype, uint64_t seed) {
  Generator gen(seed);
  switch (dtype) {
    case DType::f32:
    case DType::f64:
    case DType::bf16:
    case DType::f16:
      return randn(shape, gen).to(dtype);
    case DType::u8:
      return randint(0, 256, shape, gen).to(dtype);
    case DType::boolean:
      return randint(0, 2, shape, gen).to(dtype);
    default:
      return randint(-50, 50, shape, gen).to(dtype);
  }
}

Tensor random_index(const Shape& shape, int64_t extent, uint64_t seed) {
  Generator gen(seed);
  return randint(0, extent, shape, gen);
}

std::string element_text(const Tensor& t, int64_t i) {
  Tensor e = t.reshape({-1}).narrow(0, i, 1);
  if (is_integral(t.dtype())) return std::to_string(e.item<int64_t>());
  return fmt::format("{}", e.item<double>());  // shows -0 and nan
}

// `got` (on any device) holds exactly the bytes of `expected`, element by element: NaN payloads
// and signs of zero included. One check reporting the count and the first difference.
void check_identical(const Tensor& got_any, const Tensor& expected_any, const std::string& what) {
  const Tensor got = host(got_any), expected = host(expected_any);
  REQUIRE_MESSAGE(
      got.shape() == expected.shape(),
      fmt::format("{}: cuda shape {} vs cpu shape {}", what, got.shape(), expected.shape()));
  REQUIRE_MESSAGE(
      got.dtype() == expected.dtype(),
      fmt::format("{}: cuda dtype {} vs cpu dtype {}", what, got.dtype(), expected.dtype()));
  const std::size_t es = dtype_size(got.dtype());
  const auto* g = static_cast<const unsigned char*>(got.data_ptr());
  const auto* e = static_cast<const unsigned char*>(expected.data_ptr());
  int64_t bad = 0, first = -1;
  for (int64_t i = 0; i < got.numel(); ++i) {
    if (std::memcmp(g + i * es, e + i * es, es) != 0) {
      if (first < 0) first = i;
      ++bad;
    }
  }
  std::string detail;
  if (bad > 0) {
    detail = fmt::format("first at flat index {}: cuda {}, cpu {}", first, element_text(got, first),
                         element_text(expected, first));
  }
  CHECK_MESSAGE(bad == 0,
                fmt::format("{} ({} {}): {} of {} elements differ from the CPU backend; {}", what,
                            got.dtype(), got.shape(), bad, got.numel(), detail));
}

// |got - expected| <= rtol_scale * scale + rtol_value * |expected| elementwise, where `scale`
// (expected's shape) is the sum of the magnitudes of the terms added into each element: the
// rounding error of any summation order is bounded by a multiple of it. NaN must meet NaN.
void check_close_scaled(const Tensor& got_any, const Tensor& expected, const Tensor& scale,
                        double rtol_scale, double rtol_value, const std::string& what) {
  REQUIRE_MESSAGE(
      got_any.shape() == expected.shape(),
      fmt::format("{}: cuda shape {} vs cpu shape {}", what, got_any.shape(), expected.shape()));
  const std::vector<double> g = got_any.to_vector<double>(), e = expected.to_vector<double>();
  const std::vector<double> s = scale.to_vector<double>();
  int64_t bad = 0, first = -1;
  double worst = 0;
  for (std::size_t i = 0; i < g.size(); ++i) {
    const double tol = rtol_scale * s[i] + rtol_value * std::abs(e[i]);
    const bool ok = std::isnan(e[i]) ? std::isnan(g[i]) : std::abs(g[i] - e[i]) <= tol;
    if (!ok) {
      if (first < 0) first = static_cast<int64_t>(i);
      ++bad;
    }
    if (s[i] > 0) worst = std::max(worst, std::abs(g[i] - e[i]) / s[i]);
  }
  std::string detail;
  if (bad > 0) {
    const auto f = static_cast<std::size_t>(first);
    detail = fmt::format("first at flat index {}: cuda {}, cpu {}, magnitude sum {}", first, g[f],
                         e[f], s[f]);
  }
  CHECK_MESSAGE(bad == 0, fmt::format("{} ({}): {} of {} elements outside {} * magnitude sum + {} "
                                      "* |cpu| (largest error / magnitude sum {}); {}",
                                      what, expected.shape(), bad, g.size(), rtol_scale, rtol_value,
                                      worst, detail));
}

// Tolerance (relative to the magnitude sum) of an accumulation in `dtype` with a few roundings
// per element, in either order on either device.
double accumulate_tolerance(DType dtype) {
  switch (dtype) {
    case DType::f64:
      return 1e-13;
    case DType::bf16:
      return 0.05;
    case DType::f16:
      return 0.01;
    default:
      return 1e-5;
  }
}

// Same inputs, results compared: exactly for integer/bool dtypes (their sums are exact, wrapping
// like the CPU's), within the accumulation tolerance for floating ones.
void check_accumulated(const Tensor& got, const Tensor& expected, const Tensor& scale,
                       const std::string& what) {
  if (is_floating(expected.dtype())) {
    check_close_scaled(got, expected, scale, accumulate_tolerance(expected.dtype()), 0, what);
  } else {
    check_identical(got, expected, what);
  }
}

}  // namespace

// --- gather / scatter_add ------------------------------------------------------------------------

TEST_CASE("cuda gather: every dtype along dims 0, 1, 2 with repeated indices and smaller index") {
  RW_REQUIRE_GPU();
  const Shape x_shape = {4, 5, 6};
  for (DType dtype : kAllDTypes) {
    const Tensor x = random_tensor(x_shape, dtype, 11);
    for (int64_t dim = 0; dim < 3; ++dim) {
      // The index is longer than x along dim (so indices repeat) and shorter in another dim.
      Shape index_shape = {3, 4, 5};
      index_shape[static_cast<std::size_t>(dim)] = 9;
      const Tensor index = random_index(index_shape, x_shape[static_cast<std::size_t>(dim)], 7);
      check_identical(gather(gpu(x), dim, gpu(index)), gather(x, dim, index),
                      fmt::format("gather dim {}", dim));
    }
  }
}

TEST_CASE("cuda gather: full-size index, 1-D and 0-dim tensors, large input") {
  RW_REQUIRE_GPU();
  const Tensor x = random_tensor({64, 300}, DType::f32, 3);
  const Tensor index = random_index({64, 300}, 300, 4);
  check_identical(gather(gpu(x), 1, gpu(index)), gather(x, 1, index), "gather full-size dim 1");
  const Tensor v = random_tensor({10}, DType::f64, 5);
  const Tensor vi = random_index({25}, 10, 6);
  check_identical(gather(gpu(v), 0, gpu(vi)), gather(v, 0, vi), "gather 1-D");
  const Tensor s = scalar_tensor(2.5);
  const Tensor si = from_vector<int64_t>({0}, Shape{});
  check_identical(gather(gpu(s), 0, gpu(si)), gather(s, 0, si), "gather 0-dim");
  const Tensor big = random_tensor({512, 2048}, DType::bf16, 8);
  const Tensor big_index = random_index({512, 1024}, 2048, 9);
  check_identical(gather(gpu(big), 1, gpu(big_index)), gather(big, 1, big_index),
                  "gather large bf16");
}

TEST_CASE("cuda scatter_add: every dtype along dims 0, 1, 2 with repeated indices") {
  RW_REQUIRE_GPU();
  const Shape x_shape = {4, 5, 6};
  for (DType dtype : kAllDTypes) {
    const Tensor x = random_tensor(x_shape, dtype, 21);
    for (int64_t dim = 0; dim < 3; ++dim) {
      Shape index_shape = {3, 4, 5};
      index_shape[static_cast<std::size_t>(dim)] = 9;  // more updates than targets: collisions
      Shape src_shape = {4, 5, 6};
      src_shape[static_cast<std::size_t>(dim)] = 10;  // src may be larger than the index
      const Tensor index = random_index(index_shape, x_shape[static_cast<std::size_t>(dim)], 22);
      const Tensor src = random_tensor(src_shape, dtype, 23);
      const Tensor expected = scatter_add(x, dim, index, src);
      const Tensor got = scatter_add(gpu(x), dim, gpu(index), gpu(src));
      Tensor scale;
      if (is_floating(dtype)) {
        scale = scatter_add(abs(x.to(DType::f64)), dim, index, abs(src.to(DType::f64)));
      }
      check_accumulated(got, expected, scale, fmt::format("scatter_add dim {}", dim));
    }
  }
}

TEST_CASE("cuda scatter_add: thousands of updates into the same elements") {
  RW_REQUIRE_GPU();
  for (DType dtype : {DType::f32, DType::f64, DType::i64, DType::i32}) {
    const Tensor x = random_tensor({2, 8}, dtype, 31);
    const Tensor index = random_index({4096, 8}, 2, 32);
    const Tensor src = random_tensor({4096, 8}, dtype, 33);
    const Tensor expected = scatter_add(x, 0, index, src);
    Tensor scale;
    if (is_floating(dtype)) {
      scale = scatter_add(abs(x.to(DType::f64)), 0, index, abs(src.to(DType::f64)));
    }
    check_accumulated(scatter_add(gpu(x), 0, gpu(index), gpu(src)), expected, scale,
                      "scatter_add heavy collisions");
  }
}

// --- index_select / index_add --------------------------------------------------------------------

TEST_CASE("cuda index_select: every dtype along dims 0, 1, 2 with repeated indices") {
  RW_REQUIRE_GPU();
  const Shape x_shape = {4, 5, 6};
  for (DType dtype : kAllDTypes) {
    const Tensor x = random_tensor(x_shape, dtype, 41);
    for (int64_t dim = 0; dim < 3; ++dim) {
      const Tensor index = random_index({11}, x_shape[static_cast<std::size_t>(dim)], 42 + dim);
      check_identical(index_select(gpu(x), dim, gpu(index)), index_select(x, dim, index),
                      fmt::format("index_select dim {}", dim));
    }
  }
}

TEST_CASE("cuda index_select: whole rows of every width and alignment") {
  RW_REQUIRE_GPU();
  // Rows of 64 f32 move as 16-byte units, 3 bf16 as 2-byte ones, 5 u8 byte by byte; a view that
  // starts one row in (x.narrow) is aligned to its row size only.
  struct Case {
    Shape shape;
    DType dtype;
  };
  for (const Case& c :
       {Case{{1000, 64}, DType::f32}, Case{{300, 3}, DType::bf16}, Case{{300, 5}, DType::u8},
        Case{{300, 3}, DType::f32}, Case{{300, 6}, DType::i64}}) {
    const Tensor x = random_tensor(c.shape, c.dtype, 51);
    const Tensor index = random_index({3000}, c.shape[0] - 1, 52);
    check_identical(index_select(gpu(x), 0, gpu(index)), index_select(x, 0, index),
                    fmt::format("index_select rows of {}", c.shape));
    const Tensor x_gpu = gpu(x);
    const int64_t rows = c.shape[0] - 1;
    check_identical(index_select(x_gpu.narrow(0, 1, rows), 0, gpu(index)),
                    index_select(x.narrow(0, 1, rows), 0, index),
                    fmt::format("index_select rows of {} from an offset view", c.shape));
  }
  // The embedding lookup is an index_select of rows too.
  const Tensor weight = random_tensor({50, 24}, DType::f32, 53);
  const Tensor ids = random_index({4, 7}, 50, 54);
  check_identical(embedding(gpu(weight), gpu(ids)), embedding(weight, ids), "embedding");
}

TEST_CASE("cuda index_add: every dtype along dims 0, 1, 2 with repeated indices") {
  RW_REQUIRE_GPU();
  Backend& cpu = backend_for(Device::cpu());
  Backend& cuda = backend_for(kGpu);
  const Shape dst_shape = {4, 5, 6};
  for (DType dtype : kAllDTypes) {
    for (int64_t dim = 0; dim < 3; ++dim) {
      const int64_t extent = dst_shape[static_cast<std::size_t>(dim)];
      Shape src_shape = dst_shape;
      src_shape[static_cast<std::size_t>(dim)] = 13;
      const Tensor dst = random_tensor(dst_shape, dtype, 61);
      const Tensor src = random_tensor(src_shape, dtype, 62);
      const Tensor index = random_index({13}, extent, 63 + dim);
      Tensor expected = dst.clone();
      cpu.index_add(expected, dim, index, src);
      Tensor got = gpu(dst);
      cuda.index_add(got, dim, gpu(index), gpu(src));
      Tensor scale;
      if (is_floating(dtype)) {
        scale = abs(dst.to(DType::f64));
        cpu.index_add(scale, dim, index, abs(src.to(DType::f64)));
      }
      check_accumulated(got, expected, scale, fmt::format("index_add dim {}", dim));
    }
  }
}

TEST_CASE("cuda index_add: the gradient of index_select and embedding") {
  RW_REQUIRE_GPU();
  const Tensor x = random_tensor({30, 16}, DType::f32, 71);
  const Tensor index = random_index({200}, 30, 72);
  const Tensor grad = random_tensor({200, 16}, DType::f32, 73);
  auto x_grad = [&](Device device) {
    Tensor leaf = x.to(device).detach().requires_grad_();
    backward(sum(index_select(leaf, 0, index.to(device)) * grad.to(device)));
    return leaf.grad();
  };
  Tensor scale = zeros({30, 16}, {.dtype = DType::f64});
  backend_for(Device::cpu()).index_add(scale, 0, index, abs(grad.to(DType::f64)));
  check_close_scaled(x_grad(kGpu), x_grad(Device::cpu()), scale, 1e-5, 0, "index_select backward");
}

// --- sort ----------------------------------------------------------------------------------------

namespace {

// Values drawn (with many repeats) from a table holding ties, both zeros, infinities and NaNs of
// both signs.
Tensor tie_heavy_floats(const Shape& shape, DType dtype, uint64_t seed) {
  const std::vector<double> table = {kNaN, -kInf, -2.5,  -1, -0.0, 0.0, 1,
                                     3.25, kInf,  -kNaN, 1,  -2.5, 0.0};
  std::vector<double> v;
  for (int64_t i : lcg_ints(static_cast<std::size_t>(shape_numel(shape)),
                            static_cast<int64_t>(table.size()), seed)) {
    v.push_back(table[static_cast<std::size_t>(i)]);
  }
  return from_vector<double>(v, shape).to(dtype);
}

Tensor tie_heavy_ints(const Shape& shape, DType dtype, uint64_t seed) {
  std::vector<int64_t> table;
  if (dtype == DType::i64) {
    table = {std::numeric_limits<int64_t>::min(), -5, -1, 0, 1, 2, 7,
             std::numeric_limits<int64_t>::max()};
  } else if (dtype == DType::i32) {
    table = {std::numeric_limits<int32_t>::min(), -5, -1, 0, 1, 2, 7,
             std::numeric_limits<int32_t>::max()};
  } else {
    table = {0, 1, 2, 7, 200, 255};  // u8 (bool: nonzero is true)
  }
  std::vector<int64_t> v;
  for (int64_t i : lcg_ints(static_cast<std::size_t>(shape_numel(shape)),
                            static_cast<int64_t>(table.size()), seed)) {
    v.push_back(table[static_cast<std::size_t>(i)]);
  }
  return from_vector<int64_t>(v, shape).to(dtype);
}

void check_sort(const Tensor& x, int64_t dim, bool descending, const std::string& what) {
  const std::string label =
      fmt::format("{} sort dim {} {}", what, dim, descending ? "descending" : "ascending");
  auto [values_cpu, indices_cpu] = sort(x, dim, descending);
  auto [values_gpu, indices_gpu] = sort(gpu(x), dim, descending);
  check_identical(values_gpu, values_cpu, label + " values");
  check_identical(indices_gpu, indices_cpu, label + " indices");
}

}  // namespace

TEST_CASE("cuda sort: ties, signed zeros, infinities and NaNs of every floating dtype") {
  RW_REQUIRE_GPU();
  for (DType dtype : {DType::f32, DType::f64, DType::bf16, DType::f16}) {
    const Tensor x = tie_heavy_floats({6, 37}, dtype, 81);
    const Tensor x3 = tie_heavy_floats({4, 9, 5}, dtype, 82);
    for (bool descending : {false, true}) {
      check_sort(x, 1, descending, "2-D");
      check_sort(x, 0, descending, "2-D");
      check_sort(x3, 1, descending, "3-D");
      check_sort(x3, 0, descending, "3-D");
      check_sort(x3, 2, descending, "3-D");
    }
  }
}

TEST_CASE("cuda sort: integer and bool keys with ties and extreme values") {
  RW_REQUIRE_GPU();
  for (DType dtype : {DType::i64, DType::i32, DType::u8, DType::boolean}) {
    const Tensor x = tie_heavy_ints({6, 37}, dtype, 91);
    const Tensor x3 = tie_heavy_ints({4, 9, 5}, dtype, 92);
    for (bool descending : {false, true}) {
      check_sort(x, 1, descending, "2-D");
      check_sort(x, 0, descending, "2-D");
      check_sort(x3, 1, descending, "3-D");
    }
  }
}

TEST_CASE("cuda sort: equal keys, one-element rows and 0-dim tensors keep input order") {
  RW_REQUIRE_GPU();
  for (bool descending : {false, true}) {
    check_sort(full({3, 1000}, 7, {.dtype = DType::i64}), 1, descending, "all-equal i64");
    check_sort(full({3, 1000}, -0.0, {.dtype = DType::f32}), 1, descending, "all -0 f32");
    check_sort(random_tensor({5, 1}, DType::f32, 93), 1, descending, "one-element rows");
    check_sort(scalar_tensor(4.0), 0, descending, "0-dim");
    // Keys that differ only in the top bit: the narrowed bit range must still cover it.
    const Tensor extremes = from_vector<int64_t>(
        {std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::min(),
         std::numeric_limits<int64_t>::max(), -1, 0},
        Shape{1, 5});
    check_sort(extremes, 1, descending, "extreme i64");
  }
}

TEST_CASE("cuda sort: stability is visible in the indices of equal keys") {
  RW_REQUIRE_GPU();
  // Independent of the CPU backend: equal values (and NaNs) keep increasing indices.
  const Tensor x = tie_heavy_floats({8, 500}, DType::f32, 101);
  for (bool descending : {false, true}) {
    auto [values, indices] = sort(gpu(x), 1, descending);
    const std::vector<float> v = values.to_vector<float>();
    const std::vector<int64_t> idx = indices.to_vector<int64_t>();
    int64_t bad = 0;
    for (std::size_t r = 0; r < 8; ++r) {
      for (std::size_t k = 1; k < 500; ++k) {
        const float a = v[r * 500 + k - 1], b = v[r * 500 + k];
        const bool tie = (std::isnan(a) && std::isnan(b)) || a == b;
        if (tie && idx[r * 500 + k - 1] >= idx[r * 500 + k]) ++bad;
      }
    }
    CHECK_MESSAGE(bad == 0, fmt::format("{} ties out of input order ({})", bad,
                                        descending ? "descending" : "ascending"));
  }
}

TEST_CASE("cuda sort: large rows, many rows, and the sorted dim not last") {
  RW_REQUIRE_GPU();
  Generator gen(111);
  // Integer-valued floats: many ties across a long row.
  const Tensor long_row = randint(-1000, 1000, {1, 1 << 20}, gen).to(DType::f32);
  const Tensor rows8 = randn({8, 65536}, gen);
  const Tensor buckets = randint(0, 64, {8, 65536}, gen);  // the Reformer's bucket ids
  const Tensor wide = randint(-(int64_t{1} << 40), int64_t{1} << 40, {1, 1 << 20}, gen);
  const Tensor short_rows = randn({16384, 16}, gen).to(DType::f64);
  for (bool descending : {false, true}) {
    check_sort(long_row, 1, descending, "1 x 2^20 f32");
    check_sort(rows8, 1, descending, "8 x 65536 f32");
    check_sort(rows8.mT().contiguous(), 0, descending, "65536 x 8 f32");
    check_sort(buckets, 1, descending, "8 x 65536 i64 buckets");
    check_sort(wide, 1, descending, "1 x 2^20 wide i64");
    check_sort(short_rows, 1, descending, "16384 x 16 f64");
  }
}

// --- matmul --------------------------------------------------------------------------------------

namespace {

using View = std::function<Tensor(const Tensor&)>;
Tensor same(const Tensor& t) { return t; }

// view_a(a_base) @ view_b(b_base) on the GPU against the CPU on the same values; the views are
// taken on each device, so transposed, broadcast and strided layouts reach both backends as views.
void check_matmul(const Tensor& a_base, const Tensor& b_base, const View& view_a,
                  const View& view_b, double rtol, const std::string& what) {
  const Tensor expected = matmul(view_a(a_base), view_b(b_base));
  const Tensor got = matmul(view_a(gpu(a_base)), view_b(gpu(b_base)));
  const Tensor scale =
      matmul(view_a(abs(a_base.to(DType::f64))), view_b(abs(b_base.to(DType::f64))));
  check_close_scaled(got, expected, scale, rtol, 0,
                     fmt::format("{} matmul {} @ {}", a_base.dtype(), view_a(a_base).shape(),
                                 view_b(b_base).shape()) +
                         " " + what);
}

void check_matmul(const Tensor& a, const Tensor& b, double rtol, const std::string& what) {
  check_matmul(a, b, same, same, rtol, what);
}

double matmul_tolerance(DType dtype) { return dtype == DType::f64 ? 1e-12 : 1e-5; }

// Restores allow_tf32 to off (the default) when a test ends, whatever happened.
struct Tf32Scope {
  explicit Tf32Scope(bool allow) { cuda::set_allow_tf32(allow); }
  ~Tf32Scope() { cuda::set_allow_tf32(false); }
};

}  // namespace

TEST_CASE("cuda matmul: f32 and f64 shapes from 1x1x1 to 512x1024x256") {
  RW_REQUIRE_GPU();
  struct Mkn {
    int64_t m, k, n;
  };
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const Mkn s : {Mkn{1, 1, 1}, Mkn{7, 13, 5}, Mkn{64, 64, 64}, Mkn{512, 1024, 256}}) {
      const Tensor a = random_tensor({s.m, s.k}, dtype, 121);
      const Tensor b = random_tensor({s.k, s.n}, dtype, 122);
      check_matmul(a, b, matmul_tolerance(dtype), "plain");
    }
    // Matrix-vector and vector-matrix products (1-D operands).
    check_matmul(random_tensor({9, 13}, dtype, 123), random_tensor({13}, dtype, 124),
                 matmul_tolerance(dtype), "matrix @ vector");
    check_matmul(random_tensor({13}, dtype, 125), random_tensor({13, 6}, dtype, 126),
                 matmul_tolerance(dtype), "vector @ matrix");
  }
}

TEST_CASE("cuda matmul: batched with broadcasting on either side") {
  RW_REQUIRE_GPU();
  for (DType dtype : {DType::f32, DType::f64}) {
    const double tol = matmul_tolerance(dtype);
    auto r = [&](Shape s, uint64_t seed) { return random_tensor(s, dtype, seed); };
    // Two batch dims broadcast in turn (no merging: a loop over the outer one).
    check_matmul(r({3, 1, 7, 13}, 131), r({1, 4, 13, 5}, 132), tol, "cross broadcast");
    // A shared right operand (one tall GEMM) and a shared left one (stride 0).
    check_matmul(r({6, 7, 13}, 133), r({13, 5}, 134), tol, "shared right operand");
    check_matmul(r({7, 13}, 135), r({6, 13, 5}, 136), tol, "shared left operand");
    // Batch dims that merge into one, and a batch-of-1 dim among them.
    check_matmul(r({2, 3, 7, 13}, 137), r({2, 3, 13, 5}, 138), tol, "merged batch dims");
    check_matmul(r({2, 1, 3, 7, 13}, 139), r({2, 1, 3, 13, 5}, 140), tol, "batch dim of 1");
    // An expanded (stride-0) batch dim on the left.
    check_matmul(
        r({1, 7, 13}, 141), r({4, 13, 5}, 142),
        [](const Tensor& t) {
          return t.expand({4, 7, 13});
        },
        same, tol, "expanded batch dim");
  }
}

TEST_CASE("cuda matmul: transposed, permuted and non-BLAS operand layouts") {
  RW_REQUIRE_GPU();
  for (DType dtype : {DType::f32, DType::f64}) {
    const double tol = matmul_tolerance(dtype);
    auto r = [&](Shape s, uint64_t seed) { return random_tensor(s, dtype, seed); };
    auto mT = [](const Tensor& t) { return t.mT(); };
    check_matmul(r({13, 7}, 151), r({13, 5}, 152), mT, same, tol, "a transposed");
    check_matmul(r({7, 13}, 153), r({5, 13}, 154), same, mT, tol, "b transposed");
    check_matmul(r({13, 7}, 155), r({5, 13}, 156), mT, mT, tol, "both transposed");
    check_matmul(r({3, 13, 7}, 157), r({3, 5, 13}, 158), mT, mT, tol, "batched transposed");
    check_matmul(r({64, 64}, 159), r({64, 64}, 160), mT, mT, tol, "64^3 transposed");
    // [b, T, h, d] permuted to [b, h, T, d]: batch strides that do not merge.
    check_matmul(
        r({2, 7, 3, 13}, 161), r({2, 3, 13, 5}, 162),
        [](const Tensor& t) {
          return t.permute({0, 2, 1, 3});
        },
        same, tol, "permuted batch");
    // Every other column (no unit stride) and an expanded matrix (stride 0): copied first.
    check_matmul(
        r({7, 26}, 163), r({13, 5}, 164), [](const Tensor& t) { return t.slice(1, 0, 26, 2); },
        same, tol, "strided columns");
    check_matmul(
        r({7, 13}, 165), r({1, 5}, 166), same,
        [](const Tensor& t) {
          return t.expand({13, 5});
        },
        tol, "expanded matrix");
  }
}

TEST_CASE("cuda matmul: bias through linear, and K = 0") {
  RW_REQUIRE_GPU();
  for (DType dtype : {DType::f32, DType::f64}) {
    const double tol = matmul_tolerance(dtype);
    for (const Shape& x_shape : {Shape{6, 13}, Shape{2, 6, 13}, Shape{13}}) {
      const Tensor x = random_tensor(x_shape, dtype, 171);
      const Tensor w = random_tensor({5, 13}, dtype, 172);
      const Tensor bias = random_tensor({5}, dtype, 173);
      const Tensor expected = linear(x, w, bias);
      const Tensor scale =
          linear(abs(x.to(DType::f64)), abs(w.to(DType::f64)), abs(bias.to(DType::f64)));
      check_close_scaled(linear(gpu(x), gpu(w), gpu(bias)), expected, scale, tol, 0,
                         fmt::format("{} linear with bias, x {}", dtype, x_shape));
    }
    // K = 0: an empty sum is zeros, plus the bias where there is one.
    const Tensor a = random_tensor({3, 0}, dtype, 174), b = random_tensor({0, 4}, dtype, 175);
    check_identical(matmul(gpu(a), gpu(b)), matmul(a, b), "matmul with K = 0");
    const Tensor w0 = random_tensor({4, 0}, dtype, 176), bias = random_tensor({4}, dtype, 177);
    check_identical(linear(gpu(a), gpu(w0), gpu(bias)), linear(a, w0, bias),
                    "linear with K = 0 and a bias");
    // M = 0: nothing to compute, the shape still right.
    const Tensor empty_rows = random_tensor({0, 5}, dtype, 178);
    check_identical(matmul(gpu(empty_rows), gpu(random_tensor({5, 4}, dtype, 179))),
                    matmul(empty_rows, random_tensor({5, 4}, dtype, 179)), "matmul with M = 0");
  }
}

TEST_CASE("cuda matmul: bf16 and f16 accumulate in f32 and round once") {
  RW_REQUIRE_GPU();
  struct Mkn {
    int64_t m, k, n;
  };
  for (DType dtype : {DType::bf16, DType::f16}) {
    // Half of one unit in the last place of the result's dtype, doubled for a rounding flipped by
    // a different f32 summation order.
    const double rounding = dtype == DType::bf16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
    for (const Mkn s : {Mkn{1, 1, 1}, Mkn{7, 13, 5}, Mkn{64, 64, 64}, Mkn{512, 1024, 256}}) {
      const Tensor a = random_tensor({s.m, s.k}, dtype, 181);
      const Tensor b = random_tensor({s.k, s.n}, dtype, 182);
      // The reference: the CPU's f32 product of the same (exactly representable) values.
      const Tensor expected = matmul(a.to(DType::f32), b.to(DType::f32));
      const Tensor scale = matmul(abs(a.to(DType::f64)), abs(b.to(DType::f64)));
      const Tensor got = matmul(gpu(a), gpu(b));
      CHECK(got.dtype() == dtype);
      check_close_scaled(got, expected, scale, 2e-5, rounding,
                         fmt::format("{} matmul [{}, {}] @ [{}, {}]", dtype, s.m, s.k, s.k, s.n));
    }
    // Batched, transposed, with a bias.
    const Tensor x = random_tensor({3, 7, 13}, dtype, 183);
    const Tensor w = random_tensor({5, 13}, dtype, 184);
    const Tensor bias = random_tensor({5}, dtype, 185);
    const Tensor expected = linear(x.to(DType::f32), w.to(DType::f32), bias.to(DType::f32));
    const Tensor scale =
        linear(abs(x.to(DType::f64)), abs(w.to(DType::f64)), abs(bias.to(DType::f64)));
    check_close_scaled(linear(gpu(x), gpu(w), gpu(bias)), expected, scale, 2e-5, rounding,
                       fmt::format("{} linear with bias", dtype));
  }
}

TEST_CASE("cuda matmul: TF32 only when allowed") {
  RW_REQUIRE_GPU();
  const Tensor a = random_tensor({512, 1024}, DType::f32, 191);
  const Tensor b = random_tensor({1024, 256}, DType::f32, 192);
  const Tensor expected = matmul(a, b);
  const Tensor scale = matmul(abs(a.to(DType::f64)), abs(b.to(DType::f64)));
  CHECK_FALSE(cuda::allow_tf32());  // off by default
  Tensor off, on;
  {
    Tf32Scope scope(false);
    off = matmul(gpu(a), gpu(b));
    check_close_scaled(off, expected, scale, 1e-5, 0, "f32 matmul with TF32 off");
  }
  {
    Tf32Scope scope(true);
    CHECK(cuda::allow_tf32());
    on = matmul(gpu(a), gpu(b));
    // TF32 keeps 10 mantissa bits of each input: products are off by up to ~2^-10 relative.
    check_close_scaled(on, expected, scale, 2e-3, 0, "f32 matmul with TF32 on");
  }
  CHECK_FALSE(cuda::allow_tf32());
  // The switch takes effect: TF32 rounding changes some results.
  const std::vector<float> v_off = off.to_vector<float>(), v_on = on.to_vector<float>();
  int64_t changed = 0;
  for (std::size_t i = 0; i < v_off.size(); ++i) changed += v_off[i] != v_on[i] ? 1 : 0;
  CHECK_MESSAGE(changed > 0,
                "allow_tf32(true) changed no element of a 512x1024x256 product: "
                "TF32 tensor cores were not used");
}

TEST_CASE("cuda matmul: an unsupported dtype is an error naming it") {
  RW_REQUIRE_GPU();
  const Tensor a = gpu(random_tensor({2, 3}, DType::i64, 201));
  const Tensor b = gpu(random_tensor({3, 4}, DType::i64, 202));
  Tensor out = empty({2, 4}, {.dtype = DType::i64, .device = kGpu});
  const std::string message =
      test::error_message([&] { backend_for(kGpu).matmul(a, b, Tensor(), out); });
  CHECK(test::contains(message, "matmul (cuda): dtype i64 is not supported"));
}

}  // namespace rw
