#include "common/training_data.h"

#include <fmt/format.h>

#include <filesystem>
#include <utility>

#include "common/compressed_file.h"
#include "common/image_data.h"
#include "core/error.h"
#include "core/ops.h"

namespace rw::tools {

ByteTextData::ByteTextData(const std::string& path, int64_t length, uint64_t seed,
                           std::string label)
    : label_(std::move(label)),
      data_(std::make_shared<reformer::ByteDataset>(read_file_bytes(path), path)),
      length_(length),
      sampler_(data_, reformer::Split::train, length, seed) {
  data_->check_window_fits(reformer::Split::valid, length);
}

std::string ByteTextData::description() const {
  return fmt::format(
      "{}{} ({} bytes: {} train, {} valid, {} test)", label_.empty() ? "" : label_ + ": ",
      data_->path(), data_->size(), data_->split_size(reformer::Split::train),
      data_->split_size(reformer::Split::valid), data_->split_size(reformer::Split::test));
}

std::unique_ptr<ByteTextData> gcide_corpus(int64_t length, uint64_t seed, const std::string& path) {
  RW_CHECK(std::filesystem::exists(path),
           "the default corpus (GCIDE) is not installed: {} is missing. Install Debian's "
           "dict-gcide package (tools/setup.sh does: apt-get install dict-gcide) or pass "
           "--data FILE to train on a text file of your own",
           path);
  return std::make_unique<ByteTextData>(path, length, seed, "GCIDE dictionary");
}

std::unique_ptr<TrainingData> open_training_data(const std::string& data,
                                                 std::optional<int64_t> length, uint64_t seed) {
  if (data == "fashion-mnist") {
    auto images = fashion_mnist_data(seed);
    RW_CHECK(!length || *length == images->length(),
             "fashion-mnist: a sequence is one whole {}x{} image, {} pixels, so the length cannot "
             "be {} (leave --length out)",
             images->rows(), images->cols(), images->length(), *length);
    return images;
  }
  const int64_t text_length = length.value_or(kDefaultTextLength);
  if (data.empty() || data == "gcide") return gcide_corpus(text_length, seed);
  RW_CHECK(std::filesystem::exists(data),
           "--data: no such file '{}' (give a file, or one of the names gcide, fashion-mnist)",
           data);
  return std::make_unique<ByteTextData>(data, text_length, seed);
}

TokenBatch ByteTextData::next(int64_t batch_size) {
  reformer::ByteWindows w = sampler_.next(batch_size);
  return {w.inputs, w.targets};
}

std::vector<TokenBatch> ByteTextData::evaluation_batches(int64_t batch_size,
                                                         int64_t max_batches) const {
  reformer::SequentialWindows windows(data_, reformer::Split::valid, length_);
  std::vector<TokenBatch> batches;
  while (!windows.done() && static_cast<int64_t>(batches.size()) < max_batches) {
    reformer::ByteWindows w = windows.next(batch_size);
    // Only full-length windows: a short last window would need a separate (and slower) shape.
    if (w.inputs.size(1) != length_) break;
    batches.push_back({w.inputs, w.targets});
  }
  return batches;
}

namespace {

TokenBatch scored_on_copy(const reformer::DuplicationBatch& b) {
  return {b.inputs, where(b.loss_mask, b.targets, static_cast<double>(reformer::kNoTarget))};
}

}  // namespace

DuplicationData::DuplicationData(int64_t length, uint64_t seed, int64_t vocab_size)
    : options_{.length = length, .vocab_size = vocab_size}, seed_(seed), task_(options_, seed) {}

std::string DuplicationData::description() const {
  return fmt::format("the duplication task (length {}, symbols 1..{})", options_.length,
                     options_.vocab_size - 1);
}

TokenBatch DuplicationData::next(int64_t batch_size) {
  return scored_on_copy(task_.next(batch_size));
}

std::vector<reformer::DuplicationBatch> DuplicationData::evaluation_tasks(
    int64_t batch_size, int64_t max_batches) const {
  // A seed of its own, so the held-out sequences are not the training stream's.
  reformer::DuplicationTask held_out(options_, seed_ ^ 0x5eed5eed5eedULL);
  std::vector<reformer::DuplicationBatch> out;
  for (int64_t i = 0; i < max_batches; ++i) out.push_back(held_out.next(batch_size));
  return out;
}

std::vector<TokenBatch> DuplicationData::evaluation_batches(int64_t batch_size,
                                                            int64_t max_batches) const {
  std::vector<TokenBatch> out;
  for (const auto& b : evaluation_tasks(batch_size, max_batches)) out.push_back(scored_on_copy(b));
  return out;
}

}  // namespace rw::tools
