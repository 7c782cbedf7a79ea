// The learning-curve ablations of the paper, each a set of language models trained on the text
// corpus with one switch changed, compared by held-out bits per byte against the training step:
//
//   shared-qk    Fig. 3 left:  full attention with shared query/key vs separate Q and K
//   reversible   Fig. 3 right: reversible layers vs the standard Transformer residual
//   hash-rounds  Fig. 4:       LSH attention with 1, 2, 4 and 8 hash rounds vs full attention
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numbers>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "ablate/training_runs.h"
#include "common/stop_signal.h"
#include "core/error.h"

namespace rw::ablate {
namespace {

using reformer::AttentionKind;

// The shared training settings of a scale.
struct CurveScale {
  reformer::ReformerConfig model;  // the base model every variant changes one thing of
  int64_t length = 0;
  tools::TrainOptions train;
  std::string text;  // the settings, in words, including the reductions from the paper
};

struct CurveVariant {
  std::string name, label;
  std::function<void(reformer::ReformerConfig&)> change;
};

struct CurveExperiment {
  std::string name, title;
  // What differs from the base model in every variant (appended to the settings).
  std::string design;
  std::vector<CurveVariant> variants;  // the first is the baseline the others are compared with
  // Computes the findings from the variants' curves.
  std::function<std::string(const std::vector<VariantRun>&, const std::string& unit)> findings;
};

CurveScale curve_scale(Scale scale, bool lsh) {
  CurveScale s;
  reformer::ReformerConfig& m = s.model;
  m.vocab_size = 256;
  m.n_layers = 3;  // the paper's ablations use 3-layer models
  m.dropout = 0;
  s.train.optimizer = "adam";
  s.train.schedule = "rsqrt";
  s.train.clip = 1.0;
  switch (scale) {
    case Scale::paper:
      m.d_model = 1024;
      m.d_ff = 4096;
      m.n_heads = 8;
      s.length = 65536;
      m.chunk_len = 64;
      m.ff_chunk = 4096;
      m.loss_chunk = 4096;
      s.train.optimizer = "adafactor";
      s.train.batch = 8;
      s.train.steps = 100000;
      s.train.lr = 1e-3;  // not stated in the paper
      s.train.warmup = 1000;
      s.train.eval_every = 2000;
      s.train.eval_batches = 4;
      s.text =
          "The paper's ablation setting: 3 layers, d_model 1024, d_ff 4096, 8 heads, batches of 8 "
          "sequences, Adafactor; sequences of 64K bytes (enwik8-64K). Not stated in the paper and "
          "chosen here: 100K steps, learning rate 1e-3 with 1K warm-up steps then 1/sqrt decay, "
          "LSH chunks of 64 with about 2 L / 64 buckets. The paper's imagenet64 (64 x 64 x 3 = "
          "12288 values per image) is replaced by Fashion-MNIST (28 x 28 = 784 pixels, axial "
          "positions 28 x 28), the image set installed here. Full attention at 64K needs an "
          "L x L score matrix per head (16 GiB in f32): a large GPU.";
      break;
    case Scale::small:
      m.d_model = 128;
      m.d_ff = 256;
      m.n_heads = 4;
      s.length = lsh ? 512 : 256;
      m.chunk_len = 32;
      m.loss_chunk = 512;
      s.train.batch = 8;
      s.train.steps = 1000;
      s.train.lr = 2e-3;
      s.train.warmup = 50;
      s.train.eval_every = lsh ? 50 : 100;
      s.train.eval_batches = 4;
      s.text = fmt::format(
          "Reduced to run on a 2-core CPU in minutes: 3 layers as in the paper, but d_model 128 "
          "instead of 1024, d_ff 256 instead of 4096, 4 heads instead of 8, sequences of {} bytes "
          "instead of 64K, {} steps of 8 sequences instead of the paper's long runs, Adam "
          "(learning rate 2e-3, 50 warm-up steps, then 1/sqrt decay) instead of Adafactor. {}",
          s.length, s.train.steps,
          lsh ? "Text instead of imagenet64 (Fig. 4 is on images only). LSH: chunks of 32 (16 "
                "chunks per sequence), 32 buckets per round."
              : "Text only (the paper also ran imagenet64).");
      break;
    case Scale::tiny:
      m.d_model = 16;
      m.d_ff = 32;
      m.n_heads = 2;
      s.length = 32;
      m.chunk_len = 8;
      m.loss_chunk = 32;
      s.train.batch = 2;
      s.train.steps = 4;
      s.train.lr = 1e-3;
      s.train.warmup = 2;
      s.train.eval_every = 2;
      s.train.eval_batches = 1;
      s.text =
          "A smoke test (seconds): 3 layers of width 16, sequences of 32 bytes, 4 steps; the "
          "numbers mean nothing.";
      break;
  }
  m.max_len = s.length;
  s.train.checkpoint_every = s.train.eval_every;
  return s;
}

double to_unit(double nats) { return nats / std::numbers::ln2; }

// The last evaluation of a run, in the data's unit (NaN without one).
double final_value(const VariantRun& run) {
  return run.curve.empty() ? std::nan("") : to_unit(run.curve.back().loss);
}

// The largest |difference| between two curves at the steps both evaluated.
double largest_gap(const VariantRun& a, const VariantRun& b) {
  double gap = 0;
  for (const tools::EvalPoint& p : a.curve) {
    for (const tools::EvalPoint& q : b.curve) {
      if (p.step == q.step) gap = std::max(gap, std::abs(to_unit(p.loss) - to_unit(q.loss)));
    }
  }
  return gap;
}

// How `other` compares with `baseline` at the end: worse, the same or better, within a relative
// tolerance.
std::string no_worse(double other, double baseline, double tolerance) {
  const double relative = (other - baseline) / baseline;
  const std::string verdict =
      relative > tolerance    ? fmt::format("worse by more than {:.0f}%", 100 * tolerance)
      : relative < -tolerance ? fmt::format("better by more than {:.0f}%", 100 * tolerance)
                              : fmt::format("the same within {:.0f}%", 100 * tolerance);
  return fmt::format("{:+.3f} ({:+.1f}%): {}", other - baseline, 100 * relative, verdict);
}

// "Does not hurt" within this relative tolerance of the final held-out loss (a short run's
// seed-to-seed spread is of this order).
constexpr double kTolerance = 0.02;

std::string two_way_findings(const std::vector<VariantRun>& runs, const std::string& unit,
                             const std::string& paper) {
  const VariantRun &base = runs[0], &other = runs[1];
  return fmt::format(
      "Final held-out {}: {} {:.3f}, {} {:.3f}; {} against {}: {}. Largest gap between the curves "
      "at a common step: {:.3g} {}.\n\nThe paper: {}",
      unit, base.label, final_value(base), other.label, final_value(other), other.label, base.label,
      no_worse(final_value(other), final_value(base), kTolerance), largest_gap(base, other), unit,
      paper);
}

std::string hash_round_findings(const std::vector<VariantRun>& runs, const std::string& unit) {
  // runs: full, lsh-1, lsh-2, lsh-4, lsh-8.
  const double full = final_value(runs[0]);
  std::string out = fmt::format("Final held-out {}: ", unit);
  for (std::size_t i = 0; i < runs.size(); ++i) {
    out += fmt::format("{}{} {:.3f}", i ? ", " : "", runs[i].label, final_value(runs[i]));
  }
  bool falls = true;
  for (std::size_t i = 2; i < runs.size(); ++i) {
    if (final_value(runs[i]) > final_value(runs[i - 1])) falls = false;
  }
  const double lsh8 = final_value(runs.back());
  out += fmt::format(
      ".\n\n- More hash rounds give a lower loss (LSH-1 > LSH-2 > LSH-4 > LSH-8): {}.\n"
      "- LSH-8 against full attention: {}.\n- LSH-1 against full attention: {:+.3f} {}.\n\n"
      "The paper (Fig. 4, imagenet64): the loss falls as the number of hashes grows, and at 8 "
      "hashes LSH attention almost matches full attention.",
      falls ? "yes" : "no", no_worse(lsh8, full, kTolerance), final_value(runs[1]) - full, unit);
  return out;
}

// One data set of an experiment: the text corpus, or Fashion-MNIST (the stand-in for the paper's
// imagenet64) at paper scale.
struct CurveData {
  std::string name;  // "text", "images"
  std::string data;  // for tools::open_training_data: "" (the default corpus), a file, or
                     // "fashion-mnist"
  int64_t length = 0;
};

// The data sets of a scale: `run.data` (the default corpus when empty); at paper scale Fashion-
// MNIST too when `with_images`, or only images when `images_only` (Fig. 4 is imagenet64 only).
std::vector<CurveData> curve_data(const RunOptions& run, const CurveScale& s, bool with_images,
                                  bool images_only = false) {
  std::vector<CurveData> out;
  if (run.scale != Scale::paper || !images_only) out.push_back({"text", run.data, s.length});
  if (run.scale == Scale::paper && (with_images || images_only)) {
    out.push_back({"images", "fashion-mnist", 784});
  }
  return out;
}

// The model for a data set: the vocabulary and positions follow the data (images: 257 tokens,
// axial positions over the 28 x 28 grid).
reformer::ReformerConfig model_for(const reformer::ReformerConfig& base, const CurveData& d,
                                   const tools::TrainingData& data) {
  reformer::ReformerConfig c = base;
  c.vocab_size = data.vocab_size();
  c.max_len = d.length;
  if (d.name == "images") c.axial_shape = {28, 28};
  return c;
}

Result run_curves(const CurveExperiment& e, const CurveScale& s,
                  const std::vector<CurveData>& datasets, const RunOptions& run) {
  Result result;
  result.name = e.name;
  result.title = e.title;
  result.settings = e.design +
                    " Every variant starts from the same seed and sees the same "
                    "batches; held-out = the data's validation split.\n\nData:";
  const bool several = datasets.size() > 1;
  Plot plot;
  plot.title = e.title;
  plot.x_label = "step";
  std::vector<std::string> units;
  std::vector<std::string> findings;
  for (const CurveData& d : datasets) {
    const uint64_t seed = run.seed;
    const DataFactory data = [d, seed] {
      return tools::open_training_data(d.data, d.length, seed);
    };
    const std::unique_ptr<tools::TrainingData> probe = data();
    const std::string unit = probe->unit();
    units.push_back(unit);
    result.settings += fmt::format(" {}{}.", several ? d.name + ": " : "", probe->description());

    std::vector<VariantRun> runs;
    for (const CurveVariant& cv : e.variants) {
      Variant v;
      v.name = several ? d.name + "-" + cv.name : cv.name;
      v.label = several ? d.name + ": " + cv.label : cv.label;
      v.config = model_for(s.model, d, *probe);
      cv.change(v.config);
      v.train = s.train;
      v.data = data;
      runs.push_back(train_variant(v, run));
      if (runs.back().stopped || tools::stop_requested()) {
        result.findings = fmt::format("Stopped while training {}; rerun to continue.", v.name);
        return result;
      }
    }
    if (result.table.columns.empty()) {
      result.table.columns = {
          "variant", "steps", "final held-out", "best held-out", "vs the first variant", "unit"};
    }
    for (const VariantRun& r : runs) {
      double best = std::numeric_limits<double>::infinity();
      Series series;
      series.name = r.label;
      for (const tools::EvalPoint& p : r.curve) {
        best = std::min(best, to_unit(p.loss));
        series.x.push_back(static_cast<double>(p.step));
        series.y.push_back(to_unit(p.loss));
      }
      result.table.rows.push_back(
          {r.label, std::to_string(r.step), fmt::format("{:.3f}", final_value(r)),
           fmt::format("{:.3f}", best),
           fmt::format("{:+.3f}", final_value(r) - final_value(runs[0])), unit});
      plot.series.push_back(std::move(series));
    }
    findings.push_back((several ? "**" + d.name + "** - " : std::string()) +
                       e.findings(runs, unit));
  }
  result.settings += fmt::format("\n\nScale `{}`: {}", scale_name(run.scale), s.text);
  plot.y_label = "held-out " + units[0];
  if (several && units.back() != units[0]) plot.y_label += " (text), " + units.back() + " (images)";
  result.plot = std::move(plot);
  for (std::size_t i = 0; i < findings.size(); ++i) {
    result.findings += (i ? "\n\n" : "") + findings[i];
  }
  return result;
}

void full_attention(reformer::ReformerConfig& c) { c.attention = {AttentionKind::full}; }

Result run_shared_qk(const RunOptions& run) {
  CurveScale s = curve_scale(run.scale, /*lsh=*/false);
  // A standard Transformer (one-stream residual), as the paper's Fig. 3 left.
  s.model.reversible = false;
  s.model.standard_residual = true;
  CurveExperiment e{
      .name = "shared-qk",
      .title = "Fig. 3 left: shared query-key space vs separate Q and K (full attention)",
      .design =
          "Transformers with full attention and the standard residual; the only difference "
          "is the attention's query/key projection: one shared projection (keys are the "
          "unit-normalised queries, a position attends to itself only when nothing else "
          "is allowed) or separate Q and K.",
      .variants = {{"separate-qk", "separate Q/K",
                    [](reformer::ReformerConfig& c) {
                      full_attention(c);
                      c.shared_qk = false;
                    }},
                   {"shared-qk", "shared QK",
                    [](reformer::ReformerConfig& c) {
                      full_attention(c);
                      c.shared_qk = true;
                    }}},
      .findings = [](const std::vector<VariantRun>& runs, const std::string& unit) {
        return two_way_findings(runs, unit,
                                "shared-QK attention does not learn worse than separate "
                                "Q/K on enwik8 and imagenet64 (it is even slightly faster "
                                "on enwik8).");
      }};
  return run_curves(e, s, curve_data(run, s, /*with_images=*/true), run);
}

Result run_reversible(const RunOptions& run) {
  CurveScale s = curve_scale(run.scale, /*lsh=*/false);
  CurveExperiment e{
      .name = "reversible",
      .title = "Fig. 3 right: reversible layers vs the standard Transformer residual",
      .design =
          "Full attention with separate Q/K, the same layers and parameter count in both: the "
          "standard Transformer residual on one stream (x + Attention(x), then + FeedForward) "
          "against the reversible layers' two streams (y1 = x1 + Attention(x2), y2 = x2 + "
          "FeedForward(y1), started from two copies of the embedding and averaged at the end), "
          "trained with activations recomputed in backward.",
      .variants = {{"transformer", "Transformer (standard residual)",
                    [](reformer::ReformerConfig& c) {
                      full_attention(c);
                      c.shared_qk = false;
                      c.reversible = false;
                      c.standard_residual = true;
                    }},
                   {"reversible", "reversible",
                    [](reformer::ReformerConfig& c) {
                      full_attention(c);
                      c.shared_qk = false;
                      c.reversible = true;
                    }}},
      .findings = [](const std::vector<VariantRun>& runs, const std::string& unit) {
        return two_way_findings(
            runs, unit,
            "a reversible Transformer learns as well as the standard one on enwik8 and "
            "imagenet64.");
      }};
  return run_curves(e, s, curve_data(run, s, /*with_images=*/true), run);
}

Result run_hash_rounds(const RunOptions& run) {
  CurveScale s = curve_scale(run.scale, /*lsh=*/true);
  if (run.scale == Scale::paper) {
    // Fig. 4 is imagenet64 only: Fashion-MNIST's 784 pixels in 14 chunks of 56.
    s.model.chunk_len = 56;
    s.model.n_buckets = 28;
    s.text +=
        " Fig. 4 is imagenet64 only, so this experiment runs on Fashion-MNIST only, in "
        "chunks of 56 pixels with 28 buckets per round.";
  } else {
    s.model.n_buckets = s.length * 2 / s.model.chunk_len;
  }
  std::vector<CurveVariant> variants{{"full", "full attention", [](reformer::ReformerConfig& c) {
                                        full_attention(c);
                                        c.shared_qk = true;
                                      }}};
  for (int hashes : {1, 2, 4, 8}) {
    variants.push_back({fmt::format("lsh-{}", hashes), fmt::format("LSH-{}", hashes),
                        [hashes](reformer::ReformerConfig& c) {
                          c.attention = {AttentionKind::lsh};
                          c.n_hashes = hashes;
                        }});
  }
  CurveExperiment e{
      .name = "hash-rounds",
      .title = "Fig. 4: LSH attention with 1, 2, 4 and 8 hash rounds vs full attention",
      .design = fmt::format(
          "Reformers (reversible layers) whose attention is either full (shared-QK, as LSH "
          "attention always is) or LSH with 1, 2, 4 or 8 hash rounds (chunks of {}, {} buckets "
          "per round, one chunk back).",
          s.model.chunk_len, s.model.n_buckets),
      .variants = std::move(variants),
      .findings = hash_round_findings};
  return run_curves(e, s, curve_data(run, s, false, /*images_only=*/true), run);
}

const bool registered_shared_qk = register_experiment(
    {.name = "shared-qk",
     .description = "Fig. 3 left: learning curves of full attention with shared QK vs separate Q/K",
     .run = run_shared_qk,
     .order = 20});
const bool registered_reversible = register_experiment(
    {.name = "reversible",
     .description = "Fig. 3 right: learning curves of reversible layers vs the standard residual",
     .run = run_reversible,
     .order = 30});
const bool registered_hash_rounds = register_experiment(
    {.name = "hash-rounds",
     .description =
         "Fig. 4: learning curves of LSH attention with 1/2/4/8 hashes vs full attention",
     .run = run_hash_rounds,
     .order = 40});

}  // namespace
}  // namespace rw::ablate
