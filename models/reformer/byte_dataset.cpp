#include "models/reformer/byte_dataset.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <utility>

#include "core/ops.h"

namespace rw::reformer {

namespace {

// 1 in 20 bytes (5%) for each of valid and test.
constexpr int64_t kHeldOutDivisor = 20;

std::vector<uint8_t> read_file(const std::string& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  RW_CHECK(std::filesystem::exists(status), "ByteDataset: cannot open '{}': no such file", path);
  RW_CHECK(std::filesystem::is_regular_file(status),
           "ByteDataset: cannot read '{}': not a regular file", path);
  std::FILE* f = std::fopen(path.c_str(), "rb");
  RW_CHECK(f != nullptr, "ByteDataset: cannot open '{}': {}", path, std::strerror(errno));
  std::vector<uint8_t> bytes;
  uint8_t buffer[1 << 16];
  std::size_t got = 0;
  while ((got = std::fread(buffer, 1, sizeof(buffer), f)) > 0) {
    bytes.insert(bytes.end(), buffer, buffer + got);
  }
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  RW_CHECK(!failed, "ByteDataset: error while reading '{}'", path);
  return bytes;
}

void check_length(const char* op, int64_t length) {
  RW_CHECK(length > 0, "{}: window length must be positive, got {}", op, length);
}

}  // namespace

const char* split_name(Split split) {
  switch (split) {
    case Split::train:
      return "train";
    case Split::valid:
      return "valid";
    case Split::test:
      return "test";
  }
  return "?";
}

ByteDataset::ByteDataset(std::string path, Device device)
    : ByteDataset(read_file(path), path, device) {}

ByteDataset::ByteDataset(std::vector<uint8_t> bytes, std::string name, Device device)
    : path_(std::move(name)), device_(device), bytes_(std::move(bytes)) {
  RW_CHECK(size() >= kHeldOutDivisor,
           "ByteDataset: '{}' has {} bytes, too few for a 90/5/5 train/valid/test split (needs at "
           "least {})",
           path_, size(), kHeldOutDivisor);
}

int64_t ByteDataset::split_size(Split split) const {
  const int64_t held_out = size() / kHeldOutDivisor;
  return split == Split::train ? size() - 2 * held_out : held_out;
}

int64_t ByteDataset::split_offset(Split split) const {
  switch (split) {
    case Split::train:
      return 0;
    case Split::valid:
      return split_size(Split::train);
    case Split::test:
      return split_size(Split::train) + split_size(Split::valid);
  }
  return 0;
}

void ByteDataset::check_window_fits(Split split, int64_t length) const {
  check_length("ByteDataset", length);
  RW_CHECK(split_size(split) >= length + 1,
           "ByteDataset: the {} split of '{}' has {} bytes (file: {} bytes), too few for windows "
           "of length {} (each needs {} bytes)",
           split_name(split), path_, split_size(split), size(), length, length + 1);
}

ByteWindows ByteDataset::windows(Split split, const std::vector<int64_t>& starts,
                                 int64_t length) const {
  check_window_fits(split, length);
  const auto B = static_cast<int64_t>(starts.size());
  RW_CHECK(B > 0, "ByteDataset: no window starts given");
  std::vector<int64_t> inputs(static_cast<std::size_t>(B * length));
  std::vector<int64_t> targets(inputs.size());
  const int64_t offset = split_offset(split), last_start = split_size(split) - length - 1;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t s = starts[static_cast<std::size_t>(b)];
    RW_CHECK(s >= 0 && s <= last_start,
             "ByteDataset: window start {} of length {} leaves the {} split of '{}' ({} bytes: "
             "starts 0..{})",
             s, length, split_name(split), path_, split_size(split), last_start);
    const uint8_t* src = bytes_.data() + offset + s;
    for (int64_t t = 0; t < length; ++t) {
      inputs[static_cast<std::size_t>(b * length + t)] = src[t];
      targets[static_cast<std::size_t>(b * length + t)] = src[t + 1];
    }
  }
  return {from_vector<int64_t>(inputs, Shape{B, length}, device_),
          from_vector<int64_t>(targets, Shape{B, length}, device_)};
}

ByteWindows ByteDataset::window(Split split, int64_t start, int64_t length) const {
  return windows(split, {start}, length);
}

// --- WindowSampler -----------------------------------------------------------------------------

WindowSampler::WindowSampler(std::shared_ptr<const ByteDataset> data, Split split, int64_t length,
                             uint64_t seed)
    : data_(std::move(data)), split_(split), length_(length), generator_(seed) {
  RW_CHECK(data_ != nullptr, "WindowSampler: no dataset given");
  data_->check_window_fits(split_, length_);
}

std::vector<int64_t> WindowSampler::next_starts(int64_t batch_size) {
  RW_CHECK(batch_size > 0, "WindowSampler: batch_size must be positive, got {}", batch_size);
  const int64_t starts = data_->split_size(split_) - length_;  // starts 0..starts-1
  return randint(0, starts, {batch_size}, generator_).to_vector<int64_t>();
}

ByteWindows WindowSampler::next(int64_t batch_size) {
  return data_->windows(split_, next_starts(batch_size), length_);
}

// --- SequentialWindows -------------------------------------------------------------------------

SequentialWindows::SequentialWindows(std::shared_ptr<const ByteDataset> data, Split split,
                                     int64_t length)
    : data_(std::move(data)), split_(split), length_(length) {
  RW_CHECK(data_ != nullptr, "SequentialWindows: no dataset given");
  check_length("SequentialWindows", length);
  RW_CHECK(data_->split_size(split_) >= 2,
           "SequentialWindows: the {} split of '{}' has {} bytes, too few to predict any",
           split_name(split_), data_->path(), data_->split_size(split_));
}

int64_t SequentialWindows::num_targets() const { return data_->split_size(split_) - 1; }

int64_t SequentialWindows::num_windows() const { return (num_targets() + length_ - 1) / length_; }

ByteWindows SequentialWindows::next(int64_t max_batch) {
  RW_CHECK(max_batch > 0, "SequentialWindows: max_batch must be positive, got {}", max_batch);
  RW_CHECK(!done(), "SequentialWindows: all {} windows of the {} split were already read",
           num_windows(), split_name(split_));
  const int64_t full_windows = num_targets() / length_;
  if (next_window_ >= full_windows) {  // the short last window, alone
    const int64_t start = next_window_ * length_;
    ++next_window_;
    return data_->window(split_, start, num_targets() - start);
  }
  const int64_t count = std::min(max_batch, full_windows - next_window_);
  std::vector<int64_t> starts;
  for (int64_t i = 0; i < count; ++i) starts.push_back((next_window_ + i) * length_);
  next_window_ += count;
  return data_->windows(split_, starts, length_);
}

}  // namespace rw::reformer
