#pragma once
// Iterates N same-shape strided operands. Dims are coalesced where the strides allow, the outer
// iteration space is split across OpenMP threads, and the body gets 1-D runs:
//   body(std::array<char*, N> ptrs, int64_t n, std::array<int64_t, N> byte_strides)
// so the innermost loop is a plain (often unit-stride, vectorisable) loop.
#include <omp.h>

#include <array>
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace rw::cpu {

// Below this many elements a loop runs on one thread (thread start-up would dominate).
inline constexpr int64_t kParallelGrain = 32768;

template <std::size_t N, typename Body>
void strided_loop(const Shape& shape, const std::array<const Tensor*, N>& operands, Body&& body) {
  int64_t numel = shape_numel(shape);
  if (numel == 0) return;
  // Byte strides per operand, coalesced from the innermost dim outwards.
  std::vector<int64_t> dims;
  std::array<std::vector<int64_t>, N> strides;
  for (std::size_t d = shape.size(); d-- > 0;) {
    if (shape[d] == 1) continue;
    std::array<int64_t, N> s;
    for (std::size_t k = 0; k < N; ++k) {
      s[k] = operands[k]->strides()[d] * static_cast<int64_t>(dtype_size(operands[k]->dtype()));
    }
    if (!dims.empty()) {
      bool merge = true;
      for (std::size_t k = 0; k < N; ++k) merge = merge && s[k] == strides[k].back() * dims.back();
      if (merge) {
        dims.back() *= shape[d];
        continue;
      }
    }
    dims.push_back(shape[d]);
    for (std::size_t k = 0; k < N; ++k) strides[k].push_back(s[k]);
  }
  std::array<char*, N> base;
  for (std::size_t k = 0; k < N; ++k) base[k] = static_cast<char*>(operands[k]->data_ptr());
  if (dims.empty()) {  // a single element
    std::array<int64_t, N> zero{};
    body(base, 1, zero);
    return;
  }
  const int64_t inner = dims[0];
  std::array<int64_t, N> inner_strides;
  for (std::size_t k = 0; k < N; ++k) inner_strides[k] = strides[k][0];
  const int64_t outer = numel / inner;
  auto run_range = [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      std::array<char*, N> p = base;
      int64_t rem = o;
      for (std::size_t d = 1; d < dims.size(); ++d) {
        int64_t i = rem % dims[d];
        rem /= dims[d];
        for (std::size_t k = 0; k < N; ++k) p[k] += i * strides[k][d];
      }
      body(p, inner, inner_strides);
    }
  };
  if (numel < kParallelGrain || outer == 1 || omp_in_parallel()) {
    if (outer == 1 && numel >= kParallelGrain && !omp_in_parallel()) {
      // One long run: split it instead.
#pragma omp parallel
      {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int64_t chunk = (inner + nt - 1) / nt;
        int64_t b = std::min<int64_t>(inner, t * chunk), e = std::min<int64_t>(inner, b + chunk);
        if (b < e) {
          std::array<char*, N> p = base;
          for (std::size_t k = 0; k < N; ++k) p[k] += b * inner_strides[k];
          body(p, e - b, inner_strides);
        }
      }
      return;
    }
    run_range(0, outer);
    return;
  }
#pragma omp parallel
  {
    int t = omp_get_thread_num(), nt = omp_get_num_threads();
    int64_t chunk = (outer + nt - 1) / nt;
    int64_t b = std::min<int64_t>(outer, t * chunk), e = std::min<int64_t>(outer, b + chunk);
    run_range(b, e);
  }
}

}  // namespace rw::cpu
