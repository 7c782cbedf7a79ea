#include "models/reformer/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "autograd/tape.h"
#include "core/ops.h"
#include "models/reformer/decode_cache.h"

namespace rw::reformer {
namespace {

constexpr const char* kOp = "generate";

// One row's kept tokens, most likely first, with their (renormalised) probabilities.
struct Distribution {
  std::vector<int64_t> tokens;
  std::vector<double> probs;
};

Distribution distribution_of(const double* logits, int64_t V, const SamplingOptions& o) {
  for (int64_t v = 0; v < V; ++v) {
    RW_CHECK(!std::isnan(logits[v]), "{}: the model produced a NaN logit (token {})", kOp, v);
  }
  std::vector<int64_t> order(static_cast<std::size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  // Decreasing logit, ties by id: the first entry is the greedy choice.
  std::stable_sort(order.begin(), order.end(),
                   [logits](int64_t a, int64_t b) { return logits[a] > logits[b]; });
  Distribution d;
  if (o.temperature == 0) {
    d.tokens = {order[0]};
    d.probs = {1.0};
    return d;
  }
  const int64_t kept = o.top_k > 0 ? std::min(o.top_k, V) : V;
  order.resize(static_cast<std::size_t>(kept));
  // Softmax of logits / temperature over the kept tokens (shifted by the largest).
  std::vector<double> probs(order.size());
  const double top = logits[order[0]] / o.temperature;
  double total = 0;
  for (std::size_t i = 0; i < order.size(); ++i) {
    probs[i] = std::exp(logits[order[i]] / o.temperature - top);
    total += probs[i];
  }
  for (double& p : probs) p /= total;
  std::size_t nucleus = probs.size();
  if (o.top_p < 1) {
    double mass = 0;
    for (std::size_t i = 0; i < probs.size(); ++i) {
      mass += probs[i];
      if (mass >= o.top_p) {
        nucleus = i + 1;
        break;
      }
    }
  }
  order.resize(nucleus);
  probs.resize(nucleus);
  const double kept_mass = std::accumulate(probs.begin(), probs.end(), 0.0);
  for (double& p : probs) p /= kept_mass;
  d.tokens = std::move(order);
  d.probs = std::move(probs);
  return d;
}

// logits [B, V] as host doubles.
std::vector<double> host_logits(const Tensor& logits) {
  RW_CHECK(
      logits.defined() && logits.dim() == 2 && logits.size(1) >= 1 && is_floating(logits.dtype()),
      "{}: expected floating logits [batch, vocab], got {}", kOp,
      logits.defined() ? fmt::format("{} {}", logits.dtype(), logits.shape())
                       : std::string("undefined"));
  return logits.to(Device::cpu()).to(DType::f64).contiguous().to_vector<double>();
}

// Restores every submodule's training mode (parents first, so a child's own mode wins).
class ModeGuard {
 public:
  explicit ModeGuard(nn::Module& model) {
    for (auto& [name, module] : model.named_modules())
      modes_.emplace_back(module, module->is_training());
    model.eval();
  }
  ~ModeGuard() {
    for (auto& [module, training] : modes_) module->train(training);
  }
  ModeGuard(const ModeGuard&) = delete;
  ModeGuard& operator=(const ModeGuard&) = delete;

 private:
  std::vector<std::pair<nn::Module*, bool>> modes_;
};

void check_prompt(const ReformerLM& model, const Tensor& prompt, const GenerateOptions& o) {
  const ReformerConfig& c = model.config();
  RW_CHECK(prompt.defined(), "{}: the prompt is undefined", kOp);
  RW_CHECK(prompt.dim() == 2,
           "{}: the prompt must be tokens [batch, length] (a single sequence as [1, length]), got "
           "shape {}",
           kOp, prompt.shape());
  RW_CHECK(prompt.dtype() == DType::i64 || prompt.dtype() == DType::i32,
           "{}: the prompt must be i64 or i32 tokens, got {}", kOp, prompt.dtype());
  RW_CHECK(prompt.size(0) >= 1 && prompt.size(1) >= 1,
           "{}: the prompt is empty (shape {}): give at least one token per sequence", kOp,
           prompt.shape());
  const auto lo = min(prompt).item<int64_t>(), hi = max(prompt).item<int64_t>();
  RW_CHECK(lo >= 0 && hi < c.vocab_size,
           "{}: prompt tokens must lie in [0, {}) (vocab_size), got values in [{}, {}]", kOp,
           c.vocab_size, lo, hi);
  if (c.positions == PositionKind::axial || c.positions == PositionKind::learned) {
    const int64_t P = prompt.size(1);
    RW_CHECK(P <= c.max_len, "{}: the prompt length {} exceeds max_len {} of the {} positions", kOp,
             P, c.max_len, to_string(c.positions));
    RW_CHECK(P + o.max_new_tokens <= c.max_len,
             "{}: the prompt length {} plus max_new_tokens {} exceeds max_len {} of the {} "
             "positions",
             kOp, P, o.max_new_tokens, c.max_len, to_string(c.positions));
  }
}

}  // namespace

void validate(const SamplingOptions& o) {
  RW_CHECK(std::isfinite(o.temperature) && o.temperature >= 0,
           "{}: temperature must be finite and >= 0 (0 = greedy), got {}", kOp, o.temperature);
  RW_CHECK(o.top_k >= 0, "{}: top_k must be >= 0 (0 = off), got {}", kOp, o.top_k);
  RW_CHECK(o.top_p > 0 && o.top_p <= 1, "{}: top_p must be in (0, 1] (1 = off), got {}", kOp,
           o.top_p);
}

Tensor sampling_probabilities(const Tensor& logits, const SamplingOptions& options) {
  validate(options);
  const std::vector<double> host = host_logits(logits);
  const int64_t B = logits.size(0), V = logits.size(1);
  std::vector<double> out(static_cast<std::size_t>(B * V), 0.0);
  for (int64_t b = 0; b < B; ++b) {
    const Distribution d = distribution_of(host.data() + b * V, V, options);
    for (std::size_t i = 0; i < d.tokens.size(); ++i) {
      out[static_cast<std::size_t>(b * V + d.tokens[i])] = d.probs[i];
    }
  }
  return from_vector(out, Shape{B, V});
}

Tensor sample_next_tokens(const Tensor& logits, const SamplingOptions& options,
                          Generator& generator) {
  validate(options);
  const std::vector<double> host = host_logits(logits);
  const int64_t B = logits.size(0), V = logits.size(1);
  const std::vector<double> u = rand({B}, generator, {.dtype = DType::f64}).to_vector<double>();
  std::vector<int64_t> tokens(static_cast<std::size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    const Distribution d = distribution_of(host.data() + b * V, V, options);
    // Inverse CDF; the last kept token takes whatever round-off leaves above the sum.
    std::size_t i = 0;
    for (double mass = d.probs[0];
         i + 1 < d.tokens.size() && u[static_cast<std::size_t>(b)] >= mass;) {
      mass += d.probs[++i];
    }
    tokens[static_cast<std::size_t>(b)] = d.tokens[i];
  }
  return from_vector(tokens);
}

Tensor generate(ReformerLM& model, const Tensor& prompt, const GenerateOptions& o) {
  RW_CHECK(o.max_new_tokens >= 0, "{}: max_new_tokens must be >= 0, got {}", kOp, o.max_new_tokens);
  const SamplingOptions sampling{.temperature = o.temperature, .top_k = o.top_k, .top_p = o.top_p};
  validate(sampling);
  const int64_t V = model.config().vocab_size;
  RW_CHECK(!o.stop_token || (*o.stop_token >= 0 && *o.stop_token < V),
           "{}: stop_token must lie in [0, {}) (vocab_size), got {}", kOp, V,
           o.stop_token.value_or(0));
  check_prompt(model, prompt, o);
  Tensor tokens = prompt.to(DType::i64);
  if (o.max_new_tokens == 0) return tokens.clone();

  ModeGuard mode(model);
  NoGradGuard no_grad;
  const int64_t B = prompt.size(0), P = prompt.size(1);
  Generator sampler(o.seed, /*stream=*/0);
  IncrementalDecoder decoder(model, {.capacity = P + o.max_new_tokens,
                                     .use_cache = o.use_cache,
                                     .rng = Generator(o.seed, /*stream=*/1).state()});
  std::vector<Tensor> pieces{tokens};
  std::vector<bool> stopped(static_cast<std::size_t>(B), false);
  Tensor logits = decoder.feed(tokens);
  for (int64_t step = 0; step < o.max_new_tokens; ++step) {
    std::vector<int64_t> next = sample_next_tokens(logits, sampling, sampler).to_vector<int64_t>();
    bool all_stopped = o.stop_token.has_value();
    for (int64_t b = 0; b < B; ++b) {
      if (!o.stop_token) break;
      auto i = static_cast<std::size_t>(b);
      if (stopped[i]) next[i] = *o.stop_token;
      stopped[i] = stopped[i] || next[i] == *o.stop_token;
      all_stopped = all_stopped && stopped[i];
    }
    Tensor column = from_vector(next, Shape{B, 1}).to(prompt.device());
    pieces.push_back(column);
    if (all_stopped || step + 1 == o.max_new_tokens) break;
    logits = decoder.feed(column);
  }
  return concat(pieces, 1);
}

}  // namespace rw::reformer
