#pragma once
// rw::Error and RW_CHECK: every user-facing failure is an rw::Error whose message names the op and
// the offending values, so a test can assert on the message and a user can act on it.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <stdexcept>
#include <string>

namespace rw {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

class OutOfMemoryError : public Error {
 public:
  using Error::Error;
};

}  // namespace rw

// RW_CHECK(cond, "matmul: inner dims differ: {} vs {}", a, b) throws rw::Error with that message.
#define RW_CHECK(cond, ...)                          \
  do {                                               \
    if (!(cond)) [[unlikely]] {                      \
      throw ::rw::Error(::fmt::format(__VA_ARGS__)); \
    }                                                \
  } while (0)

// Internal invariants (bugs in rewind itself, not user errors).
#define RW_ASSERT(cond)                                                                           \
  do {                                                                                            \
    if (!(cond)) [[unlikely]] {                                                                   \
      throw ::rw::Error(::fmt::format("internal error: {} at {}:{}", #cond, __FILE__, __LINE__)); \
    }                                                                                             \
  } while (0)
