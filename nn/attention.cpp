#include "nn/attention.h"

#include <cmath>
#include <utility>
#include <vector>

#include "autograd/tape.h"
#include "core/ops.h"

namespace rw::nn {

namespace {

void check_operand(const char* op, const Tensor& t, const char* what) {
  RW_CHECK(t.defined(), "{}: {} is undefined", op, what);
  RW_CHECK(is_floating(t.dtype()), "{}: {} must be floating, got dtype {}", op, what, t.dtype());
  RW_CHECK(t.dim() >= 2, "{}: {} must be [..., length, dim], got shape {}", op, what, t.shape());
}

}  // namespace

Tensor attention_weights(const Tensor& q, const Tensor& k, const AttentionMaskSpec& mask,
                         std::optional<double> scale) {
  check_operand("attention", q, "q");
  check_operand("attention", k, "k");
  RW_CHECK(q.size(-1) == k.size(-1) && q.size(-1) > 0,
           "attention: q and k need the same non-zero last dim, got shapes {} and {}", q.shape(),
           k.shape());
  const int64_t Lq = q.size(-2), Lk = k.size(-2);
  Shape logits_shape = q.shape();  // batch dims as q's (a mask's batch must match them)
  logits_shape.back() = Lk;
  check_attention_mask("attention", mask, logits_shape, q.device());
  Tensor logits = matmul(q, k.mT());
  logits = mul(logits, scale.value_or(1.0 / std::sqrt(static_cast<double>(q.size(-1)))));
  Tensor bias = attention_bias(mask, logits.dim(), Lq, Lk, logits.dtype(), logits.device());
  if (bias.defined()) logits = add(logits, bias);
  Tensor probs = softmax(logits, -1);
  // Only a padding mask can leave a query without any allowed key (causal masking always allows
  // key 0): zero those rows (see nn/attention_mask.h).
  if (mask.key_padding_mask.defined()) {
    Tensor allowed = attention_allowed_mask(mask, logits.dim(), Lq, Lk, logits.device());
    Tensor has_key = gt(sum(allowed.to(DType::f32), {-1}, true), 0.0);
    probs = where(has_key, probs, 0.0);
  }
  return probs;
}

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMaskSpec& mask,
                 const AttentionOptions& options) {
  check_operand("attention", k, "k");
  check_operand("attention", v, "v");
  RW_CHECK(v.size(-2) == k.size(-2), "attention: v must have one row per key: k {} vs v {}",
           k.shape(), v.shape());
  Tensor probs = attention_weights(q, k, mask, options.scale);
  if (options.dropout_p > 0) probs = dropout(probs, options.dropout_p, options.dropout_state);
  return matmul(probs, v);
}

Tensor unit_normalize(const Tensor& x) {
  RW_CHECK(x.defined() && is_floating(x.dtype()) && x.dim() >= 1,
           "unit_normalize: expected a floating tensor with at least one dim, got {}",
           x.defined() ? fmt::format("{} {}", x.dtype(), x.shape()) : std::string("undefined"));
  // 1e-24 under the root is F.normalize's eps = 1e-12 on the norm: invisible for any norm that is
  // not tiny, and it keeps a zero vector (and its gradient) finite.
  const DType dt = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  Tensor xc = x.to(dt);
  Tensor norm = sqrt(add(sum(square(xc), {-1}, true), 1e-24));
  return div(xc, norm).to(x.dtype());
}

// --- MultiHeadAttention -------------------------------------------------------------------------

int64_t resolve_attention_d_head(const char* module, int64_t d_model, int64_t n_heads,
                                 int64_t d_head, double dropout) {
  RW_CHECK(d_model > 0 && n_heads > 0, "{}: d_model and n_heads must be positive, got {} and {}",
           module, d_model, n_heads);
  RW_CHECK(d_head >= 0, "{}: d_head must be >= 0 (0 = d_model / n_heads), got {}", module, d_head);
  RW_CHECK(dropout >= 0 && dropout < 1, "{}: dropout must be in [0, 1), got {}", module, dropout);
  if (d_head > 0) return d_head;
  RW_CHECK(d_model % n_heads == 0,
           "{}: d_model {} is not divisible by n_heads {} (set options.d_head)", module, d_model,
           n_heads);
  return d_model / n_heads;
}

AttentionWeights initial_attention_weights(int64_t d_model, int64_t inner, int input_blocks,
                                           Generator& generator) {
  // Every input block is drawn on its own, so fused and separate layouts start from the same
  // values.
  const double in_bound = std::sqrt(6.0 / static_cast<double>(d_model + inner));
  AttentionWeights w;
  for (int i = 0; i < input_blocks; ++i) {
    w.input_blocks.push_back(uniform({inner, d_model}, -in_bound, in_bound, generator));
  }
  const double out_bound = 1.0 / std::sqrt(static_cast<double>(inner));
  w.output = uniform({d_model, inner}, -out_bound, out_bound, generator);
  return w;
}

MultiHeadAttention::MultiHeadAttention(int64_t d_model, int64_t n_heads,
                                       MultiHeadAttentionOptions options, Generator& generator)
    : d_model_(d_model),
      n_heads_(n_heads),
      d_head_(resolve_attention_d_head("MultiHeadAttention", d_model, n_heads, options.d_head,
                                       options.dropout)),
      options_(options) {
  AttentionWeights init =
      initial_attention_weights(d_model, n_heads_ * d_head_, options.shared_qk ? 2 : 3, generator);
  const std::vector<Tensor>& blocks = init.input_blocks;

  const bool bias = options_.bias;
  if (options.fused_projection) {
    register_projection("w_in", w_in, concat(blocks, 0), "b_in", b_in, bias);
  } else if (options.shared_qk) {
    register_projection("w_qk", w_qk, blocks[0], "b_qk", b_qk, bias);
    register_projection("w_v", w_v, blocks[1], "b_v", b_v, bias);
  } else {
    register_projection("w_q", w_q, blocks[0], "b_q", b_q, bias);
    register_projection("w_k", w_k, blocks[1], "b_k", b_k, bias);
    register_projection("w_v", w_v, blocks[2], "b_v", b_v, bias);
  }
  register_projection("w_o", w_o, init.output, "b_o", b_o, bias);
}

MultiHeadAttention::Projected MultiHeadAttention::project(const Tensor& x) const {
  const int64_t B = x.size(0), L = x.size(1), inner = n_heads_ * d_head_;
  // [B, L, inner] -> [B, n_heads, L, d_head] (a view).
  auto heads = [&](const Tensor& t) {
    return t.reshape({B, L, n_heads_, d_head_}).transpose(1, 2);
  };
  std::vector<Tensor> parts;
  if (options_.fused_projection) {
    Tensor all = linear(x, w_in, b_in);
    for (int64_t i = 0; i < all.size(-1) / inner; ++i) {
      parts.push_back(heads(all.narrow(-1, i * inner, inner)));
    }
  } else if (options_.shared_qk) {
    parts = {heads(linear(x, w_qk, b_qk)), heads(linear(x, w_v, b_v))};
  } else {
    parts = {heads(linear(x, w_q, b_q)), heads(linear(x, w_k, b_k)), heads(linear(x, w_v, b_v))};
  }
  if (options_.shared_qk) return {parts[0], unit_normalize(parts[0]), parts[1]};
  return {parts[0], parts[1], parts[2]};
}

AttentionResult MultiHeadAttention::run(const Tensor& x, const Tensor& key_padding_mask,
                                        bool need_weights) {
  RW_CHECK(x.defined(), "MultiHeadAttention: x is undefined");
  RW_CHECK(x.dim() == 3 && x.size(2) == d_model_,
           "MultiHeadAttention: expected x of shape [batch, length, {}], got {}", d_model_,
           x.shape());
  RW_CHECK(is_floating(x.dtype()), "MultiHeadAttention: x must be floating, got dtype {}",
           x.dtype());
  const int64_t B = x.size(0), L = x.size(1);
  const AttentionMaskSpec mask{.causal = options_.causal,
                               .mask_self = options_.shared_qk,
                               .key_padding_mask = key_padding_mask};
  check_attention_mask(type_name().c_str(), mask, {B, n_heads_, L, L}, x.device());

  auto [q, k, v] = project(x);
  Tensor weights = attention_weights(q, k, mask);
  Tensor probs = weights;
  if (is_training() && options_.dropout > 0) {
    probs = dropout(weights, options_.dropout, current_generator().next(weights.numel()));
  }
  Tensor heads = matmul(probs, v);  // [B, n_heads, L, d_head]
  Tensor merged = heads.transpose(1, 2).reshape({B, L, n_heads_ * d_head_});
  return {linear(merged, w_o, b_o), need_weights ? weights : Tensor()};
}

Tensor MultiHeadAttention::forward(const Tensor& x, const Tensor& key_padding_mask) {
  return run(x, key_padding_mask, false).output;
}

AttentionResult MultiHeadAttention::forward_with_weights(const Tensor& x,
                                                         const Tensor& key_padding_mask) {
  return run(x, key_padding_mask, true);
}

// --- incremental decoding ------------------------------------------------------------------------

Tensor MultiHeadAttention::forward_cached(const Tensor& x, KeyValueCache& cache, int64_t capacity) {
  NoGradGuard no_grad;  // inference only: the caches are filled in place
  RW_CHECK(options_.causal,
           "MultiHeadAttention: forward_cached needs a causal module (without causal masking a new "
           "position would change the outputs of earlier ones)");
  RW_CHECK(x.defined() && x.dim() == 3 && x.size(2) == d_model_ && x.size(1) >= 1 &&
               is_floating(x.dtype()),
           "MultiHeadAttention: forward_cached expects floating x of shape [batch, length >= 1, "
           "{}], got {}",
           d_model_,
           x.defined() ? fmt::format("{} {}", x.dtype(), x.shape()) : std::string("undefined"));
  const int64_t B = x.size(0), T = x.size(1), start = cache.length, total = start + T;
  if (!cache.keys.defined()) {
    RW_CHECK(capacity >= T,
             "MultiHeadAttention: forward_cached capacity {} is below the {} "
             "positions of the first call",
             capacity, T);
    const TensorOptions opts = options_of(x);
    cache.keys = empty({B, n_heads_, capacity, d_head_}, opts);
    cache.values = empty({B, n_heads_, capacity, d_head_}, opts);
    cache.length = 0;
  }
  RW_CHECK(
      cache.keys.size(0) == B && cache.keys.dtype() == x.dtype() &&
          cache.keys.device() == x.device(),
      "MultiHeadAttention: forward_cached got x {} {} on {} but the cache holds batch {} of {} "
      "on {}",
      x.dtype(), x.shape(), x.device(), cache.keys.size(0), cache.keys.dtype(),
      cache.keys.device());
  RW_CHECK(total <= cache.keys.size(2),
           "MultiHeadAttention: forward_cached would hold {} positions, over its capacity {}",
           total, cache.keys.size(2));

  auto [q, k, v] = project(x);
  copy_(cache.keys.narrow(2, start, T), k);
  copy_(cache.values.narrow(2, start, T), v);
  cache.length = total;
  Tensor keys = cache.keys.narrow(2, 0, total), values = cache.values.narrow(2, 0, total);

  Tensor probs;
  if (start == 0) {
    // The first call is exactly forward()'s computation.
    probs = attention_weights(q, keys, {.causal = true, .mask_self = options_.shared_qk});
  } else {
    Tensor logits = mul(matmul(q, keys.mT()), 1.0 / std::sqrt(static_cast<double>(d_head_)));
    if (T > 1 || options_.shared_qk) {
      // Query i sits at position start + i: keys after it are hard-masked, its own is penalised.
      const TensorOptions i64{.dtype = DType::i64, .device = x.device()};
      Tensor qpos = add(arange(T, i64), start).reshape({T, 1});
      Tensor kpos = arange(total, i64).reshape({1, total});
      const AttentionPenalties penalty = attention_penalties(logits.dtype());
      Tensor soft = zeros({}, options_of(logits));
      if (options_.shared_qk)
        soft = where(eq(kpos, qpos), full({}, penalty.self, options_of(logits)), 0.0);
      logits = add(logits, where(le(kpos, qpos), soft, penalty.masked));
    }
    probs = softmax(logits, -1);
  }
  Tensor heads = matmul(probs, values);  // [B, n_heads, T, d_head]
  Tensor merged = heads.transpose(1, 2).reshape({B, T, n_heads_ * d_head_});
  return linear(merged, w_o, b_o);
}

}  // namespace rw::nn
