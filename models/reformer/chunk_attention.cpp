#include "models/reformer/chunk_attention.h"

#include <algorithm>
#include <any>
#include <utility>
#include <vector>

#include "autograd/function.h"
#include "backends/backend.h"
#include "core/ops.h"
#include "models/reformer/chunk_attention_blocks.h"
#include "models/reformer/chunk_attention_cpu.h"
#include "models/reformer/chunk_attention_cuda.h"

namespace rw::reformer {
namespace {

using Plan = ChunkAttentionPlan;
using chunk_blocks::chunks_per_round;
using chunk_blocks::total_chunks;
using chunk_blocks::window_chunks;

// The query chunks [first, first + count) of one round and the keys they attend to.
struct Block {
  int64_t round = 0, first = 0, count = 0;
  int64_t first_slot = 0;  // ticker slot of the first query
  Tensor wslots;           // [count W c]: ticker slots of the window keys (the same for every row)
  Tensor qtok, ktok;       // [BH, count c], [BH, count W c]: their tokens
  Tensor qrow, krow;       // 1-D rows into the [BH * Lp, d] inputs
};

Block make_block(const Plan& p, const Tensor& row_base, int64_t round, int64_t first,
                 int64_t count) {
  const int64_t c = p.chunk_len, N = total_chunks(p);
  Block b;
  b.round = round;
  b.first = first;
  b.count = count;
  b.first_slot = round * p.length + first * c;
  std::vector<int64_t> slots;
  slots.reserve(static_cast<std::size_t>(count * window_chunks(p) * c));
  for (int64_t i = 0; i < count; ++i) {
    const int64_t chunk = round * chunks_per_round(p) + first + i;
    for (int64_t o = -p.chunks_before; o <= p.chunks_after; ++o) {
      const int64_t neighbour = chunk_blocks::neighbour_chunk(chunk, o, N);
      for (int64_t j = 0; j < c; ++j) slots.push_back(neighbour * c + j);
    }
  }
  b.wslots = from_vector(slots).to(p.perm.device());
  b.qtok = p.perm.narrow(1, b.first_slot, count * c);
  b.ktok = index_select(p.perm, 1, b.wslots);
  b.qrow = add(b.qtok, row_base).reshape({-1});
  b.krow = add(b.ktok, row_base).reshape({-1});
  return b;
}

// x in [lo, hi) with lo > -N: x mod N, by repeated conditional shifts (there is no integer mod op).
Tensor wrap_chunk(Tensor x, int64_t offset, int64_t N) {
  for (int64_t left = offset; left < 0; left += N) x = where(lt(x, 0.0), add(x, N), x);
  for (int64_t right = offset; right > 0; right -= N)
    x = where(ge(x, static_cast<double>(N)), sub(x, N), x);
  return x;
}

// How many times each query of the block meets each of its window keys over all rounds and
// window positions (only where the key is not masked for being in another bucket).
Tensor duplicate_counts(const Plan& p, const Block& b, DType dtype) {
  const int64_t BH = p.batch_heads, m = b.count, c = p.chunk_len, Wc = window_chunks(p) * c;
  const int64_t n = p.n_hashes, N = total_chunks(p);
  Tensor qloc = index_select(p.token_chunk, 0, b.qrow).view({BH, m, c, 1, n});
  Tensor kloc = index_select(p.token_chunk, 0, b.krow).view({BH, m, 1, Wc, n});
  Tensor qbkt, kbkt;
  if (!p.attend_across_buckets) {
    qbkt = index_select(p.token_bucket, 0, b.qrow).view({BH, m, c, 1, n});
    kbkt = index_select(p.token_bucket, 0, b.krow).view({BH, m, 1, Wc, n});
  }
  Tensor count = zeros({BH, m, c, Wc}, {.dtype = dtype, .device = p.perm.device()});
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t o = -p.chunks_before; o <= p.chunks_after; ++o) {
      Tensor attended = wrap_chunk(add(qloc.select(-1, r), o), o, N);  // a chunk query r sees
      for (int64_t r2 = 0; r2 < n; ++r2) {
        // A key slot of another round than the query's is in another bucket.
        if (!p.attend_across_buckets && r2 != r) continue;
        Tensor match = eq(attended, kloc.select(-1, r2));
        if (!p.attend_across_buckets) {
          match = logical_and(match, eq(qbkt.select(-1, r), kbkt.select(-1, r)));
        }
        count = add(count, match.to(dtype));
      }
    }
  }
  return count;
}

struct BlockScores {
  Tensor qb, kw, vw;  // [BH, m, c, d], [BH, m, W c, d] x 2
  Tensor logits;      // [BH, m, c, W c], masked
};

BlockScores block_scores(const Plan& p, const Block& b, const Tensor& q, const Tensor& k,
                         const Tensor& v) {
  const int64_t BH = p.batch_heads, m = b.count, c = p.chunk_len, Wc = window_chunks(p) * c;
  const int64_t d = q.size(-1), rows = BH * p.length;
  const TensorOptions opts = options_of(q);
  BlockScores s;
  s.qb = index_select(q.view({rows, d}), 0, b.qrow).view({BH, m, c, d});
  s.kw = index_select(k.view({rows, d}), 0, b.krow).view({BH, m, Wc, d});
  s.vw = index_select(v.view({rows, d}), 0, b.krow).view({BH, m, Wc, d});
  Tensor logits = matmul(s.qb, s.kw.mT());
  Tensor qpos = b.qtok.view({BH, m, c, 1}), kpos = b.ktok.view({BH, m, 1, Wc});
  if (p.count_duplicates) {
    logits = sub(logits, log(maximum(duplicate_counts(p, b, q.dtype()), 1.0)));
  }
  logits = add(logits, where(eq(qpos, kpos), full({}, p.self_penalty, opts), 0.0));
  Tensor allowed = index_select(p.valid, 0, b.krow).view({BH, m, 1, Wc});
  if (p.causal) allowed = logical_and(allowed, le(kpos, qpos));
  if (!p.attend_across_buckets) {
    Tensor qb = p.slot_bucket.narrow(1, b.first_slot, m * c).view({BH, m, c, 1});
    Tensor kb = index_select(p.slot_bucket, 1, b.wslots).view({BH, m, 1, Wc});
    allowed = logical_and(allowed, eq(qb, kb));
  }
  s.logits = where(allowed, logits, p.masked_penalty);
  return s;
}

// Visits the blocks in their fixed order, handing each its dropout state.
template <typename F>
void for_each_block(const Plan& p, const Tensor& row_base, F&& visit) {
  chunk_blocks::for_each_block(
      p, [&](int64_t round, int64_t first, int64_t count, PhiloxState dropout_state) {
        visit(make_block(p, row_base, round, first, count), dropout_state);
      });
}

// Softmax probabilities and logsumexp of a block's logits, and the probabilities after dropout.
struct BlockProbs {
  Tensor row_max, z, probs, dropped;  // lse = row_max + log(z)
};
BlockProbs block_probs(const Plan& p, const Tensor& logits, PhiloxState dropout_state) {
  BlockProbs r;
  // Shifted by the row maximum, not by the logsumexp: a row whose best key carries the self
  // penalty sits near -1e5, where f32 rounds lse to 1/128 and exp(logits - lse) would not sum to 1.
  Tensor row_max = max(logits, {-1}, true);
  Tensor e = exp(sub(logits, row_max));
  Tensor z = sum(e, {-1}, true);
  r.probs = div(e, z);
  r.row_max = row_max;
  r.z = z;
  r.dropped = p.dropout_p > 0 ? dropout(r.probs, p.dropout_p, dropout_state) : r.probs;
  return r;
}

Tensor row_base_of(const Plan& p) {
  return mul(arange(p.batch_heads, {.dtype = DType::i64, .device = p.perm.device()}), p.length)
      .reshape({p.batch_heads, 1});
}

// A token has an attended key iff its combined logsumexp is above the hard-mask level.
Tensor has_key(const Plan& p, const Tensor& max_logit, const Tensor& log_denom) {
  return gt(add(max_logit, log_denom), p.masked_penalty / 2);
}

std::vector<Tensor> forward(const Plan& p, FunctionContext& ctx, std::span<const Tensor> in) {
  const Tensor &q = in[0], &k = in[1], &v = in[2];
  const int64_t BH = p.batch_heads, Lp = p.length, c = p.chunk_len, d = q.size(-1);
  const TensorOptions opts = options_of(q);
  const Tensor row_base = row_base_of(p);
  // Online softmax over rounds, per token, kept as (max logit, denominator): the max is one of the
  // logits itself, so backward's logit - max is exact even near the -1e5 self penalty, where f32
  // rounds any logsumexp to 1/128.
  Tensor acc, run_max, denom;
  Tensor o_round, max_round, z_round;  // the current round's per-row values in slot order
  auto combine_round = [&](int64_t r) {
    Tensor inv_rows = add(p.inv.select(1, r), row_base).reshape({-1});
    Tensor o = index_select(o_round.view({BH * Lp, d}), 0, inv_rows).view({BH, Lp, d});
    Tensor mx = index_select(max_round.view({BH * Lp}), 0, inv_rows).view({BH, Lp, 1});
    Tensor z = index_select(z_round.view({BH * Lp}), 0, inv_rows).view({BH, Lp, 1});
    if (r == 0) {
      acc = mul(o, z);
      run_max = mx;
      denom = z;
      return;
    }
    Tensor new_max = maximum(run_max, mx);
    Tensor old_scale = exp(sub(run_max, new_max)), new_scale = mul(exp(sub(mx, new_max)), z);
    acc = add(mul(acc, old_scale), mul(o, new_scale));
    denom = add(mul(denom, old_scale), new_scale);
    run_max = new_max;
  };
  int64_t round = -1;
  for_each_block(p, row_base, [&](const Block& b, PhiloxState dropout_state) {
    if (b.round != round) {
      if (round >= 0) combine_round(round);
      round = b.round;
      o_round = empty({BH, Lp, d}, opts);
      max_round = empty({BH, Lp}, opts);
      z_round = empty({BH, Lp}, opts);
    }
    BlockScores s = block_scores(p, b, q, k, v);
    BlockProbs pr = block_probs(p, s.logits, dropout_state);
    Tensor o = matmul(pr.dropped, s.vw);
    copy_(o_round.narrow(1, b.first * c, b.count * c), o.view({BH, b.count * c, d}));
    copy_(max_round.narrow(1, b.first * c, b.count * c), pr.row_max.view({BH, b.count * c}));
    copy_(z_round.narrow(1, b.first * c, b.count * c), pr.z.view({BH, b.count * c}));
  });
  combine_round(round);
  Tensor log_denom = log(denom);  // [BH, Lp, 1]
  Tensor out = where(has_key(p, run_max, log_denom), div(acc, denom), 0.0);
  ctx.save_for_backward({q, k, v, out, run_max, log_denom});
  return {out};
}

std::vector<Tensor> backward(const Plan& p, FunctionContext& ctx, std::span<const Tensor> grads) {
  const Tensor &q = ctx.saved(0), &k = ctx.saved(1), &v = ctx.saved(2);
  const Tensor &out = ctx.saved(3), &max_logit = ctx.saved(4), &log_denom = ctx.saved(5);
  const int64_t BH = p.batch_heads, Lp = p.length, c = p.chunk_len, d = q.size(-1);
  const int64_t rows = BH * Lp;
  const TensorOptions opts = options_of(q);
  const Tensor row_base = row_base_of(p);
  // Tokens without any attended key have a constant (zero) output.
  Tensor dout = where(has_key(p, max_logit, log_denom), grads[0], 0.0).contiguous();
  // dout . out per token: the part of each round's logsumexp gradient shared by all rounds.
  Tensor dout_out = sum(mul(dout, out), {-1}, true);
  Tensor dq = zeros({rows, d}, opts), dk = zeros({rows, d}, opts), dv = zeros({rows, d}, opts);
  Backend& backend = backend_for(q.device());
  Tensor g_sorted, dd_sorted, max_sorted, ld_sorted;  // per-token values in the round's slot order
  int64_t round = -1;
  for_each_block(p, row_base, [&](const Block& b, PhiloxState dropout_state) {
    if (b.round != round) {
      round = b.round;
      Tensor perm_rows = add(p.perm.narrow(1, round * Lp, Lp), row_base).reshape({-1});
      g_sorted = index_select(dout.view({rows, d}), 0, perm_rows).view({BH, Lp, d});
      dd_sorted = index_select(dout_out.view({rows}), 0, perm_rows).view({BH, Lp});
      max_sorted = index_select(max_logit.view({rows}), 0, perm_rows).view({BH, Lp});
      ld_sorted = index_select(log_denom.view({rows}), 0, perm_rows).view({BH, Lp});
    }
    const int64_t m = b.count;
    BlockScores s = block_scores(p, b, q, k, v);
    BlockProbs pr = block_probs(p, s.logits, dropout_state);
    Tensor o = matmul(pr.dropped, s.vw);  // this round's output of the block's queries
    Tensor g = g_sorted.narrow(1, b.first * c, m * c).view({BH, m, c, d});
    Tensor dd = dd_sorted.narrow(1, b.first * c, m * c).view({BH, m, c, 1});
    Tensor total_max = max_sorted.narrow(1, b.first * c, m * c).view({BH, m, c, 1});
    Tensor total_ld = ld_sorted.narrow(1, b.first * c, m * c).view({BH, m, c, 1});
    // out = sum_r w_r o_r with w_r = exp(lse_r - lse_total): d o_r = w_r dout and
    // d lse_r = w_r (dout . o_r - dout . out).
    Tensor w = exp(sub(add(sub(pr.row_max, total_max), log(pr.z)), total_ld));
    Tensor d_o = mul(g, w);
    Tensor d_lse = mul(w, sub(sum(mul(g, o), {-1}, true), dd));
    Tensor dvw = matmul(pr.dropped.mT(), d_o);
    Tensor dprobs = matmul(d_o, s.vw.mT());
    if (p.dropout_p > 0) dprobs = dropout(dprobs, p.dropout_p, dropout_state);
    // Softmax backward plus the logsumexp's gradient (d lse / d logits = probs).
    Tensor delta = sum(mul(pr.probs, dprobs), {-1}, true);
    Tensor dlogits = mul(pr.probs, add(sub(dprobs, delta), d_lse));
    Tensor dqb = matmul(dlogits, s.kw);
    Tensor dkw = matmul(dlogits.mT(), s.qb);
    // Rows repeat across overlapping windows: the backend's index_add accumulates them.
    backend.index_add(dq, 0, b.qrow, dqb.reshape({-1, d}).contiguous());
    backend.index_add(dk, 0, b.krow, dkw.reshape({-1, d}).contiguous());
    backend.index_add(dv, 0, b.krow, dvw.reshape({-1, d}).contiguous());
  });
  return {dq.view({BH, Lp, d}), dk.view({BH, Lp, d}), dv.view({BH, Lp, d})};
}

thread_local ChunkAttentionKernel current_kernel = ChunkAttentionKernel::automatic;

// What forward leaves for backward besides the saved tensors: which fused kernel ran (none: the
// op path).
struct UsedCpuKernel {};
struct UsedCudaKernel {};

enum class Implementation { ops, cpu_kernel, cuda_kernel };

Implementation implementation_for(const ChunkAttentionPlan& plan, const Tensor& q) {
  if (current_kernel != ChunkAttentionKernel::automatic) return Implementation::ops;
  if (cpu_kernel::applies(q)) return Implementation::cpu_kernel;
  // Shapes the CUDA kernel does not take (cuda_kernel::unsupported_reason) use the op path.
  if (cuda_kernel::applies(plan, q)) return Implementation::cuda_kernel;
  return Implementation::ops;
}

}  // namespace

ChunkAttentionKernelScope::ChunkAttentionKernelScope(ChunkAttentionKernel kernel)
    : previous_(current_kernel) {
  current_kernel = kernel;
}
ChunkAttentionKernelScope::~ChunkAttentionKernelScope() { current_kernel = previous_; }
ChunkAttentionKernel current_chunk_attention_kernel() { return current_kernel; }

Tensor chunk_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                       std::shared_ptr<const ChunkAttentionPlan> plan) {
  const Implementation implementation = implementation_for(*plan, q);
  const CustomFunction function{
      .name = "lsh_attention",
      .forward =
          [plan, implementation](FunctionContext& ctx, std::span<const Tensor> in) {
            if (implementation == Implementation::ops) return forward(*plan, ctx, in);
            const Tensor q = in[0].contiguous(), k = in[1].contiguous(), v = in[2].contiguous();
            const bool cuda = implementation == Implementation::cuda_kernel;
            cpu_kernel::ForwardResult r =
                cuda ? cuda_kernel::forward(*plan, q, k, v) : cpu_kernel::forward(*plan, q, k, v);
            ctx.save_for_backward({q, k, v, r.out, r.max_logit, r.log_denom});
            if (cuda) {
              ctx.state = UsedCudaKernel{};
            } else {
              ctx.state = UsedCpuKernel{};
            }
            return std::vector<Tensor>{r.out};
          },
      .backward = [plan](FunctionContext& ctx,
                         std::span<const Tensor> grads) -> std::vector<Tensor> {
        if (!ctx.state.has_value()) return backward(*plan, ctx, grads);
        const cpu_kernel::ForwardResult saved{
            .out = ctx.saved(3), .max_logit = ctx.saved(4), .log_denom = ctx.saved(5)};
        auto [dq, dk, dv] = std::any_cast<UsedCudaKernel>(&ctx.state) != nullptr
                                ? cuda_kernel::backward(*plan, ctx.saved(0), ctx.saved(1),
                                                        ctx.saved(2), saved, grads[0])
                                : cpu_kernel::backward(*plan, ctx.saved(0), ctx.saved(1),
                                                       ctx.saved(2), saved, grads[0]);
        return {dq, dk, dv};
      },
  };
  return function.apply1({q, k, v});
}

}  // namespace rw::reformer
