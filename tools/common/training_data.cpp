#include "common/training_data.h"

#include <fmt/format.h>

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

}  // namespace rw::tools
