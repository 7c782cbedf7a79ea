// softmax and log_softmax forward/backward along any dim. The tensor is seen as [outer, C, inner]
// with the softmax over C, so every dim of every rank maps to one of few primitive shapes. f32 runs
// on oneDNN's softmax_v2 (accurate or log algorithm), f64 on loops, bf16/f16 in f32.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/onednn_cache.h"

namespace rw {
namespace {

struct SoftmaxShape {
  int64_t outer = 1, C = 1, inner = 1;
};

SoftmaxShape split_at(const Tensor& x, int64_t dim) {
  SoftmaxShape s;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (d < dim) s.outer *= x.shape()[d];
    if (d > dim) s.inner *= x.shape()[d];
  }
  s.C = x.shape()[dim];
  return s;
}

dnnl::memory::desc softmax_md(const SoftmaxShape& s) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  if (s.inner == 1) return dnnl::memory::desc({s.outer, s.C}, dt::f32, tag::ab);
  return dnnl::memory::desc({s.outer, s.C, s.inner}, dt::f32, tag::abc);
}

dnnl::algorithm softmax_algorithm(SoftmaxKind kind) {
  return kind == SoftmaxKind::softmax ? dnnl::algorithm::softmax_accurate
                                      : dnnl::algorithm::softmax_log;
}

dnnl::softmax_v2_forward::primitive_desc softmax_fwd_pd(SoftmaxKind kind, const SoftmaxShape& s) {
  auto md = softmax_md(s);
  return dnnl::softmax_v2_forward::primitive_desc(
      dnnl::softmax_v2_forward::desc(dnnl::prop_kind::forward_training, softmax_algorithm(kind), md,
                                     md, /*axis=*/1),
      cpu::dnnl_engine());
}

// The entry's descs hold the one descriptor every argument shares.
cpu::CachedEntry softmax_primitive(bool backward, SoftmaxKind kind, const SoftmaxShape& s) {
  cpu::PrimitiveKey key(backward ? 3 : 2);
  key.add(static_cast<int64_t>(kind)).add(s.outer).add(s.C).add(s.inner);
  return cpu::cached_entry(key, [&]() -> cpu::CachedPrimitive {
    try {
      auto fwd = softmax_fwd_pd(kind, s);
      auto md = softmax_md(s);
      if (!backward) return {dnnl::softmax_v2_forward(fwd), {md}};
      dnnl::softmax_v2_backward::primitive_desc pd(
          dnnl::softmax_v2_backward::desc(softmax_algorithm(kind), md, md, md, /*axis=*/1),
          cpu::dnnl_engine(), fwd);
      return {dnnl::softmax_v2_backward(pd), {md}};
    } catch (const dnnl::error&) {
      return {};  // the loops below take over
    }
  });
}

// Runs body(base, stride) for every softmax row (C elements `stride` apart from `base`), rows
// spread over threads when there is enough work.
template <typename Body>
void for_each_row(const SoftmaxShape& s, Body&& body) {
  const int64_t rows = s.outer * s.inner;
  const bool parallel = rows > 1 && rows * s.C > 32768 && !omp_in_parallel();
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t o = r / s.inner, i = r % s.inner;
    body(o * s.C * s.inner + i, s.inner);
  }
}

template <typename T>
void softmax_loops(SoftmaxKind kind, const T* x, T* y, const SoftmaxShape& s) {
  for_each_row(s, [&](int64_t base, int64_t st) {
    const T* xr = x + base;
    T* yr = y + base;
    // Subtracting the max keeps exp in range; a row of all -inf gives NaN, as in PyTorch.
    T mx = -std::numeric_limits<T>::infinity();
    for (int64_t c = 0; c < s.C; ++c) mx = std::max(mx, xr[c * st]);
    T total = 0;
    for (int64_t c = 0; c < s.C; ++c) total += std::exp(xr[c * st] - mx);
    if (kind == SoftmaxKind::softmax) {
      const T inv = T(1) / total;
      for (int64_t c = 0; c < s.C; ++c) yr[c * st] = std::exp(xr[c * st] - mx) * inv;
    } else {
      const T lse = mx + std::log(total);
      for (int64_t c = 0; c < s.C; ++c) yr[c * st] = xr[c * st] - lse;
    }
  });
}

template <typename T>
void softmax_backward_loops(SoftmaxKind kind, const T* y, const T* dy, T* dx,
                            const SoftmaxShape& s) {
  for_each_row(s, [&](int64_t base, int64_t st) {
    const T* yr = y + base;
    const T* gr = dy + base;
    T* dr = dx + base;
    if (kind == SoftmaxKind::softmax) {  // dx = y * (dy - <dy, y>)
      T dot = 0;
      for (int64_t c = 0; c < s.C; ++c) dot += gr[c * st] * yr[c * st];
      for (int64_t c = 0; c < s.C; ++c) dr[c * st] = yr[c * st] * (gr[c * st] - dot);
    } else {  // dx = dy - exp(y) * sum(dy)
      T total = 0;
      for (int64_t c = 0; c < s.C; ++c) total += gr[c * st];
      for (int64_t c = 0; c < s.C; ++c) dr[c * st] = gr[c * st] - std::exp(yr[c * st]) * total;
    }
  });
}

// f32 copy of a half tensor (the CPU computes half types in f32).
Tensor as_f32(Backend& backend, const Tensor& t) {
  Tensor c = empty(t.shape(), {.dtype = DType::f32, .device = t.device()});
  backend.copy(t, c);
  return c;
}

bool is_half(DType t) { return t == DType::bf16 || t == DType::f16; }

}  // namespace

void CpuBackend::softmax(SoftmaxKind kind, const Tensor& x, int64_t dim, const Tensor& out) {
  if (out.numel() == 0) return;
  if (is_half(x.dtype())) {
    Tensor out32 = empty(out.shape(), {.dtype = DType::f32, .device = out.device()});
    softmax(kind, as_f32(*this, x), dim, out32);
    copy(out32, out);
    return;
  }
  const SoftmaxShape s = split_at(x, dim);
  if (x.dtype() == DType::f32) {
    cpu::CachedEntry p = softmax_primitive(false, kind, s);
    if (p->primitive) {
      const auto* md = &p->descs[0];
      cpu::execute(p->primitive,
                   {{DNNL_ARG_SRC, md, x.data_ptr()}, {DNNL_ARG_DST, md, out.data_ptr()}});
      return;
    }
    softmax_loops(kind, x.data<float>(), out.data<float>(), s);
    return;
  }
  RW_CHECK(x.dtype() == DType::f64, "cpu softmax: unsupported dtype {}", x.dtype());
  softmax_loops(kind, x.data<double>(), out.data<double>(), s);
}

void CpuBackend::softmax_backward(SoftmaxKind kind, const Tensor& y, const Tensor& dy, int64_t dim,
                                  const Tensor& dx) {
  if (dx.numel() == 0) return;
  if (is_half(y.dtype())) {
    Tensor dx32 = empty(dx.shape(), {.dtype = DType::f32, .device = dx.device()});
    softmax_backward(kind, as_f32(*this, y), as_f32(*this, dy), dim, dx32);
    copy(dx32, dx);
    return;
  }
  const SoftmaxShape s = split_at(y, dim);
  if (y.dtype() == DType::f32) {
    cpu::CachedEntry p = softmax_primitive(true, kind, s);
    if (p->primitive) {
      const auto* md = &p->descs[0];
      cpu::execute(p->primitive, {{DNNL_ARG_DST, md, y.data_ptr()},
                                  {DNNL_ARG_DIFF_DST, md, dy.data_ptr()},
                                  {DNNL_ARG_DIFF_SRC, md, dx.data_ptr()}});
      return;
    }
    softmax_backward_loops(kind, y.data<float>(), dy.data<float>(), dx.data<float>(), s);
    return;
  }
  RW_CHECK(y.dtype() == DType::f64, "cpu softmax_backward: unsupported dtype {}", y.dtype());
  softmax_backward_loops(kind, y.data<double>(), dy.data<double>(), dx.data<double>(), s);
}

}  // namespace rw
