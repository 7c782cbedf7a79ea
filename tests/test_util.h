// Helpers shared by the doctest suites (tests/<suite>/*.cpp), so that each file does not define
// its own slightly different copy. Header-only: every suite compiles with tests/ on its include
// path and links doctest, so no extra target is needed.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"

namespace rw::test {

// The message of the rw::Error that `f` throws; fails the test when it throws nothing, so a
// missing error is reported where it happens rather than as a confusing string mismatch.
template <typename F>
std::string error_message(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const Error& e) {
    return e.what();
  }
  FAIL("expected an rw::Error");
  return {};
}

// Whether `part` occurs in `s` (error messages are checked by their key phrases).
inline bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// The elements of `t` as floats, for exact comparisons against small hand-written vectors.
inline std::vector<float> vals(const Tensor& t) { return t.to_vector<float>(); }

// Tensor factories from literal values: f32({1, 2, 3, 4}, {2, 2}); without a shape, 1-D.
inline Tensor f32(std::vector<float> v, Shape s) { return from_vector<float>(v, std::move(s)); }
inline Tensor f64(std::vector<double> v, Shape s) { return from_vector<double>(v, std::move(s)); }
inline Tensor i64(std::vector<int64_t> v, Shape s) { return from_vector<int64_t>(v, std::move(s)); }
inline Tensor i64(std::vector<int64_t> v) { return from_vector<int64_t>(v); }

// Elementwise closeness of `t` (read as doubles) to `expected`: an expected NaN needs a NaN, an
// expected infinity needs exactly that infinity (a relative tolerance would accept any finite
// value), and finite values need |got - expected| <= tol * (1 + |expected|). Files whose cases
// need another tolerance pass it explicitly.
inline void check_close(const Tensor& t, const std::vector<double>& expected, double tol = 1e-6) {
  std::vector<double> got = t.to_vector<double>();
  REQUIRE(got.size() == expected.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("element ", i, ": got ", got[i], ", expected ", expected[i]);
    if (std::isnan(expected[i])) {
      CHECK(std::isnan(got[i]));
    } else if (std::isinf(expected[i])) {
      CHECK(got[i] == expected[i]);
    } else {
      CHECK(std::abs(got[i] - expected[i]) <= tol * (1 + std::abs(expected[i])));
    }
  }
}

// 0, 1, ..., n-1 as f32 in `shape`: distinct values make misplaced elements visible.
inline Tensor iota(Shape shape) {
  return arange(0.0, static_cast<double>(shape_numel(shape)), 1.0, {.dtype = DType::f32})
      .reshape(std::move(shape));
}

}  // namespace rw::test
