// Layer normalisation over the last dim of a contiguous [rows, D] tensor. f32 runs on oneDNN's
// layer_normalization primitives, f64 (and anything oneDNN refuses) on loops, bf16/f16 in f32.
//
// oneDNN works with (mean, variance) while the backend contract saves (mean, rstd), which is what
// backward needs and what a CUDA kernel produces directly. Forward turns variance into
// rstd = 1/sqrt(var + eps); backward hands oneDNN variance' = 1/rstd^2 with eps' = 0, so that
// oneDNN's 1/sqrt(variance' + eps') is exactly the saved rstd (up to rounding) without knowing eps.
#include <omp.h>

#include <array>
#include <cmath>
#include <cstring>
#include <span>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/onednn_cache.h"

namespace rw {
namespace {

using dnnl::normalization_flags;

bool is_half(DType t) { return t == DType::bf16 || t == DType::f16; }

Tensor as_f32(Backend& backend, const Tensor& t) {
  if (!t.defined()) return t;
  Tensor c = empty(t.shape(), {.dtype = DType::f32, .device = t.device()});
  backend.copy(t, c);
  return c;
}

Tensor empty_f32(const Tensor& like) {
  if (!like.defined()) return like;
  return empty(like.shape(), {.dtype = DType::f32, .device = like.device()});
}

// Rows spread over threads when there is enough work.
bool parallel_rows(int64_t rows, int64_t D) {
  return rows > 1 && rows * D > 16384 && !omp_in_parallel();
}

// --- oneDNN (f32)
// ---------------------------------------------------------------------------------

struct LnDescs {
  dnnl::memory::desc data, stat, param;
};

LnDescs ln_descs(int64_t rows, int64_t D) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  return {dnnl::memory::desc({rows, D}, dt::f32, tag::ab),
          dnnl::memory::desc({rows}, dt::f32, tag::a), dnnl::memory::desc({D}, dt::f32, tag::a)};
}

normalization_flags ln_flags(bool scale, bool shift) {
  auto f = normalization_flags::none;
  if (scale) f = f | normalization_flags::use_scale;
  if (shift) f = f | normalization_flags::use_shift;
  return f;
}

dnnl::layer_normalization_forward::primitive_desc ln_fwd_pd(int64_t rows, int64_t D, float eps,
                                                            normalization_flags flags) {
  LnDescs d = ln_descs(rows, D);
  return dnnl::layer_normalization_forward::primitive_desc(
      dnnl::layer_normalization_forward::desc(dnnl::prop_kind::forward_training, d.data, d.stat,
                                              eps, flags),
      cpu::dnnl_engine());
}

int64_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

bool layer_norm_onednn(const Tensor& x, const Tensor& w, const Tensor& b, double eps,
                       const Tensor& out, const Tensor& mean, const Tensor& rstd) {
  const int64_t rows = x.size(0), D = x.size(1);
  const auto feps = static_cast<float>(eps);
  const auto flags = ln_flags(w.defined(), b.defined());
  cpu::PrimitiveKey key(4);
  key.add(rows).add(D).add(static_cast<int64_t>(flags)).add(float_bits(feps));
  cpu::CachedEntry p = cpu::cached_entry(key, [&]() -> cpu::CachedPrimitive {
    try {
      LnDescs d = ln_descs(rows, D);
      return {dnnl::layer_normalization_forward(ln_fwd_pd(rows, D, feps, flags)),
              {d.data, d.stat, d.param}};
    } catch (const dnnl::error&) {
      return {};
    }
  });
  if (!p->primitive) return false;
  const auto* data = &p->descs[0];
  const auto* stat = &p->descs[1];
  const auto* param = &p->descs[2];
  // The variance lands in rstd's buffer and is turned into rstd in place below.
  std::array<cpu::ExecArg, 6> args = {{{DNNL_ARG_SRC, data, x.data_ptr()},
                                       {DNNL_ARG_DST, data, out.data_ptr()},
                                       {DNNL_ARG_MEAN, stat, mean.data_ptr()},
                                       {DNNL_ARG_VARIANCE, stat, rstd.data_ptr()}}};
  std::size_t n = 4;
  if (w.defined()) args[n++] = {DNNL_ARG_SCALE, param, w.data_ptr()};
  if (b.defined()) args[n++] = {DNNL_ARG_SHIFT, param, b.data_ptr()};
  cpu::execute(p->primitive, std::span<const cpu::ExecArg>(args.data(), n));
  float* r = rstd.data<float>();
  for (int64_t i = 0; i < rows; ++i) r[i] = 1.0f / std::sqrt(r[i] + feps);
  return true;
}

bool layer_norm_backward_onednn(const Tensor& dy, const Tensor& x, const Tensor& w,
                                const Tensor& mean, const Tensor& rstd, const Tensor& dx,
                                const Tensor& dw, const Tensor& db) {
  const int64_t rows = x.size(0), D = x.size(1);
  const bool use_scale = w.defined(), use_shift = db.defined();
  // Parameter gradients come only with prop_kind::backward, which then computes all of them.
  const bool full = dw.defined() || db.defined();
  const auto flags = ln_flags(use_scale, use_shift);
  cpu::PrimitiveKey key(5);
  key.add(rows).add(D).add(static_cast<int64_t>(flags)).add(full ? 1 : 0);
  cpu::CachedEntry p = cpu::cached_entry(key, [&]() -> cpu::CachedPrimitive {
    try {
      LnDescs d = ln_descs(rows, D);
      auto hint = ln_fwd_pd(rows, D, 0.0f, flags);
      dnnl::layer_normalization_backward::primitive_desc pd(
          dnnl::layer_normalization_backward::desc(
              full ? dnnl::prop_kind::backward : dnnl::prop_kind::backward_data, d.data, d.data,
              d.stat, 0.0f, flags),
          cpu::dnnl_engine(), hint);
      return {dnnl::layer_normalization_backward(pd), {d.data, d.stat, d.param}};
    } catch (const dnnl::error&) {
      return {};
    }
  });
  if (!p->primitive) return false;
  const auto* data = &p->descs[0];
  const auto* stat = &p->descs[1];
  const auto* param = &p->descs[2];
  Tensor var = empty({rows}, options_of(rstd));
  const float* r = rstd.data<float>();
  float* v = var.data<float>();
  for (int64_t i = 0; i < rows; ++i) v[i] = 1.0f / (r[i] * r[i]);
  std::array<cpu::ExecArg, 10> args = {{{DNNL_ARG_SRC, data, x.data_ptr()},
                                        {DNNL_ARG_DIFF_DST, data, dy.data_ptr()},
                                        {DNNL_ARG_MEAN, stat, mean.data_ptr()},
                                        {DNNL_ARG_VARIANCE, stat, var.data_ptr()},
                                        {DNNL_ARG_DIFF_SRC, data, dx.data_ptr()}}};
  std::size_t n = 5;
  Tensor dw_buf;  // scratch for a weight gradient oneDNN computes but nobody asked for
  if (use_scale) {
    args[n++] = {DNNL_ARG_SCALE, param, w.data_ptr()};
    if (full) {
      dw_buf = dw.defined() ? dw : empty({D}, options_of(x));
      args[n++] = {DNNL_ARG_DIFF_SCALE, param, dw_buf.data_ptr()};
    }
  }
  Tensor shift_dummy;
  if (use_shift) {
    args[n++] = {DNNL_ARG_DIFF_SHIFT, param, db.data_ptr()};
    // oneDNN 2.6 refuses to run a use_shift backward without the shift itself, although the
    // gradients do not depend on it (and the backend contract does not pass it): any values do.
    shift_dummy = zeros({D}, options_of(x));
    args[n++] = {DNNL_ARG_SHIFT, param, shift_dummy.data_ptr()};
  }
  cpu::execute(p->primitive, std::span<const cpu::ExecArg>(args.data(), n));
  return true;
}

// --- loops (f64, and f32 when oneDNN refuses)
// ------------------------------------------------------

template <typename T, typename S>
void layer_norm_loops(const Tensor& x, const Tensor& w, const Tensor& b, double eps,
                      const Tensor& out, const Tensor& mean, const Tensor& rstd) {
  const int64_t rows = x.size(0), D = x.size(1);
  const T* px = x.data<T>();
  const T* pw = w.defined() ? w.data<T>() : nullptr;
  const T* pb = b.defined() ? b.data<T>() : nullptr;
  T* po = out.data<T>();
  S* pm = mean.data<S>();
  S* pr = rstd.data<S>();
#pragma omp parallel for schedule(static) if (parallel_rows(rows, D))
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = px + r * D;
    T* yr = po + r * D;
    // Two passes (mean, then centred squares): no cancellation for rows with a large mean.
    double m = 0;
    for (int64_t j = 0; j < D; ++j) m += xr[j];
    m /= static_cast<double>(D);
    double var = 0;
    for (int64_t j = 0; j < D; ++j) var += (xr[j] - m) * (xr[j] - m);
    var /= static_cast<double>(D);
    const double rs = 1.0 / std::sqrt(var + eps);
    for (int64_t j = 0; j < D; ++j) {
      double v = (xr[j] - m) * rs;
      if (pw != nullptr) v *= pw[j];
      if (pb != nullptr) v += pb[j];
      yr[j] = static_cast<T>(v);
    }
    pm[r] = static_cast<S>(m);
    pr[r] = static_cast<S>(rs);
  }
}

template <typename T, typename S>
void layer_norm_backward_loops(const Tensor& dy, const Tensor& x, const Tensor& w,
                               const Tensor& mean, const Tensor& rstd, const Tensor& dx,
                               const Tensor& dw, const Tensor& db) {
  const int64_t rows = x.size(0), D = x.size(1);
  const T* px = x.data<T>();
  const T* pg = dy.data<T>();
  const T* pw = w.defined() ? w.data<T>() : nullptr;
  const S* pm = mean.data<S>();
  const S* pr = rstd.data<S>();
  T* pdx = dx.data<T>();
  const bool want_dw = dw.defined(), want_db = db.defined();
  const int threads = parallel_rows(rows, D) ? omp_get_max_threads() : 1;
  // Per-thread partial sums of the parameter gradients, reduced at the end (deterministic for a
  // given thread count).
  std::vector<double> part_w(want_dw ? static_cast<std::size_t>(threads * D) : 0, 0.0);
  std::vector<double> part_b(want_db ? static_cast<std::size_t>(threads * D) : 0, 0.0);
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int t = omp_get_thread_num();
    double* acc_w = want_dw ? part_w.data() + t * D : nullptr;
    double* acc_b = want_db ? part_b.data() + t * D : nullptr;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = px + r * D;
      const T* gr = pg + r * D;
      T* dr = pdx + r * D;
      const double m = pm[r], rs = pr[r];
      // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * w.
      double sum_g = 0, sum_gx = 0;
      for (int64_t j = 0; j < D; ++j) {
        const double xh = (xr[j] - m) * rs;
        const double g = pw != nullptr ? gr[j] * static_cast<double>(pw[j]) : gr[j];
        sum_g += g;
        sum_gx += g * xh;
        if (acc_w != nullptr) acc_w[j] += gr[j] * xh;
        if (acc_b != nullptr) acc_b[j] += gr[j];
      }
      const double mg = sum_g / static_cast<double>(D), mgx = sum_gx / static_cast<double>(D);
      for (int64_t j = 0; j < D; ++j) {
        const double xh = (xr[j] - m) * rs;
        const double g = pw != nullptr ? gr[j] * static_cast<double>(pw[j]) : gr[j];
        dr[j] = static_cast<T>(rs * (g - mg - xh * mgx));
      }
    }
  }
  auto reduce = [&](const std::vector<double>& part, const Tensor& dst) {
    T* p = dst.data<T>();
    for (int64_t j = 0; j < D; ++j) {
      double s = 0;
      for (int t = 0; t < threads; ++t) s += part[t * D + j];
      p[j] = static_cast<T>(s);
    }
  };
  if (want_dw) reduce(part_w, dw);
  if (want_db) reduce(part_b, db);
}

}  // namespace

void CpuBackend::layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                            const Tensor& out, const Tensor& mean, const Tensor& rstd) {
  if (x.numel() == 0) return;
  if (is_half(x.dtype())) {
    Tensor out32 = empty_f32(out);
    layer_norm(as_f32(*this, x), as_f32(*this, weight), as_f32(*this, bias), eps, out32, mean,
               rstd);
    copy(out32, out);
    return;
  }
  if (x.dtype() == DType::f32) {
    if (layer_norm_onednn(x, weight, bias, eps, out, mean, rstd)) return;
    layer_norm_loops<float, float>(x, weight, bias, eps, out, mean, rstd);
    return;
  }
  RW_CHECK(x.dtype() == DType::f64, "cpu layer_norm: unsupported dtype {}", x.dtype());
  layer_norm_loops<double, double>(x, weight, bias, eps, out, mean, rstd);
}

void CpuBackend::layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                     const Tensor& mean, const Tensor& rstd, const Tensor& dx,
                                     const Tensor& dweight, const Tensor& dbias) {
  if (x.numel() == 0) return;
  if (is_half(x.dtype())) {
    Tensor dx32 = empty_f32(dx), dw32 = empty_f32(dweight), db32 = empty_f32(dbias);
    layer_norm_backward(as_f32(*this, dy), as_f32(*this, x), as_f32(*this, weight), mean, rstd,
                        dx32, dw32, db32);
    copy(dx32, dx);
    if (dweight.defined()) copy(dw32, dweight);
    if (dbias.defined()) copy(db32, dbias);
    return;
  }
  if (x.dtype() == DType::f32) {
    if (layer_norm_backward_onednn(dy, x, weight, mean, rstd, dx, dweight, dbias)) return;
    layer_norm_backward_loops<float, float>(dy, x, weight, mean, rstd, dx, dweight, dbias);
    return;
  }
  RW_CHECK(x.dtype() == DType::f64, "cpu layer_norm_backward: unsupported dtype {}", x.dtype());
  layer_norm_backward_loops<double, double>(dy, x, weight, mean, rstd, dx, dweight, dbias);
}

}  // namespace rw
