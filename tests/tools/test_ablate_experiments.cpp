// rewind-ablate's training experiments (tools/ablate/): the weight mapping between full and LSH
// attention, resuming a variant's training run, and tiny-scale runs of each experiment.
#include <doctest/doctest.h>

#include <fstream>
#include <stdexcept>

#include "ablate/attention_swap.h"
#include "ablate/experiment.h"
#include "ablate/training_runs.h"
#include "autograd/tape.h"
#include "common/stop_signal.h"
#include "core/generator_scope.h"
#include "core/ops.h"
#include "nn/attention.h"
#include "nn/nn_test_util.h"
#include "test_util.h"

namespace rw::ablate {
namespace {

using reformer::AttentionKind;

reformer::ReformerConfig small_config(AttentionKind kind) {
  reformer::ReformerConfig c;
  c.vocab_size = 32;
  c.d_model = 16;
  c.d_ff = 32;
  c.n_layers = 2;
  c.n_heads = 2;
  c.attention = {kind};
  c.shared_qk = true;
  c.positions = reformer::PositionKind::learned;
  c.max_len = 24;
  return c;
}

// The LSH config that attends exactly like full attention: one bucket and one chunk holding the
// whole sequence, so every query sees every (causally allowed) key.
reformer::ReformerConfig one_bucket_lsh(int64_t hashes) {
  reformer::ReformerConfig c = small_config(AttentionKind::lsh);
  c.n_buckets = 1;
  c.chunk_len = 24;
  c.n_hashes = hashes;
  return c;
}

// Sets every named parameter to random values (biases included, so the bias mapping is tested).
void randomize(reformer::ReformerLM& model, uint64_t seed) {
  Generator g(seed);
  nn::StateDict state = model.state_dict();
  for (auto& [name, t] : state) t = mul(randn(t.shape(), g), 0.5);
  model.load_state_dict(state);
}

Tensor tokens(int64_t batch, int64_t length, uint64_t seed) {
  Generator g(seed);
  return randint(0, 32, {batch, length}, g);
}

Tensor logits_of(reformer::ReformerLM& model, const Tensor& x) {
  NoGradGuard no_grad;
  Generator rotations(5);
  GeneratorScope scope(rotations);
  model.eval();
  return model.forward(x);
}

double max_difference(const Tensor& a, const Tensor& b) { return max(abs(sub(a, b))).item(); }

TEST_CASE("with_attention: shared-QK full attention and one-bucket LSH give the same logits") {
  const Tensor x = tokens(2, 24, 1);
  reformer::ReformerLM full(small_config(AttentionKind::full));
  randomize(full, 2);
  // The query/key bias cannot go to LSH attention: zero, as freeze_query_key_bias keeps it.
  nn::StateDict state = full.state_dict();
  for (int layer = 0; layer < 2; ++layer) {
    const std::string name = "layers." + std::to_string(layer) + ".attention.b_qk";
    state[name] = zeros_like(state[name]);
  }
  full.load_state_dict(state);
  const Tensor reference = logits_of(full, x);

  for (int64_t hashes : {1, 2}) {
    CAPTURE(hashes);
    auto lsh = with_attention(full, one_bucket_lsh(hashes));
    CHECK(lsh->layer(0).kind() == AttentionKind::lsh);
    // The value bias went into the output bias, and nothing else changed.
    CHECK(max_difference(logits_of(*lsh, x), reference) < 1e-4);
    // And back: the LSH weights in a full-attention model give the same logits again.
    auto back = with_attention(*lsh, small_config(AttentionKind::full));
    CHECK(max_difference(logits_of(*back, x), reference) < 1e-4);
  }
  // The logits are not trivially equal: another model's differ.
  reformer::ReformerLM other(small_config(AttentionKind::full));
  randomize(other, 3);
  CHECK(max_difference(logits_of(other, x), reference) > 1e-2);
}

TEST_CASE("with_attention: an LSH model runs under full attention with zero Q/K and V biases") {
  const Tensor x = tokens(2, 24, 4);
  reformer::ReformerLM lsh(one_bucket_lsh(1));
  randomize(lsh, 5);
  auto full = with_attention(lsh, small_config(AttentionKind::full));
  const auto state = full->state_dict();
  CHECK(max(abs(state.at("layers.1.attention.b_qk"))).item() == 0);
  CHECK(max(abs(state.at("layers.1.attention.b_v"))).item() == 0);
  CHECK(max_difference(logits_of(*full, x), logits_of(lsh, x)) < 1e-4);
}

TEST_CASE("with_attention: errors name the layer and the parameter that cannot be mapped") {
  reformer::ReformerLM full(small_config(AttentionKind::full));
  randomize(full, 6);  // b_qk is not zero
  CHECK(test::contains(test::error_message([&] { with_attention(full, one_bucket_lsh(1)); }),
                       "layer 0: b_qk is not zero"));
  reformer::ReformerConfig separate = small_config(AttentionKind::full);
  separate.shared_qk = false;
  reformer::ReformerLM unshared(separate);
  CHECK(test::contains(test::error_message([&] { with_attention(unshared, one_bucket_lsh(1)); }),
                       "full attention with separate Q/K"));
  reformer::ReformerConfig deeper = one_bucket_lsh(1);
  deeper.n_layers = 3;
  CHECK(test::contains(test::error_message([&] { with_attention(full, deeper); }),
                       "the target config has 3 layers, the trained model 2"));
}

// A duplication-task source that fails at its `fail_at`-th training batch, as a process killed
// mid-run would stop; otherwise the same data (and the same description, so a rerun resumes).
class FailingData : public tools::DuplicationData {
 public:
  FailingData(int64_t fail_at) : DuplicationData(16, 3), fail_at_(fail_at) {}
  tools::TokenBatch next(int64_t batch_size) override {
    if (++calls_ == fail_at_) throw std::runtime_error("killed");
    return DuplicationData::next(batch_size);
  }

 private:
  int64_t fail_at_, calls_ = 0;
};

RunOptions tiny_run(const std::filesystem::path& work_dir) {
  RunOptions run;
  run.scale = Scale::tiny;
  run.work_dir = work_dir;
  run.progress = false;
  return run;
}

Variant duplication_variant(int64_t steps, int64_t fail_at) {
  Variant v;
  v.name = "full";
  v.config = small_config(AttentionKind::full);
  v.config.vocab_size = 128;
  v.config.n_layers = 1;
  v.config.max_len = 16;
  v.train.steps = steps;
  v.train.batch = 4;
  v.train.eval_every = 2;
  v.train.eval_batches = 1;
  v.train.checkpoint_every = 1;
  v.data = [fail_at]() -> std::unique_ptr<tools::TrainingData> {
    return std::make_unique<FailingData>(fail_at);
  };
  v.prepare = freeze_query_key_bias;
  return v;
}

TEST_CASE(
    "train_variant: a killed run resumes from its checkpoint and ends as an uninterrupted one") {
  test::TempDir dir("ablate_resume");
  RunOptions run = tiny_run(dir / "killed");
  run.seed = 4;
  // Killed while fetching the 4th batch: steps 1-3 are checkpointed.
  CHECK_THROWS_WITH(train_variant(duplication_variant(6, 4), run), "killed");
  CHECK(read_curve(run.work_dir / "full" / "log.jsonl", 6).size() == 1);  // step 2
  const VariantRun resumed = train_variant(duplication_variant(6, 0), run);
  CHECK_FALSE(resumed.reused);
  CHECK(resumed.step == 6);

  RunOptions straight = run;
  straight.work_dir = dir / "straight";
  const VariantRun reference = train_variant(duplication_variant(6, 0), straight);
  // The same evaluations at steps 2, 4 and 6, bit for bit.
  REQUIRE(resumed.curve.size() == 3);
  REQUIRE(reference.curve.size() == 3);
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(resumed.curve[i].step == reference.curve[i].step);
    CHECK(resumed.curve[i].loss == reference.curve[i].loss);
  }
  CHECK(max_difference(resumed.model->output_weight(), reference.model->output_weight()) == 0);
  // The frozen query/key bias stayed at zero through both runs.
  CHECK(max(abs(resumed.model->state_dict().at("layers.0.attention.b_qk"))).item() == 0);

  // A finished run is reused: nothing trains, the curve comes back from the log.
  const VariantRun again = train_variant(duplication_variant(6, 0), run);
  CHECK(again.reused);
  CHECK(again.curve.size() == 3);
  CHECK(again.curve.back().loss == reference.curve.back().loss);
  // Asking for more steps continues it; other settings start afresh.
  Variant longer = duplication_variant(8, 0);
  CHECK(train_variant(longer, run).step == 8);
  Variant other = duplication_variant(2, 0);
  other.train.lr = 1e-2;
  const VariantRun fresh = train_variant(other, run);
  CHECK_FALSE(fresh.reused);
  CHECK(fresh.curve.size() == 1);
}

TEST_CASE("read_curve keeps the last record of each step and drops steps after the checkpoint") {
  test::TempDir dir("ablate_curve");
  {
    std::ofstream out(dir / "log.jsonl");
    out << R"({"event":"eval","step":2,"loss":3.0})"
        << "\n"
        << R"({"event":"train","step":3,"loss":9.0})"
        << "\n"
        << R"({"event":"eval","step":4,"loss":2.5})"
        << "\n"  // before a kill
        << R"({"event":"eval","step":4,"loss":2.0})"
        << "\n"  // the resumed run's
        << R"({"event":"eval","step":6,"loss":1.0})"
        << "\n"
        << R"({"event":"ev)";  // a line cut by a kill
  }
  const auto curve = read_curve(dir / "log.jsonl", 5);
  REQUIRE(curve.size() == 2);
  CHECK(curve[0].step == 2);
  CHECK(curve[0].loss == 3.0);
  CHECK(curve[1].step == 4);
  CHECK(curve[1].loss == 2.0);
  CHECK(read_curve(dir / "missing.jsonl", 10).empty());
}

const Experiment& experiment(const std::string& name) {
  static const std::vector<Experiment> all = experiments();
  for (const Experiment& e : all) {
    if (e.name == name) return e;
  }
  throw std::runtime_error("no experiment " + name);
}

// A tiny text corpus for the language-modelling experiments.
std::string write_corpus(const std::filesystem::path& dir) {
  const auto path = dir / "corpus.txt";
  std::ofstream out(path);
  for (int i = 0; i < 4000; ++i) out << "the quick brown fox " << i % 97 << ". ";
  return path.string();
}

void check_well_formed(const Result& r, std::size_t rows, std::size_t columns, std::size_t series) {
  CHECK_FALSE(r.title.empty());
  CHECK(test::contains(r.settings, "Scale `tiny`"));
  CHECK(r.table.rows.size() == rows);
  CHECK(r.table.columns.size() == columns);
  for (const auto& row : r.table.rows) CHECK(row.size() == columns);
  REQUIRE(r.plot.has_value());
  CHECK(r.plot->series.size() == series);
  for (const Series& s : r.plot->series) {
    CHECK_FALSE(s.x.empty());
    CHECK(s.x.size() == s.y.size());
  }
  CHECK_FALSE(r.findings.empty());
}

TEST_CASE("duplication --scale tiny: a 4 x 5 accuracy matrix with findings") {
  test::TempDir dir("ablate_duplication");
  std::filesystem::create_directories(dir / "duplication");
  const Result r = experiment("duplication").run(tiny_run(dir / "duplication"));
  CHECK(r.name == "duplication");
  // Rows: trained with full, LSH-4, LSH-2, LSH-1; columns: the row label, full, LSH-8/4/2/1, steps.
  check_well_formed(r, 4, 7, 4);
  CHECK(r.table.rows[0][0] == "Full");
  CHECK(r.table.columns[1] == "Full");
  CHECK(r.table.columns[5] == "LSH-1");
  for (const auto& row : r.table.rows) CHECK(row.back() == "4");
  CHECK(test::contains(r.findings, "The paper's Table 2"));
}

TEST_CASE("shared-qk, reversible and hash-rounds --scale tiny: one curve per variant") {
  test::TempDir dir("ablate_curves");
  const std::string corpus = write_corpus(dir / "");
  for (const auto& [name, variants] : std::vector<std::pair<std::string, std::size_t>>{
           {"shared-qk", 2}, {"reversible", 2}, {"hash-rounds", 5}}) {
    CAPTURE(name);
    std::filesystem::create_directories(dir / name);
    RunOptions run = tiny_run(dir / name);
    run.data = corpus;
    const Result r = experiment(name).run(run);
    CHECK(r.name == name);
    check_well_formed(r, variants, 6, variants);
    // The curve holds the evaluations at steps 2 and 4.
    CHECK(r.plot->series[0].x == std::vector<double>{2, 4});
    CHECK(test::contains(r.settings, corpus));
  }
}

}  // namespace
}  // namespace rw::ablate
