#include "common/training_data.h"

#include <fmt/format.h>

#include "core/ops.h"

namespace rw::tools {

ByteTextData::ByteTextData(const std::string& path, int64_t length, uint64_t seed)
    : data_(std::make_shared<reformer::ByteDataset>(path)),
      length_(length),
      sampler_(data_, reformer::Split::train, length, seed) {
  data_->check_window_fits(reformer::Split::valid, length);
}

std::string ByteTextData::description() const {
  return fmt::format("{} ({} bytes: {} train, {} valid, {} test)", data_->path(), data_->size(),
                     data_->split_size(reformer::Split::train),
                     data_->split_size(reformer::Split::valid),
                     data_->split_size(reformer::Split::test));
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
