// `rewind-ablate memory`: the Reformer's Table 3. The paper gives the memory of each model variant
// as a formula (Transformer max(b l d_ff, b n_h l^2) n_l; reversible layers drop n_l; chunking the
// feed-forward replaces d_ff by d_model; LSH attention replaces l^2 by l n_r c); this experiment
// measures the allocator's peak during one training step (loss, backward) of a ReformerLM built as
// each variant, against the length and against the depth, next to the formula at the same settings.
// The measuring code is rewind-bench model's (tools/common/training_step_timing.h).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "ablate/experiment.h"
#include "common/attention_timing.h"
#include "common/progress.h"
#include "common/training_step_timing.h"
#include "core/error.h"
#include "core/ops.h"
#include "models/reformer/reformer_lm.h"

namespace rw::ablate {
namespace {

// A row of Table 3: a model variant.
struct ModelVariant {
  std::string name;
  reformer::AttentionKind attention;
  bool reversible;
  bool chunked_ff;
  std::string formula;  // as the paper writes it
};

const std::vector<ModelVariant>& variants() {
  using reformer::AttentionKind;
  static const std::vector<ModelVariant> all = {
      {"Transformer", AttentionKind::full, false, false, "max(b l d_ff, b n_h l^2) n_l"},
      {"Reversible Transformer", AttentionKind::full, true, false, "max(b l d_ff, b n_h l^2)"},
      {"Chunked Reversible Transformer", AttentionKind::full, true, true,
       "max(b l d_model, b n_h l^2)"},
      {"LSH Transformer", AttentionKind::lsh, false, false, "max(b l d_ff, b n_h l n_r c) n_l"},
      {"Reformer", AttentionKind::lsh, true, true, "max(b l d_model, b n_h l n_r c)"}};
  return all;
}

struct MemorySettings {
  int64_t batch = 1, d_model = 0, d_ff = 0, heads = 0, chunk = 0, hashes = 0, ff_chunk = 0;
  int64_t vocab = 256;
  std::vector<int64_t> lengths;  // the length sweep, at depth length_sweep_depth
  int64_t length_sweep_depth = 0;
  std::vector<int64_t> depths;  // the depth sweep, at length depth_sweep_length
  int64_t depth_sweep_length = 0;
  // A row is skipped where 3 x the formula's bytes (several tensors of the formula's size are
  // alive at the peak) would exceed this.
  double cap_bytes = 0;
  std::string reductions;
};

MemorySettings settings_for(Scale scale) {
  switch (scale) {
    case Scale::tiny:
      return {.d_model = 32,
              .d_ff = 128,
              .heads = 2,
              .chunk = 16,
              .hashes = 2,
              .ff_chunk = 32,
              .vocab = 64,
              .lengths = {64, 128, 256},
              .length_sweep_depth = 2,
              .depths = {1, 2, 4},
              .depth_sweep_length = 128,
              .cap_bytes = 1e9,
              .reductions =
                  "a smoke test: d_model 32, d_ff 128, 2 heads, lengths 64..256, "
                  "1..4 layers"};
    case Scale::small:
      return {.d_model = 256,
              .d_ff = 1024,
              .heads = 4,
              .chunk = 64,
              .hashes = 4,
              .ff_chunk = 256,
              .lengths = {512, 1024, 2048, 4096, 8192, 16384},
              .length_sweep_depth = 4,
              .depths = {1, 2, 4, 8},
              .depth_sweep_length = 2048,
              .cap_bytes = 3e9,
              .reductions =
                  "d_model 256, d_ff 1024, 4 heads (the paper: 1024, 4096, 8), batch 1 "
                  "(the paper: 8), lengths up to 16K, up to 8 layers, f32 on a CPU"};
    case Scale::paper:
      return {.batch = 8,
              .d_model = 1024,
              .d_ff = 4096,
              .heads = 8,
              .chunk = 64,
              .hashes = 4,
              .ff_chunk = 1024,
              .lengths = {1024, 2048, 4096, 8192, 16384, 32768, 65536},
              .length_sweep_depth = 12,
              .depths = {1, 2, 4, 8, 12},
              .depth_sweep_length = 8192,
              .cap_bytes = 60e9,
              .reductions =
                  "the paper's model (d_model 1024, d_ff 4096, 8 heads, batch 8, 12 "
                  "layers, lengths to 64K); rows whose formula exceeds the memory cap "
                  "are skipped"};
  }
  RW_CHECK(false, "memory: unknown scale");
  return {};
}

// The formula of `v` in elements (f32: 4 bytes each) at length l and depth n_l.
double formula_elements(const ModelVariant& v, const MemorySettings& st, int64_t l, int64_t n_l) {
  const auto b = static_cast<double>(st.batch), len = static_cast<double>(l);
  const double width = static_cast<double>(v.chunked_ff ? st.d_model : st.d_ff);
  const double per_head = v.attention == reformer::AttentionKind::full
                              ? len * len
                              : len * static_cast<double>(st.hashes * st.chunk);
  const double layer = std::max(b * len * width, b * static_cast<double>(st.heads) * per_head);
  return v.reversible ? layer : layer * static_cast<double>(n_l);
}

struct Measured {
  std::string sweep;  // "length" or "depth"
  const ModelVariant* variant;
  int64_t length, depth;
  double formula_bytes;
  int64_t peak, params;
  double activations() const { return static_cast<double>(peak - params); }
};

Measured measure(const std::string& sweep, const ModelVariant& v, const MemorySettings& st,
                 int64_t length, int64_t depth, int64_t max_len, const RunOptions& options) {
  reformer::ReformerConfig c;
  c.vocab_size = st.vocab;
  c.d_model = st.d_model;
  c.d_ff = st.d_ff;
  c.n_layers = depth;
  c.n_heads = st.heads;
  c.attention = {v.attention};
  c.causal = true;
  c.chunk_len = st.chunk;
  c.n_hashes = st.hashes;
  c.reversible = v.reversible;
  c.standard_residual = !v.reversible;  // the Transformer rows are standard Transformers
  c.ff_chunk = v.chunked_ff ? st.ff_chunk : 0;
  c.max_len = max_len;
  Generator gen(options.seed + 1);
  auto model = std::make_shared<reformer::ReformerLM>(c, gen);
  model->to(options.device);
  model->train();
  Generator data(options.seed + 2);
  const TensorOptions on_device{.dtype = DType::i64, .device = options.device};
  Tensor tokens = randint(0, st.vocab, {st.batch, length}, data, on_device);
  Tensor targets = randint(0, st.vocab, {st.batch, length}, data, on_device);
  const tools::StepTiming t = tools::time_training_step(*model, tokens, targets, {.reps = 1});
  return {.sweep = sweep,
          .variant = &v,
          .length = length,
          .depth = depth,
          .formula_bytes = 4 * formula_elements(v, st, length, depth),
          .peak = t.peak,
          .params = t.params};
}

// "4.19M": element counts of the formulas.
std::string count(double v) {
  if (v >= 1e9) return fmt::format("{:.3g}G", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.3g}M", v / 1e6);
  if (v >= 1e3) return fmt::format("{:.3g}k", v / 1e3);
  return fmt::format("{:.0f}", v);
}
// Megabytes, with three decimals below 10 MB (the tiny scale's sizes).
std::string mb(double bytes) {
  return bytes < 1e7 ? fmt::format("{:.3f}", bytes / 1e6) : fmt::format("{:.1f}", bytes / 1e6);
}

std::vector<const Measured*> rows_of(const std::vector<Measured>& all, const std::string& sweep,
                                     const ModelVariant& v) {
  std::vector<const Measured*> out;
  for (const Measured& m : all) {
    if (m.sweep == sweep && m.variant == &v) out.push_back(&m);
  }
  return out;
}

// Exponents of measured activations and of the formula against x (length or depth).
struct Exponents {
  double measured, formula;
};
std::optional<Exponents> exponents(const std::vector<const Measured*>& rows, bool by_length) {
  std::vector<std::pair<double, double>> measured, formula;
  for (const Measured* m : rows) {
    if (m->activations() <= 0) continue;
    const double x = static_cast<double>(by_length ? m->length : m->depth);
    measured.emplace_back(x, m->activations());
    formula.emplace_back(x, m->formula_bytes);
  }
  if (measured.size() < 2) return std::nullopt;
  return Exponents{tools::fitted_exponent(measured), tools::fitted_exponent(formula)};
}

std::string findings_of(const std::vector<Measured>& all, const MemorySettings& st) {
  std::string out =
      "The paper's Table 3 gives formulas, not measurements. Exponents k of activation memory "
      "~ x^k (least-squares on log-log; activations = peak minus the parameter gradients), "
      "measured against the formula's at the same settings; agreement means |difference| < "
      "0.3.\n\n";
  out += fmt::format("Against the length (depth {}):\n\n", st.length_sweep_depth);
  std::map<std::string, double> length_k, depth_k;
  for (const ModelVariant& v : variants()) {
    auto e = exponents(rows_of(all, "length", v), true);
    if (!e) {
      out += fmt::format("- {}: fewer than two lengths measured\n", v.name);
      continue;
    }
    length_k[v.name] = e->measured;
    out += fmt::format("- {}: measured L^{:.2f}, formula L^{:.2f}: {}\n", v.name, e->measured,
                       e->formula, std::abs(e->measured - e->formula) < 0.3 ? "agrees" : "differs");
  }
  out += fmt::format("\nAgainst the depth (L = {}):\n\n", st.depth_sweep_length);
  for (const ModelVariant& v : variants()) {
    auto rows = rows_of(all, "depth", v);
    auto e = exponents(rows, false);
    if (!e) {
      out += fmt::format("- {}: fewer than two depths measured\n", v.name);
      continue;
    }
    depth_k[v.name] = e->measured;
    const Measured& lo = *rows.front();
    const Measured& hi = *rows.back();
    out += fmt::format(
        "- {}: x{:.2f} from {} to {} layers (formula x{:.2f}); measured n_l^{:.2f}, formula "
        "n_l^{:.2f}: {}\n",
        v.name, hi.activations() / lo.activations(), lo.depth, hi.depth,
        hi.formula_bytes / lo.formula_bytes, e->measured, e->formula,
        std::abs(e->measured - e->formula) < 0.3 ? "agrees" : "differs");
  }
  auto claim = [&](const std::string& text, std::optional<bool> holds) {
    out += fmt::format("- {}: {}\n", text, !holds ? "not measured" : (*holds ? "yes" : "no"));
  };
  auto both = [](const std::map<std::string, double>& k, const std::string& a, const std::string& b,
                 auto pred) -> std::optional<bool> {
    if (!k.count(a) || !k.count(b)) return std::nullopt;
    return pred(k.at(a), k.at(b));
  };
  out += "\nThe paper's claims, checked on these numbers:\n\n";
  claim(
      "reversible layers remove the n_l factor (Reversible Transformer's depth exponent < 0.3 "
      "while the Transformer's > 0.5; a depth-independent part, the embeddings and the loss, "
      "keeps the Transformer's measured exponent below the formula's 1)",
      both(depth_k, "Reversible Transformer", "Transformer",
           [](double rev, double plain) { return rev < 0.3 && plain > 0.5; }));
  claim(
      "the Reformer's memory does not grow with depth (exponent < 0.3) while the LSH "
      "Transformer's does (> 0.5)",
      both(depth_k, "Reformer", "LSH Transformer",
           [](double ref, double plain) { return ref < 0.3 && plain > 0.5; }));
  claim(
      "LSH attention removes the l^2 term (LSH Transformer's length exponent < 1.3 while the "
      "Transformer's > 1.5)",
      both(length_k, "LSH Transformer", "Transformer",
           [](double lsh, double full) { return lsh < 1.3 && full > 1.5; }));
  // Chunking: the formula says it matters only where b l d_ff is the largest term.
  {
    auto rev = rows_of(all, "length", variants()[1]);
    auto chunked = rows_of(all, "length", variants()[2]);
    if (!rev.empty() && !chunked.empty()) {
      const Measured& r = *rev.front();
      const Measured& c = *chunked.front();
      out += fmt::format(
          "- chunking the feed-forward (Chunked Reversible / Reversible Transformer at L = {}): "
          "measured {:.2f}, formula {:.2f} (the formula expects a saving only where b l d_ff "
          "exceeds b n_h l^2, i.e. L < d_ff / n_h = {})\n",
          r.length, c.activations() / r.activations(), c.formula_bytes / r.formula_bytes,
          st.d_ff / st.heads);
    }
  }
  // The Reformer against every other variant at the longest length they all ran.
  {
    std::map<int64_t, std::map<std::string, double>> by_length;
    for (const Measured& m : all) {
      if (m.sweep == "length") by_length[m.length][m.variant->name] = m.activations();
    }
    for (auto it = by_length.rbegin(); it != by_length.rend(); ++it) {
      if (it->second.size() != variants().size()) continue;
      const double reformer = it->second.at("Reformer");
      bool least = true;
      for (auto [name, a] : it->second) least = least && a >= reformer;
      out += fmt::format(
          "- the Reformer needs the least memory at L = {} (the longest length every variant "
          "ran): {} ({} MB; the Transformer {} MB, {:.1f}x)\n",
          it->first, least ? "yes" : "no", mb(reformer), mb(it->second.at("Transformer")),
          it->second.at("Transformer") / reformer);
      break;
    }
  }
  return out;
}

Result run_memory(const RunOptions& options) {
  const MemorySettings st = settings_for(options.scale);
  struct Planned {
    std::string sweep;
    const ModelVariant* variant;
    int64_t length, depth, max_len;
  };
  std::vector<Planned> plan;
  std::vector<std::string> skipped;
  const int64_t longest = *std::max_element(st.lengths.begin(), st.lengths.end());
  for (const ModelVariant& v : variants()) {
    for (int64_t l : st.lengths) plan.push_back({"length", &v, l, st.length_sweep_depth, longest});
    for (int64_t d : st.depths) {
      plan.push_back({"depth", &v, st.depth_sweep_length, d, st.depth_sweep_length});
    }
  }
  std::optional<tools::Progress> progress;
  if (options.progress) progress.emplace("memory", static_cast<int64_t>(plan.size()));
  std::vector<Measured> all;
  int64_t done = 0;
  for (const Planned& p : plan) {
    ++done;
    const double predicted = 4 * formula_elements(*p.variant, st, p.length, p.depth);
    if (3 * predicted > st.cap_bytes) {
      skipped.push_back(fmt::format("{} at L = {}, {} layers", p.variant->name, p.length, p.depth));
      continue;
    }
    all.push_back(measure(p.sweep, *p.variant, st, p.length, p.depth, p.max_len, options));
    const Measured& m = all.back();
    if (progress) {
      progress->update(done, {{"variant", p.variant->name},
                              {"L", std::to_string(p.length)},
                              {"layers", std::to_string(p.depth)},
                              {"peak", mb(static_cast<double>(m.peak)) + " MB"}});
    }
  }
  if (progress) progress->finish();

  Result r;
  r.name = "memory";
  r.title =
      "Table 3: measured peak memory of a training step against length and depth, next to "
      "the complexity formulas";
  r.table.columns = {"sweep",          "variant",           "length",     "layers",
                     "formula",        "formula elements",  "formula_MB", "peak_MB",
                     "activations_MB", "measured / formula"};
  for (const Measured& m : all) {
    r.table.rows.push_back({m.sweep, m.variant->name, std::to_string(m.length),
                            std::to_string(m.depth), m.variant->formula, count(m.formula_bytes / 4),
                            mb(m.formula_bytes), mb(static_cast<double>(m.peak)),
                            mb(m.activations()),
                            fmt::format("{:.2f}", m.activations() / m.formula_bytes)});
  }
  Plot plot{.title = fmt::format("Activation memory of a training step, {} layers",
                                 st.length_sweep_depth),
            .x_label = "sequence length",
            .y_label = "activations (MB): peak minus parameter gradients",
            .log_x = true,
            .log_y = true,
            .series = {}};
  for (const ModelVariant& v : variants()) {
    Series s{.name = v.name, .x = {}, .y = {}};
    for (const Measured* m : rows_of(all, "length", v)) {
      s.x.push_back(static_cast<double>(m->length));
      s.y.push_back(m->activations() / 1e6);
    }
    plot.series.push_back(std::move(s));
  }
  r.plot = std::move(plot);

  std::string skipped_text = skipped.empty() ? "none" : "";
  for (std::size_t i = 0; i < skipped.size(); ++i) {
    skipped_text += (i ? "; " : "") + skipped[i];
  }
  r.settings = fmt::format(
      "- One training step (ReformerLM loss over random tokens, then backward; no optimizer) of "
      "each Table 3 variant: Transformer = full attention, plain residual; Reversible = full "
      "attention, reversible blocks; Chunked Reversible = the same with the feed-forward in "
      "chunks of {} positions; LSH Transformer = LSH attention, plain residual; Reformer = LSH, "
      "reversible, chunked feed-forward. The same code as `rewind-bench model`.\n"
      "- b = {}, d_model = {}, d_ff = {}, n_h = {}, n_r = {} hash rounds, c = {} (the LSH chunk "
      "length; each query sees 2c keys with one chunk of look-back), vocabulary {}, causal, "
      "shared-QK, axial positions, f32 (4 bytes per formula element); device {}.\n"
      "- Length sweep {}..{} at {} layers; depth sweep {}..{} layers at L = {}.\n"
      "- peak_MB: the allocator's peak during the step above what was live before (parameters, "
      "tokens); activations_MB = peak minus the parameter gradients (as large as the "
      "parameters), the quantity the formulas describe.\n"
      "- Skipped (3 x the formula's bytes over the {:.0f} GB cap): {}.\n"
      "- Reductions from the paper: {}.",
      st.ff_chunk, st.batch, st.d_model, st.d_ff, st.heads, st.hashes, st.chunk, st.vocab,
      options.device.str(), st.lengths.front(), st.lengths.back(), st.length_sweep_depth,
      st.depths.front(), st.depths.back(), st.depth_sweep_length, st.cap_bytes / 1e9, skipped_text,
      st.reductions);
  r.findings = findings_of(all, st);
  return r;
}

const bool registered = register_experiment(
    {"memory",
     "Table 3: measured peak memory of a training step against length and depth for the "
     "Transformer, reversible, chunked, LSH and Reformer variants, next to the complexity formulas",
     run_memory, 60});

}  // namespace
}  // namespace rw::ablate
