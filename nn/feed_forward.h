#pragma once
// The position-wise feed-forward block of a Transformer, plain and chunked.
//
//   FeedForward:        y = W2 dropout(act(W1 x))            (act: relu, gelu, gelu_tanh, silu)
//                       y = W2 dropout(silu(W1 x) * (W3 x))  (swiglu)
//
//   auto ff = std::make_shared<rw::nn::FeedForward>(
//       512, 2048, rw::nn::FeedForwardOptions{.activation = rw::nn::Activation::gelu, .dropout =
//       0.1});
//   auto chunked = std::make_shared<rw::nn::ChunkedFeedForward>(
//       512, 2048, rw::nn::FeedForwardOptions{.dropout = 0.1},
//       rw::nn::FeedForwardChunking{.chunk_size = 128});
//
// ChunkedFeedForward is the Reformer's chunked feed-forward (Kitaev et al. 2020, Sec. 3): the block
// is position-wise, so it can run on chunk_size positions at a time and only one chunk's d_ff
// activations ever exist, in forward and in backward. It has FeedForward's parameters under the
// same names (a state_dict loads into either) and computes the same function: the same outputs,
// and the same gradients up to the order of the sums over chunks, dropout included.
#include <cstdint>
#include <memory>
#include <string>

#include "core/generator_scope.h"
#include "core/philox.h"
#include "core/tensor.h"
#include "nn/activations.h"
#include "nn/linear.h"
#include "nn/module.h"

namespace rw::nn {

struct FeedForwardOptions {
  Activation activation = Activation::gelu;
  double dropout = 0;  // on the d_ff hidden activations, in training mode only
  bool bias = true;    // a bias on every projection
};

class FeedForward : public Module {
 public:
  // Child Linear modules w1 [d_ff, d_model], w2 [d_model, d_ff] and, for swiglu, w3 [d_ff,
  // d_model], each with Linear's default initialisation, drawn from `generator` in that order.
  FeedForward(int64_t d_model, int64_t d_ff, FeedForwardOptions options = {},
              Generator& generator = current_generator());

  std::string type_name() const override { return "FeedForward"; }
  // x [..., d_model] -> [..., d_model]. In training with dropout > 0, the dropout key is
  // current_generator().next(numel of the hidden activations [..., d_ff]).
  Tensor forward(const Tensor& x) override;
  // With an explicit dropout key (unused in eval mode or with dropout = 0): the mask is that of
  // rw::dropout(hidden, p, dropout_key).
  virtual Tensor forward(const Tensor& x, PhiloxState dropout_key);

  int64_t d_model() const { return d_model_; }
  int64_t d_ff() const { return d_ff_; }
  const FeedForwardOptions& options() const { return options_; }

  std::shared_ptr<Linear> w1;  // d_model -> d_ff
  std::shared_ptr<Linear> w2;  // d_ff -> d_model
  std::shared_ptr<Linear> w3;  // d_model -> d_ff, the swiglu gate; null for other activations

 protected:
  // Checks x [..., d_model]; the message names type_name().
  void check_input(const Tensor& x) const;
  // Whether dropout applies to this call (training mode and p > 0).
  bool dropout_active() const { return is_training() && options_.dropout > 0; }

 private:
  int64_t d_model_;
  int64_t d_ff_;
  FeedForwardOptions options_;
};

struct FeedForwardChunking {
  int64_t chunk_size = 64;  // positions per chunk (the last chunk may be shorter)
  int64_t chunk_dim = -2;   // the sequence dim of x (default: [..., L, d_model])
};

// The most pre-activation elements (summed over chunks, [positions, d_ff], twice that for swiglu)
// a chunked call keeps from a reversible recomputation's forward for its backward
// (rw::recomputing_for_backward()): 2^25 is 128 MiB of f32; chunks beyond it recompute them.
inline constexpr int64_t kKeptHiddenElements = int64_t{1} << 25;

// How many chunks' pre-activations (W1 x) ChunkedFeedForward computed, and how many of its
// backward chunks took them from what a reversible recomputation kept, on all threads since the
// last reset (for the benchmarks and the tests of that saving).
struct ChunkedFeedForwardCounters {
  int64_t hidden_chunks_computed = 0;
  int64_t hidden_chunks_reused = 0;
};
ChunkedFeedForwardCounters chunked_feed_forward_counters();
void reset_chunked_feed_forward_counters();

class ChunkedFeedForward : public FeedForward {
 public:
  // Draws the same parameters as FeedForward(d_model, d_ff, options, generator).
  ChunkedFeedForward(int64_t d_model, int64_t d_ff, FeedForwardOptions options,
                     FeedForwardChunking chunking, Generator& generator = current_generator());

  std::string type_name() const override { return "ChunkedFeedForward"; }
  using FeedForward::forward;
  // One recorded node whose forward runs the block chunk by chunk without recording (keeping only
  // the output) and whose backward recomputes each chunk on a local tape, backpropagates that
  // chunk's output gradient, and accumulates the input-gradient slice and the parameter gradients.
  // Each chunk's dropout mask is its slice of the mask FeedForward draws from the same key
  // (nn::dropout_slice), so the recomputation drops exactly what forward dropped. Inside a
  // reversible recomputation (rw::recomputing_for_backward()) forward keeps each chunk's
  // pre-activations (up to kKeptHiddenElements) and backward uses them instead of recomputing.
  Tensor forward(const Tensor& x, PhiloxState dropout_key) override;

  const FeedForwardChunking& chunking() const { return chunking_; }

 private:
  FeedForwardChunking chunking_;
};

}  // namespace rw::nn
