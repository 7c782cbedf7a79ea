#include "models/reformer/lsh_decode.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_map>

#include "core/ops.h"
#include "nn/attention.h"
#include "nn/attention_mask.h"

namespace rw::reformer {
namespace {

constexpr const char* kOp = "lsh_decode";

std::vector<int64_t> host_i64(const Tensor& t) {
  return t.to(Device::cpu()).contiguous().to_vector<int64_t>();
}

// Where the new query's attention goes: for every round and window slot, the key's row in the
// flattened [B H capacity] key buffer and its additive terms.
struct QueryWindow {
  std::vector<int64_t> rows;      // [B, H, n, W c]
  std::vector<uint8_t> allowed;   // not padding (and, unless attend_across_buckets, same bucket)
  std::vector<double> self;       // the self penalty on the query's own position, else 0
  std::vector<double> log_count;  // log(times the query meets the key), count_duplicates only
};

}  // namespace

LSHDecodeState lsh_decode_start(const Tensor& qk, const Tensor& v, const Tensor& buckets,
                                const LSHRotations& rotations, const LSHAttentionOptions& options,
                                int64_t capacity) {
  RW_CHECK(qk.defined() && qk.dim() == 4 && is_floating(qk.dtype()) && v.defined() &&
               v.shape() == qk.shape() && v.dtype() == qk.dtype(),
           "{}: qk and v must be floating [batch, heads, length, d_head] of one shape and dtype",
           kOp);
  const int64_t B = qk.size(0), H = qk.size(1), P = qk.size(2), d = qk.size(3);
  const int64_t n = options.n_hashes;
  RW_CHECK(options.causal, "{}: incremental decoding needs causal LSH attention", kOp);
  RW_CHECK(
      options.n_buckets > 0 && rotations.n_buckets == options.n_buckets && rotations.n_hashes == n,
      "{}: options.n_buckets must be resolved (> 0) and match the rotations ({} buckets, {} "
      "hashes), got {} buckets and {} hashes",
      kOp, rotations.n_buckets, rotations.n_hashes, options.n_buckets, n);
  RW_CHECK(
      buckets.defined() && buckets.dtype() == DType::i64 && buckets.shape() == Shape({B, H, n, P}),
      "{}: buckets must be i64 [{}, {}, {}, {}], got {}", kOp, B, H, n, P,
      buckets.defined() ? fmt::format("{} {}", buckets.dtype(), buckets.shape())
                        : std::string("undefined"));
  RW_CHECK(capacity >= P && P >= 1, "{}: capacity {} must hold the {} prompt positions (>= 1)", kOp,
           capacity, P);
  LSHDecodeState s;
  s.options = options;
  s.rotations = rotations;
  s.batch = B;
  s.heads = H;
  s.d_head = d;
  const TensorOptions opts = options_of(qk);
  s.keys = empty({B, H, capacity, d}, opts);
  s.values = empty({B, H, capacity, d}, opts);
  copy_(s.keys.narrow(2, 0, P), nn::unit_normalize(qk));
  copy_(s.values.narrow(2, 0, P), v);
  s.length = P;
  const std::vector<int64_t> host = host_i64(buckets);
  s.bucket.assign(static_cast<std::size_t>(B * H * n * capacity), 0);
  s.sorted.resize(static_cast<std::size_t>(B * H * n));
  for (int64_t row = 0; row < B * H * n; ++row) {
    const int64_t r = row % n;
    int64_t* bucket = s.bucket.data() + row * capacity;
    for (int64_t pos = 0; pos < P; ++pos) bucket[pos] = host[row * P + pos] - r * options.n_buckets;
    std::vector<int64_t>& order = s.sorted[static_cast<std::size_t>(row)];
    order.resize(static_cast<std::size_t>(P));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [bucket](int64_t a, int64_t b) { return bucket[a] < bucket[b]; });
  }
  return s;
}

Tensor lsh_decode_step(LSHDecodeState& s, const Tensor& qk, const Tensor& v,
                       const Tensor& buckets) {
  const int64_t B = s.batch, H = s.heads, d = s.d_head, n = s.options.n_hashes;
  const int64_t cap = s.capacity();
  RW_CHECK(qk.defined() && v.defined() && qk.shape() == Shape({B, H, 1, d}) &&
               v.shape() == qk.shape() && qk.dtype() == s.keys.dtype(),
           "{}: a step takes qk and v of shape [{}, {}, 1, {}] in {}, got {} and {}", kOp, B, H, d,
           s.keys.dtype(), qk.defined() ? qk.shape() : Shape{}, v.defined() ? v.shape() : Shape{});
  RW_CHECK(
      buckets.defined() && buckets.dtype() == DType::i64 && buckets.shape() == Shape({B, H, n, 1}),
      "{}: a step takes i64 buckets [{}, {}, {}, 1]", kOp, B, H, n);
  RW_CHECK(s.length < cap, "{}: the state is full ({} positions)", kOp, cap);
  const int64_t p = s.length, L = p + 1;
  copy_(s.keys.narrow(2, p, 1), nn::unit_normalize(qk));
  copy_(s.values.narrow(2, p, 1), v);
  s.length = L;

  const LSHAttentionOptions& o = s.options;
  const int64_t c = o.chunk_len, nb = o.n_buckets;
  const int64_t Lp = (L + c - 1) / c * c, per_round = Lp / c, N = n * per_round;
  const int64_t W = o.chunks_before + 1 + o.chunks_after, Wc = W * c;
  const std::vector<int64_t> new_buckets = host_i64(buckets);
  const nn::AttentionPenalties penalty = nn::attention_penalties(qk.dtype());

  QueryWindow w;
  const auto entries = static_cast<std::size_t>(B * H * n * Wc);
  w.rows.resize(entries);
  w.allowed.resize(entries);
  w.self.resize(entries);
  if (o.count_duplicates) w.log_count.resize(entries);
  std::vector<int64_t> query_chunk(static_cast<std::size_t>(n));
  std::unordered_map<int64_t, int64_t> counts;
  for (int64_t bh = 0; bh < B * H; ++bh) {
    // Insert the new token into each round's ticker order: after every token of a bucket <= its.
    for (int64_t r = 0; r < n; ++r) {
      const int64_t row = bh * n + r;
      int64_t* bucket = s.bucket.data() + row * cap;
      bucket[p] = new_buckets[row] - r * nb;
      std::vector<int64_t>& order = s.sorted[static_cast<std::size_t>(row)];
      auto at = std::upper_bound(order.begin(), order.end(), bucket[p],
                                 [bucket](int64_t b, int64_t pos) { return b < bucket[pos]; });
      const int64_t slot = at - order.begin();
      order.insert(at, p);
      query_chunk[static_cast<std::size_t>(r)] = (r * Lp + slot) / c;
    }
    // The window of each round: chunks query_chunk - before .. + after, around the whole ticker.
    const std::size_t base = static_cast<std::size_t>(bh * n * Wc);
    for (int64_t r = 0; r < n; ++r) {
      const int64_t query_bucket = s.bucket[static_cast<std::size_t>((bh * n + r) * cap + p)];
      for (int64_t oi = 0; oi < W; ++oi) {
        const int64_t chunk =
            ((query_chunk[static_cast<std::size_t>(r)] + oi - o.chunks_before) % N + N) % N;
        const int64_t key_round = chunk / per_round, first = (chunk % per_round) * c;
        const std::vector<int64_t>& order = s.sorted[static_cast<std::size_t>(bh * n + key_round)];
        const int64_t* key_bucket = s.bucket.data() + (bh * n + key_round) * cap;
        for (int64_t j = 0; j < c; ++j) {
          const std::size_t e = base + static_cast<std::size_t>((r * W + oi) * c + j);
          const int64_t slot = first + j;
          const bool real = slot < L;  // slots [L, Lp) of a round hold the internal padding
          const int64_t token = real ? order[static_cast<std::size_t>(slot)] : 0;
          bool allowed = real;
          if (!o.attend_across_buckets) {
            allowed = allowed && key_round == r && key_bucket[token] == query_bucket;
          }
          w.rows[e] = bh * cap + token;
          w.allowed[e] = allowed ? 1 : 0;
          w.self[e] = real && token == p ? penalty.self : 0.0;
        }
      }
    }
    if (o.count_duplicates) {
      // A key's count: the allowed window entries holding it, over all rounds (real keys are
      // always allowed across buckets; otherwise only those of the query's bucket count), as
      // lsh_attention's duplicate counting.
      counts.clear();
      for (std::size_t e = base; e < base + static_cast<std::size_t>(n * Wc); ++e) {
        if (w.allowed[e] != 0) ++counts[w.rows[e]];
      }
      for (std::size_t e = base; e < base + static_cast<std::size_t>(n * Wc); ++e) {
        auto it = counts.find(w.rows[e]);
        const int64_t count = w.allowed[e] != 0 && it != counts.end() ? it->second : 1;
        w.log_count[e] = std::log(static_cast<double>(count));
      }
    }
  }

  const Device device = qk.device();
  const TensorOptions fopt = options_of(qk);
  const Shape window_shape{B, H, n, 1, Wc};
  Tensor rows = from_vector(w.rows).to(device);
  Tensor kw = index_select(s.keys.view({B * H * cap, d}), 0, rows).view({B, H, n, Wc, d});
  Tensor vw = index_select(s.values.view({B * H * cap, d}), 0, rows).view({B, H, n, Wc, d});
  const double scale = o.scale.value_or(1.0 / std::sqrt(static_cast<double>(d)));
  Tensor q = mul(qk, scale).unsqueeze(2).expand({B, H, n, 1, d});
  Tensor logits = matmul(q, kw.mT());  // [B, H, n, 1, W c]
  if (o.count_duplicates) {
    logits = sub(logits, from_vector(w.log_count, window_shape).to(fopt.dtype).to(device));
  }
  logits = add(logits, from_vector(w.self, window_shape).to(fopt.dtype).to(device));
  Tensor allowed = from_vector(w.allowed, window_shape).to(DType::boolean).to(device);
  logits = where(allowed, logits, penalty.masked);
  // Per round, as the chunk attention: softmax shifted by the row maximum, and its logsumexp.
  Tensor row_max = max(logits, {-1}, true);
  Tensor e = exp(sub(logits, row_max));
  Tensor z = sum(e, {-1}, true);
  Tensor lse = add(row_max, log(z)).view({B, H, n, 1, 1});
  Tensor rounds = matmul(div(e, z), vw);  // [B, H, n, 1, d]
  // Rounds combined by the softmax of their logsumexps, in the chunk attention's order.
  Tensor acc = rounds.select(2, 0), run_max = lse.select(2, 0), denom = ones_like(run_max);
  for (int64_t r = 1; r < n; ++r) {
    Tensor l = lse.select(2, r);
    Tensor new_max = maximum(run_max, l);
    Tensor old_scale = exp(sub(run_max, new_max)), new_scale = exp(sub(l, new_max));
    acc = add(mul(acc, old_scale), mul(rounds.select(2, r), new_scale));
    denom = add(mul(denom, old_scale), new_scale);
    run_max = new_max;
  }
  return div(acc, denom);  // [B, H, 1, d]
}

}  // namespace rw::reformer
