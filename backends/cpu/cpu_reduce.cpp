// Reductions (sum, mean, max, min, prod, logsumexp), arg-reductions and cumsum on the CPU.
//
// x's dims are split into kept dims (out extent == x extent) and reduced dims; each group is
// sorted by x stride and coalesced, so any strided input reduces with two loop shapes:
//  - row: a reduced dim has the smallest stride, so each output reduces contiguous runs with
//    independent lane accumulators (vectorised without -ffast-math, since no reassociation is
//    needed).
//  - column: a kept dim has the smallest stride, so a block of outputs accumulates whole rows
//    (acc[j] += x[r][j]); the inner loop never walks memory with a large stride.
// Threads split the outputs, or, when there are few outputs and a long reduction, the reduced range
// (each thread keeps partial states that are merged at the end).
//
// f32 sums accumulate in double: a 1e6-element sum is then exact to f32 rounding, and the double
// adds still outrun memory bandwidth. bf16/f16 are widened to float on load.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/dispatch.h"
#include "backends/cpu/strided_loop.h"

namespace rw {
namespace {

template <typename T>
inline constexpr bool kIsHalf = std::is_same_v<T, bf16> || std::is_same_v<T, f16>;
// The type a kernel computes in: bf16/f16 widen to float.
template <typename T>
using compute_t = std::conditional_t<kIsHalf<T>, float, T>;
// Sums and products of floats accumulate in double, of integers (and bools) in int64.
template <typename V>
using wide_t = std::conditional_t<std::is_floating_point_v<V>, double, int64_t>;

template <typename O, typename R>
inline O convert_to(R v) {
  if constexpr (std::is_same_v<O, bool>) {
    return v != R(0);
  } else if constexpr (kIsHalf<O>) {
    return O(static_cast<float>(v));
  } else {
    return static_cast<O>(v);
  }
}

// Writes one result of type R into an output element of any dtype (resolved once per kernel).
template <typename R>
using StoreFn = void (*)(void* dst, R value);
template <typename R>
StoreFn<R> store_fn(DType dtype) {
  return RW_DISPATCH_ALL(dtype, "reduce", [&]() -> StoreFn<R> {
    return [](void* dst, R v) { *static_cast<scalar_t*>(dst) = convert_to<scalar_t>(v); };
  });
}

template <typename V>
inline bool is_nan(V v) {
  if constexpr (std::is_floating_point_v<V>) {
    return v != v;
  } else {
    return false;
  }
}

template <typename V>
constexpr V lowest_value() {
  if constexpr (std::is_floating_point_v<V>) {
    return -std::numeric_limits<V>::infinity();
  } else {
    return std::numeric_limits<V>::lowest();
  }
}
template <typename V>
constexpr V highest_value() {
  if constexpr (std::is_floating_point_v<V>) {
    return std::numeric_limits<V>::infinity();
  } else {
    return std::numeric_limits<V>::max();
  }
}

// --- reduction ops -------------------------------------------------------------------------------
// Each op has a state (acc_t) with init / update / merge; `ctx(o)` is per-output data (the shift of
// logsumexp's second pass), `i` is the element's flat index in the reduced range (for argmax).
// kBlockedF32 marks the f32 sum, which takes the blocked fast paths below.
struct NoCtx {};

// f32 sums: float lanes (fast: no per-element widening) flushed into double every kFlushRows
// additions, so float partial sums never grow long enough to lose accuracy (a blocked/pairwise
// sum with 16-element leaves; the double total keeps 1e6+ element sums at f32 rounding).
constexpr int64_t kLanes = 16;
constexpr int64_t kFlushRows = 16;

double blocked_sum_f32(const float* p, int64_t n) {
  double total[kLanes] = {};
  int64_t i = 0;
  while (i + kLanes <= n) {
    float lane[kLanes] = {};
    const int64_t end = std::min(n - n % kLanes, i + kLanes * kFlushRows);
    for (; i < end; i += kLanes) {
#pragma omp simd
      for (int64_t k = 0; k < kLanes; ++k) lane[k] += p[i + k];
    }
    for (int64_t k = 0; k < kLanes; ++k) total[k] += lane[k];
  }
  double r = 0;
  for (; i < n; ++i) r += p[i];
  for (double t : total) r += t;
  return r;
}

template <typename T>
struct SumOp {
  using V = compute_t<T>;
  using acc_t = wide_t<V>;
  static constexpr bool kBlockedF32 = std::is_same_v<T, float>;
  NoCtx ctx(int64_t) const { return {}; }
  acc_t init() const { return 0; }
  void update(acc_t& a, V v, int64_t, NoCtx) const { a += static_cast<acc_t>(v); }
  void merge(acc_t& a, const acc_t& b) const { a += b; }
};

template <typename T>
struct ProdOp {
  using V = compute_t<T>;
  using acc_t = wide_t<V>;
  static constexpr bool kBlockedF32 = false;
  NoCtx ctx(int64_t) const { return {}; }
  acc_t init() const { return 1; }
  void update(acc_t& a, V v, int64_t, NoCtx) const { a *= static_cast<acc_t>(v); }
  void merge(acc_t& a, const acc_t& b) const { a *= b; }
};

// max/min propagate NaN, as PyTorch does.
template <typename T, bool kMax>
struct ExtremeOp {
  using V = compute_t<T>;
  using acc_t = V;
  static constexpr bool kBlockedF32 = false;
  NoCtx ctx(int64_t) const { return {}; }
  acc_t init() const { return kMax ? lowest_value<V>() : highest_value<V>(); }
  void update(acc_t& a, V v, int64_t, NoCtx) const {
    // Written as "keep a unless v wins" so it vectorises (a NaN a is kept, a NaN v wins).
    if constexpr (kMax) {
      a = (a > v || is_nan(a)) ? a : v;
    } else {
      a = (a < v || is_nan(a)) ? a : v;
    }
  }
  void merge(acc_t& a, const acc_t& b) const { update(a, b, 0, {}); }
};

// Second pass of logsumexp: sum of exp(x - max) with the max of the first pass as context.
template <typename T>
struct SumExpOp {
  using V = compute_t<T>;
  using acc_t = wide_t<V>;
  static constexpr bool kBlockedF32 = false;
  const V* shift;
  V ctx(int64_t o) const { return shift[o]; }
  acc_t init() const { return 0; }
  void update(acc_t& a, V v, int64_t, V m) const { a += static_cast<acc_t>(std::exp(v - m)); }
  void merge(acc_t& a, const acc_t& b) const { a += b; }
};

template <typename V>
struct ArgState {
  V value;
  int64_t index;  // -1: nothing seen yet
};

// First index of the extreme; NaN counts as the extreme (the first NaN wins), as PyTorch.
template <typename T, bool kMax>
struct ArgOp {
  using V = compute_t<T>;
  using acc_t = ArgState<V>;
  static constexpr bool kBlockedF32 = false;
  NoCtx ctx(int64_t) const { return {}; }
  acc_t init() const { return {V{}, -1}; }
  static bool better(V v, V best) {
    if (is_nan(best)) return false;
    if (is_nan(v)) return true;
    return kMax ? v > best : v < best;
  }
  void update(acc_t& a, V v, int64_t i, NoCtx) const {
    if (a.index < 0 || better(v, a.value)) a = {v, i};
  }
  // Lanes and thread slices see indices out of order, so ties are broken by index explicitly.
  void merge(acc_t& a, const acc_t& b) const {
    if (b.index < 0) return;
    bool tie = a.value == b.value || (is_nan(a.value) && is_nan(b.value));
    if (a.index < 0 || better(b.value, a.value) || (tie && b.index < a.index)) a = b;
  }
};

// --- layout --------------------------------------------------------------------------------------

struct Layout {
  std::vector<int64_t> ksize, kxs, kos;  // kept dims (outer -> inner): extent, x and out strides
  std::vector<int64_t> rsize, rxs;       // reduced dims (outer -> inner): extent, x stride
  int64_t n_out = 1, n_red = 1;
  bool column = false;  // the innermost (smallest-stride) dim is a kept one

  // x and out element offsets of flat output o (flat over the kept dims in this order).
  void offsets(int64_t o, int64_t& xo, int64_t& oo) const {
    xo = 0;
    oo = 0;
    for (std::size_t d = ksize.size(); d-- > 0;) {
      int64_t i = o % ksize[d];
      o /= ksize[d];
      xo += i * kxs[d];
      oo += i * kos[d];
    }
  }
};

// Sorts dims by x stride (descending, stable) and merges neighbours that form one dense run.
void sort_and_coalesce(std::vector<int64_t>& size, std::vector<int64_t>& xs,
                       std::vector<int64_t>* os) {
  std::vector<std::size_t> order(size.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return xs[a] > xs[b]; });
  std::vector<int64_t> ns, nx, no;
  for (std::size_t i : order) {
    if (!ns.empty() && nx.back() == xs[i] * size[i] &&
        (os == nullptr || no.back() == (*os)[i] * size[i])) {
      ns.back() *= size[i];
      nx.back() = xs[i];
      if (os != nullptr) no.back() = (*os)[i];
      continue;
    }
    ns.push_back(size[i]);
    nx.push_back(xs[i]);
    if (os != nullptr) no.push_back((*os)[i]);
  }
  size = std::move(ns);
  xs = std::move(nx);
  if (os != nullptr) *os = std::move(no);
}

// Dims where out's extent is 1 and x's is not are reduced; size-1 dims of x take no part.
Layout make_layout(const Tensor& x, const Tensor& out) {
  Layout l;
  const Shape& xs = x.shape();
  const Shape& os = out.shape();
  RW_ASSERT(xs.size() == os.size());
  for (std::size_t d = 0; d < xs.size(); ++d) {
    if (xs[d] == 1) continue;
    if (os[d] == 1) {
      l.rsize.push_back(xs[d]);
      l.rxs.push_back(x.strides()[d]);
    } else {
      RW_ASSERT(os[d] == xs[d]);
      l.ksize.push_back(xs[d]);
      l.kxs.push_back(x.strides()[d]);
      l.kos.push_back(out.strides()[d]);
    }
  }
  for (int64_t s : l.ksize) l.n_out *= s;
  for (int64_t s : l.rsize) l.n_red *= s;
  sort_and_coalesce(l.ksize, l.kxs, &l.kos);
  sort_and_coalesce(l.rsize, l.rxs, nullptr);
  l.column = !l.ksize.empty() && !l.rsize.empty() && l.kxs.back() < l.rxs.back();
  // Dummy extent-1 dims keep the loops free of special cases.
  if (l.ksize.empty()) {
    l.ksize = {1};
    l.kxs = {0};
    l.kos = {0};
  }
  if (l.rsize.empty()) {
    l.rsize = {1};
    l.rxs = {0};
  }
  return l;
}

// Visits the runs of the innermost reduced dim that cover flat reduced indices [rb, re):
// f(x_offset, first_flat_index, length); consecutive elements of a run are rxs.back() apart.
class RunWalker {
 public:
  explicit RunWalker(const Layout& l) : l_(l), idx_(l.rsize.size()) {}

  template <typename F>
  void walk(int64_t rb, int64_t re, F&& f) {
    const std::size_t nd = l_.rsize.size();
    int64_t rem = rb, off = 0;
    for (std::size_t d = nd; d-- > 0;) {
      idx_[d] = rem % l_.rsize[d];
      rem /= l_.rsize[d];
      off += idx_[d] * l_.rxs[d];
    }
    const int64_t inner = l_.rsize[nd - 1];
    for (int64_t r = rb; r < re;) {
      int64_t len = std::min(inner - idx_[nd - 1], re - r);
      f(off, r, len);
      r += len;
      idx_[nd - 1] += len;
      off += len * l_.rxs[nd - 1];
      for (std::size_t d = nd - 1; d > 0 && idx_[d] == l_.rsize[d]; --d) {
        off += l_.rxs[d - 1] - idx_[d] * l_.rxs[d];
        idx_[d] = 0;
        ++idx_[d - 1];
      }
    }
  }

 private:
  const Layout& l_;
  std::vector<int64_t> idx_;
};

// Reduces one run into a (row shape). Unit-stride runs use independent lane accumulators.
template <typename Op, typename T, typename Ctx>
inline void row_update(const Op& op, typename Op::acc_t& a, const T* p, int64_t n, int64_t stride,
                       int64_t i0, Ctx c) {
  if constexpr (Op::kBlockedF32) {
    if (stride == 1) {
      a += blocked_sum_f32(p, n);
      return;
    }
  }
  if (stride == 1 && n >= 2 * kLanes) {
    typename Op::acc_t lanes[kLanes];
    for (auto& l : lanes) l = op.init();
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) {
#pragma omp simd
      for (int64_t k = 0; k < kLanes; ++k) {
        op.update(lanes[k], static_cast<typename Op::V>(p[i + k]), i0 + i + k, c);
      }
    }
    for (; i < n; ++i) op.update(a, static_cast<typename Op::V>(p[i]), i0 + i, c);
    for (const auto& l : lanes) op.merge(a, l);
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    op.update(a, static_cast<typename Op::V>(p[i * stride]), i0 + i, c);
  }
}

// Accumulates one row into the states of n consecutive outputs (column shape).
template <typename Op, typename T>
inline void column_update(const Op& op, typename Op::acc_t* a, const T* p, int64_t n,
                          int64_t stride, int64_t i, int64_t o0) {
  if (stride == 1) {
    for (int64_t j = 0; j < n; ++j) {
      op.update(a[j], static_cast<typename Op::V>(p[j]), i, op.ctx(o0 + j));
    }
  } else {
    for (int64_t j = 0; j < n; ++j) {
      op.update(a[j], static_cast<typename Op::V>(p[j * stride]), i, op.ctx(o0 + j));
    }
  }
}

// Adds rows [rb, re) of contiguous length-n f32 segments (row r at x + offset(r)) into double
// sums: float partials over kFlushRows rows at a time, then flushed (see blocked_sum_f32).
void column_sum_f32(double* acc, const float* x, int64_t n, RunWalker& walker, int64_t rb,
                    int64_t re, int64_t rstride) {
  constexpr int64_t kMaxN = 1024;  // float partials of one chunk of columns stay in L1
  float part[kMaxN];
  for (int64_t c0 = 0; c0 < n; c0 += kMaxN) {
    const int64_t m = std::min(kMaxN, n - c0);
    double* a = acc + c0;
    std::fill(part, part + m, 0.0f);
    int64_t rows = 0;
    walker.walk(rb, re, [&](int64_t off, int64_t, int64_t rl) {
      for (int64_t t = 0; t < rl; ++t) {
        const float* p = x + c0 + off + t * rstride;
#pragma omp simd
        for (int64_t j = 0; j < m; ++j) part[j] += p[j];
        if (++rows == kFlushRows) {
          for (int64_t j = 0; j < m; ++j) a[j] += part[j];
          std::fill(part, part + m, 0.0f);
          rows = 0;
        }
      }
    });
    for (int64_t j = 0; j < m; ++j) a[j] += part[j];
  }
}

// States for outputs [ob, oe) over reduced range [rb, re), written to acc[0, oe - ob).
template <typename Op, typename T>
void compute_block(const Layout& l, const T* x, const Op& op, int64_t ob, int64_t oe, int64_t rb,
                   int64_t re, typename Op::acc_t* acc) {
  RunWalker walker(l);
  const int64_t rstride = l.rxs.back();
  if (!l.column) {
    for (int64_t o = ob; o < oe; ++o) {
      int64_t xo, oo;
      l.offsets(o, xo, oo);
      typename Op::acc_t a = op.init();
      auto c = op.ctx(o);
      walker.walk(rb, re, [&](int64_t off, int64_t r, int64_t len) {
        row_update(op, a, x + xo + off, len, rstride, r, c);
      });
      acc[o - ob] = a;
    }
    return;
  }
  const int64_t k0 = l.ksize.back(), kx0 = l.kxs.back();
  for (int64_t o = ob; o < oe;) {
    int64_t len = std::min(k0 - o % k0, oe - o);
    int64_t xo, oo;
    l.offsets(o, xo, oo);
    typename Op::acc_t* a = acc + (o - ob);
    for (int64_t j = 0; j < len; ++j) a[j] = op.init();
    if constexpr (Op::kBlockedF32) {
      if (kx0 == 1) {
        column_sum_f32(a, x + xo, len, walker, rb, re, rstride);
        o += len;
        continue;
      }
    }
    walker.walk(rb, re, [&](int64_t off, int64_t r, int64_t rl) {
      for (int64_t t = 0; t < rl; ++t) {
        column_update(op, a, x + xo + off + t * rstride, len, kx0, r + t, o);
      }
    });
    o += len;
  }
}

// Runs op over the layout and hands each output's final state to sink(o, state).
template <typename Op, typename T, typename Sink>
void run_reduction(const Layout& l, const T* x, const Op& op, Sink&& sink) {
  using acc_t = typename Op::acc_t;
  if (l.n_out == 0) return;
  if (l.n_red == 0) {
    for (int64_t o = 0; o < l.n_out; ++o) sink(o, op.init());
    return;
  }
  // A block of outputs small enough that its states stay in L1 while rows stream past.
  constexpr int64_t kBlock = 1024;
  auto outputs = [&](int64_t ob, int64_t oe) {
    std::vector<acc_t> buf(static_cast<std::size_t>(std::min(kBlock, oe - ob)));
    for (int64_t b = ob; b < oe; b += kBlock) {
      int64_t e = std::min(oe, b + kBlock);
      compute_block(l, x, op, b, e, 0, l.n_red, buf.data());
      for (int64_t o = b; o < e; ++o) sink(o, buf[o - b]);
    }
  };
  const int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (nt <= 1 || l.n_out * l.n_red < cpu::kParallelGrain) {
    outputs(0, l.n_out);
    return;
  }
  if (l.n_out >= 8 * static_cast<int64_t>(nt) || l.n_red < 4096) {
#pragma omp parallel
    {
      int t = omp_get_thread_num(), n = omp_get_num_threads();
      int64_t chunk = (l.n_out + n - 1) / n;
      int64_t b = std::min(l.n_out, t * chunk), e = std::min(l.n_out, b + chunk);
      if (b < e) outputs(b, e);
    }
    return;
  }
  // Few outputs, long reductions: each thread reduces a slice of the reduced range.
  std::vector<acc_t> part(static_cast<std::size_t>(nt * l.n_out), op.init());
#pragma omp parallel num_threads(nt)
  {
    int t = omp_get_thread_num(), n = omp_get_num_threads();
    int64_t chunk = (l.n_red + n - 1) / n;
    int64_t b = std::min(l.n_red, t * chunk), e = std::min(l.n_red, b + chunk);
    if (b < e) compute_block(l, x, op, 0, l.n_out, b, e, part.data() + t * l.n_out);
  }
  for (int64_t o = 0; o < l.n_out; ++o) {
    acc_t a = part[o];
    for (int t = 1; t < nt; ++t) op.merge(a, part[t * l.n_out + o]);
    sink(o, a);
  }
}

template <typename T>
void reduce_typed(ReduceOp kind, const Layout& l, const T* x, const Tensor& out) {
  using V = compute_t<T>;
  char* out_base = static_cast<char*>(out.data_ptr());
  const auto esize = static_cast<int64_t>(dtype_size(out.dtype()));
  auto out_ptr = [&](int64_t o) {
    int64_t xo, oo;
    l.offsets(o, xo, oo);
    return out_base + oo * esize;
  };
  auto plain = [&](const auto& op) {
    using R = typename std::decay_t<decltype(op)>::acc_t;
    StoreFn<R> store = store_fn<R>(out.dtype());
    run_reduction(l, x, op, [&](int64_t o, const R& a) { store(out_ptr(o), a); });
  };
  switch (kind) {
    case ReduceOp::sum:
      plain(SumOp<T>{});
      return;
    case ReduceOp::prod:
      plain(ProdOp<T>{});
      return;
    case ReduceOp::max:
      plain(ExtremeOp<T, true>{});
      return;
    case ReduceOp::min:
      plain(ExtremeOp<T, false>{});
      return;
    case ReduceOp::mean: {
      StoreFn<double> store = store_fn<double>(out.dtype());
      const auto n = static_cast<double>(l.n_red);  // 0 elements: 0 / 0 = NaN, as PyTorch
      run_reduction(l, x, SumOp<T>{}, [&](int64_t o, const wide_t<V>& a) {
        store(out_ptr(o), static_cast<double>(a) / n);
      });
      return;
    }
    case ReduceOp::logsumexp: {
      // Two passes (max, then sum of exp(x - max)) keep it stable; a non-finite max is the answer
      // itself (all -inf gives -inf, any +inf gives +inf, NaN stays NaN).
      std::vector<V> mx(static_cast<std::size_t>(l.n_out));
      run_reduction(l, x, ExtremeOp<T, true>{}, [&](int64_t o, const V& a) { mx[o] = a; });
      StoreFn<double> store = store_fn<double>(out.dtype());
      run_reduction(l, x, SumExpOp<T>{mx.data()}, [&](int64_t o, const wide_t<V>& a) {
        double m = static_cast<double>(mx[o]);
        store(out_ptr(o), std::isfinite(m) ? m + std::log(static_cast<double>(a)) : m);
      });
      return;
    }
  }
  throw Error("cpu reduce: unknown ReduceOp");
}

}  // namespace

void CpuBackend::reduce(ReduceOp op, const Tensor& x, const Tensor& out) {
  Layout l = make_layout(x, out);
  RW_DISPATCH_ALL(x.dtype(), "reduce", [&] {
    if constexpr (std::is_same_v<scalar_t, bool>) {
      // Reduce bools as bytes (0/1): the same values with integer arithmetic.
      reduce_typed(op, l, static_cast<const uint8_t*>(x.data_ptr()), out);
    } else {
      reduce_typed(op, l, static_cast<const scalar_t*>(x.data_ptr()), out);
    }
  });
}

void CpuBackend::arg_reduce(ArgReduceOp op, const Tensor& x, int64_t dim, const Tensor& out) {
  Shape kept = x.shape();
  kept[dim] = 1;
  RW_ASSERT(out.shape() == kept && out.dtype() == DType::i64);
  Layout l = make_layout(x, out);
  auto* dst = out.data<int64_t>();
  RW_DISPATCH_ALL(x.dtype(), "arg_reduce", [&] {
    using T = std::conditional_t<std::is_same_v<scalar_t, bool>, uint8_t, scalar_t>;
    const auto* px = static_cast<const T*>(x.data_ptr());
    auto sink = [&](int64_t o, const ArgState<compute_t<T>>& a) {
      int64_t xo, oo;
      l.offsets(o, xo, oo);
      dst[oo] = std::max<int64_t>(a.index, 0);
    };
    if (op == ArgReduceOp::argmax) {
      run_reduction(l, px, ArgOp<T, true>{}, sink);
    } else {
      run_reduction(l, px, ArgOp<T, false>{}, sink);
    }
  });
}

namespace {

// Prefix sums of contiguous x viewed as [outer, n, inner] along n. Tasks are (outer slice, block
// of inner columns); each carries its running sums down n, so rows are read contiguously.
template <typename T, typename O>
void cumsum_typed(const T* x, O* out, int64_t outer, int64_t n, int64_t inner) {
  using A = wide_t<compute_t<T>>;
  constexpr int64_t kBlock = 1024;
  const int64_t blocks = (inner + kBlock - 1) / kBlock;
  const int64_t tasks = outer * blocks;
  const bool parallel = outer * n * inner >= cpu::kParallelGrain && !omp_in_parallel();
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t o = task / blocks, j0 = (task % blocks) * kBlock;
    const int64_t len = std::min(kBlock, inner - j0);
    const T* src = x + o * n * inner + j0;
    O* dst = out + o * n * inner + j0;
    if (len == 1) {
      A acc = 0;
      for (int64_t i = 0; i < n; ++i) {
        acc += static_cast<A>(static_cast<compute_t<T>>(src[i * inner]));
        dst[i * inner] = convert_to<O>(acc);
      }
      continue;
    }
    A acc[kBlock] = {};
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < len; ++j) {
        acc[j] += static_cast<A>(static_cast<compute_t<T>>(src[i * inner + j]));
        dst[i * inner + j] = convert_to<O>(acc[j]);
      }
    }
  }
}

}  // namespace

void CpuBackend::cumsum(const Tensor& x, int64_t dim, const Tensor& out) {
  RW_ASSERT(x.is_contiguous() && out.is_contiguous() && x.shape() == out.shape());
  RW_CHECK(out.dtype() == x.dtype() || out.dtype() == DType::i64,
           "cpu cumsum: output dtype {} for input dtype {} (expected the same or i64)", out.dtype(),
           x.dtype());
  const Shape& s = x.shape();
  int64_t outer = 1, inner = 1;
  const int64_t n = s.empty() ? 1 : s[dim];
  for (int64_t d = 0; d < dim; ++d) outer *= s[d];
  for (int64_t d = dim + 1; d < static_cast<int64_t>(s.size()); ++d) inner *= s[d];
  if (outer * n * inner == 0) return;
  RW_DISPATCH_ALL(x.dtype(), "cumsum", [&] {
    using T = std::conditional_t<std::is_same_v<scalar_t, bool>, uint8_t, scalar_t>;
    const auto* px = static_cast<const T*>(x.data_ptr());
    if (out.dtype() == x.dtype()) {
      cumsum_typed(px, static_cast<scalar_t*>(out.data_ptr()), outer, n, inner);
    } else {
      cumsum_typed(px, out.data<int64_t>(), outer, n, inner);
    }
  });
}

}  // namespace rw
