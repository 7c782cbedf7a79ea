// Philox4x32-10 known answers, the element mapping of random tensors, Generator streams, sample
// moments and argument checks of the random ops.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <numbers>
#include <numeric>
#include <string>
#include <vector>

#include "core/ops.h"
#include "core/philox.h"

namespace rw {
namespace {

std::string random_error(auto&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  FAIL("expected an rw::Error");
  return {};
}

bool has(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

double mean_of(const std::vector<double>& v) {
  return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}

double variance_of(const std::vector<double>& v) {
  double m = mean_of(v), s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return s / static_cast<double>(v.size() - 1);
}

void check_block(PhiloxBlock b, std::array<uint32_t, 4> expected) {
  for (int i = 0; i < 4; ++i) CHECK(b.w[i] == expected[static_cast<std::size_t>(i)]);
}

}  // namespace

// The three philox4x32 10-round vectors of Random123's kat_vectors (counter[4] key[2] -> out[4]).
TEST_CASE("philox: Random123 known answers") {
  check_block(philox4x32_10(0, 0, 0, 0, 0, 0), {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
  const uint32_t ones = 0xffffffffu;
  check_block(philox4x32_10(ones, ones, ones, ones, ones, ones),
              {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
  check_block(philox4x32_10(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0),
              {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});
}

TEST_CASE("philox: block j of a state uses counter + j, the stream and the seed as documented") {
  PhiloxState s{.seed = 0x0123456789abcdefull, .stream = 0xfedcba9876543210ull, .counter = 41};
  PhiloxBlock b = philox_block(s, 1);
  PhiloxBlock e = philox4x32_10(42, 0, 0x76543210u, 0xfedcba98u, 0x89abcdefu, 0x01234567u);
  check_block(b, {e.w[0], e.w[1], e.w[2], e.w[3]});
  // The counter carries into its high word.
  PhiloxState edge{.seed = 7, .stream = 0, .counter = 0xffffffffull};
  PhiloxBlock carried = philox_block(edge, 1);
  PhiloxBlock expect = philox4x32_10(0, 1, 0, 0, 7, 0);
  for (int i = 0; i < 4; ++i) CHECK(carried.w[i] == expect.w[i]);
  CHECK(philox_uniform(0) == doctest::Approx(0.5 / 4294967296.0));
  CHECK(philox_uniform(0xffffffffu) < 1.0);
}

TEST_CASE("philox: element i of a random tensor takes word i % 4 of block i / 4") {
  PhiloxState s{.seed = 1234, .stream = 5, .counter = 17};
  auto u64 = rand({11}, s, {.dtype = DType::f64}).to_vector<double>();
  for (int i = 0; i < 11; ++i) {
    CHECK(u64[static_cast<std::size_t>(i)] ==
          philox_uniform(philox_block(s, static_cast<uint64_t>(i / 4)).w[i % 4]));
  }
  CHECK(u64[5] == philox_uniform(philox_block(s, 1).w[1]));
  // f32 is the double value cast.
  auto u32 = rand({11}, s).to_vector<float>();
  for (std::size_t i = 0; i < 11; ++i) CHECK(u32[i] == static_cast<float>(u64[i]));

  // Normals: Box-Muller on the word pairs (0, 1) and (2, 3) of each block.
  auto z = randn({8}, s, {.dtype = DType::f64}).to_vector<double>();
  for (int blk = 0; blk < 2; ++blk) {
    PhiloxBlock b = philox_block(s, static_cast<uint64_t>(blk));
    for (int p = 0; p < 4; p += 2) {
      double r = std::sqrt(-2.0 * std::log(philox_uniform(b.w[p])));
      double t = 2.0 * std::numbers::pi * philox_uniform(b.w[p + 1]);
      CHECK(z[static_cast<std::size_t>(4 * blk + p)] ==
            doctest::Approx(r * std::cos(t)).epsilon(1e-15));
      CHECK(z[static_cast<std::size_t>(4 * blk + p + 1)] ==
            doctest::Approx(r * std::sin(t)).epsilon(1e-15));
    }
  }
  // normal(mean, std) = mean + std * z; uniform(low, high) = low + (high - low) * u.
  auto n = normal({8}, 2.0, 3.0, s, {.dtype = DType::f64}).to_vector<double>();
  for (std::size_t i = 0; i < 8; ++i) CHECK(n[i] == doctest::Approx(2.0 + 3.0 * z[i]));
  auto w = uniform({8}, -1.0, 3.0, s, {.dtype = DType::f64}).to_vector<double>();
  for (std::size_t i = 0; i < 8; ++i) CHECK(w[i] == doctest::Approx(-1.0 + 4.0 * u64[i]));
  // bernoulli: u < p; randint: low + floor(u * (high - low)).
  auto bern = bernoulli({11}, 0.4, s).to_vector<float>();
  auto ints = randint(-3, 7, {11}, s).to_vector<int64_t>();
  for (std::size_t i = 0; i < 11; ++i) {
    CHECK(bern[i] == (u64[i] < 0.4 ? 1.0f : 0.0f));
    CHECK(ints[i] == -3 + static_cast<int64_t>(std::floor(u64[i] * 10)));
  }
}

TEST_CASE("philox: a state replays the same tensor, in every dtype and on many threads") {
  PhiloxState s{.seed = 99, .stream = 3, .counter = 1000};
  // Large enough to run the parallel path.
  auto a = rand({300001}, s).to_vector<float>();
  auto b = rand({300001}, s).to_vector<float>();
  CHECK(a == b);
  // A prefix of a longer draw is the shorter draw.
  auto prefix = rand({7}, s).to_vector<float>();
  CHECK(std::equal(prefix.begin(), prefix.end(), a.begin()));
  CHECK(randn({5, 3}, s, {.dtype = DType::bf16}).to_vector<float>() ==
        randn({5, 3}, s, {.dtype = DType::bf16}).to_vector<float>());
  CHECK(randint(0, 100, {33}, s, {.dtype = DType::i32}).to_vector<int32_t>() ==
        randint(0, 100, {33}, s, {.dtype = DType::i32}).to_vector<int32_t>());
  CHECK(rand({0}, s).numel() == 0);
}

TEST_CASE("philox: Generator seeds, advances, forks and splits") {
  Generator g1(42), g2(42);
  auto a1 = rand({10}, g1).to_vector<float>();
  auto a2 = rand({10}, g2).to_vector<float>();
  CHECK(a1 == a2);
  // next(n) hands out the current state and moves past ceil(n / 4) blocks.
  CHECK(g1.state().counter == 3);
  PhiloxState before = g1.state();
  CHECK(g1.next(5) == before);
  CHECK(g1.state().counter == before.counter + 2);
  // Successive draws differ; re-seeding restarts the stream.
  Generator g3(42);
  auto b1 = rand({10}, g3).to_vector<float>();
  auto b2 = rand({10}, g3).to_vector<float>();
  CHECK(b1 != b2);
  g3.seed(42);
  CHECK(rand({10}, g3).to_vector<float>() == b1);
  // A generator draw equals the state-based draw from the state it was at.
  Generator g4(7);
  PhiloxState at = g4.state();
  CHECK(randn({9}, g4).to_vector<float>() == randn({9}, at).to_vector<float>());
  // Different seeds give different numbers.
  Generator g5(43);
  CHECK(rand({10}, g5).to_vector<float>() != a1);

  // fork: a new stream, and the parent moves on (so two forks differ).
  Generator parent(5);
  PhiloxState p0 = parent.state();
  Generator c1 = parent.fork();
  CHECK(parent.state() != p0);
  Generator c2 = parent.fork();
  CHECK(c1.state().stream != p0.stream);
  CHECK(c1.state().stream != c2.state().stream);
  auto f1 = rand({8}, c1).to_vector<float>();
  auto f2 = rand({8}, c2).to_vector<float>();
  CHECK(f1 != f2);

  // split(i): deterministic, does not advance, distinct per i.
  Generator base(11);
  PhiloxState b0 = base.state();
  Generator s0 = base.split(0), s0_again = base.split(0), s1 = base.split(1);
  CHECK(base.state() == b0);
  CHECK(s0.state() == s0_again.state());
  CHECK(s0.state().stream != s1.state().stream);
  CHECK(s0.state().stream != b0.stream);
  CHECK(rand({8}, s0).to_vector<float>() == rand({8}, s0_again).to_vector<float>());
  CHECK(rand({8}, s0).to_vector<float>() != rand({8}, s1).to_vector<float>());
  // The default generator follows manual_seed.
  manual_seed(3);
  auto d1 = rand({4}).to_vector<float>();
  manual_seed(3);
  CHECK(rand({4}).to_vector<float>() == d1);
}

TEST_CASE("philox: sample moments of uniform, normal, bernoulli and randint") {
  Generator gen(2024);
  const int64_t n = 100000;
  // Standard errors at n = 1e5: mean of U(0,1) 0.0009, of N(0,1) 0.0032, variance of N(0,1)
  // 0.0045, bernoulli(0.3) mean 0.0014; the tolerances are about 5 standard errors.
  auto u = rand({n}, gen, {.dtype = DType::f64}).to_vector<double>();
  CHECK(std::abs(mean_of(u) - 0.5) < 0.005);
  CHECK(std::abs(variance_of(u) - 1.0 / 12.0) < 0.003);
  CHECK(*std::min_element(u.begin(), u.end()) > 0.0);
  CHECK(*std::max_element(u.begin(), u.end()) < 1.0);

  auto z = randn({n}, gen, {.dtype = DType::f64}).to_vector<double>();
  CHECK(std::abs(mean_of(z)) < 0.016);
  CHECK(std::abs(variance_of(z) - 1.0) < 0.023);
  // About 4.55% of N(0, 1) lies beyond 2 sigma (standard error 0.07%).
  auto beyond = std::count_if(z.begin(), z.end(), [](double v) { return std::abs(v) > 2.0; });
  CHECK(std::abs(static_cast<double>(beyond) / n - 0.0455) < 0.0035);

  auto nz = normal({n}, -2.0, 0.5, gen).to_vector<double>();
  CHECK(std::abs(mean_of(nz) + 2.0) < 0.008);
  CHECK(std::abs(std::sqrt(variance_of(nz)) - 0.5) < 0.006);

  auto bern = bernoulli({n}, 0.3, gen).to_vector<double>();
  CHECK(std::abs(mean_of(bern) - 0.3) < 0.007);
  CHECK(std::all_of(bern.begin(), bern.end(), [](double v) { return v == 0.0 || v == 1.0; }));
  CHECK(bernoulli({100}, 0.0, gen).to_vector<double>() == std::vector<double>(100, 0.0));
  CHECK(bernoulli({100}, 1.0, gen).to_vector<double>() == std::vector<double>(100, 1.0));

  auto ints = randint(3, 10, {n}, gen).to_vector<int64_t>();
  std::vector<int64_t> counts(7, 0);
  CHECK(*std::min_element(ints.begin(), ints.end()) == 3);
  CHECK(*std::max_element(ints.begin(), ints.end()) == 9);
  for (int64_t v : ints) ++counts[static_cast<std::size_t>(std::clamp<int64_t>(v - 3, 0, 6))];
  for (int64_t c : counts) CHECK(std::abs(static_cast<double>(c) / n - 1.0 / 7) < 0.007);
  auto bytes = randint(0, 256, {4096}, gen, {.dtype = DType::u8}).to_vector<uint8_t>();
  CHECK(*std::max_element(bytes.begin(), bytes.end()) > 250);
  auto flags = randint(0, 2, {1000}, gen, {.dtype = DType::boolean}).to_vector<uint8_t>();
  auto trues = std::count(flags.begin(), flags.end(), uint8_t{1});
  CHECK(trues > 400);
  CHECK(trues < 600);
}

TEST_CASE("philox: uniform stays below high after rounding to a narrow dtype") {
  // Without clamping, about 0.2% of bf16 samples (u > 1 - 2^-9) would round up to exactly 1.
  PhiloxState s{.seed = 8};
  for (DType dt : {DType::bf16, DType::f16, DType::f32}) {
    auto u = rand({100000}, s, {.dtype = dt}).to_vector<float>();
    CHECK(*std::max_element(u.begin(), u.end()) < 1.0f);
    CHECK(*std::min_element(u.begin(), u.end()) >= 0.0f);
    auto w = uniform({100000}, -2.0, 6.0, s, {.dtype = dt}).to_vector<float>();
    CHECK(*std::max_element(w.begin(), w.end()) < 6.0f);
    CHECK(*std::min_element(w.begin(), w.end()) >= -2.0f);
  }
}

TEST_CASE("philox: random ops reject bad arguments without advancing the generator") {
  Generator gen(1);
  PhiloxState s = gen.state();
  CHECK(has(random_error([&] { uniform({3}, 1.0, 1.0, gen); }), "uniform: need finite low < high"));
  CHECK(has(random_error([&] { normal({3}, 0.0, -1.0, gen); }), "std >= 0"));
  CHECK(has(random_error([&] { bernoulli({3}, 1.5, gen); }), "bernoulli: probability p"));
  CHECK(has(random_error([&] { bernoulli({3}, -0.1, gen); }), "[0, 1], got -0.1"));
  CHECK(has(random_error([&] { rand({3}, gen, {.dtype = DType::i64}); }),
            "rand: dtype must be floating"));
  CHECK(has(random_error([&] { randn({2}, gen, {.dtype = DType::i32}); }), "randn: dtype"));
  CHECK(has(random_error([&] { randint(5, 5, {3}, gen); }), "randint: need low < high"));
  CHECK(has(random_error([&] { randint(0, 300, {3}, gen, {.dtype = DType::u8}); }),
            "does not fit dtype u8"));
  CHECK(has(random_error([&] { rand({2, -1}, gen); }), "rand: negative extent"));
  CHECK(gen.state() == s);
  // requires_grad makes a floating leaf.
  Tensor leaf = randn({3}, gen, {.requires_grad = true});
  CHECK(leaf.requires_grad());
  CHECK(leaf.is_leaf());
}

}  // namespace rw
