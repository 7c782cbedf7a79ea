#include "models/reformer/duplication_task.h"

#include <utility>

#include "core/ops.h"

namespace rw::reformer {

namespace {

void check_options(const DuplicationTaskOptions& o) {
  RW_CHECK(o.length >= 4 && o.length % 2 == 0,
           "duplication task: length must be even and >= 4 (sequences 0 w 0 w), got {}", o.length);
  RW_CHECK(o.vocab_size >= 2,
           "duplication task: vocab_size must be >= 2 (symbol 0 separates the copies), got {}",
           o.vocab_size);
}

void check_batch_size(int64_t batch_size) {
  RW_CHECK(batch_size > 0, "duplication task: batch_size must be positive, got {}", batch_size);
}

int64_t word_length(const DuplicationTaskOptions& o) { return o.length / 2 - 1; }

// Checks the shapes and dtypes shared by the masked loss and accuracy.
void check_scored(const char* op, const Tensor& logits, const Tensor& targets, const Tensor& mask) {
  RW_CHECK(logits.defined() && targets.defined() && mask.defined(),
           "{}: logits, targets and mask must all be defined", op);
  RW_CHECK(logits.dim() == 3 && is_floating(logits.dtype()),
           "{}: logits must be floating [batch, length, vocab], got {} {}", op, logits.dtype(),
           logits.shape());
  const Shape bl{logits.size(0), logits.size(1)};
  RW_CHECK(targets.dtype() == DType::i64 && targets.shape() == bl,
           "{}: targets must be i64 {} (logits {}), got {} {}", op, bl, logits.shape(),
           targets.dtype(), targets.shape());
  RW_CHECK(mask.dtype() == DType::boolean && mask.shape() == bl,
           "{}: mask must be bool {} (logits {}), got {} {}", op, bl, logits.shape(), mask.dtype(),
           mask.shape());
}

}  // namespace

DuplicationBatch duplication_batch(int64_t batch_size, const DuplicationTaskOptions& options,
                                   PhiloxState state) {
  check_options(options);
  check_batch_size(batch_size);
  NoGradGuard no_grad;
  const int64_t L = options.length, n = word_length(options), B = batch_size;
  const TensorOptions i64{.dtype = DType::i64, .device = options.device};
  Tensor word = randint(1, options.vocab_size, {B, n}, state, i64);
  Tensor separator = zeros({B, 1}, i64);
  DuplicationBatch batch;
  batch.inputs = concat({separator, word, separator, word}, 1);
  batch.targets = concat({batch.inputs.narrow(1, 1, L - 1), full({B, 1}, kNoTarget, i64)}, 1);
  Tensor t = arange(L, i64).reshape({1, L});
  batch.loss_mask =
      logical_and(ge(t, static_cast<double>(L / 2)), le(t, static_cast<double>(L - 2)))
          .expand({B, L})
          .contiguous();
  return batch;
}

DuplicationBatch duplication_batch(int64_t batch_size, const DuplicationTaskOptions& options,
                                   Generator& generator) {
  check_options(options);
  check_batch_size(batch_size);
  return duplication_batch(batch_size, options, generator.next(batch_size * word_length(options)));
}

DuplicationTask::DuplicationTask(DuplicationTaskOptions options, uint64_t seed)
    : options_(std::move(options)), generator_(seed) {
  check_options(options_);
}

DuplicationBatch DuplicationTask::next(int64_t batch_size) {
  return duplication_batch(batch_size, options_, generator_);
}

Tensor masked_cross_entropy(const Tensor& logits, const Tensor& targets, const Tensor& mask) {
  check_scored("masked_cross_entropy", logits, targets, mask);
  Tensor scored;
  {
    NoGradGuard no_grad;
    RW_CHECK(sum(mask.to(DType::i64)).item<int64_t>() > 0,
             "masked_cross_entropy: the mask selects no position (mask shape {})", mask.shape());
    // Unmasked positions become ignored targets, so the mean runs over the masked ones only.
    scored =
        where(mask, targets, full({}, kNoTarget, {.dtype = DType::i64, .device = mask.device()}));
  }
  return cross_entropy(logits, scored, kNoTarget, Reduction::mean);
}

double masked_accuracy(const Tensor& logits, const Tensor& targets, const Tensor& mask) {
  check_scored("masked_accuracy", logits, targets, mask);
  NoGradGuard no_grad;
  const int64_t count = sum(mask.to(DType::i64)).item<int64_t>();
  RW_CHECK(count > 0, "masked_accuracy: the mask selects no position (mask shape {})",
           mask.shape());
  Tensor right = logical_and(eq(argmax(logits, -1), targets), mask);
  const int64_t correct = sum(right.to(DType::i64)).item<int64_t>();
  return static_cast<double>(correct) / static_cast<double>(count);
}

}  // namespace rw::reformer
