#include "models/reformer/decode_cache.h"

#include <tuple>
#include <utility>

#include "autograd/reversible.h"
#include "autograd/tape.h"
#include "core/generator_scope.h"
#include "core/ops.h"
#include "models/reformer/lsh_self_attention.h"
#include "nn/positions.h"

namespace rw::reformer {
namespace {

constexpr const char* kOp = "IncrementalDecoder";

bool limited_positions(const ReformerConfig& c) {
  return c.positions == PositionKind::axial || c.positions == PositionKind::learned;
}

// x [B, T, d] plus the embeddings of positions start .. start + T - 1.
Tensor add_positions(nn::Module* positions, const Tensor& x, int64_t start) {
  if (positions == nullptr) return x;
  if (auto* axial = dynamic_cast<nn::AxialPositionalEmbedding*>(positions)) {
    return axial->forward(x, start);
  }
  if (auto* learned = dynamic_cast<nn::LearnedPositionalEmbedding*>(positions)) {
    return learned->forward(x, start);
  }
  if (auto* sinusoidal = dynamic_cast<nn::SinusoidalPositionalEmbedding*>(positions)) {
    return sinusoidal->forward(x, start);
  }
  throw Error(fmt::format("{}: unknown position module {}", kOp, positions->type_name()));
}

}  // namespace

DecodePlan cache_plan(const ReformerConfig& config) {
  const int64_t n = config.n_layers;
  if (!config.causal) return {.cached_layers = 0, .recomputed_layers = n};
  int64_t first_lsh = n;
  for (int64_t i = 0; i < n; ++i) {
    if (config.attention_of(i) == AttentionKind::lsh) {
      first_lsh = i;
      break;
    }
  }
  // The first LSH layer is exact from its cache only when nothing after it needs the earlier
  // positions' outputs (decode_cache.h).
  if (first_lsh >= n - 1) return {.cached_layers = n, .recomputed_layers = 0};
  return {.cached_layers = first_lsh, .recomputed_layers = n - first_lsh};
}

IncrementalDecoder::IncrementalDecoder(ReformerLM& model, DecoderOptions options)
    : model_(model), options_(options), plan_(cache_plan(model.config())) {
  const ReformerConfig& c = model.config();
  RW_CHECK(options.capacity > 0, "{}: capacity must be positive, got {}", kOp, options.capacity);
  RW_CHECK(!limited_positions(c) || options.capacity <= c.max_len,
           "{}: capacity {} exceeds max_len {} of the {} positions", kOp, options.capacity,
           c.max_len, to_string(c.positions));
  RW_CHECK(!model.is_training(),
           "{}: the model must be in evaluation mode (call eval(); generate() does): dropout would "
           "make every step's recomputation differ",
           kOp);
  Generator root;
  root.set_state(options.rng);
  for (int64_t i = 0; i < c.n_layers; ++i) {
    f_rng_.push_back(root.fork().state());  // reversible_stack's order: F_i, then G_i
    g_rng_.push_back(root.fork().state());
  }
  caches_.resize(static_cast<std::size_t>(c.n_layers));
  for (int64_t i = 0; i < c.n_layers; ++i) {
    if (c.attention_of(i) != AttentionKind::lsh) continue;
    auto& attention = static_cast<LSHSelfAttention&>(*model.layer(i).attention);
    if (attention.options().lsh.n_buckets != 0 || attention.n_buckets_override()) continue;
    overridden_.emplace_back(i, attention.n_buckets_override());
    attention.set_n_buckets_override(default_n_buckets(options.capacity, c.chunk_len));
  }
}

IncrementalDecoder::~IncrementalDecoder() {
  for (auto& [i, previous] : overridden_) {
    static_cast<LSHSelfAttention&>(*model_.layer(i).attention).set_n_buckets_override(previous);
  }
}

Tensor IncrementalDecoder::feed(const Tensor& tokens) {
  RW_CHECK(tokens.defined() && tokens.dim() == 2 && tokens.size(1) >= 1 &&
               (tokens.dtype() == DType::i64 || tokens.dtype() == DType::i32),
           "{}: expected i64 or i32 tokens [batch, length >= 1], got {}", kOp,
           tokens.defined() ? fmt::format("{} {}", tokens.dtype(), tokens.shape())
                            : std::string("undefined"));
  RW_CHECK(length_ + tokens.size(1) <= options_.capacity,
           "{}: {} more positions after {} exceed the capacity {}", kOp, tokens.size(1), length_,
           options_.capacity);
  RW_CHECK(!model_.is_training(), "{}: the model was put back into training mode", kOp);
  NoGradGuard no_grad;
  return options_.use_cache ? feed_cached(tokens) : feed_uncached(tokens);
}

Tensor IncrementalDecoder::feed_uncached(const Tensor& tokens) {
  const int64_t B = tokens.size(0), T = tokens.size(1);
  if (!tokens_.defined()) {
    tokens_ = zeros({B, options_.capacity}, {.dtype = DType::i64, .device = tokens.device()});
  }
  RW_CHECK(B == tokens_.size(0), "{}: the batch is {} but this call has {} sequences", kOp,
           tokens_.size(0), B);
  copy_(tokens_.narrow(1, length_, T), tokens);
  length_ += T;
  Generator generator;
  generator.set_state(options_.rng);
  GeneratorScope scope(generator);
  Tensor h = model_.hidden(tokens_.narrow(1, 0, length_).contiguous());
  return model_.logits(h.narrow(1, length_ - 1, 1)).select(1, 0);
}

std::pair<Tensor, Tensor> IncrementalDecoder::run_layer(int64_t i, const Tensor& x1,
                                                        const Tensor& x2, bool cached) {
  auto layer = model_.layers->get<ReformerLayer>(static_cast<std::size_t>(i));
  LayerCache& cache = caches_[static_cast<std::size_t>(i)];
  Tensor fx;
  {
    Generator generator;
    generator.set_state(f_rng_[static_cast<std::size_t>(i)]);
    GeneratorScope scope(generator);
    if (!cached) {
      fx = layer->attention_block(x2, Tensor());
    } else {
      Tensor h = layer->attention_norm->forward(x2);
      switch (layer->kind()) {
        case AttentionKind::full:
          fx = static_cast<nn::MultiHeadAttention&>(*layer->attention)
                   .forward_cached(h, cache.full, options_.capacity);
          break;
        case AttentionKind::local:
          fx = static_cast<LocalSelfAttention&>(*layer->attention).forward_cached(h, cache.local);
          break;
        case AttentionKind::lsh:
          fx = static_cast<LSHSelfAttention&>(*layer->attention)
                   .forward_cached(h, cache.lsh, options_.capacity);
          break;
      }
    }
  }
  Tensor y1 = add(x1, fx);
  Tensor gy;
  {
    Generator generator;
    generator.set_state(g_rng_[static_cast<std::size_t>(i)]);
    GeneratorScope scope(generator);
    gy = layer->feed_forward_block(y1);
  }
  if (model_.config().standard_residual) {
    // One stream (x1 == x2 == x): x + F(x) + G(x + F(x)) continues in both halves, and their
    // mean at the end is that stream.
    Tensor y = add(y1, gy);
    return {y, y};
  }
  return {y1, add(x2, gy)};
}

Tensor IncrementalDecoder::feed_cached(const Tensor& tokens) {
  const int64_t B = tokens.size(0), T = tokens.size(1);
  RW_CHECK(length_ == 0 || T == 1,
           "{}: after the prompt, the cached decoder takes one position at a time, got tokens of "
           "shape {}",
           kOp, tokens.shape());
  RW_CHECK(length_ == 0 || B == batch_, "{}: the batch is {} but this call has {} sequences", kOp,
           batch_, B);
  batch_ = B;
  Tensor x = model_.embedding->forward(tokens);
  x = add_positions(model_.positions.get(), x, length_);
  Tensor x1 = x, x2 = x;
  for (int64_t i = 0; i < plan_.cached_layers; ++i) {
    std::tie(x1, x2) = run_layer(i, x1, x2, /*cached=*/true);
  }
  const int64_t total = length_ + T;
  if (plan_.recomputed_layers > 0) {
    // The stream entering the first recomputed layer is prefix-stable: keep it, and run the
    // remaining layers over the whole sequence.
    if (!stream1_.defined()) {
      stream1_ = empty({B, options_.capacity, x1.size(2)}, options_of(x1));
      stream2_ = empty({B, options_.capacity, x2.size(2)}, options_of(x2));
    }
    copy_(stream1_.narrow(1, length_, T), x1);
    copy_(stream2_.narrow(1, length_, T), x2);
    x1 = stream1_.narrow(1, 0, total);
    x2 = stream2_.narrow(1, 0, total);
    for (int64_t i = plan_.cached_layers; i < model_.config().n_layers; ++i) {
      std::tie(x1, x2) = run_layer(i, x1, x2, /*cached=*/false);
    }
  }
  length_ = total;
  const int64_t last = x1.size(1) - 1;
  Tensor h = model_.final_norm->forward(join_mean(x1.narrow(1, last, 1), x2.narrow(1, last, 1)));
  return model_.logits(h).select(1, 0);
}

}  // namespace rw::reformer
