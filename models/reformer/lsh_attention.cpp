#include "models/reformer/lsh_attention.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "core/ops.h"
#include "models/reformer/chunk_attention.h"
#include "models/reformer/shared_qk_inputs.h"
#include "nn/attention_mask.h"

namespace rw::reformer {
namespace {

constexpr const char* kOp = "lsh_attention";

std::string describe(const Tensor& t) {
  return t.defined() ? fmt::format("{} {}", t.dtype(), t.shape()) : std::string("undefined");
}

void check_options(const LSHAttentionOptions& o) {
  RW_CHECK(o.chunk_len > 0, "{}: chunk_len must be positive, got {}", kOp, o.chunk_len);
  RW_CHECK(o.n_hashes > 0, "{}: n_hashes must be positive, got {}", kOp, o.n_hashes);
  RW_CHECK(o.chunks_before >= 0 && o.chunks_after >= 0,
           "{}: chunks_before and chunks_after must be >= 0, got {} and {}", kOp, o.chunks_before,
           o.chunks_after);
  RW_CHECK(o.n_buckets == 0 || o.n_buckets == 1 || (o.n_buckets > 0 && o.n_buckets % 2 == 0),
           "{}: n_buckets must be 0 (default), 1 or even, got {}", kOp, o.n_buckets);
  RW_CHECK(o.dropout_p >= 0 && o.dropout_p < 1, "{}: dropout_p must be in [0, 1), got {}", kOp,
           o.dropout_p);
  RW_CHECK(!o.scale || std::isfinite(*o.scale), "{}: scale must be finite, got {}", kOp,
           o.scale.value_or(0));
}

void check_inputs(const Tensor& qk, const Tensor& v, const Tensor& key_padding_mask) {
  RW_CHECK(qk.defined() && qk.dim() == 4 && is_floating(qk.dtype()),
           "{}: qk must be floating [batch, heads, length, d_head], got {}", kOp, describe(qk));
  RW_CHECK(v.defined() && v.dim() == 4 && v.dtype() == qk.dtype(),
           "{}: v must be [batch, heads, length, d_head] of qk's dtype {}, got {}", kOp, qk.dtype(),
           describe(v));
  RW_CHECK(v.shape() == qk.shape(), "{}: qk and v must have the same shape, got {} and {}", kOp,
           qk.shape(), v.shape());
  RW_CHECK(v.device() == qk.device(), "{}: qk is on {} but v is on {}", kOp, qk.device(),
           v.device());
  RW_CHECK(qk.size(2) > 0 && qk.size(3) > 0,
           "{}: length and d_head must be positive, got qk of shape {}", kOp, qk.shape());
  if (key_padding_mask.defined()) {
    RW_CHECK(key_padding_mask.dtype() == DType::boolean && key_padding_mask.dim() == 2 &&
                 key_padding_mask.size(0) == qk.size(0) && key_padding_mask.size(1) == qk.size(2),
             "{}: key_padding_mask must be bool [batch, length] = [{}, {}], got {}", kOp,
             qk.size(0), qk.size(2), describe(key_padding_mask));
    RW_CHECK(key_padding_mask.device() == qk.device(),
             "{}: key_padding_mask is on {} but qk is on {}", kOp, key_padding_mask.device(),
             qk.device());
  }
}

// x with its last dim (the length) extended to Lp with `fill`.
Tensor pad_length(const Tensor& x, int64_t Lp, double fill) {
  const int64_t extra = Lp - x.size(-1);
  return extra == 0 ? x : pad(x, {0, extra}, fill);
}

// The stable sort of each row of keys [R, Lp] (i64 in [0, n_values)) with its inverse: sorted
// keys, perm (the position in each slot) and inv (the slot of each position), [R, Lp] each. On the
// CPU a counting sort, O(Lp + n_values) per row: the keys are small bucket ids and the positions
// are already in order, so it gives exactly the stable sort's permutation.
struct SortedKeys {
  Tensor keys, perm, inv;
};
SortedKeys stable_sort_keys(const Tensor& keys, int64_t n_values) {
  if (!keys.device().is_cpu()) {
    auto [sorted, perm] = sort(keys, -1);
    return {.keys = sorted, .perm = perm, .inv = argsort(perm, -1)};
  }
  const Tensor in = keys.contiguous();
  const int64_t rows = in.size(0), Lp = in.size(1);
  SortedKeys out{.keys = empty(in.shape(), {.dtype = DType::i64}),
                 .perm = empty(in.shape(), {.dtype = DType::i64}),
                 .inv = empty(in.shape(), {.dtype = DType::i64})};
  const int64_t* k = in.data<int64_t>();
  int64_t *sk = out.keys.data<int64_t>(), *perm = out.perm.data<int64_t>(),
          *inv = out.inv.data<int64_t>();
#pragma omp parallel
  {
    std::vector<int64_t> start(static_cast<std::size_t>(n_values + 1));
#pragma omp for schedule(static)
    for (int64_t row = 0; row < rows; ++row) {
      const int64_t* kr = k + row * Lp;
      std::fill(start.begin(), start.end(), 0);
      for (int64_t i = 0; i < Lp; ++i) ++start[static_cast<std::size_t>(kr[i]) + 1];
      for (int64_t b = 0; b < n_values; ++b) {
        start[static_cast<std::size_t>(b) + 1] += start[static_cast<std::size_t>(b)];
      }
      for (int64_t i = 0; i < Lp; ++i) {
        const int64_t slot = start[static_cast<std::size_t>(kr[i])]++;
        sk[row * Lp + slot] = kr[i];
        perm[row * Lp + slot] = i;
        inv[row * Lp + i] = slot;
      }
    }
  }
  return out;
}

}  // namespace

int64_t resolve_n_buckets(const LSHAttentionOptions& options, int64_t length) {
  return options.n_buckets > 0 ? options.n_buckets : default_n_buckets(length, options.chunk_len);
}

Tensor lsh_attention(const Tensor& qk, const Tensor& v, const LSHRotations& rotations,
                     const LSHAttentionOptions& options, const Tensor& key_padding_mask) {
  check_options(options);
  check_inputs(qk, v, key_padding_mask);
  const int64_t n_buckets = resolve_n_buckets(options, qk.size(2));
  RW_CHECK(rotations.n_buckets == n_buckets && rotations.n_hashes == options.n_hashes,
           "{}: the rotations are for {} buckets and {} hashes, but the options ask for {} buckets "
           "(length {}, chunk_len {}) and {} hashes",
           kOp, rotations.n_buckets, rotations.n_hashes, n_buckets, qk.size(2), options.chunk_len,
           options.n_hashes);
  return lsh_attention_with_buckets(qk, v, lsh_hash(qk, rotations), options, key_padding_mask);
}

Tensor lsh_attention_with_buckets(const Tensor& qk, const Tensor& v, const Tensor& buckets,
                                  const LSHAttentionOptions& options,
                                  const Tensor& key_padding_mask) {
  check_options(options);
  check_inputs(qk, v, key_padding_mask);
  const int64_t B = qk.size(0), H = qk.size(1), L = qk.size(2), d = qk.size(3);
  const int64_t n = options.n_hashes, c = options.chunk_len;
  const int64_t n_buckets = resolve_n_buckets(options, L);
  RW_CHECK(buckets.defined() && buckets.dtype() == DType::i64 && buckets.dim() == 4 &&
               buckets.size(0) == B && buckets.size(1) == H && buckets.size(2) == n &&
               buckets.size(3) == L,
           "{}: buckets must be i64 [batch, heads, n_hashes, length] = [{}, {}, {}, {}], got {}",
           kOp, B, H, n, L, describe(buckets));
  const Device device = qk.device();
  const TensorOptions index_opts{.dtype = DType::i64, .device = device};
  const int64_t BH = B * H, Lp = (L + c - 1) / c * c, S = n * Lp;

  auto plan = std::make_shared<ChunkAttentionPlan>();
  {
    NoGradGuard no_grad;
    // Round-local bucket ids, checked against their round's range.
    Tensor offsets = mul(arange(n, index_opts), n_buckets).reshape({n, 1});
    Tensor local = sub(buckets, offsets);
    const auto lo = min(local).item<int64_t>(), hi = max(local).item<int64_t>();
    RW_CHECK(lo >= 0 && hi < n_buckets,
             "{}: bucket ids of round r must lie in [r * {}, (r + 1) * {}) (n_buckets {}), got "
             "round-local ids in [{}, {}]",
             kOp, n_buckets, n_buckets, n_buckets, lo, hi);
    // Padding (the caller's and ours) goes to an extra last bucket of each round.
    Tensor keys = pad_length(local, Lp, static_cast<double>(n_buckets));
    Tensor valid = lt(arange(Lp, index_opts), static_cast<double>(L)).reshape({1, Lp});
    if (key_padding_mask.defined()) {
      Tensor real = key_padding_mask.to(DType::i64).reshape({B, 1, L});
      valid = logical_and(valid, gt(pad_length(real, Lp, 0).reshape({B, Lp}), 0.0));
      keys = where(valid.reshape({B, 1, 1, Lp}), keys, static_cast<double>(n_buckets));
    }
    // Stable: equal buckets keep position order, i.e. the sort is by (bucket, position).
    SortedKeys sorted = stable_sort_keys(keys.reshape({BH * n, Lp}), n_buckets + 1);
    Tensor sorted_keys = sorted.keys.reshape({BH, n, Lp});
    plan->perm = sorted.perm.reshape({BH, S});
    plan->inv = sorted.inv.reshape({BH, n, Lp});
    plan->valid = valid.reshape({-1, 1, Lp})
                      .expand({B, H, Lp})
                      .to(DType::boolean)
                      .contiguous()
                      .reshape({BH * Lp});
    // Unique across rounds: round r's ids live in [r (n_buckets + 1), (r + 1) (n_buckets + 1)).
    Tensor round_offsets = mul(arange(n, index_opts), n_buckets + 1).reshape({1, n, 1});
    if (!options.attend_across_buckets) {
      plan->slot_bucket = add(sorted_keys, round_offsets).reshape({BH, S});
    }
    if (options.count_duplicates) {
      // Ticker chunk of each token in each round: chunk_of_slot[r Lp + inv].
      Tensor slot_rows = add(plan->inv, mul(arange(n, index_opts), Lp).reshape({1, n, 1}));
      Tensor chunk_of_slot = arange(S / c, index_opts)
                                 .reshape({S / c, 1})
                                 .expand({S / c, c})
                                 .contiguous()
                                 .reshape({S});
      Tensor token_chunk = index_select(chunk_of_slot, 0, slot_rows.reshape({-1}));
      plan->token_chunk =
          token_chunk.reshape({BH, n, Lp}).transpose(1, 2).contiguous().reshape({BH * Lp, n});
      plan->token_bucket = add(keys.reshape({BH, n, Lp}), round_offsets)
                               .transpose(1, 2)
                               .contiguous()
                               .reshape({BH * Lp, n});
    }
  }
  const nn::AttentionPenalties penalties = nn::attention_penalties(qk.dtype());
  plan->batch_heads = BH;
  plan->length = Lp;
  plan->n_hashes = n;
  plan->chunk_len = c;
  plan->chunks_before = options.chunks_before;
  plan->chunks_after = options.chunks_after;
  plan->causal = options.causal;
  plan->count_duplicates = options.count_duplicates;
  plan->attend_across_buckets = options.attend_across_buckets;
  plan->self_penalty = penalties.self;
  plan->masked_penalty = penalties.masked;
  plan->dropout_p = options.dropout_p;
  plan->dropout_state = options.dropout_state;

  const double scale = options.scale.value_or(1.0 / std::sqrt(static_cast<double>(d)));
  SharedQKInputs inputs = shared_qk_inputs(qk, scale, Lp);
  Tensor out = chunk_attention(inputs.q, inputs.k, pad_rows(v, Lp), plan);
  return out.view({B, H, Lp, d}).narrow(2, 0, L);
}

}  // namespace rw::reformer
