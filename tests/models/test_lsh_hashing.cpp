// Angular LSH (models/reformer/lsh_hashing.h): bucket rule, factorisation, regeneration, memory.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "core/allocator.h"
#include "core/ops.h"
#include "models/reformer/lsh_hashing.h"
#include "nn/nn_test_util.h"
#include "test_util.h"

namespace rw::reformer {
namespace {

using test::contains;
using test::error_message;
using test::host;

// argmax([xR; -xR]) of one vector, from the definition.
int64_t angular_bucket(const std::vector<double>& x, const std::vector<double>& R, int64_t d,
                       int64_t half) {
  std::vector<double> proj(static_cast<std::size_t>(2 * half));
  for (int64_t k = 0; k < half; ++k) {
    double s = 0;
    for (int64_t e = 0; e < d; ++e) s += x[e] * R[e * half + k];
    proj[k] = s;
    proj[half + k] = -s;
  }
  int64_t best = 0;
  for (int64_t k = 1; k < 2 * half; ++k) {
    if (proj[k] > proj[best]) best = k;
  }
  return best;
}

void check_hash(int64_t n_buckets, int64_t b1, int64_t b2) {
  const int64_t B = 2, H = 2, L = 9, d = 5, n = 3;
  Generator gen(n_buckets);
  Tensor x = randn({B, H, L, d}, gen, {.dtype = DType::f64});
  LSHRotations rot = random_lsh_rotations(H, d, n, n_buckets, gen, DType::f64);
  REQUIRE(rot.factors.first == b1);
  REQUIRE(rot.factors.second == b2);
  Tensor got = lsh_hash(x, rot);
  REQUIRE(got.dtype() == DType::i64);
  REQUIRE(got.shape() == Shape{B, H, n, L});
  std::vector<int64_t> g = got.to_vector<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t r = 0; r < n; ++r) {
        std::vector<double> R1 = host(rot.first.select(0, h).select(0, r));
        std::vector<double> R2 =
            b2 > 1 ? host(rot.second.select(0, h).select(0, r)) : std::vector<double>{};
        for (int64_t i = 0; i < L; ++i) {
          std::vector<double> xi = host(x.select(0, b).select(0, h).select(0, i));
          int64_t expected = angular_bucket(xi, R1, d, b1 / 2);
          if (b2 > 1) expected += b1 * angular_bucket(xi, R2, d, b2 / 2);
          CHECK(g[((b * H + h) * n + r) * L + i] == expected + r * n_buckets);
        }
      }
    }
  }
}

TEST_CASE("lsh_hash is argmax([xR, -xR]) per head and round, offset by round") {
  check_hash(2, 2, 1);
  check_hash(16, 16, 1);
  check_hash(64, 64, 1);
  // Factorised above 64: bucket = h1 + b1 * h2.
  check_hash(128, 16, 8);
  check_hash(1024, 32, 32);
}

TEST_CASE("lsh_hash's fused CPU pass equals argmax over the concatenation, ties and NaN included") {
  const int64_t B = 1, H = 2, L = 40, d = 6, n = 2, n_buckets = 128;  // factorised: 16 x 8
  Generator gen(11);
  Tensor x = randn({B, H, L, d}, gen);
  // Row 0 of each head is zero (every projection ties at 0), row 1 holds a NaN.
  x = where(lt(arange(L).reshape({1, 1, L, 1}), 1.0), full({}, 0.0), x);
  x = where(logical_and(eq(arange(L).reshape({1, 1, L, 1}), 1.0), eq(arange(d), 2.0)),
            full({}, std::nan("")), x);
  LSHRotations rot = random_lsh_rotations(H, d, n, n_buckets, gen);
  REQUIRE(rot.factors.second > 1);
  auto by_ops = [&](const Tensor& r) {
    Tensor proj = matmul(x.unsqueeze(2), r);
    return argmax(concat({proj, neg(proj)}, -1), -1);
  };
  Tensor expected = add(add(by_ops(rot.first), mul(by_ops(rot.second), rot.factors.first)),
                        mul(arange(n, {.dtype = DType::i64}), n_buckets).reshape({n, 1}));
  CHECK(lsh_hash(x, rot).to_vector<int64_t>() == expected.to_vector<int64_t>());
}

TEST_CASE("one bucket: every token in bucket 0 of its round") {
  Generator gen(1);
  Tensor x = randn({1, 2, 5, 3}, gen);
  LSHRotations rot = random_lsh_rotations(2, 3, 2, 1, gen);
  CHECK(!rot.first.defined());
  std::vector<int64_t> g = lsh_hash(x, rot).to_vector<int64_t>();
  for (std::size_t i = 0; i < g.size(); ++i) CHECK(g[i] == static_cast<int64_t>((i / 5) % 2));
}

TEST_CASE("bucket counts: the default and the factorisation rule") {
  // About 2 L / chunk_len, a power of two, at least 2.
  CHECK(default_n_buckets(16384, 64) == 512);
  CHECK(default_n_buckets(65536, 256) == 512);
  CHECK(default_n_buckets(1, 64) == 2);
  CHECK(default_n_buckets(100, 64) == 4);  // 3.1 -> 4
  CHECK(default_n_buckets(150, 64) == 4);  // 4.7 -> 4
  CHECK(default_n_buckets(200, 64) == 8);  // 6.25 -> 8
  CHECK(factorise_buckets(64).second == 1);
  CHECK(factorise_buckets(512).first == 32);
  CHECK(factorise_buckets(512).second == 16);
  CHECK(factorise_buckets(130).second == 1);  // 2 x 65: no even pair
  CHECK(factorise_buckets(96).first == 12);   // 12 x 8
  CHECK(contains(error_message([] { factorise_buckets(7); }),
                 "factorise_buckets: n_buckets must be 1 or even"));
}

TEST_CASE("rotations regenerate exactly from the generator state, hashing ignores the norm") {
  Generator a(42), b(42);
  LSHRotations ra = random_lsh_rotations(2, 8, 3, 256, a);
  LSHRotations rb = random_lsh_rotations(2, 8, 3, 256, b);
  CHECK(host(ra.first) == host(rb.first));
  CHECK(host(ra.second) == host(rb.second));
  CHECK(a.state() == b.state());
  LSHRotations rc = random_lsh_rotations(2, 8, 3, 256, a);  // the next draw differs
  CHECK(host(ra.first) != host(rc.first));

  Generator gen(5);
  Tensor x = randn({1, 2, 20, 8}, gen);
  CHECK(lsh_hash(x, ra).to_vector<int64_t>() == lsh_hash(mul(x, 3.5), ra).to_vector<int64_t>());
}

TEST_CASE("factorised hashing never builds an L x n_buckets tensor") {
  const int64_t L = 8192, n_buckets = 1024;
  Generator gen(3);
  Tensor x = randn({1, 1, L, 16}, gen);
  LSHRotations rot = random_lsh_rotations(1, 16, 1, n_buckets, gen);
  const int64_t peak = test::peak_bytes([&] { lsh_hash(x, rot); });
  INFO("peak ", peak);
  // One f32 L x n_buckets projection would be 32 MiB; 2 x (32 + 32) columns of projections are
  // 4 MiB.
  CHECK(peak < L * n_buckets * 4 / 4);
}

TEST_CASE("lsh hashing rejects bad rotations") {
  Generator gen(1);
  Tensor x = randn({1, 2, 4, 3}, gen);
  LSHRotations rot = random_lsh_rotations(3, 3, 1, 4, gen);
  CHECK(contains(error_message([&] { lsh_hash(x, rot); }),
                 "lsh_hash: rotations must be [n_heads, n_hashes, d_head, *] = [2, 1, 3, *] for x "
                 "of shape [1, 2, 4, 3], got [3, 1, 3, 2]"));
  CHECK(contains(error_message([&] {
                   lsh_rotations_from(4, 1, randn({2, 1, 3, 3}, gen));
                 }),
                 "lsh_rotations: the first rotation must be floating [n_heads, 1, d_head, 2]"));
  CHECK(contains(error_message([&] {
                   lsh_rotations_from(256, 1, randn({2, 1, 3, 8}, gen));
                 }),
                 "lsh_rotations: n_buckets 256 (factors 16 x 16) needs a second rotation"));
}

}  // namespace
}  // namespace rw::reformer
