// `rewind-bench memory`: peak memory (the allocator's counter) and time of one forward + backward
// of a stack of pre-norm (attention, feed-forward) blocks against depth, for the reversible stack
// against the plain residual stack and for chunked against unchunked feed-forward: the Reformer's
// claims that reversibility removes the depth factor and chunking the d_ff factor (Table 3).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>

#include <fmt/format.h>

#include "autograd/tape.h"
#include "core/allocator.h"
#include "core/ops.h"
#include "nn/attention.h"
#include "nn/containers.h"
#include "nn/feed_forward.h"
#include "nn/layer_norm.h"
#include "nn/reversible_stack.h"
#include "registry.h"

namespace rw::bench {
namespace {

struct MemoryOptions {
  std::vector<int64_t> depths = {1, 2, 4, 8, 12};
  int64_t length = 1024;
  int64_t batch = 1;
  int64_t d_model = 256;
  int64_t heads = 4;
  int64_t d_ff = 4096;
  int64_t ff_chunk = 128;  // positions per feed-forward chunk in the chunked rows
  int64_t reps = 1;        // timed runs per row (the best counts); memory is the same every run
};

struct Config {
  bool reversible;
  bool chunked_ff;
};

struct Measurement {
  int64_t peak = 0;    // bytes above what was live before (parameters, input)
  int64_t params = 0;  // parameter bytes (their gradients are as large)
  double seconds = 0;
};

std::shared_ptr<nn::ReversibleStack> make_stack(int64_t depth, const MemoryOptions& o,
                                                const Config& c) {
  Generator gen(1);
  auto stack = std::make_shared<nn::ReversibleStack>(c.reversible);
  for (int64_t i = 0; i < depth; ++i) {
    auto f = std::make_shared<nn::Sequential>(
        std::make_shared<nn::LayerNorm>(o.d_model),
        std::make_shared<nn::MultiHeadAttention>(
            o.d_model, o.heads, nn::MultiHeadAttentionOptions{.causal = true, .shared_qk = true},
            gen));
    std::shared_ptr<nn::Module> ff;
    if (c.chunked_ff) {
      ff = std::make_shared<nn::ChunkedFeedForward>(
          o.d_model, o.d_ff, nn::FeedForwardOptions{},
          nn::FeedForwardChunking{.chunk_size = o.ff_chunk}, gen);
    } else {
      ff = std::make_shared<nn::FeedForward>(o.d_model, o.d_ff, nn::FeedForwardOptions{}, gen);
    }
    stack->push_back(
        f, std::make_shared<nn::Sequential>(std::make_shared<nn::LayerNorm>(o.d_model), ff));
  }
  return stack;
}

Measurement measure(int64_t depth, const MemoryOptions& o, const Config& c) {
  auto stack = make_stack(depth, o, c);
  Generator data(2);
  Tensor x = randn({o.batch, o.length, o.d_model}, data).requires_grad_();
  Measurement m;
  for (const Tensor& p : stack->parameters()) m.params += static_cast<int64_t>(p.nbytes());
  m.seconds = 1e300;
  for (int64_t rep = 0; rep < o.reps; ++rep) {
    stack->zero_grad();
    x.zero_grad();
    current_tape().sweep();
    const int64_t before = memory_stats().allocated_bytes;
    reset_peak_memory();
    const auto t0 = std::chrono::steady_clock::now();
    {
      Tensor y = stack->forward(x);
      backward(sum(y));
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    m.seconds = std::min(m.seconds, s);
    m.peak = memory_stats().peak_allocated_bytes - before;
  }
  return m;
}

std::string mb(int64_t bytes) { return fmt::format("{:.1f}", static_cast<double>(bytes) / 1e6); }

Table depth_table(const MemoryOptions& o) {
  Table t;
  t.title = fmt::format(
      "Peak memory and time of forward + backward against depth (L = {}, batch {}, d_model {}, {} "
      "heads, d_ff {}, f32)",
      o.length, o.batch, o.d_model, o.heads, o.d_ff);
  t.columns = {"depth",          "residual",  "feed-forward", "peak_MB",
               "activations_MB", "params_MB", "fwd_bwd_s"};
  const Config configs[] = {{false, false}, {false, true}, {true, false}, {true, true}};
  for (const Config& c : configs) {
    for (int64_t depth : o.depths) {
      std::fprintf(stderr, "memory: depth %ld, %s, %s feed-forward\n", static_cast<long>(depth),
                   c.reversible ? "reversible" : "plain", c.chunked_ff ? "chunked" : "unchunked");
      const Measurement m = measure(depth, o, c);
      t.rows.push_back({std::to_string(depth), c.reversible ? "reversible" : "plain",
                        c.chunked_ff ? fmt::format("chunked ({})", o.ff_chunk) : "unchunked",
                        mb(m.peak), mb(m.peak - m.params), mb(m.params),
                        fmt::format("{:.3f}", m.seconds)});
    }
  }
  t.notes = {
      "peak_MB: the allocator's peak during one forward + backward, above what was live before "
      "(the parameters and the input).",
      "activations_MB: peak_MB minus the parameters' gradients (as large as the parameters), "
      "which any training step must hold: what is left grows with depth only in the plain stack.",
      "Blocks: F = attention(layer_norm(x)) (causal, shared-QK, full L x L), G = "
      "feed_forward(layer_norm(x)); the input is duplicated into both halves and the halves "
      "averaged at the end.",
      fmt::format("fwd_bwd_s: best of {} run(s).", o.reps)};
  return t;
}

RunFn setup(CLI::App& cmd) {
  auto opt = std::make_shared<MemoryOptions>();
  cmd.add_option("--depths", opt->depths, "numbers of blocks")
      ->delimiter(',')
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--length", opt->length, "sequence length")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--batch", opt->batch, "sequences per batch")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--d-model", opt->d_model, "model width")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--heads", opt->heads, "attention heads (must divide d_model)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--d-ff", opt->d_ff, "feed-forward width")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--ff-chunk", opt->ff_chunk, "positions per chunk of the chunked feed-forward")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--reps", opt->reps, "timed runs per row (the best counts)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  return [opt] { return std::vector<Table>{depth_table(*opt)}; };
}

const bool registered = register_subcommand(
    {"memory",
     "peak memory and time against depth: reversible vs plain residual, chunked vs unchunked "
     "feed-forward",
     setup});

}  // namespace
}  // namespace rw::bench
