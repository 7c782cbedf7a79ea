// `rewind-bench model`: one training step of a ReformerLM against sequence length and depth:
// seconds and tokens/s of forward + backward (model.loss and rw::backward), optionally of the
// optimizer update, and the allocator's peak memory. With --components, the same step taken apart:
// each part of the model run on its own at the largest length, so the time of a whole step can be
// attributed (embedding, layer norms, projections, attention, feed-forward, loss, optimizer).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>

#include <fmt/format.h>

#include "autograd/tape.h"
#include "core/allocator.h"
#include "core/ops.h"
#include "device_option.h"
#include "models/reformer/reformer_lm.h"
#include "nn/adafactor.h"
#include "nn/adam.h"
#include "nn/losses.h"
#include "registry.h"
#include "time_budget.h"

// The training step's measurement is shared with `rewind-ablate memory`.
#include "common/precision.h"
#include "common/training_step_timing.h"

namespace rw::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct ModelOptions {
  std::vector<int64_t> lengths = {1024, 2048, 4096, 8192, 16384};
  std::vector<int64_t> depths = {1, 6};
  int64_t batch = 1;
  int64_t d_model = 256;
  int64_t d_ff = 1024;
  int64_t heads = 4;
  int64_t hashes = 4;
  int64_t buckets = 0;  // LSH buckets per round; 0: about 2 L / chunk per call
  int64_t chunk = 64;
  int64_t vocab = 256;
  int64_t ff_chunk = 4096;    // 0: unchunked feed-forward
  int64_t loss_chunk = 4096;  // positions per chunk of the chunked cross-entropy
  std::string attention = "lsh";
  std::string optimizer = "none";  // none | adam | adafactor: time the update too
  bool plain = false;              // the plain residual stack instead of the reversible one
  bool components = false;         // also the per-component table
  std::string precision = "f32";   // f32 | bf16 | f16: autocast of the step (common/precision.h)
  int64_t reps = 2;                // timed runs per row (the best counts)
  Device device = Device::cpu();
  double time_budget_s = 0;  // stop a depth's lengths before a row that would overrun this
};

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

reformer::ReformerConfig config_for(const ModelOptions& o, int64_t depth, int64_t max_len) {
  reformer::ReformerConfig c;
  c.vocab_size = o.vocab;
  c.d_model = o.d_model;
  c.d_ff = o.d_ff;
  c.n_layers = depth;
  c.n_heads = o.heads;
  c.attention = {reformer::parse_attention_kind(o.attention)};
  c.causal = true;
  c.chunk_len = o.chunk;
  c.n_hashes = o.hashes;
  c.n_buckets = o.buckets;
  c.reversible = !o.plain;
  c.ff_chunk = o.ff_chunk;
  c.max_len = max_len;
  c.loss_chunk = o.loss_chunk;
  return c;
}

std::unique_ptr<nn::Optimizer> make_optimizer(const std::string& name,
                                              const nn::NamedParameters& params) {
  if (name == "adam") return std::make_unique<nn::Adam>(params);
  if (name == "adafactor") return std::make_unique<nn::Adafactor>(params);
  return nullptr;
}

tools::StepTiming measure_step(const ModelOptions& o, int64_t depth, int64_t length,
                               int64_t max_len) {
  Generator gen(1);
  auto model = std::make_shared<reformer::ReformerLM>(config_for(o, depth, max_len), gen);
  // Initialised on the CPU and moved (the same weights and tokens on every device); the
  // optimizer is made after the move, so its state lives on the device too.
  if (!o.device.is_cpu()) model->to(o.device);
  model->train();
  std::unique_ptr<nn::Optimizer> opt = make_optimizer(o.optimizer, model->named_parameters());
  Generator data(2);
  Tensor tokens = randint(0, o.vocab, {o.batch, length}, data, {.dtype = DType::i64}).to(o.device);
  Tensor targets = randint(0, o.vocab, {o.batch, length}, data, {.dtype = DType::i64}).to(o.device);
  return tools::time_training_step(
      *model, tokens, targets,
      {.reps = o.reps, .optimizer = opt.get(), .precision = tools::precision_dtype(o.precision)});
}

std::string mb(int64_t bytes) { return fmt::format("{:.1f}", static_cast<double>(bytes) / 1e6); }

Table step_table(const ModelOptions& o) {
  const int64_t max_len = *std::max_element(o.lengths.begin(), o.lengths.end());
  const bool with_opt = o.optimizer != "none";
  Table t;
  t.title = fmt::format(
      "ReformerLM training step against length and depth ({} attention, {} hashes, chunk {}, "
      "d_model {}, {} heads, d_ff {}, batch {}, {} stack, {}) on {}",
      o.attention, o.hashes, o.chunk, o.d_model, o.heads, o.d_ff, o.batch,
      o.plain ? "plain residual" : "reversible",
      o.precision == "f32" ? "f32" : fmt::format("{} autocast, f32 master weights", o.precision),
      device_label(o.device));
  t.columns = {"attention", "length",       "depth",      "hashes",
               "fwd_bwd_s", "tokens_per_s", "peak_bytes", "peak_MB"};
  if (with_opt) {
    t.columns.push_back("optimizer_s");
    t.columns.push_back("step_s");
  }
  const TimeBudget budget(o.time_budget_s);
  // A row that ends its depth's series unmeasured: `why` in the time column, "-" elsewhere.
  auto unmeasured_row = [&](int64_t length, int64_t depth, const char* why) {
    std::vector<std::string> row = {o.attention,
                                    std::to_string(length),
                                    std::to_string(depth),
                                    std::to_string(o.hashes),
                                    why,
                                    "-",
                                    "-",
                                    "-"};
    if (with_opt) row.insert(row.end(), {"-", "-"});
    return row;
  };
  for (int64_t depth : o.depths) {
    int64_t last_length = 0;
    double last_wall_s = 0;
    for (int64_t length : o.lengths) {
      if (!budget.fits(TimeBudget::next_row_estimate(last_wall_s, last_length, length, 1.0))) {
        std::fprintf(stderr, "model: depth %ld, length %ld: stopped (--time-budget)\n",
                     static_cast<long>(depth), static_cast<long>(length));
        t.rows.push_back(unmeasured_row(length, depth, "time budget"));
        break;
      }
      std::fprintf(stderr, "model: depth %ld, length %ld\n", static_cast<long>(depth),
                   static_cast<long>(length));
      const double row_start = budget.elapsed();
      tools::StepTiming r;
      try {
        r = measure_step(o, depth, length, max_len);
        last_length = length;
        last_wall_s = budget.elapsed() - row_start;
      } catch (const OutOfMemoryError& e) {
        // The rows measured so far still count; longer lengths at this depth are not tried.
        std::fprintf(stderr, "model: depth %ld, length %ld: out of memory: %s\n",
                     static_cast<long>(depth), static_cast<long>(length), e.what());
        current_tape().sweep();
        empty_cache(o.device);
        t.rows.push_back(unmeasured_row(length, depth, "OOM"));
        break;
      }
      const double tokens = static_cast<double>(length * o.batch);
      // Four decimals: a GPU step at short lengths takes milliseconds.
      std::vector<std::string> row = {o.attention,
                                      std::to_string(length),
                                      std::to_string(depth),
                                      std::to_string(o.hashes),
                                      fmt::format("{:.4f}", r.fwd_bwd_s),
                                      fmt::format("{:.0f}", tokens / r.fwd_bwd_s),
                                      std::to_string(r.peak),
                                      mb(r.peak)};
      if (with_opt) {
        row.push_back(fmt::format("{:.4f}", r.optimizer_s));
        row.push_back(fmt::format("{:.4f}", r.fwd_bwd_s + r.optimizer_s));
      }
      t.rows.push_back(std::move(row));
    }
  }
  t.notes = {
      fmt::format("fwd_bwd_s: model.loss(tokens, targets) then rw::backward, best of {} run(s); "
                  "tokens_per_s = batch x length / fwd_bwd_s. On a GPU each time is read after "
                  "rw::synchronize (the device's stream drained).",
                  o.reps),
      "peak: the device allocator's peak during the step above what was live before it "
      "(parameters, optimizer state, tokens); the parameter gradients are included.",
      fmt::format("Chunked feed-forward over {} positions ({}), chunked cross-entropy over {} "
                  "positions, vocabulary {}, axial positions.",
                  o.ff_chunk, o.ff_chunk > 0 ? "on" : "off", o.loss_chunk, o.vocab)};
  t.notes.push_back(
      "OOM: the device ran out of memory at that length; time budget: the row would have "
      "overrun --time-budget. Either way the later lengths of that depth are not tried.");
  t.notes.push_back(o.buckets > 0
                        ? fmt::format("LSH buckets per round: {} at every length.", o.buckets)
                        : "LSH buckets per round: about 2 L / chunk (a power of two).");
  if (with_opt) t.notes.push_back(fmt::format("optimizer_s: one {} step().", o.optimizer));
  return t;
}

// --- components --------------------------------------------------------------------------------

// Best-of-reps seconds of fn() (a forward, or a forward and backward); `peak` (optional) gets the
// allocator's peak during the warm-up call above what was live before it.
double best_time(int64_t reps, const std::function<void()>& fn, int64_t* peak = nullptr) {
  current_tape().sweep();
  const int64_t before = memory_stats().allocated_bytes;
  reset_peak_memory();
  fn();  // warm-up: primitives created, allocator cache filled
  if (peak) *peak = memory_stats().peak_allocated_bytes - before;
  double best = 1e300;
  for (int64_t r = 0; r < reps; ++r) {
    current_tape().sweep();
    const auto t0 = Clock::now();
    fn();
    best = std::min(best, seconds_since(t0));
  }
  return best;
}

struct Component {
  std::string name;
  double forward_s;
  double fwd_bwd_s;
  int64_t forwards;   // how often one training step runs its forward (recomputations included)
  int64_t backwards;  // how often it runs its backward
  int64_t peak = 0;   // allocator peak of one forward + backward (bytes above what was live)
};

// Each part of the model on its own, at `length`, and how often one reversible training step runs
// it: every block's F and G run forward twice (the reversible backward recomputes them before
// differentiating), the chunked feed-forward a third time (its backward recomputes each chunk).
Table component_table(const ModelOptions& o, int64_t depth, int64_t length) {
  Generator gen(1);
  auto model = std::make_shared<reformer::ReformerLM>(config_for(o, depth, length), gen);
  model->train();
  auto layer = model->layers->get<reformer::ReformerLayer>(0);
  Generator data(2);
  Tensor tokens = randint(0, o.vocab, {o.batch, length}, data, {.dtype = DType::i64});
  Tensor targets = randint(0, o.vocab, {o.batch, length}, data, {.dtype = DType::i64});
  Tensor x = randn({o.batch, length, o.d_model}, data);
  Tensor dy = randn({o.batch, length, o.d_model}, data);

  auto fwd_bwd = [&](const std::function<Tensor(const Tensor&)>& f) {
    return [&, f] {
      Tensor xi = x.detach().requires_grad_();
      Tensor y = f(xi);
      backward(y, dy);
    };
  };
  auto fwd = [&](const std::function<Tensor(const Tensor&)>& f) {
    return [&, f] {
      NoGradGuard no_grad;
      Tensor y = f(x);
    };
  };
  std::vector<Component> parts;
  const int64_t L = depth;
  const bool rev = !o.plain;
  const int64_t block_forwards = rev ? 2 : 1;
  auto part = [&](std::string name, const std::function<Tensor(const Tensor&)>& f, int64_t forwards,
                  int64_t backwards) {
    std::fprintf(stderr, "model components: %s\n", name.c_str());
    int64_t peak = 0;
    const double f_s = best_time(o.reps, fwd(f));
    const double fb_s = best_time(o.reps, fwd_bwd(f), &peak);
    parts.push_back({std::move(name), f_s, fb_s, forwards, backwards, peak});
  };
  // Embedding and positions (input: the tokens; differentiated through the tables).
  {
    auto emb = [&] {
      Tensor e = model->embedding->forward(tokens);
      if (model->positions) e = model->positions->forward(e);
      return e;
    };
    std::fprintf(stderr, "model components: embedding\n");
    int64_t peak = 0;
    const double f_s = best_time(o.reps, [&] {
      NoGradGuard ng;
      emb();
    });
    const double fb_s = best_time(
        o.reps, [&] { backward(emb(), dy); }, &peak);
    parts.push_back({"embedding + positions", f_s, fb_s, 1, 1, peak});
  }
  part(
      "layer norm", [&](const Tensor& h) { return layer->attention_norm->forward(h); },
      2 * L * block_forwards + 1, 2 * L + 1);
  {
    // The attention module's three d_model x d_model projections alone (qk, v, out), as linear
    // layers of the same shapes: the part of "attention" that is plain matmul.
    auto w = randn({o.d_model, o.d_model}, data).requires_grad_();
    part(
        "attention projections (3 linear d x d)",
        [&, w](const Tensor& h) {
          Tensor a = linear(h, w, Tensor()), b = linear(h, w, Tensor());
          return linear(rw::add(a, b), w, Tensor());
        },
        0, 0);
  }
  part(
      fmt::format("attention ({}, projections included)", o.attention),
      [&](const Tensor& h) { return layer->attention_block(h, Tensor()); }, L * block_forwards, L);
  part(
      fmt::format("feed-forward ({})",
                  o.ff_chunk > 0 ? fmt::format("chunked {}", o.ff_chunk) : "unchunked"),
      [&](const Tensor& h) { return layer->ff->forward(h); }, L * block_forwards, L);
  part(
      "residual adds + mean join", [&](const Tensor& h) { return rw::add(h, h); },
      2 * L * (rev ? 2 : 1) + 1, 2 * L + 1);
  {
    std::fprintf(stderr, "model components: loss\n");
    Tensor w = model->output_weight(), b = model->output_bias_tensor();
    auto loss = [&, w, b](const Tensor& h) {
      return nn::chunked_cross_entropy(h, w, b, targets, o.loss_chunk);
    };
    int64_t peak = 0;
    const double f_s = best_time(o.reps, [&] {
      NoGradGuard ng;
      loss(x);
    });
    const double fb_s = best_time(
        o.reps,
        [&] {
          Tensor xi = x.detach().requires_grad_();
          backward(loss(xi));
        },
        &peak);
    parts.push_back(
        {fmt::format("chunked cross-entropy ({})", o.loss_chunk), f_s, fb_s, 1, 1, peak});
  }
  if (o.optimizer != "none") {
    std::fprintf(stderr, "model components: optimizer\n");
    auto opt = make_optimizer(o.optimizer, model->named_parameters());
    for (const Tensor& p : model->parameters()) {
      p.set_grad(randn(p.shape(), data));
    }
    int64_t peak = 0;
    const double s = best_time(
        o.reps, [&] { opt->step(); }, &peak);
    parts.push_back({fmt::format("optimizer ({})", o.optimizer), s, s, 1, 0, peak});
  }

  // The whole step, for the comparison.
  std::fprintf(stderr, "model components: whole step\n");
  int64_t whole_peak = 0;
  const double whole = best_time(
      o.reps,
      [&] {
        model->zero_grad();
        backward(model->loss(tokens, targets));
      },
      &whole_peak);

  Table t;
  t.title = fmt::format(
      "Where the time of one ReformerLM training step goes (length {}, depth {}, {} attention, "
      "{} hashes, d_model {}, d_ff {}, {} stack)",
      length, depth, o.attention, o.hashes, o.d_model, o.d_ff, rev ? "reversible" : "plain");
  t.columns = {"component",          "forward_s",  "fwd_bwd_s", "forwards_per_step",
               "backwards_per_step", "est_step_s", "share",     "fwd_bwd_peak_MB"};
  double total = 0;
  std::vector<double> est;
  for (const Component& c : parts) {
    // Forwards beyond the ones paired with a backward are pure recomputation.
    const double s = static_cast<double>(c.backwards) * c.fwd_bwd_s +
                     static_cast<double>(c.forwards - c.backwards) * c.forward_s;
    est.push_back(s);
    total += s;
  }
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const Component& c = parts[i];
    t.rows.push_back({c.name, fmt::format("{:.4f}", c.forward_s),
                      fmt::format("{:.4f}", c.fwd_bwd_s), std::to_string(c.forwards),
                      std::to_string(c.backwards), fmt::format("{:.3f}", est[i]),
                      fmt::format("{:.1f}%", 100 * est[i] / std::max(whole, 1e-12)), mb(c.peak)});
  }
  t.rows.push_back({"sum of the components", "", "", "", "", fmt::format("{:.3f}", total),
                    fmt::format("{:.1f}%", 100 * total / std::max(whole, 1e-12)), ""});
  t.rows.push_back({"measured step (fwd + bwd, no optimizer)", "", fmt::format("{:.3f}", whole), "",
                    "", fmt::format("{:.3f}", whole), "100%", mb(whole_peak)});
  t.notes = {
      "est_step_s = backwards x fwd_bwd_s + (forwards - backwards) x forward_s: the extra forwards "
      "are the reversible stack's recomputation (each block's F and G once more in backward).",
      "The chunked feed-forward's backward recomputes each chunk itself (inside its fwd_bwd_s).",
      "The projections row is included in the attention row (count 0): it shows the matmul part.",
      fmt::format("Best of {} run(s) after a warm-up.", o.reps),
      "fwd_bwd_peak_MB: the allocator's peak of the component's warm-up forward + backward above "
      "what was live before (its input and output gradient, the parameters)."};
  return t;
}

RunFn setup(CLI::App& cmd) {
  auto opt = std::make_shared<ModelOptions>();
  cmd.add_option("--lengths", opt->lengths, "sequence lengths")
      ->delimiter(',')
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--depths", opt->depths, "numbers of layers")
      ->delimiter(',')
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--batch", opt->batch, "sequences per batch")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--d-model", opt->d_model, "model width")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--d-ff", opt->d_ff, "feed-forward width")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--heads", opt->heads, "attention heads (must divide d_model)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--hashes", opt->hashes, "LSH hash rounds")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--chunk", opt->chunk, "attention chunk length (LSH and local)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--buckets", opt->buckets, "LSH buckets per round (0: about 2 L / chunk)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd.add_option("--vocab", opt->vocab, "vocabulary size")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--ff-chunk", opt->ff_chunk, "positions per feed-forward chunk (0: unchunked)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd.add_option("--loss-chunk", opt->loss_chunk, "positions per chunk of the cross-entropy")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--attention", opt->attention, "attention kind")
      ->check(CLI::IsMember({"lsh", "full", "local"}))
      ->capture_default_str();
  cmd.add_option("--optimizer", opt->optimizer, "also time an optimizer step")
      ->check(CLI::IsMember({"none", "adam", "adafactor"}))
      ->capture_default_str();
  cmd.add_flag("--plain", opt->plain, "plain residual stack instead of the reversible one");
  cmd.add_option("--precision", opt->precision,
                 "f32, or bf16/f16 mixed precision (autocast; f16 with loss scaling)")
      ->capture_default_str();
  cmd.add_flag("--components", opt->components,
               "also time each component at the largest length and depth");
  cmd.add_option("--reps", opt->reps, "timed runs per row (the best counts)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--time-budget", opt->time_budget_s,
                 "seconds: stop a depth's lengths before a row expected to overrun this (0: no "
                 "limit)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  auto device = std::make_shared<std::string>("cpu");
  add_device_option(cmd, *device);
  return [opt, device] {
    opt->device = usable_device(*device);
    tools::precision_dtype(opt->precision);  // an error naming --precision before any work
    RW_CHECK(!opt->components || opt->precision == "f32",
             "--components: measured in f32 only (--precision {})", opt->precision);
    RW_CHECK(!opt->components || opt->device.is_cpu(),
             "--components: measured on the CPU only (--device {})", *device);
    std::vector<Table> tables{step_table(*opt)};
    if (opt->components) {
      tables.push_back(
          component_table(*opt, *std::max_element(opt->depths.begin(), opt->depths.end()),
                          *std::max_element(opt->lengths.begin(), opt->lengths.end())));
    }
    return tables;
  };
}

const bool registered = register_subcommand(
    {"model", "ReformerLM training step: time, tokens/s and peak memory against length and depth",
     setup});

}  // namespace
}  // namespace rw::bench
