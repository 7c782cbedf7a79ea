// The duplication task (0 w 0 w): sequence structure, the exact loss mask, determinism per seed,
// and the masked loss and accuracy.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "autograd/tape.h"
#include "core/ops.h"
#include "models/reformer/duplication_task.h"
#include "test_util.h"

namespace {

using rw::Tensor;
using rw::reformer::DuplicationBatch;
using rw::reformer::DuplicationTask;
using rw::reformer::DuplicationTaskOptions;

std::vector<int64_t> row(const Tensor& t, int64_t b) {
  return t.select(0, b).contiguous().to_vector<int64_t>();
}

}  // namespace

TEST_CASE("duplication sequences are 0 w 0 w with next-token targets") {
  for (int64_t L : {4, 10, 64}) {
    CAPTURE(L);
    DuplicationTask task({.length = L}, 3);
    const DuplicationBatch batch = task.next(5);
    REQUIRE(batch.inputs.shape() == rw::Shape{5, L});
    REQUIRE(batch.targets.shape() == rw::Shape{5, L});
    REQUIRE(batch.loss_mask.shape() == rw::Shape{5, L});
    CHECK(batch.inputs.dtype() == rw::DType::i64);
    CHECK(batch.targets.dtype() == rw::DType::i64);
    CHECK(batch.loss_mask.dtype() == rw::DType::boolean);
    const int64_t half = L / 2;
    for (int64_t b = 0; b < 5; ++b) {
      const std::vector<int64_t> x = row(batch.inputs, b), y = row(batch.targets, b);
      CHECK(x[0] == 0);
      CHECK(x[half] == 0);
      for (int64_t i = 1; i < half; ++i) {
        CHECK(x[i] >= 1);
        CHECK(x[i] <= 127);
        CHECK(x[half + i] == x[i]);  // the second copy repeats the first
      }
      for (int64_t t = 0; t + 1 < L; ++t) CHECK(y[t] == x[t + 1]);
      CHECK(y[L - 1] == rw::reformer::kNoTarget);
    }
  }
}

TEST_CASE("duplication loss mask marks exactly the targets in the second copy") {
  const int64_t L = 12;
  DuplicationTask task({.length = L}, 9);
  const DuplicationBatch batch = task.next(2);
  // Targets at t = 6..10 are input positions 7..11: the second copy of w (5 symbols).
  const std::vector<int64_t> expected = {0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0};
  for (int64_t b = 0; b < 2; ++b) {
    CHECK(batch.loss_mask.select(0, b).to(rw::DType::i64).contiguous().to_vector<int64_t>() ==
          expected);
  }
}

TEST_CASE("duplication batches are a pure function of the seed") {
  DuplicationTask a({.length = 32}, 5), b({.length = 32}, 5), c({.length = 32}, 6);
  const DuplicationBatch first = a.next(4);
  CHECK(first.inputs.to_vector<int64_t>() == b.next(4).inputs.to_vector<int64_t>());
  CHECK(first.inputs.to_vector<int64_t>() != c.next(4).inputs.to_vector<int64_t>());
  // The stream moves on, and a saved state resumes it.
  const rw::PhiloxState saved = a.state();
  const std::vector<int64_t> second = a.next(4).inputs.to_vector<int64_t>();
  CHECK(second != first.inputs.to_vector<int64_t>());
  DuplicationTask resumed({.length = 32}, 0);
  resumed.set_state(saved);
  CHECK(resumed.next(4).inputs.to_vector<int64_t>() == second);
  // The functional form with an explicit state equals the stream's draw.
  rw::Generator gen(5);
  CHECK(rw::reformer::duplication_batch(4, {.length = 32}, gen).inputs.to_vector<int64_t>() ==
        first.inputs.to_vector<int64_t>());
}

TEST_CASE("duplication symbols cover 1..vocab_size-1") {
  DuplicationTask task({.length = 202, .vocab_size = 5}, 1);
  std::vector<int64_t> seen(5, 0);
  for (int64_t v : task.next(4).inputs.to_vector<int64_t>()) seen[static_cast<std::size_t>(v)]++;
  CHECK(seen[0] == 4 * 2);  // only the two separators per sequence
  for (int s = 1; s < 5; ++s) CHECK(seen[s] > 50);
}

TEST_CASE("duplication task rejects bad lengths, vocabularies and batch sizes") {
  using rw::test::contains;
  using rw::test::error_message;
  for (int64_t L : {7, 2, 0, -4}) {
    CAPTURE(L);
    std::string m = error_message([&] { DuplicationTask({.length = L}, 0); });
    CHECK(contains(m, fmt::format("length must be even and >= 4 (sequences 0 w 0 w), got {}", L)));
  }
  CHECK(contains(error_message([&] { DuplicationTask({.length = 8, .vocab_size = 1}, 0); }),
                 "vocab_size must be >= 2"));
  DuplicationTask task({.length = 8}, 0);
  CHECK(contains(error_message([&] { task.next(0); }), "batch_size must be positive, got 0"));
}

TEST_CASE("masked accuracy and loss count only the masked positions") {
  const int64_t L = 8, V = 128;
  DuplicationTask task({.length = L}, 2);
  const DuplicationBatch batch = task.next(3);
  // Logits that predict the right target everywhere the target exists...
  Tensor safe_targets =
      rw::where(rw::ge(batch.targets, 0.0), batch.targets, 0.0).to(rw::DType::i64);
  Tensor perfect = rw::mul(rw::one_hot(safe_targets, V), 10.0);
  CHECK(rw::reformer::masked_accuracy(perfect, batch.targets, batch.loss_mask) == 1.0);
  // ... and wrong on the masked positions only: accuracy 0, while unmasked positions stay right.
  Tensor wrong = rw::where(batch.loss_mask.unsqueeze(-1),
                           rw::mul(rw::one_hot(rw::zeros_like(safe_targets), V), 10.0), perfect);
  CHECK(rw::reformer::masked_accuracy(wrong, batch.targets, batch.loss_mask) == 0.0);
  // Wrong on one masked position of the 9: accuracy 8/9.
  Tensor one_off = perfect.clone();
  {
    rw::NoGradGuard no_grad;
    rw::copy_(one_off.select(0, 1).select(0, 5), rw::zeros({V}));
  }
  CHECK(rw::reformer::masked_accuracy(one_off, batch.targets, batch.loss_mask) ==
        doctest::Approx(8.0 / 9.0));

  // Uniform logits: cross-entropy log(V) at every position; a masked position with a confident
  // right answer lowers the mean by its share only.
  Tensor uniform = rw::zeros({3, L, V}).requires_grad_();
  Tensor loss = rw::reformer::masked_cross_entropy(uniform, batch.targets, batch.loss_mask);
  CHECK(loss.item() == doctest::Approx(std::log(128.0)));
  rw::backward(loss);
  // No gradient reaches unmasked positions; each masked row gets (softmax - onehot) / 9.
  Tensor g = uniform.grad();
  CHECK(rw::sum(rw::abs(g.select(1, 0))).item() == 0.0);
  CHECK(rw::sum(rw::abs(g.select(1, L - 1))).item() == 0.0);
  const int64_t target = batch.targets.select(0, 0).select(0, 4).item<int64_t>();
  CHECK(g.select(0, 0).select(0, 4).select(0, target).item() ==
        doctest::Approx((1.0 / V - 1.0) / 9.0));

  using rw::test::contains;
  using rw::test::error_message;
  CHECK(contains(error_message([&] {
                   rw::reformer::masked_accuracy(perfect, batch.targets,
                                                 rw::zeros_like(batch.loss_mask));
                 }),
                 "masked_accuracy: the mask selects no position"));
  CHECK(contains(error_message([&] {
                   rw::reformer::masked_cross_entropy(perfect.narrow(1, 0, 4), batch.targets,
                                                      batch.loss_mask);
                 }),
                 "masked_cross_entropy: targets must be i64 [3, 4]"));
}
