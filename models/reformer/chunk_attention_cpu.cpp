#include "models/reformer/chunk_attention_cpu.h"

#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "core/ops.h"
#include "models/reformer/chunk_attention_blocks.h"

namespace rw::reformer::cpu_kernel {
namespace {

using Plan = ChunkAttentionPlan;
using chunk_blocks::neighbour_chunk;
using chunk_blocks::total_chunks;
using chunk_blocks::window_chunks;

// The row kernels below compute no value they would not use, so floating-point traps are not a
// concern; without -ftrapping-math GCC if-converts their selects and vectorises the loops.
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math")

// exp of a score shifted to <= about 0: a Cephes-style polynomial (relative error ~2e-7) that the
// compiler vectorises, unlike libm's expf, which would cost more than the matmuls. Exactly 0 below
// log(FLT_MIN), so hard-masked keys get exactly zero weight, as in the op path.
inline float exp_score(float x) {
  constexpr float lo = -87.33654f, hi = 88.0f;
  float xc = x < lo ? lo : x;
  xc = xc > hi ? hi : xc;
  // Round to nearest by the 1.5 * 2^23 trick (no libm call, vectorises).
  constexpr float magic = 12582912.0f;
  const float kf = (xc * 1.44269504088896341f + magic) - magic;
  const auto ki = static_cast<int32_t>(kf);
  float r = xc - kf * 0.693359375f;
  r -= kf * -2.12194440e-4f;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * (r * r) + r + 1.0f;
  const float two_k = __builtin_bit_cast(float, static_cast<int32_t>((ki + 127) << 23));
  return x < lo ? 0.0f : y * two_k;
}
inline double exp_score(double x) { return std::exp(x); }

// The per-row loops, written so that the compiler vectorises them; the f32 versions are also
// compiled for AVX-512 and picked at run time (target_clones), since the library is built for
// baseline x86-64 and these passes cost as much as the matmuls.
#define RW_ROW_KERNEL [[gnu::always_inline]] inline

// Self penalty, padding and causal masks of one score row, in place (as the op path: the self
// penalty is added, a forbidden key's logit is replaced by `masked`).
template <typename T>
RW_ROW_KERNEL void mask_scores(T* __restrict row, const int32_t* __restrict key_tok,
                               const int32_t* __restrict key_ok, int64_t n, int32_t query_tok,
                               int32_t causal, T self, T masked) {
  const int32_t not_causal = causal != 0 ? 0 : 1;
#pragma omp simd
  for (int64_t w = 0; w < n; ++w) {
    const T penalty = key_tok[w] == query_tok ? self : T(0);
    const int32_t allowed =
        key_ok[w] & (not_causal | static_cast<int32_t>(key_tok[w] <= query_tok));
    row[w] = allowed != 0 ? row[w] + penalty : masked;
  }
}

// x <- exp(x - max(x)); returns (max, sum).
template <typename T>
RW_ROW_KERNEL std::pair<T, T> softmax_numerator(T* __restrict x, int64_t n) {
  T m = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t i = 0; i < n; ++i) m = m > x[i] ? m : x[i];
  T z = 0;
#pragma omp simd reduction(+ : z)
  for (int64_t i = 0; i < n; ++i) {
    const T e = exp_score(x[i] - m);
    x[i] = e;
    z += e;
  }
  return {m, z};
}

// x <- exp((x - a) - b): the two shifts apart, so that x - a is exact where x and a are close.
template <typename T>
RW_ROW_KERNEL void exp_shifted(T* __restrict x, int64_t n, T a, T b) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] = exp_score((x[i] - a) - b);
}

// dx <- p * (dx - shared), or with dropout p * (dx * keep - shared).
template <typename T>
RW_ROW_KERNEL void softmax_grad(T* __restrict dx, const T* __restrict p, const T* __restrict keep,
                                int64_t n, T shared) {
  if (keep != nullptr) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) dx[i] = p[i] * (dx[i] * keep[i] - shared);
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) dx[i] = p[i] * (dx[i] - shared);
  }
}

#define RW_F32_CLONES [[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]]
RW_F32_CLONES void mask_scores_f32(float* row, const int32_t* key_tok, const int32_t* key_ok,
                                   int64_t n, int32_t query_tok, int32_t causal, float self,
                                   float masked) {
  mask_scores<float>(row, key_tok, key_ok, n, query_tok, causal, self, masked);
}
RW_F32_CLONES std::pair<float, float> softmax_numerator_f32(float* x, int64_t n) {
  return softmax_numerator<float>(x, n);
}
RW_F32_CLONES void exp_shifted_f32(float* x, int64_t n, float a, float b) {
  exp_shifted<float>(x, n, a, b);
}
RW_F32_CLONES void softmax_grad_f32(float* dx, const float* p, const float* keep, int64_t n,
                                    float shared) {
  softmax_grad<float>(dx, p, keep, n, shared);
}

// Dispatch: f32 to the cloned versions, f64 (tests, references) to the plain ones.
inline void mask_row_scores(float* row, const int32_t* kt, const int32_t* ok, int64_t n, int32_t qt,
                            int32_t causal, float self, float masked) {
  mask_scores_f32(row, kt, ok, n, qt, causal, self, masked);
}
inline void mask_row_scores(double* row, const int32_t* kt, const int32_t* ok, int64_t n,
                            int32_t qt, int32_t causal, double self, double masked) {
  mask_scores<double>(row, kt, ok, n, qt, causal, self, masked);
}
inline std::pair<float, float> row_softmax_numerator(float* x, int64_t n) {
  return softmax_numerator_f32(x, n);
}
inline std::pair<double, double> row_softmax_numerator(double* x, int64_t n) {
  return softmax_numerator<double>(x, n);
}
inline void row_exp_shifted(float* x, int64_t n, float a, float b) { exp_shifted_f32(x, n, a, b); }
inline void row_exp_shifted(double* x, int64_t n, double a, double b) {
  exp_shifted<double>(x, n, a, b);
}
inline void row_softmax_grad(float* dx, const float* p, const float* keep, int64_t n,
                             float shared) {
  softmax_grad_f32(dx, p, keep, n, shared);
}
inline void row_softmax_grad(double* dx, const double* p, const double* keep, int64_t n,
                             double shared) {
  softmax_grad<double>(dx, p, keep, n, shared);
}

#pragma GCC pop_options

// The plan's index tensors as raw pointers (contiguous copies kept alive where needed).
struct Ticker {
  Tensor perm_t, valid_t, slot_bucket_t, token_chunk_t, token_bucket_t;
  const int64_t* perm = nullptr;         // [BH, S]
  const bool* valid = nullptr;           // [BH * Lp]
  const int64_t* slot_bucket = nullptr;  // [BH, S] (!attend_across_buckets)
  const int64_t* token_chunk = nullptr;  // [BH * Lp, n] (count_duplicates)
  const int64_t* token_bucket = nullptr;
};

Ticker ticker_of(const Plan& p) {
  Ticker t;
  t.perm_t = p.perm.contiguous();
  t.valid_t = p.valid.contiguous();
  t.perm = t.perm_t.data<int64_t>();
  t.valid = t.valid_t.data<bool>();
  if (!p.attend_across_buckets) {
    t.slot_bucket_t = p.slot_bucket.contiguous();
    t.slot_bucket = t.slot_bucket_t.data<int64_t>();
  }
  if (p.count_duplicates) {
    t.token_chunk_t = p.token_chunk.contiguous();
    t.token_chunk = t.token_chunk_t.data<int64_t>();
    t.token_bucket_t = p.token_bucket.contiguous();
    t.token_bucket = t.token_bucket_t.data<int64_t>();
  }
  return t;
}

// The query chunks [first, first + count) of one round and the ticker slots of their window keys.
struct Block {
  int64_t round = 0, first = 0, count = 0;
  int64_t first_slot = 0;      // ticker slot of the block's first query
  std::vector<int64_t> wslot;  // [count * Wc], the same for every (batch, head)
  // Per window segment (query chunk i, window position o: segment i W + o, c rows each): the
  // first segment of the block that reads the same ticker chunk (itself if none before it).
  // Neighbouring query chunks share key chunks (chunk i's own chunk is chunk i + 1's previous
  // one), so only the segments that own themselves are gathered from (and scattered to) random
  // rows; the others are copies (and sums) of contiguous segments of the block.
  std::vector<int64_t> owner;
};

Block make_block(const Plan& p, int64_t round, int64_t first, int64_t count) {
  const int64_t c = p.chunk_len, N = total_chunks(p);
  Block b;
  b.round = round;
  b.first = first;
  b.count = count;
  b.first_slot = round * p.length + first * c;
  b.wslot.reserve(static_cast<std::size_t>(count * window_chunks(p) * c));
  std::vector<int64_t> segment_chunk;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t chunk = round * chunk_blocks::chunks_per_round(p) + first + i;
    for (int64_t o = -p.chunks_before; o <= p.chunks_after; ++o) {
      const int64_t neighbour = neighbour_chunk(chunk, o, N);
      for (int64_t j = 0; j < c; ++j) b.wslot.push_back(neighbour * c + j);
      const auto owner = std::find(segment_chunk.begin(), segment_chunk.end(), neighbour);
      b.owner.push_back(owner - segment_chunk.begin());
      segment_chunk.push_back(neighbour);
    }
  }
  return b;
}

// Sizes of one call, and where a block's rows come from.
struct Geometry {
  int64_t BH, Lp, S, c, Wc, d;
  explicit Geometry(const Plan& p, const Tensor& q)
      : BH(p.batch_heads),
        Lp(p.length),
        S(p.n_hashes * p.length),
        c(p.chunk_len),
        Wc(window_chunks(p) * p.chunk_len),
        d(q.size(-1)) {}
  // Row (into [BH * Lp, d]) of query row r of the block, r in [0, BH m c).
  int64_t query_row(const Ticker& t, const Block& b, int64_t r) const {
    const int64_t per_bh = b.count * c, bh = r / per_bh;
    return bh * Lp + t.perm[bh * S + b.first_slot + r % per_bh];
  }
  // Row of window key r of the block, r in [0, BH m Wc).
  int64_t key_row(const Ticker& t, const Block& b, int64_t r) const {
    const int64_t per_bh = b.count * Wc, bh = r / per_bh;
    return bh * Lp + t.perm[bh * S + b.wslot[static_cast<std::size_t>(r % per_bh)]];
  }
};

// The source rows of a block's queries and window keys (the folds and scatters read them again;
// computing a row costs two integer divisions).
struct BlockRows {
  std::vector<int64_t> query, key;
};

// Rows are gathered in bucket order, i.e. from random places: the hardware prefetcher cannot
// guess them, so each copy asks for the row kPrefetchRows ahead.
inline constexpr int64_t kPrefetchRows = 8;
inline void prefetch_row(const void* row, std::size_t bytes) {
  const char* p = static_cast<const char*>(row);
  for (std::size_t o = 0; o < bytes; o += 64) __builtin_prefetch(p + o);
}

// Gathers a block in one parallel region (each region costs a wake-up of the threads): the query
// rows of every source in q_srcs into q_dsts, the window segments of k and v that own themselves
// row by row from their tokens, and, after the one barrier, every other segment whole from its
// owner (already in the cache). Returns the rows it read.
template <typename T>
BlockRows gather_block(const Ticker& t, const Block& b, const Geometry& g,
                       std::initializer_list<const T*> q_srcs, std::initializer_list<T*> q_dsts,
                       const T* k, const T* v, T* kw, T* vw) {
  const auto segments = static_cast<int64_t>(b.owner.size());
  const int64_t items = g.BH * segments, c = g.c, d = g.d, q_rows = g.BH * b.count * g.c;
  const std::size_t row_bytes = static_cast<std::size_t>(d) * sizeof(T);
  BlockRows rows;
  rows.query.resize(static_cast<std::size_t>(q_rows));
  rows.key.resize(static_cast<std::size_t>(items * c));
  int64_t* qr = rows.query.data();
  int64_t* kr = rows.key.data();
#pragma omp parallel
  {
#pragma omp for schedule(static) nowait
    for (int64_t r = 0; r < q_rows; ++r) {
      const int64_t from = g.query_row(t, b, r);
      qr[r] = from;
      if (r + kPrefetchRows < q_rows) {
        const int64_t ahead = g.query_row(t, b, r + kPrefetchRows);
        for (const T* src : q_srcs) prefetch_row(src + ahead * d, row_bytes);
      }
      auto dst = q_dsts.begin();
      for (const T* src : q_srcs) std::memcpy(*dst++ + r * d, src + from * d, row_bytes);
    }
#pragma omp for schedule(static)
    for (int64_t item = 0; item < items; ++item) {
      const bool owns = b.owner[static_cast<std::size_t>(item % segments)] == item % segments;
      for (int64_t r = item * c; r < (item + 1) * c; ++r) {
        kr[r] = g.key_row(t, b, r);
        if (!owns) continue;
        if (r + kPrefetchRows < (item + 1) * c) {
          const int64_t ahead = g.key_row(t, b, r + kPrefetchRows);
          prefetch_row(k + ahead * d, row_bytes);
          prefetch_row(v + ahead * d, row_bytes);
        }
        std::memcpy(kw + r * d, k + kr[r] * d, row_bytes);
        std::memcpy(vw + r * d, v + kr[r] * d, row_bytes);
      }
    }
#pragma omp for schedule(static)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t s = item % segments, owner = b.owner[static_cast<std::size_t>(s)];
      if (owner == s) continue;
      const int64_t from = (item - s + owner) * c * d, to = item * c * d;
      std::memcpy(kw + to, kw + from, row_bytes * static_cast<std::size_t>(c));
      std::memcpy(vw + to, vw + from, row_bytes * static_cast<std::size_t>(c));
    }
  }
  return rows;
}

// Applies the masks to a block's score rows in place, chunk by chunk (one instance per thread:
// it holds the current chunk's key tokens and flags).
template <typename T>
class RowMasker {
 public:
  RowMasker(const Plan& p, const Ticker& t, const Block& b, const Geometry& g)
      : p_(p), t_(t), b_(b), g_(g), key_tok_(g.Wc), key_ok_(g.Wc) {
    if (!p.attend_across_buckets) key_bucket_.resize(g.Wc);
    if (p.count_duplicates) {
      key_chunk_.resize(g.Wc * p.n_hashes);
      key_round_bucket_.resize(g.Wc * p.n_hashes);
    }
  }

  // Loads the window keys of query chunk i of the block for batch-head bh.
  void load_chunk(int64_t bh, int64_t i) {
    bh_ = bh;
    i_ = i;
    const int64_t n = p_.n_hashes;
    for (int64_t w = 0; w < g_.Wc; ++w) {
      const int64_t slot = b_.wslot[static_cast<std::size_t>(i * g_.Wc + w)];
      const int64_t tok = t_.perm[bh * g_.S + slot];
      key_tok_[w] = static_cast<int32_t>(tok);
      key_ok_[w] = t_.valid[bh * g_.Lp + tok] ? 1 : 0;
      if (t_.slot_bucket != nullptr) key_bucket_[w] = t_.slot_bucket[bh * g_.S + slot];
      if (t_.token_chunk != nullptr) {
        for (int64_t r = 0; r < n; ++r) {
          key_chunk_[w * n + r] = t_.token_chunk[(bh * g_.Lp + tok) * n + r];
          key_round_bucket_[w * n + r] = t_.token_bucket[(bh * g_.Lp + tok) * n + r];
        }
      }
    }
  }

  // Masks row j of the loaded chunk in place; returns the query's token (within its batch-head).
  int64_t mask_row(int64_t j, T* row) {
    const int64_t qslot = b_.first_slot + i_ * g_.c + j;
    const int64_t qtok = t_.perm[bh_ * g_.S + qslot];
    const int64_t Wc = g_.Wc;
    if (p_.count_duplicates) subtract_log_counts(qtok, row);
    mask_row_scores(row, key_tok_.data(), key_ok_.data(), Wc, static_cast<int32_t>(qtok),
                    p_.causal ? 1 : 0, static_cast<T>(p_.self_penalty),
                    static_cast<T>(p_.masked_penalty));
    if (t_.slot_bucket != nullptr) {
      const int64_t qb = t_.slot_bucket[bh_ * g_.S + qslot];
      const T masked = static_cast<T>(p_.masked_penalty);
      for (int64_t w = 0; w < Wc; ++w) row[w] = key_bucket_[w] != qb ? masked : row[w];
    }
    return qtok;
  }

 private:
  // log(number of times the query meets each key over all rounds and window positions), as
  // chunk_attention.cpp's duplicate_counts.
  void subtract_log_counts(int64_t qtok, T* row) const {
    const int64_t n = p_.n_hashes, N = total_chunks(p_);
    const int64_t* qchunk = t_.token_chunk + (bh_ * g_.Lp + qtok) * n;
    const int64_t* qbucket = t_.token_bucket + (bh_ * g_.Lp + qtok) * n;
    for (int64_t w = 0; w < g_.Wc; ++w) {
      int64_t count = 0;
      for (int64_t r = 0; r < n; ++r) {
        for (int64_t o = -p_.chunks_before; o <= p_.chunks_after; ++o) {
          const int64_t attended = neighbour_chunk(qchunk[r], o, N);
          for (int64_t r2 = 0; r2 < n; ++r2) {
            if (!p_.attend_across_buckets && r2 != r) continue;
            if (attended != key_chunk_[w * n + r2]) continue;
            if (!p_.attend_across_buckets && qbucket[r] != key_round_bucket_[w * n + r]) continue;
            ++count;
          }
        }
      }
      if (count > 1) row[w] -= std::log(static_cast<T>(count));
    }
  }

  const Plan& p_;
  const Ticker& t_;
  const Block& b_;
  const Geometry& g_;
  int64_t bh_ = 0, i_ = 0;
  std::vector<int32_t> key_tok_, key_ok_;
  std::vector<int64_t> key_bucket_, key_chunk_, key_round_bucket_;
};

// Runs visit(masker, chunk_item, j, row_index, row) for every score row of the block, split over
// the threads by query chunk.
template <typename T, typename F>
void for_each_row(const Plan& p, const Ticker& t, const Block& b, const Geometry& g, T* scores,
                  F&& visit) {
  const int64_t items = g.BH * b.count;
#pragma omp parallel
  {
    RowMasker<T> masker(p, t, b, g);
#pragma omp for schedule(static)
    for (int64_t item = 0; item < items; ++item) {
      masker.load_chunk(item / b.count, item % b.count);
      for (int64_t j = 0; j < g.c; ++j) {
        const int64_t r = item * g.c + j;
        visit(masker, j, r, scores + r * g.Wc);
      }
    }
  }
}

// The dropout multipliers of a block (0 or 1 / (1 - p)): the op path's dropout of the block's
// probabilities, applied to ones, so both paths drop the same entries.
Tensor dropout_keep(const Plan& p, const Block& b, const Geometry& g, PhiloxState state,
                    TensorOptions opts) {
  if (p.dropout_p <= 0) return {};
  return dropout(ones({g.BH, b.count, g.c, g.Wc}, opts), p.dropout_p, state);
}

template <typename T>
ForwardResult forward_impl(const Plan& p, const Tensor& q, const Tensor& k, const Tensor& v) {
  const Geometry g(p, q);
  const TensorOptions opts = options_of(q);
  const Ticker t = ticker_of(p);
  const T *qp = q.data<T>(), *kp = k.data<T>(), *vp = v.data<T>();
  const int64_t tokens = g.BH * g.Lp, d = g.d;
  ForwardResult res;
  res.out = empty({g.BH, g.Lp, d}, opts);  // the running (unnormalised) output until the end
  res.max_logit = empty({tokens}, opts);
  Tensor denom = empty({tokens}, opts);
  T* acc = res.out.data<T>();
  T* run_max = res.max_logit.data<T>();
  T* run_denom = denom.data<T>();
  chunk_blocks::for_each_block(p, [&](int64_t round, int64_t first, int64_t m, PhiloxState ds) {
    const Block b = make_block(p, round, first, m);
    const int64_t q_rows = g.BH * m * g.c;
    Tensor qb = empty({g.BH * m, g.c, d}, opts), kw = empty({g.BH * m, g.Wc, d}, opts);
    Tensor vw = empty({g.BH * m, g.Wc, d}, opts);
    const BlockRows rows =
        gather_block<T>(t, b, g, {qp}, {qb.data<T>()}, kp, vp, kw.data<T>(), vw.data<T>());
    const int64_t* qrow = rows.query.data();
    Tensor scores = matmul(qb, kw.mT());  // [BH m, c, Wc]
    const Tensor keep = dropout_keep(p, b, g, ds, opts);
    const T* keep_p = keep.defined() ? keep.data<T>() : nullptr;
    std::vector<T> rmax(static_cast<std::size_t>(q_rows)), rsum(static_cast<std::size_t>(q_rows));
    for_each_row<T>(p, t, b, g, scores.data<T>(),
                    [&](RowMasker<T>& masker, int64_t j, int64_t r, T* x) {
                      masker.mask_row(j, x);
                      const auto [mx, z] = row_softmax_numerator(x, g.Wc);
                      if (keep_p != nullptr) {
                        const T* kr = keep_p + r * g.Wc;
#pragma omp simd
                        for (int64_t w = 0; w < g.Wc; ++w) x[w] *= kr[w];
                      }
                      rmax[static_cast<std::size_t>(r)] = mx;
                      rsum[static_cast<std::size_t>(r)] = z;
                    });
    // Unnormalised outputs: sum_k exp(logit - row max) v_k.
    const Tensor o = matmul(scores, vw);  // [BH m, c, d]
    const T* op = o.data<T>();
    // Fold each row into its token's running max, denominator and output. A round's rows are
    // distinct tokens, so the rows need no synchronisation.
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < q_rows; ++r) {
      const int64_t tok = qrow[r];
      if (r + kPrefetchRows < q_rows)
        prefetch_row(acc + qrow[r + kPrefetchRows] * d, static_cast<std::size_t>(d) * sizeof(T));
      const T mx = rmax[static_cast<std::size_t>(r)], z = rsum[static_cast<std::size_t>(r)];
      T* a = acc + tok * d;
      const T* orow = op + r * d;
      if (round == 0) {
        run_max[tok] = mx;
        run_denom[tok] = z;
        std::memcpy(a, orow, static_cast<std::size_t>(d) * sizeof(T));
        continue;
      }
      const T new_max = std::max(run_max[tok], mx);
      const T old_scale = exp_score(run_max[tok] - new_max), new_scale = exp_score(mx - new_max);
#pragma omp simd
      for (int64_t e = 0; e < d; ++e) a[e] = a[e] * old_scale + orow[e] * new_scale;
      run_denom[tok] = run_denom[tok] * old_scale + z * new_scale;
      run_max[tok] = new_max;
    }
  });
  // Normalise; a token whose every attended key is hard-masked gets a zero output.
  res.log_denom = empty({tokens}, opts);
  T* log_denom = res.log_denom.data<T>();
  const T no_key = static_cast<T>(p.masked_penalty / 2);
#pragma omp parallel for schedule(static)
  for (int64_t tok = 0; tok < tokens; ++tok) {
    log_denom[tok] = std::log(run_denom[tok]);
    const bool has_key = run_max[tok] + log_denom[tok] > no_key;
    const T inv = has_key ? T(1) / run_denom[tok] : T(0);
    T* a = acc + tok * d;
#pragma omp simd
    for (int64_t e = 0; e < d; ++e) a[e] = has_key ? a[e] * inv : T(0);
  }
  return res;
}

template <typename T>
std::array<Tensor, 3> backward_impl(const Plan& p, const Tensor& q, const Tensor& k,
                                    const Tensor& v, const ForwardResult& saved,
                                    const Tensor& dout_in) {
  const Geometry g(p, q);
  const TensorOptions opts = options_of(q);
  const Ticker t = ticker_of(p);
  const int64_t tokens = g.BH * g.Lp, d = g.d;
  const Tensor dout = dout_in.contiguous(), out = saved.out.contiguous();
  const T *qp = q.data<T>(), *kp = k.data<T>(), *vp = v.data<T>();
  const T *max_logit = saved.max_logit.data<T>(), *log_denom = saved.log_denom.data<T>();
  // Per token: its output gradient (zero where it has no key: its output is a constant) and
  // dout . out, the part of every logit's gradient that the normalisation over rounds shares.
  Tensor grad = empty({tokens, d}, opts);
  std::vector<T> dd(static_cast<std::size_t>(tokens));
  {
    const T *gp = dout.data<T>(), *outp = out.data<T>();
    T* gr = grad.data<T>();
    const T no_key = static_cast<T>(p.masked_penalty / 2);
#pragma omp parallel for schedule(static)
    for (int64_t tok = 0; tok < tokens; ++tok) {
      const bool has_key = max_logit[tok] + log_denom[tok] > no_key;
      T dot = 0;
      for (int64_t e = 0; e < d; ++e) {
        gr[tok * d + e] = has_key ? gp[tok * d + e] : T(0);
        dot += gr[tok * d + e] * outp[tok * d + e];
      }
      dd[static_cast<std::size_t>(tok)] = dot;
    }
  }
  const T* gp = grad.data<T>();
  Tensor dq = zeros({tokens, d}, opts), dk = zeros({tokens, d}, opts),
         dv = zeros({tokens, d}, opts);
  T *dqp = dq.data<T>(), *dkp = dk.data<T>(), *dvp = dv.data<T>();
  chunk_blocks::for_each_block(p, [&](int64_t round, int64_t first, int64_t m, PhiloxState ds) {
    const Block b = make_block(p, round, first, m);
    const int64_t q_rows = g.BH * m * g.c;
    Tensor qb = empty({g.BH * m, g.c, d}, opts), gb = empty({g.BH * m, g.c, d}, opts);
    Tensor kw = empty({g.BH * m, g.Wc, d}, opts), vw = empty({g.BH * m, g.Wc, d}, opts);
    const BlockRows rows = gather_block<T>(t, b, g, {qp, gp}, {qb.data<T>(), gb.data<T>()}, kp, vp,
                                           kw.data<T>(), vw.data<T>());
    const int64_t *qrow = rows.query.data(), *krow = rows.key.data();
    // P~ = exp(logit - lse_total): each round's probabilities times its share of the output.
    Tensor probs = matmul(qb, kw.mT());  // [BH m, c, Wc]
    const Tensor keep = dropout_keep(p, b, g, ds, opts);
    const T* keep_p = keep.defined() ? keep.data<T>() : nullptr;
    Tensor dropped = keep.defined() ? empty({g.BH * m, g.c, g.Wc}, opts) : probs;
    T* dropped_p = dropped.data<T>();
    for_each_row<T>(p, t, b, g, probs.data<T>(),
                    [&](RowMasker<T>& masker, int64_t j, int64_t r, T* x) {
                      const int64_t tok = (r / (m * g.c)) * g.Lp + masker.mask_row(j, x);
                      const T mx = max_logit[tok], ld = log_denom[tok];
                      row_exp_shifted(x, g.Wc, mx, ld);
                      if (keep_p != nullptr) {
                        const T* kr = keep_p + r * g.Wc;
                        T* y = dropped_p + r * g.Wc;
#pragma omp simd
                        for (int64_t w = 0; w < g.Wc; ++w) y[w] = x[w] * kr[w];
                      }
                    });
    Tensor dvw = matmul(dropped.mT(), gb);  // [BH m, Wc, d]
    Tensor dlogits = matmul(gb, vw.mT());   // d(dropped probs) [BH m, c, Wc]
    {
      T* dl = dlogits.data<T>();
      const T* pr = probs.data<T>();
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < q_rows; ++r) {
        const T shared = dd[static_cast<std::size_t>(qrow[r])];
        T* x = dl + r * g.Wc;
        const T* pw = pr + r * g.Wc;
        row_softmax_grad(x, pw, keep_p != nullptr ? keep_p + r * g.Wc : nullptr, g.Wc, shared);
      }
    }
    const Tensor dqb = matmul(dlogits, kw);  // [BH m, c, d]
    Tensor dkw = matmul(dlogits.mT(), qb);   // [BH m, Wc, d]
    // Scatter-add the rows back to their tokens. A token appears in several window rows (and,
    // across the wrap into the previous round, possibly as a query too), so the threads split the
    // work by (batch-head, column slice), never by row: whole rows when there are enough
    // batch-heads for the threads, slices of whole cache lines otherwise.
    const T* dqb_p = dqb.data<T>();
    T *dkw_p = dkw.data<T>(), *dvw_p = dvw.data<T>();
    const auto segments = static_cast<int64_t>(b.owner.size());
    constexpr int64_t kLine = 64 / static_cast<int64_t>(sizeof(T));
    const int64_t threads = omp_get_max_threads();
    const int64_t wanted =
        std::clamp<int64_t>((threads + g.BH - 1) / g.BH, 1, (d + kLine - 1) / kLine);
    const int64_t slice = ((d + wanted - 1) / wanted + kLine - 1) / kLine * kLine;
    const int64_t slices = (d + slice - 1) / slice;
#pragma omp parallel for schedule(static)
    for (int64_t item = 0; item < g.BH * slices; ++item) {
      const int64_t bh = item / slices, e0 = (item % slices) * slice;
      const int64_t e1 = std::min(d, e0 + slice);
      const int64_t q_end = (bh + 1) * m * g.c, k_end = (bh + 1) * m * g.Wc;
      const std::size_t slice_bytes = static_cast<std::size_t>(e1 - e0) * sizeof(T);
      for (int64_t r = bh * m * g.c; r < q_end; ++r) {
        if (r + kPrefetchRows < q_end)
          prefetch_row(dqp + qrow[r + kPrefetchRows] * d + e0, slice_bytes);
        T* __restrict dst = dqp + qrow[r] * d;
        const T* __restrict src = dqb_p + r * d;
#pragma omp simd
        for (int64_t e = e0; e < e1; ++e) dst[e] += src[e];
      }
      // Fold each shared segment into its owner, then scatter the owners only.
      for (int64_t s = 0; s < segments; ++s) {
        const int64_t owner = b.owner[static_cast<std::size_t>(s)];
        if (owner == s) continue;
        for (int64_t j = 0; j < g.c; ++j) {
          const int64_t from = ((bh * segments + s) * g.c + j) * d;
          const int64_t to = ((bh * segments + owner) * g.c + j) * d;
#pragma omp simd
          for (int64_t e = e0; e < e1; ++e) {
            dkw_p[to + e] += dkw_p[from + e];
            dvw_p[to + e] += dvw_p[from + e];
          }
        }
      }
      for (int64_t r = bh * m * g.Wc; r < k_end; ++r) {
        if (const int64_t s = r / g.c % segments; b.owner[static_cast<std::size_t>(s)] != s) {
          continue;
        }
        if (r + kPrefetchRows < k_end) {
          prefetch_row(dkp + krow[r + kPrefetchRows] * d + e0, slice_bytes);
          prefetch_row(dvp + krow[r + kPrefetchRows] * d + e0, slice_bytes);
        }
        const int64_t row = krow[r];
        T* __restrict dk_dst = dkp + row * d;
        T* __restrict dv_dst = dvp + row * d;
        const T* __restrict dk_src = dkw_p + r * d;
        const T* __restrict dv_src = dvw_p + r * d;
#pragma omp simd
        for (int64_t e = e0; e < e1; ++e) {
          dk_dst[e] += dk_src[e];
          dv_dst[e] += dv_src[e];
        }
      }
    }
  });
  const Shape shape{g.BH, g.Lp, d};
  return {dq.view(shape), dk.view(shape), dv.view(shape)};
}

}  // namespace

bool applies(const Tensor& q) {
  return q.device().is_cpu() && (q.dtype() == DType::f32 || q.dtype() == DType::f64) &&
         q.size(1) < std::numeric_limits<int32_t>::max();
}

ForwardResult forward(const Plan& p, const Tensor& q, const Tensor& k, const Tensor& v) {
  if (q.dtype() == DType::f64) return forward_impl<double>(p, q, k, v);
  return forward_impl<float>(p, q, k, v);
}

std::array<Tensor, 3> backward(const Plan& p, const Tensor& q, const Tensor& k, const Tensor& v,
                               const ForwardResult& saved, const Tensor& dout) {
  if (q.dtype() == DType::f64) return backward_impl<double>(p, q, k, v, saved, dout);
  return backward_impl<float>(p, q, k, v, saved, dout);
}

}  // namespace rw::reformer::cpu_kernel
