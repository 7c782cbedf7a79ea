#pragma once
// Images as pixel sequences, the stand-in for the Reformer paper's imagenet64 task: each image is
// read in raster order (row by row, left to right) and every pixel value 0..255 is a token, so a
// model predicts each pixel from the ones before it and its loss is reported in bits/dim.
//
// Tokens: vocabulary 257, where 256 is a start token that is never a pixel. A 28x28 image gives a
// sequence of length 784 that scores every pixel, the first one too:
//   inputs  [256, p0, p1, ..., p782]
//   targets [p0,  p1, p2, ..., p783]
// The sequence length is the image's pixel count and nothing else (a window of an image, or two
// images in one sequence, would be a different task).
//
// The data is Fashion-MNIST as Debian's dataset-fashion-mnist installs it (IDX files, gzip).
// Splits: train = the 60000 training images, valid = the first half of the 10000 test images,
// test = the second half. Training uses every training image (the most data for short runs) and
// evaluation never sees a training image; the second half of the test file stays unseen for a
// final score.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/training_data.h"

namespace rw::tools {

inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

// An IDX file of unsigned-byte images ([count, rows, cols], magic 0x00000803), as in (Fashion-)
// MNIST: a 16-byte big-endian header, then count * rows * cols pixels.
struct IdxImages {
  int64_t count = 0, rows = 0, cols = 0;
  std::vector<uint8_t> pixels;  // count * rows * cols, image after image, each in raster order

  int64_t pixels_per_image() const { return rows * cols; }
  const uint8_t* image(int64_t i) const {
    return pixels.data() + static_cast<std::size_t>(i * pixels_per_image());
  }
};

// Parses IDX image bytes; `name` (the file) is named in errors: fewer than 16 header bytes, a
// magic other than 0x00000803 (a label file, another element type or rank), a zero dimension,
// and a pixel count that does not match the header (missing or extra bytes).
IdxImages parse_idx_images(std::vector<uint8_t> bytes, const std::string& name);
// Reads (decompressing gzip, see read_file_bytes) and parses an IDX image file.
IdxImages read_idx_images(const std::filesystem::path& path);

// Pixel-sequence language modelling over a train and a test IDX file (see the top of the file).
// Training batches are images drawn uniformly (with replacement) from the train split by a
// Philox generator, whose state (saved in checkpoints) fixes the order; evaluation batches are the
// valid split's images in order, in full batches (one smaller batch when the split holds fewer
// images than a batch).
class ImagePixelData : public TrainingData {
 public:
  static constexpr int64_t kStartToken = 256;

  // rw::Error naming the file when one is unreadable or malformed, when the two files' image
  // sizes differ, or when the test file has fewer than 2 images (valid and test need one each).
  ImagePixelData(const std::filesystem::path& train_images,
                 const std::filesystem::path& test_images, uint64_t seed,
                 std::string name = "Fashion-MNIST");

  std::string description() const override;
  std::string unit() const override { return "bits/dim"; }
  int64_t vocab_size() const override { return kStartToken + 1; }
  int64_t length() const override { return train_.pixels_per_image(); }
  TokenBatch next(int64_t batch_size) override;
  std::vector<TokenBatch> evaluation_batches(int64_t batch_size,
                                             int64_t max_batches) const override;
  PhiloxState state() const override { return generator_.state(); }
  void set_state(PhiloxState state) override { generator_.set_state(state); }

  int64_t rows() const { return train_.rows; }
  int64_t cols() const { return train_.cols; }
  int64_t split_images(reformer::Split split) const;
  // The images at `indices` of a split (in that order) as one batch: inputs, targets [n, length].
  TokenBatch images(reformer::Split split, const std::vector<int64_t>& indices) const;
  // The train-split indices of the next training batch, advancing state() (next() uses these).
  std::vector<int64_t> next_indices(int64_t batch_size);

 private:
  std::string name_;
  IdxImages train_, test_;  // valid and test are the two halves of test_
  Generator generator_;
};

// Fashion-MNIST from `dir` (train-images-idx3-ubyte.gz, t10k-images-idx3-ubyte.gz). When a file
// is missing, rw::Error saying to install Debian's dataset-fashion-mnist (tools/setup.sh does).
std::unique_ptr<ImagePixelData> fashion_mnist_data(
    uint64_t seed, const std::filesystem::path& dir = kFashionMnistDir);

}  // namespace rw::tools
