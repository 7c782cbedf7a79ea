#pragma once
// Helpers shared by the nn suite's tests (on top of tests/test_util.h).
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <string>
#include <system_error>
#include <vector>

#include <fmt/format.h>

#include "autograd/gradcheck.h"
#include "autograd/tape.h"
#include "core/allocator.h"
#include "core/ops.h"

namespace rw::test {

// N(0, 1) f64 values from their own seed.
inline Tensor randn64(Shape shape, uint64_t seed) {
  Generator gen(seed);
  return randn(std::move(shape), gen, {.dtype = DType::f64});
}

inline std::vector<double> host(const Tensor& t) { return t.contiguous().to_vector<double>(); }

// Gradchecks `forward` with respect to x (when floating) and the module members in `slots`: f puts
// gradcheck's copies into the slots, runs forward and puts the originals back.
inline GradcheckResult gradcheck_module(const std::vector<Tensor*>& slots, const Tensor& x,
                                        const std::function<Tensor(const Tensor&)>& forward) {
  const bool x_is_input = is_floating(x.dtype());
  std::vector<Tensor> inputs;
  if (x_is_input) inputs.push_back(x.detach().requires_grad_());
  for (Tensor* slot : slots) inputs.push_back(slot->detach().requires_grad_());
  return gradcheck(
      [&](const std::vector<Tensor>& in) {
        std::vector<Tensor> originals;
        const std::size_t first = x_is_input ? 1 : 0;
        for (std::size_t i = 0; i < slots.size(); ++i) {
          originals.push_back(*slots[i]);
          *slots[i] = in[first + i];
        }
        Tensor y = forward(x_is_input ? in[0] : x);
        for (std::size_t i = 0; i < slots.size(); ++i) *slots[i] = originals[i];
        return y;
      },
      inputs);
}

// Peak bytes allocated by `run` above what was live before it. Dead graphs left by earlier cases
// are swept first, so no sweep can free their memory in the middle of the measurement.
inline int64_t peak_bytes(const std::function<void()>& run) {
  current_tape().sweep();
  const int64_t before = memory_stats().allocated_bytes;
  reset_peak_memory();
  run();
  return memory_stats().peak_allocated_bytes - before;
}

// A fresh directory under the system's temporary directory, removed with everything in it.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix) {
    static int count = 0;
    path_ = std::filesystem::temp_directory_path() /
            fmt::format("rewind-{}-{}-{}", prefix, ::getpid(), count++);
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }
  // The names in the directory, sorted (temporary files would show up here).
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(path_)) {
      names.push_back(e.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

 private:
  std::filesystem::path path_;
};

}  // namespace rw::test
