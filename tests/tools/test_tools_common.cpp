// The pieces the tools share: training data sources, progress formatting, model flags.
#include <doctest/doctest.h>

#include <fstream>

#include "common/model_flags.h"
#include "common/progress.h"
#include "common/training_data.h"
#include "core/ops.h"
#include "nn/nn_test_util.h"
#include "test_util.h"

namespace rw::tools {
namespace {

TEST_CASE("DuplicationData scores the second copy only and replays from its state") {
  DuplicationData data(16, 3);
  CHECK(data.vocab_size() == 128);
  const PhiloxState start = data.state();
  TokenBatch a = data.next(4);
  CHECK(a.inputs.shape() == Shape{4, 16});
  const std::vector<int64_t> t = a.targets.to_vector<int64_t>();
  const std::vector<int64_t> x = a.inputs.to_vector<int64_t>();
  for (int64_t b = 0; b < 4; ++b) {
    for (int64_t i = 0; i < 16; ++i) {
      const int64_t target = t[static_cast<std::size_t>(b * 16 + i)];
      const bool scored = i >= 8 && i <= 14;  // L/2 .. L-2
      CAPTURE(i);
      if (scored) {
        // The second copy repeats the first: the target at i is the input at i + 1 - L/2.
        CHECK(target == x[static_cast<std::size_t>(b * 16 + i + 1 - 8)]);
      } else {
        CHECK(target == -100);
      }
    }
  }
  data.set_state(start);
  CHECK(max(abs(sub(data.next(4).inputs, a.inputs))).item() == 0);
  // Held-out batches are the same at every call and differ from training batches.
  auto e1 = data.evaluation_batches(4, 2), e2 = data.evaluation_batches(4, 2);
  REQUIRE(e1.size() == 2);
  CHECK(max(abs(sub(e1[0].inputs, e2[0].inputs))).item() == 0);
  CHECK(max(abs(sub(e1[0].inputs, a.inputs))).item() > 0);
}

TEST_CASE("ByteTextData: training windows from the train split, evaluation from valid") {
  test::TempDir dir("bytetext");
  {
    std::ofstream out(dir / "t.txt");
    for (int i = 0; i < 2000; ++i) out << static_cast<char>('a' + i % 26);
  }
  ByteTextData data((dir / "t.txt").string(), 8, 1);
  CHECK(data.vocab_size() == 256);
  TokenBatch b = data.next(3);
  CHECK(b.inputs.shape() == Shape{3, 8});
  // Targets are the next bytes.
  auto x = b.inputs.to_vector<int64_t>(), y = b.targets.to_vector<int64_t>();
  for (std::size_t i = 0; i + 1 < 8; ++i) CHECK(y[i] == x[i + 1]);
  auto eval = data.evaluation_batches(4, 100);
  // valid is 100 bytes: 99 targets -> 12 full windows of 8, in batches of 4.
  CHECK(eval.size() == 3);
  CHECK(test::contains(test::error_message([&] { ByteTextData((dir / "t.txt").string(), 500, 1); }),
                       "t.txt"));
}

TEST_CASE("progress formatting") {
  CHECK(format_duration(42) == "42s");
  CHECK(format_duration(185) == "3m05s");
  CHECK(format_duration(7625) == "2h07m");
  CHECK(format_count(950) == "950");
  CHECK(format_count(12345) == "12.3k");
  CHECK(format_count(4.56e6) == "4.56M");
}

TEST_CASE("model flags build a validated config") {
  CLI::App app;
  ModelFlags flags;
  flags.add_to(app);
  const char* argv[] = {
      "x",        "--layers", "3",           "--attention", "lsh,full,local", "--no-reversible",
      "--hashes", "4",        "--positions", "sinusoidal"};
  app.parse(10, const_cast<char**>(argv));
  reformer::ReformerConfig c = flags.config(256, 128);
  CHECK(c.n_layers == 3);
  CHECK(c.attention == std::vector<reformer::AttentionKind>{reformer::AttentionKind::lsh,
                                                            reformer::AttentionKind::full,
                                                            reformer::AttentionKind::local});
  CHECK_FALSE(c.reversible);
  CHECK(c.n_hashes == 4);
  CHECK(c.max_len == 128);
  CHECK(c.positions == reformer::PositionKind::sinusoidal);
}

}  // namespace
}  // namespace rw::tools
