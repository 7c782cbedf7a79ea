#include "models/reformer/local_attention.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "autograd/function.h"
#include "autograd/tape.h"
#include "core/ops.h"
#include "nn/attention.h"
#include "nn/attention_mask.h"

namespace rw::reformer {

namespace {

constexpr const char* kOp = "local_attention";

// How the (padded) sequence is cut: n chunks of c positions, each query chunk seeing a window of
// W = (before + 1 + after) * c keys, slot o of the window holding chunk i + o - before.
struct ChunkGeometry {
  int64_t length;  // L, the real length
  int64_t c;       // chunk length actually used: min(chunk_len, L) (one chunk when it covers L)
  int64_t n;       // ceil(L / c)
  int64_t before, after;
  int64_t window() const { return (before + 1 + after) * c; }
};

ChunkGeometry geometry_of(int64_t length, const LocalAttentionOptions& options) {
  const int64_t c = std::min(options.chunk_len, length);
  return {.length = length,
          .c = c,
          .n = (length + c - 1) / c,
          .before = options.chunks_before,
          .after = options.chunks_after};
}

// Moves chunk j of x [..., n, c, d] to chunk j + shift (zeros enter, chunks leave): pad with
// negative pads crops, so this is one copy.
Tensor shift_chunks(const Tensor& x, int64_t shift) {
  if (shift == 0) return x;
  return pad(x, {0, 0, 0, 0, shift, -shift});
}

// [..., n, c, d] -> [..., n, W, d]: slot o of chunk i's window is chunk i + o - before (zeros
// outside the sequence; those keys are masked).
Tensor windows(const Tensor& chunks, const ChunkGeometry& g) {
  if (g.before == 0 && g.after == 0) return chunks;
  std::vector<Tensor> slots;
  for (int64_t o = 0; o <= g.before + g.after; ++o)
    slots.push_back(shift_chunks(chunks, g.before - o));
  return concat(slots, -2);
}

// The adjoint of windows(): adds each window slot's gradient back onto the chunk it came from.
Tensor fold_windows(const Tensor& grad_windows, const ChunkGeometry& g) {
  if (g.before == 0 && g.after == 0) return grad_windows;
  Tensor total;
  for (int64_t o = 0; o <= g.before + g.after; ++o) {
    Tensor piece = shift_chunks(grad_windows.narrow(-2, o * g.c, g.c), o - g.before);
    total = total.defined() ? add(total, piece) : piece;
  }
  return total;
}

// Additive penalties of the chunked logits [B, H, n, c, W]: a broadcastable bias (0 where a key is
// allowed, the self penalty on one's own position with shared QK, the hard penalty elsewhere) and,
// only when padding can leave a query with no allowed key, a bool [B, 1, n, c, 1] "has a key".
struct ChunkMask {
  Tensor bias;
  Tensor has_key;
};

ChunkMask chunk_mask(const ChunkGeometry& g, bool causal, bool mask_self,
                     const Tensor& key_padding_mask, DType dtype, Device device) {
  NoGradGuard no_grad;
  const int64_t W = g.window();
  const TensorOptions i64{.dtype = DType::i64, .device = device};
  // Original positions of queries [n, c, 1] and of window keys [n, 1, W].
  Tensor pos_q = arange(0, static_cast<double>(g.n * g.c), 1, i64).reshape({g.n, g.c, 1});
  Tensor pos_k = add(mul(arange(0, static_cast<double>(g.n), 1, i64).reshape({g.n, 1, 1}), g.c),
                     sub(arange(0, static_cast<double>(W), 1, i64).reshape({1, 1, W}),
                         static_cast<double>(g.before * g.c)));
  Tensor allowed = logical_and(ge(pos_k, 0.0), lt(pos_k, static_cast<double>(g.length)));
  if (causal) allowed = logical_and(allowed, le(pos_k, pos_q));
  allowed = allowed.reshape({1, 1, g.n, allowed.size(-2), W});
  if (key_padding_mask.defined()) {
    const int64_t B = key_padding_mask.size(0);
    Tensor index = clamp(pos_k, 0.0, static_cast<double>(g.length - 1)).reshape({-1});
    Tensor real = index_select(key_padding_mask, 1, index).reshape({B, 1, g.n, 1, W});
    allowed = logical_and(allowed, real);
  }
  const nn::AttentionPenalties penalty = nn::attention_penalties(dtype);
  const TensorOptions fopt{.dtype = dtype, .device = device};
  Tensor soft = zeros({}, fopt);
  if (mask_self) soft = where(eq(pos_k, pos_q), full({}, penalty.self, fopt), 0.0);
  ChunkMask out;
  out.bias = where(allowed, soft, penalty.masked);  // soft: a scalar or [n, c, W]
  if (key_padding_mask.defined()) {
    out.has_key = gt(sum(allowed.to(DType::f32), {-1}, true), 0.0);
  }
  return out;
}

struct CoreParams {
  ChunkGeometry geometry;
  bool causal;
  bool mask_self;
  double scale;
  double dropout_p;
  PhiloxState dropout_state;
};

// The attention probabilities of chunked q [B, H, n, c, d] against their windows of keys
// kw [B, H, n, W, d]: [B, H, n, c, W]. The scale goes on q (W / d times smaller than the logits)
// and the softmax is the backend's fused one; rows with no allowed key are zeroed.
Tensor chunk_probs(const Tensor& q, const Tensor& kw, const ChunkMask& mask, double scale) {
  Tensor s = matmul(mul(q, scale), kw.mT());
  add_(s, mask.bias);
  Tensor probs = softmax(s, -1);
  if (mask.has_key.defined()) probs = where(mask.has_key, probs, 0.0);
  return probs;
}

// The chunk core as a custom function: inputs q, k, v chunked [B, H, n, c, *] and the optional
// key padding mask [B, L]; output [B, H, n, c, d_v]. It saves only its inputs and recomputes the
// probabilities in backward (one fused softmax, cheaper than keeping them), so what lives between
// forward and backward is linear in L and independent of the window size.
CustomFunction chunk_core(const CoreParams& p) {
  return CustomFunction{
      .name = kOp,
      .forward =
          [p](FunctionContext& ctx, std::span<const Tensor> in) {
            const Tensor &q = in[0], &k = in[1], &v = in[2], &pad_mask = in[3];
            const ChunkMask mask =
                chunk_mask(p.geometry, p.causal, p.mask_self, pad_mask, q.dtype(), q.device());
            Tensor probs = chunk_probs(q, windows(k, p.geometry), mask, p.scale);
            if (p.dropout_p > 0) probs = dropout(probs, p.dropout_p, p.dropout_state);
            Tensor out = matmul(probs, windows(v, p.geometry));
            ctx.save_for_backward({q, k, v, pad_mask});
            return std::vector<Tensor>{out};
          },
      .backward =
          [p](FunctionContext& ctx, std::span<const Tensor> grad) {
            const Tensor &q = ctx.saved(0), &k = ctx.saved(1), &v = ctx.saved(2);
            const Tensor& pad_mask = ctx.saved(3);
            const Tensor& d_out = grad[0];
            const ChunkMask mask =
                chunk_mask(p.geometry, p.causal, p.mask_self, pad_mask, q.dtype(), q.device());
            const Tensor kw = windows(k, p.geometry);
            Tensor probs = chunk_probs(q, kw, mask, p.scale);

            std::vector<Tensor> grads(4);
            // out = dropout(P) @ V: dV = dropout(P)^T dOut; dP = dropout'(dOut V^T), and the
            // dropout's backward is the same scaled mask, regenerated from the same state.
            if (ctx.needs_input_grad(2)) {
              Tensor kept = p.dropout_p > 0 ? dropout(probs, p.dropout_p, p.dropout_state) : probs;
              grads[2] = fold_windows(matmul(kept.mT(), d_out), p.geometry);
            }
            if (!ctx.needs_input_grad(0) && !ctx.needs_input_grad(1)) return grads;
            Tensor d_probs = matmul(d_out, windows(v, p.geometry).mT());
            if (p.dropout_p > 0) d_probs = dropout(d_probs, p.dropout_p, p.dropout_state);
            // Softmax backward: dS = P * (dP - sum(P * dP)); rows zeroed in forward have P = 0.
            Tensor row = sum(mul(d_probs, probs), {-1}, true);
            sub_(d_probs, row);
            mul_(d_probs, probs);
            probs = Tensor();
            // S = (scale q) kw^T, so dq = scale dS kw and dk = fold(dS^T (scale q)).
            if (ctx.needs_input_grad(0)) grads[0] = mul(matmul(d_probs, kw), p.scale);
            if (ctx.needs_input_grad(1)) {
              grads[1] = fold_windows(matmul(d_probs.mT(), mul(q, p.scale)), p.geometry);
            }
            return grads;
          },
  };
}

void check_operand(const Tensor& t, const char* what) {
  RW_CHECK(t.defined(), "{}: {} is undefined", kOp, what);
  RW_CHECK(is_floating(t.dtype()), "{}: {} must be floating, got dtype {}", kOp, what, t.dtype());
}

void check_options(const LocalAttentionOptions& o) {
  RW_CHECK(o.chunk_len > 0, "{}: chunk_len must be positive, got {}", kOp, o.chunk_len);
  RW_CHECK(o.chunks_before >= 0 && o.chunks_after >= 0,
           "{}: chunks_before and chunks_after must be >= 0, got {} and {}", kOp, o.chunks_before,
           o.chunks_after);
  RW_CHECK(o.dropout_p >= 0 && o.dropout_p < 1, "{}: dropout_p must be in [0, 1), got {}", kOp,
           o.dropout_p);
}

}  // namespace

int64_t local_attention_dropout_numel(int64_t batch, int64_t heads, int64_t length,
                                      const LocalAttentionOptions& options) {
  check_options(options);
  RW_CHECK(length > 0, "{}: length must be positive, got {}", kOp, length);
  const ChunkGeometry g = geometry_of(length, options);
  return batch * heads * g.n * g.c * g.window();
}

Tensor local_attention(const Tensor& q, const Tensor& k_in, const Tensor& v,
                       const LocalAttentionOptions& options, const Tensor& key_padding_mask) {
  check_options(options);
  RW_CHECK(k_in.defined() || options.shared_qk,
           "{}: k is undefined (only shared_qk allows that, meaning k = q)", kOp);
  const Tensor k = k_in.defined() ? k_in : q;
  check_operand(q, "q");
  check_operand(k, "k");
  check_operand(v, "v");
  RW_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4 && q.shape() == k.shape() &&
               v.size(0) == q.size(0) && v.size(1) == q.size(1) && v.size(2) == q.size(2),
           "{}: expected q, k [batch, heads, length, d_head] of one shape and v [batch, heads, "
           "length, d_v], got q {}, k {}, v {}",
           kOp, q.shape(), k.shape(), v.shape());
  RW_CHECK(q.size(2) > 0 && q.size(3) > 0 && v.size(3) > 0,
           "{}: length and head dims must be positive, got q {}, v {}", kOp, q.shape(), v.shape());
  RW_CHECK(k.dtype() == q.dtype() && v.dtype() == q.dtype(),
           "{}: q, k and v must share a dtype, got {}, {}, {}", kOp, q.dtype(), k.dtype(),
           v.dtype());
  RW_CHECK(k.device() == q.device() && v.device() == q.device(),
           "{}: q, k and v must be on one device, got {}, {}, {}", kOp, q.device(), k.device(),
           v.device());
  const int64_t B = q.size(0), H = q.size(1), L = q.size(2);
  nn::check_attention_mask(kOp, nn::AttentionMaskSpec{.key_padding_mask = key_padding_mask},
                           {B, H, L, L}, q.device());

  const ChunkGeometry g = geometry_of(L, options);
  const int64_t padding = g.n * g.c - L;
  // [B, H, L, d] -> [B, H, n, c, d]: zero rows for the padded positions (masked as keys, dropped
  // as queries).
  auto chunked = [&](const Tensor& t) {
    Tensor padded = padding > 0 ? pad(t, {0, 0, 0, padding}) : t;
    return padded.reshape({B, H, g.n, g.c, t.size(3)});
  };
  const Tensor keys = options.shared_qk ? nn::unit_normalize(k) : k;
  const CoreParams params{
      .geometry = g,
      .causal = options.causal,
      .mask_self = options.shared_qk,
      .scale = options.scale.value_or(1.0 / std::sqrt(static_cast<double>(q.size(3)))),
      .dropout_p = options.dropout_p,
      .dropout_state = options.dropout_state};
  Tensor out = chunk_core(params).apply1({chunked(q), chunked(keys), chunked(v), key_padding_mask});
  out = out.reshape({B, H, g.n * g.c, v.size(3)});
  return padding > 0 ? out.narrow(2, 0, L) : out;
}

// --- LocalSelfAttention
// ---------------------------------------------------------------------------

LocalSelfAttention::LocalSelfAttention(int64_t d_model, int64_t n_heads,
                                       LocalSelfAttentionOptions options, Generator& generator)
    : d_model_(d_model),
      n_heads_(n_heads),
      d_head_(nn::resolve_attention_d_head("LocalSelfAttention", d_model, n_heads, options.d_head,
                                           options.dropout)),
      options_(options) {
  RW_CHECK(options.chunk_len > 0, "LocalSelfAttention: chunk_len must be positive, got {}",
           options.chunk_len);
  RW_CHECK(options.chunks_before >= 0 && options.chunks_after >= 0,
           "LocalSelfAttention: chunks_before and chunks_after must be >= 0, got {} and {}",
           options.chunks_before, options.chunks_after);
  // The same draws, in the same order, as nn::MultiHeadAttention with separate projections.
  nn::AttentionWeights init = nn::initial_attention_weights(d_model, n_heads_ * d_head_,
                                                            options.shared_qk ? 2 : 3, generator);
  const std::vector<Tensor>& blocks = init.input_blocks;

  const bool bias = options_.bias;
  if (options.shared_qk) {
    register_projection("w_qk", w_qk, blocks[0], "b_qk", b_qk, bias);
    register_projection("w_v", w_v, blocks[1], "b_v", b_v, bias);
  } else {
    register_projection("w_q", w_q, blocks[0], "b_q", b_q, bias);
    register_projection("w_k", w_k, blocks[1], "b_k", b_k, bias);
    register_projection("w_v", w_v, blocks[2], "b_v", b_v, bias);
  }
  register_projection("w_o", w_o, init.output, "b_o", b_o, bias);
}

Tensor LocalSelfAttention::forward(const Tensor& x, const Tensor& key_padding_mask) {
  RW_CHECK(x.defined(), "LocalSelfAttention: x is undefined");
  RW_CHECK(x.dim() == 3 && x.size(2) == d_model_,
           "LocalSelfAttention: expected x of shape [batch, length, {}], got {}", d_model_,
           x.shape());
  RW_CHECK(is_floating(x.dtype()), "LocalSelfAttention: x must be floating, got dtype {}",
           x.dtype());
  const int64_t B = x.size(0), L = x.size(1);
  RW_CHECK(L > 0, "LocalSelfAttention: the sequence is empty (x of shape {})", x.shape());
  nn::check_attention_mask("LocalSelfAttention",
                           nn::AttentionMaskSpec{.key_padding_mask = key_padding_mask},
                           {B, n_heads_, L, L}, x.device());
  // [B, L, inner] -> [B, n_heads, L, d_head] (a view).
  auto heads = [&](const Tensor& t) {
    return t.reshape({B, L, n_heads_, d_head_}).transpose(1, 2);
  };
  LocalAttentionOptions opt{.chunk_len = options_.chunk_len,
                            .chunks_before = options_.chunks_before,
                            .chunks_after = options_.chunks_after,
                            .causal = options_.causal,
                            .shared_qk = options_.shared_qk};
  if (is_training() && options_.dropout > 0) {
    opt.dropout_p = options_.dropout;
    opt.dropout_state =
        current_generator().next(local_attention_dropout_numel(B, n_heads_, L, opt));
  }
  Tensor attended;
  if (options_.shared_qk) {
    Tensor qk = heads(linear(x, w_qk, b_qk));
    attended = local_attention(qk, qk, heads(linear(x, w_v, b_v)), opt, key_padding_mask);
  } else {
    attended = local_attention(heads(linear(x, w_q, b_q)), heads(linear(x, w_k, b_k)),
                               heads(linear(x, w_v, b_v)), opt, key_padding_mask);
  }
  Tensor merged = attended.transpose(1, 2).reshape({B, L, n_heads_ * d_head_});
  return linear(merged, w_o, b_o);
}

// --- incremental decoding
// ---------------------------------------------------------------------------

LocalSelfAttention::Projected LocalSelfAttention::project(const Tensor& x) const {
  const int64_t B = x.size(0), L = x.size(1);
  auto heads = [&](const Tensor& t) {
    return t.reshape({B, L, n_heads_, d_head_}).transpose(1, 2);
  };
  if (options_.shared_qk) {
    Tensor qk = heads(linear(x, w_qk, b_qk));
    return {qk, nn::unit_normalize(qk), heads(linear(x, w_v, b_v))};
  }
  return {heads(linear(x, w_q, b_q)), heads(linear(x, w_k, b_k)), heads(linear(x, w_v, b_v))};
}

Tensor LocalSelfAttention::forward_cached(const Tensor& x, LocalKeyValueCache& cache) {
  NoGradGuard no_grad;  // inference only: the caches are filled in place
  RW_CHECK(options_.causal,
           "LocalSelfAttention: forward_cached needs a causal module (without causal masking a new "
           "position would change the outputs of earlier ones)");
  RW_CHECK(x.defined() && x.dim() == 3 && x.size(2) == d_model_ && x.size(1) >= 1 &&
               is_floating(x.dtype()),
           "LocalSelfAttention: forward_cached expects floating x of shape [batch, length >= 1, "
           "{}], got {}",
           d_model_,
           x.defined() ? fmt::format("{} {}", x.dtype(), x.shape()) : std::string("undefined"));
  const int64_t B = x.size(0), T = x.size(1), c = options_.chunk_len;
  const int64_t capacity = (options_.chunks_before + 2) * c;
  // The first position the query at t may attend to.
  auto window_start = [&](int64_t t) {
    return std::max<int64_t>(0, (t / c - options_.chunks_before) * c);
  };
  Projected p = project(x);
  if (cache.length == 0) {
    // The prompt: exactly forward()'s computation; keep what the next query can attend to.
    LocalAttentionOptions opt{.chunk_len = c,
                              .chunks_before = options_.chunks_before,
                              .chunks_after = options_.chunks_after,
                              .causal = true,
                              .shared_qk = options_.shared_qk};
    Tensor attended = options_.shared_qk ? local_attention(p.q, p.q, p.v, opt)
                                         : local_attention(p.q, p.k, p.v, opt);
    const TensorOptions opts = options_of(p.k);
    cache.keys = empty({B, n_heads_, capacity, d_head_}, opts);
    cache.values = empty({B, n_heads_, capacity, d_head_}, opts);
    cache.start = window_start(T);
    cache.held = T - cache.start;
    cache.length = T;
    copy_(cache.keys.narrow(2, 0, cache.held), p.k.narrow(2, cache.start, cache.held));
    copy_(cache.values.narrow(2, 0, cache.held), p.v.narrow(2, cache.start, cache.held));
    return linear(attended.transpose(1, 2).reshape({B, T, n_heads_ * d_head_}), w_o, b_o);
  }
  RW_CHECK(T == 1,
           "LocalSelfAttention: after the prompt, forward_cached takes one position at a time, got "
           "x of shape {}",
           x.shape());
  RW_CHECK(
      cache.keys.size(0) == B && cache.keys.dtype() == x.dtype() &&
          cache.keys.device() == x.device(),
      "LocalSelfAttention: forward_cached got x {} {} on {} but the cache holds batch {} of {} "
      "on {}",
      x.dtype(), x.shape(), x.device(), cache.keys.size(0), cache.keys.dtype(),
      cache.keys.device());
  const int64_t t = cache.length;
  if (cache.held == capacity) {
    // Full: drop the oldest chunk (the query at t no longer reaches it). Copied through a
    // temporary since source and destination overlap; once per chunk_len steps.
    for (Tensor* buffer : {&cache.keys, &cache.values}) {
      copy_(buffer->narrow(2, 0, capacity - c), buffer->narrow(2, c, capacity - c).clone());
    }
    cache.start += c;
    cache.held -= c;
  }
  copy_(cache.keys.narrow(2, cache.held, 1), p.k);
  copy_(cache.values.narrow(2, cache.held, 1), p.v);
  ++cache.held;
  ++cache.length;
  const int64_t first = window_start(t) - cache.start, count = t - window_start(t) + 1;
  Tensor keys = cache.keys.narrow(2, first, count), values = cache.values.narrow(2, first, count);
  // Every key in the window is at or before t; with shared QK the last one is t itself.
  Tensor logits = matmul(mul(p.q, 1.0 / std::sqrt(static_cast<double>(d_head_))), keys.mT());
  if (options_.shared_qk) {
    const nn::AttentionPenalties penalty = nn::attention_penalties(logits.dtype());
    Tensor own = eq(arange(count, {.dtype = DType::i64, .device = x.device()}),
                    static_cast<double>(count - 1));
    logits = add(logits, where(own, full({}, penalty.self, options_of(logits)), 0.0));
  }
  Tensor attended = matmul(softmax(logits, -1), values);  // [B, n_heads, 1, d_head]
  return linear(attended.transpose(1, 2).reshape({B, 1, n_heads_ * d_head_}), w_o, b_o);
}

}  // namespace rw::reformer
