#pragma once
// A byte-level language-modelling dataset over any file (enwik8-style): every byte is a token
// (vocabulary 256), the file is split into train / valid / test by contiguous ranges, training
// draws random windows, evaluation walks a split in order.
//
//   auto data = std::make_shared<rw::reformer::ByteDataset>("enwik8");
//   rw::reformer::WindowSampler sampler(data, rw::reformer::Split::train, 1024, /*seed=*/0);
//   rw::reformer::ByteWindows batch = sampler.next(8);  // inputs, targets i64 [8, 1024]
//   save(sampler.state());  ...  sampler.set_state(saved);  // resume the same data order
//
//   rw::reformer::SequentialWindows eval(data, rw::reformer::Split::valid, 1024);
//   while (!eval.done()) { rw::reformer::ByteWindows b = eval.next(8); ... }
//
// Splits: with N bytes, valid and test get N / 20 bytes each (integer division, 5%) and train the
// rest (90% plus the remainder), in the order train, valid, test. For enwik8 (10^8 bytes) that is
// the usual 90M / 5M / 5M. A window of length L covers L + 1 consecutive bytes of one split:
// inputs are bytes [s, s + L), targets bytes [s + 1, s + L + 1). Windows never cross a split.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/philox.h"
#include "core/tensor.h"

namespace rw::reformer {

enum class Split { train, valid, test };
const char* split_name(Split split);

struct ByteWindows {
  Tensor inputs;   // i64 [B, L], values 0..255
  Tensor targets;  // i64 [B, L], the next byte of each input
};

class ByteDataset {
 public:
  // Reads the whole file. rw::Error naming the file when it is missing, not a regular file,
  // unreadable, or too small to give every split at least one byte (fewer than 20 bytes).
  explicit ByteDataset(std::string path, Device device = Device::cpu());
  // Bytes already in memory (a decompressed file, generated text); `name` stands for the file in
  // errors and path() (e.g. the compressed file's path). rw::Error naming it when the bytes are
  // too few to split (fewer than 20).
  ByteDataset(std::vector<uint8_t> bytes, std::string name, Device device = Device::cpu());

  // The file's path, or the name given with the bytes.
  const std::string& path() const { return path_; }
  Device device() const { return device_; }
  int64_t size() const { return static_cast<int64_t>(bytes_.size()); }
  int64_t split_offset(Split split) const;  // first byte of the split in the file
  int64_t split_size(Split split) const;    // bytes in the split

  // Window of `length` inputs starting at byte `start` of the split (start + length + 1 must fit):
  // inputs/targets [1, length]. Errors name the file, the split and the sizes.
  ByteWindows window(Split split, int64_t start, int64_t length) const;
  // Windows starting at each of `starts` (bytes within the split), stacked: [starts.size(), L].
  ByteWindows windows(Split split, const std::vector<int64_t>& starts, int64_t length) const;

  // Error (naming the file and the sizes) unless the split holds a window of `length`.
  void check_window_fits(Split split, int64_t length) const;

 private:
  std::string path_;
  Device device_;
  std::vector<uint8_t> bytes_;
};

// Random training windows: starts uniform over [0, split_size - length - 1] drawn from a seeded
// Philox generator. Its state is three plain integers (seed, stream, counter): saving it and
// restoring it later continues with exactly the same windows. Starts come from 32-bit uniform
// draws, so in splits beyond 2^32 bytes some starts are never drawn.
class WindowSampler {
 public:
  WindowSampler(std::shared_ptr<const ByteDataset> data, Split split, int64_t length,
                uint64_t seed);
  // `batch_size` windows: inputs, targets [batch_size, length].
  ByteWindows next(int64_t batch_size);
  // The starts of the next `batch_size` windows (within the split), advancing the generator.
  std::vector<int64_t> next_starts(int64_t batch_size);

  PhiloxState state() const { return generator_.state(); }
  void set_state(PhiloxState state) { generator_.set_state(state); }
  Split split() const { return split_; }
  int64_t length() const { return length_; }

 private:
  std::shared_ptr<const ByteDataset> data_;
  Split split_;
  int64_t length_;
  Generator generator_;
};

// Every position of a split, in order, for evaluation: non-overlapping windows starting at 0, L,
// 2L, ...; every byte of the split but the first is a target exactly once, so the number of
// targets is split_size - 1. All windows have length L except a last, shorter one when
// (split_size - 1) is not a multiple of L; next() never mixes lengths in one batch (the short
// window comes alone, as a batch of one).
class SequentialWindows {
 public:
  SequentialWindows(std::shared_ptr<const ByteDataset> data, Split split, int64_t length);

  int64_t num_windows() const;
  int64_t num_targets() const;
  bool done() const { return next_window_ >= num_windows(); }
  // Up to max_batch windows of one length (error when done()).
  ByteWindows next(int64_t max_batch);
  void reset() { next_window_ = 0; }

 private:
  std::shared_ptr<const ByteDataset> data_;
  Split split_;
  int64_t length_;
  int64_t next_window_ = 0;
};

}  // namespace rw::reformer
