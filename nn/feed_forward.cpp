#include "nn/feed_forward.h"

#include <algorithm>
#include <any>
#include <atomic>
#include <functional>
#include <span>
#include <utility>
#include <vector>

#include "autograd/function.h"
#include "autograd/reversible.h"
#include "autograd/tape.h"
#include "core/ops.h"
#include "nn/dropout.h"

namespace rw::nn {
namespace {

// The parameters of one FeedForward, as plain tensors (module members, or leaves standing in for
// them during a chunk's recomputation). w3/b3 are undefined unless the activation is swiglu; the
// biases are undefined without bias.
struct Weights {
  Tensor w1, b1, w2, b2, w3, b3;
};

// The block on x; `drop` applies dropout to the hidden activations (or is the identity).
Tensor feed_forward(const Tensor& x, const Weights& w, Activation activation,
                    const std::function<Tensor(const Tensor&)>& drop) {
  Tensor hidden = activation == Activation::swiglu
                      ? mul(silu(linear(x, w.w1, w.b1)), linear(x, w.w3, w.b3))
                      : activate(linear(x, w.w1, w.b1), activation);
  return linear(drop(hidden), w.w2, w.b2);
}

Weights weights_of(const FeedForward& ff) {
  return {ff.w1->weight,
          ff.w1->bias,
          ff.w2->weight,
          ff.w2->bias,
          ff.w3 ? ff.w3->weight : Tensor(),
          ff.w3 ? ff.w3->bias : Tensor()};
}

// The order in which the chunked function takes its inputs: x, then the parameters.
std::vector<Tensor> as_inputs(const Tensor& x, const Weights& w) {
  return {x, w.w1, w.b1, w.w2, w.b2, w.w3, w.b3};
}
Weights weights_from(std::span<const Tensor> inputs) {
  return {inputs[1], inputs[2], inputs[3], inputs[4], inputs[5], inputs[6]};
}

// The parameter gradients of a chunked call, summed over its chunks (undefined until the first).
// w1_t and w3_t are the transposed gradients [d_model, d_ff].
struct ChunkGradients {
  Tensor w1_t, b1, w2, b2, w3_t, b3;
};

// A chunk's pre-activations kept by a reversible recomputation's forward for its backward.
struct KeptChunk {
  Tensor a, a3;
};
// Per chunk, in order; undefined entries were over the budget (or already used).
struct KeptChunks {
  std::vector<KeptChunk> chunks;
};

std::atomic<int64_t> hidden_computed{0}, hidden_reused{0};
void count_hidden_chunk(bool reused) {
  (reused ? hidden_reused : hidden_computed).fetch_add(1, std::memory_order_relaxed);
}

// Everything about one chunked call that forward and backward share.
struct ChunkPlan {
  Activation activation;
  double dropout_p;  // 0 when dropout is off for this call
  PhiloxState key;
  Shape hidden_shape;  // x's shape with d_ff last: the tensor the unchunked mask covers
  int64_t dim;         // the chunked dim, normalised
  int64_t chunk_size;

  int64_t length() const { return hidden_shape[static_cast<std::size_t>(dim)]; }

  // The block on the chunk of x starting at `start` along dim.
  Tensor run(const Tensor& x_chunk, const Weights& w, int64_t start) const {
    count_hidden_chunk(false);
    return feed_forward(x_chunk, w, activation, [&](const Tensor& h) {
      return dropout_p > 0 ? dropout_slice(h, dropout_p, key, hidden_shape, dim, start) : h;
    });
  }

  // The same as run(), keeping the pre-activations a = W1 x + b1 (and, for swiglu, a3 = W3 x + b3)
  // for backward_chunk.
  Tensor run_keeping(const Tensor& x_chunk, const Weights& w, int64_t start,
                     KeptChunk& kept) const {
    count_hidden_chunk(false);
    kept.a = linear(x_chunk, w.w1, w.b1);
    kept.a3 = w.w3.defined() ? linear(x_chunk, w.w3, w.b3) : Tensor();
    Tensor hidden = kept.a3.defined() ? mul(silu(kept.a), kept.a3) : activate(kept.a, activation);
    if (dropout_p > 0) hidden = dropout_slice(hidden, dropout_p, key, hidden_shape, dim, start);
    return linear(hidden, w.w2, w.b2);
  }

  // The backward of one chunk, written out: recomputes only the hidden pre-activations (not the
  // output projection, whose value the gradient does not need) unless `kept` holds them,
  // differentiates the activation and dropout on a small local tape, and adds the parameter
  // gradients into `acc`. Returns the chunk's input gradient (undefined unless need_dx).
  Tensor backward_chunk(const Tensor& x_chunk, const Weights& w, const Tensor& g_chunk,
                        int64_t start, bool need_dx, ChunkGradients& acc,
                        KeptChunk kept = {}) const {
    NoGradGuard no_grad;
    const int64_t d_model = x_chunk.size(-1);
    const int64_t d_ff = w.w1.size(0);
    const int64_t rows = x_chunk.numel() / std::max<int64_t>(d_model, 1);
    const DType dt = promote_types(x_chunk.dtype(), w.w1.dtype());
    Tensor x2 = x_chunk.to(dt).reshape({rows, d_model});
    Tensor g2 = g_chunk.to(dt).reshape({rows, d_model});
    const bool use_kept = kept.a.defined() && kept.a.dtype() == dt;
    if (use_kept) count_hidden_chunk(true);
    if (!use_kept) count_hidden_chunk(false);
    Tensor a = use_kept ? kept.a.reshape({rows, d_ff}) : linear(x2, w.w1, w.b1);
    kept.a = Tensor();
    Tensor a3 = !w.w3.defined() ? Tensor()
                : use_kept      ? kept.a3.reshape({rows, d_ff})
                                : linear(x2, w.w3, w.b3);
    kept.a3 = Tensor();
    // hidden = dropout(act(a)) (or dropout(silu(a) * a3)) on a local tape, differentiated below.
    Tensor hidden, da, da3;
    {
      TapeScope scope;
      Tensor a_leaf = a.detach().requires_grad_();
      Tensor a3_leaf = a3.defined() ? a3.detach().requires_grad_() : Tensor();
      Tensor h = a3.defined() ? mul(silu(a_leaf), a3_leaf) : activate(a_leaf, activation);
      if (dropout_p > 0) {
        Shape chunk_hidden = x_chunk.shape();
        chunk_hidden.back() = d_ff;
        h = dropout_slice(h.reshape(chunk_hidden), dropout_p, key, hidden_shape, dim, start)
                .reshape({rows, d_ff});
      }
      hidden = h.detach();
      // d hidden: the output gradient through the second projection.
      Tensor dh = matmul(g2, w.w2);
      std::vector<Tensor> wrt{a_leaf};
      if (a3_leaf.defined()) wrt.push_back(a3_leaf);
      std::vector<Tensor> d =
          rw::grad(std::span<const Tensor>(&h, 1), std::span<const Tensor>(&dh, 1), wrt);
      da = d[0];
      if (a3_leaf.defined()) da3 = d[1];
    }
    accumulate(acc.w2, matmul(g2.mT(), hidden));
    if (w.b2.defined()) accumulate(acc.b2, sum(g2, {0}));
    hidden = Tensor();
    // dW1 = da^T x as (x^T da)^T: oneDNN runs the product with the shorter output rows (d_model)
    // markedly faster (measured 10 vs 14 ms at 4096 x 1024 x 256); summed transposed, see below.
    accumulate(acc.w1_t, matmul(x2.mT(), da));
    if (w.b1.defined()) accumulate(acc.b1, sum(da, {0}));
    if (da3.defined()) {
      accumulate(acc.w3_t, matmul(x2.mT(), da3));
      if (w.b3.defined()) accumulate(acc.b3, sum(da3, {0}));
    }
    if (!need_dx) return Tensor();
    Tensor dx = matmul(da, w.w1);
    if (da3.defined()) add_(dx, matmul(da3, w.w3));
    return dx.reshape(x_chunk.shape()).to(x_chunk.dtype());
  }

  // sum += part (the first part becomes the sum: no zero-filled accumulator).
  static void accumulate(Tensor& sum, const Tensor& part) {
    if (sum.defined()) {
      add_(sum, part);
    } else {
      sum = part;
    }
  }
};

}  // namespace

ChunkedFeedForwardCounters chunked_feed_forward_counters() {
  return {.hidden_chunks_computed = hidden_computed.load(),
          .hidden_chunks_reused = hidden_reused.load()};
}

void reset_chunked_feed_forward_counters() {
  hidden_computed = 0;
  hidden_reused = 0;
}

FeedForward::FeedForward(int64_t d_model, int64_t d_ff, FeedForwardOptions options,
                         Generator& generator)
    : d_model_(d_model), d_ff_(d_ff), options_(options) {
  RW_CHECK(d_model > 0 && d_ff > 0, "FeedForward: d_model and d_ff must be > 0, got {} and {}",
           d_model, d_ff);
  RW_CHECK(options.dropout >= 0 && options.dropout < 1,
           "FeedForward: dropout must be in [0, 1), got {}", options.dropout);
  w1 = register_module("w1", std::make_shared<Linear>(d_model, d_ff, options.bias, generator));
  w2 = register_module("w2", std::make_shared<Linear>(d_ff, d_model, options.bias, generator));
  if (options.activation == Activation::swiglu) {
    w3 = register_module("w3", std::make_shared<Linear>(d_model, d_ff, options.bias, generator));
  }
}

void FeedForward::check_input(const Tensor& x) const {
  RW_CHECK(x.defined(), "{}: the input is undefined", type_name());
  RW_CHECK(x.dim() >= 1 && x.size(-1) == d_model_,
           "{}: expected input [..., {}] (d_model), got shape {}", type_name(), d_model_,
           x.shape());
}

Tensor FeedForward::forward(const Tensor& x) {
  check_input(x);
  PhiloxState key{};
  if (dropout_active()) key = current_generator().next(x.numel() / d_model_ * d_ff_);
  return forward(x, key);
}

Tensor FeedForward::forward(const Tensor& x, PhiloxState dropout_key) {
  check_input(x);
  const Weights w = weights_of(*this);
  const double p = dropout_active() ? options().dropout : 0;
  return feed_forward(x, w, options().activation, [&](const Tensor& h) {
    // rw::dropout regenerates its mask in backward instead of keeping it.
    return p > 0 ? dropout(h, p, dropout_key) : h;
  });
}

ChunkedFeedForward::ChunkedFeedForward(int64_t d_model, int64_t d_ff, FeedForwardOptions options,
                                       FeedForwardChunking chunking, Generator& generator)
    : FeedForward(d_model, d_ff, options, generator), chunking_(chunking) {
  RW_CHECK(chunking.chunk_size > 0, "ChunkedFeedForward: chunk_size must be > 0, got {}",
           chunking.chunk_size);
}

Tensor ChunkedFeedForward::forward(const Tensor& x, PhiloxState dropout_key) {
  check_input(x);
  const int64_t rank = x.dim();
  const int64_t dim = chunking_.chunk_dim < 0 ? chunking_.chunk_dim + rank : chunking_.chunk_dim;
  RW_CHECK(dim >= 0 && dim < rank - 1,
           "ChunkedFeedForward: chunk_dim {} must be a dim of x other than the feature dim (x "
           "has shape {})",
           chunking_.chunk_dim, x.shape());
  const int64_t length = x.size(dim);
  // One chunk: the plain block computes the same thing without the recomputation.
  if (length <= chunking_.chunk_size) return FeedForward::forward(x, dropout_key);

  Shape hidden_shape = x.shape();
  hidden_shape.back() = d_ff();
  // A reversible recomputation is differentiated right after it: keep the pre-activations (up to
  // kKeptHiddenElements) so its backward does not compute them a second time.
  const Weights weights = weights_of(*this);
  const bool keep = recomputing_for_backward() && grad_mode_enabled() &&
                    needs_grad(std::span<const Tensor>(as_inputs(x, weights))) &&
                    x.dtype() == weights.w1.dtype();
  const ChunkPlan plan{.activation = options().activation,
                       .dropout_p = dropout_active() ? options().dropout : 0,
                       .key = dropout_key,
                       .hidden_shape = std::move(hidden_shape),
                       .dim = dim,
                       .chunk_size = chunking_.chunk_size};

  const CustomFunction fn{
      .name = "chunked_feed_forward",
      // Runs without recording (CustomFunction::apply turns grad mode off): each chunk's
      // activations die before the next chunk starts; only x, the parameters and y stay.
      .forward =
          [plan, keep](FunctionContext& ctx, std::span<const Tensor> in) {
            ctx.save_for_backward(std::vector<Tensor>(in.begin(), in.end()));
            const Tensor& x = in[0];
            const Weights w = weights_from(in);
            auto kept = keep ? std::make_shared<KeptChunks>() : nullptr;
            int64_t kept_elements = 0;
            Tensor y;
            for (int64_t start = 0; start < plan.length(); start += plan.chunk_size) {
              const int64_t n = std::min(plan.chunk_size, plan.length() - start);
              const Tensor x_chunk = x.narrow(plan.dim, start, n);
              const int64_t hidden_elements =
                  x_chunk.numel() / x.size(-1) * w.w1.size(0) * (w.w3.defined() ? 2 : 1);
              Tensor y_chunk;
              if (kept && kept_elements + hidden_elements <= kKeptHiddenElements) {
                kept_elements += hidden_elements;
                kept->chunks.emplace_back();
                y_chunk = plan.run_keeping(x_chunk, w, start, kept->chunks.back());
              } else {
                if (kept) kept->chunks.emplace_back();
                y_chunk = plan.run(x_chunk, w, start);
              }
              if (!y.defined()) {
                Shape y_shape = y_chunk.shape();
                y_shape[static_cast<std::size_t>(plan.dim)] = plan.length();
                y = empty(y_shape, options_of(y_chunk));
              }
              copy_(y.narrow(plan.dim, start, n), y_chunk);
            }
            if (kept) ctx.state = kept;
            return std::vector<Tensor>{y};
          },
      .backward =
          [plan](FunctionContext& ctx, std::span<const Tensor> grad) {
            const std::vector<Tensor> saved = ctx.saved_tensors();
            const Tensor& x = saved[0];
            const Weights w = weights_from(saved);
            ChunkGradients acc;
            Tensor dx = ctx.needs_input_grad(0) ? empty(x.shape(), options_of(x)) : Tensor();
            auto* kept = ctx.state.has_value()
                             ? std::any_cast<std::shared_ptr<KeptChunks>&>(ctx.state).get()
                             : nullptr;
            std::size_t chunk = 0;
            for (int64_t start = 0; start < plan.length(); start += plan.chunk_size, ++chunk) {
              const int64_t n = std::min(plan.chunk_size, plan.length() - start);
              // Taken, not copied: each chunk's memory goes as soon as it is used (and a second
              // backward recomputes).
              KeptChunk kept_chunk;
              if (kept != nullptr && chunk < kept->chunks.size()) {
                kept_chunk = std::exchange(kept->chunks[chunk], KeptChunk{});
              }
              Tensor dx_chunk = plan.backward_chunk(x.narrow(plan.dim, start, n), w,
                                                    grad[0].narrow(plan.dim, start, n), start,
                                                    dx.defined(), acc, std::move(kept_chunk));
              if (dx.defined()) copy_(dx.narrow(plan.dim, start, n), dx_chunk);
            }
            // Only the gradients asked for (the accumulators hold all of them).
            auto untranspose = [](const Tensor& t) {
              return t.defined() ? t.mT().contiguous() : Tensor();
            };
            const Tensor sums[] = {untranspose(acc.w1_t), acc.b1, acc.w2, acc.b2,
                                   untranspose(acc.w3_t), acc.b3};
            std::vector<Tensor> grads(saved.size());
            grads[0] = dx;
            for (std::size_t i = 1; i < saved.size(); ++i) {
              if (saved[i].defined() && ctx.needs_input_grad(i)) {
                grads[i] = sums[i - 1].to(saved[i].dtype());
              }
            }
            return grads;
          },
  };
  return fn.apply1(as_inputs(x, weights));
}

}  // namespace rw::nn
