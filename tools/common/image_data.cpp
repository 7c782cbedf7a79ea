#include "common/image_data.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <utility>

#include "common/compressed_file.h"
#include "core/error.h"
#include "core/ops.h"

namespace rw::tools {

namespace {

constexpr std::size_t kIdxHeaderBytes = 16;
constexpr uint32_t kIdxUnsignedByte = 0x08;

uint32_t big_endian_u32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}

// What an unexpected IDX magic is, for the error: the usual mistake is a label file.
std::string describe_magic(uint32_t magic) {
  if (magic == 0x00000801) return "an IDX file of unsigned-byte labels (1 dimension), not images";
  if ((magic >> 16) != 0) return "not an IDX file (its first two bytes must be zero)";
  return fmt::format("an IDX file of element type 0x{:02x} with {} dimensions", (magic >> 8) & 0xff,
                     magic & 0xff);
}

using reformer::Split;

}  // namespace

IdxImages parse_idx_images(std::vector<uint8_t> bytes, const std::string& name) {
  RW_CHECK(bytes.size() >= kIdxHeaderBytes,
           "IDX images '{}': {} bytes, too few for the 16-byte header", name, bytes.size());
  const uint32_t magic = big_endian_u32(bytes.data());
  RW_CHECK(magic == (kIdxUnsignedByte << 8 | 3),
           "IDX images '{}': magic 0x{:08x} is {}; expected 0x00000803 (unsigned-byte images "
           "[count, rows, cols])",
           name, magic, describe_magic(magic));
  IdxImages images;
  images.count = big_endian_u32(bytes.data() + 4);
  images.rows = big_endian_u32(bytes.data() + 8);
  images.cols = big_endian_u32(bytes.data() + 12);
  RW_CHECK(images.count > 0 && images.rows > 0 && images.cols > 0,
           "IDX images '{}': the header gives {} images of {}x{} pixels; every dimension must be "
           "positive",
           name, images.count, images.rows, images.cols);
  // Each dimension is below 2^32, so count * rows * cols can overflow 64 bits but not 128.
  const auto body = static_cast<int64_t>(bytes.size() - kIdxHeaderBytes);
  const unsigned __int128 expected = static_cast<unsigned __int128>(images.count) *
                                     static_cast<unsigned __int128>(images.rows) *
                                     static_cast<unsigned __int128>(images.cols);
  RW_CHECK(expected == static_cast<unsigned __int128>(body),
           "IDX images '{}': the header gives {} images of {}x{} pixels ({} bytes), but the file "
           "holds {} bytes after the header ({})",
           name, images.count, images.rows, images.cols,
           expected <= UINT64_MAX ? fmt::format("{}", static_cast<uint64_t>(expected))
                                  : std::string("over 2^64"),
           body, expected < static_cast<unsigned __int128>(body) ? "extra bytes" : "truncated");
  // Drop the header in place: the pixels keep the decompressed file's buffer, with no copy.
  bytes.erase(bytes.begin(), bytes.begin() + kIdxHeaderBytes);
  images.pixels = std::move(bytes);
  return images;
}

IdxImages read_idx_images(const std::filesystem::path& path) {
  return parse_idx_images(read_file_bytes(path), path.string());
}

ImagePixelData::ImagePixelData(const std::filesystem::path& train_images,
                               const std::filesystem::path& test_images, uint64_t seed,
                               std::string name)
    : name_(std::move(name)),
      train_(read_idx_images(train_images)),
      test_(read_idx_images(test_images)),
      generator_(seed) {
  RW_CHECK(train_.rows == test_.rows && train_.cols == test_.cols,
           "{}: the training images '{}' are {}x{} pixels but the test images '{}' are {}x{}",
           name_, train_images.string(), train_.rows, train_.cols, test_images.string(), test_.rows,
           test_.cols);
  RW_CHECK(test_.count >= 2,
           "{}: the test images '{}' hold {} image; valid and test need at least one each", name_,
           test_images.string(), test_.count);
}

std::string ImagePixelData::description() const {
  return fmt::format("{}: {}x{} images as {}-pixel sequences ({} train, {} valid, {} test images)",
                     name_, rows(), cols(), length(), split_images(Split::train),
                     split_images(Split::valid), split_images(Split::test));
}

int64_t ImagePixelData::split_images(Split split) const {
  switch (split) {
    case Split::train:
      return train_.count;
    case Split::valid:
      return test_.count / 2;
    case Split::test:
      return test_.count - test_.count / 2;
  }
  return 0;
}

TokenBatch ImagePixelData::images(Split split, const std::vector<int64_t>& indices) const {
  const auto n = static_cast<int64_t>(indices.size());
  RW_CHECK(n > 0, "{}: no images asked for", name_);
  const IdxImages& source = split == Split::train ? train_ : test_;
  const int64_t first = split == Split::test ? split_images(Split::valid) : 0;
  const int64_t L = length();
  std::vector<int64_t> inputs(static_cast<std::size_t>(n * L));
  std::vector<int64_t> targets(inputs.size());
  for (int64_t b = 0; b < n; ++b) {
    const int64_t i = indices[static_cast<std::size_t>(b)];
    RW_CHECK(i >= 0 && i < split_images(split),
             "{}: image {} is not in the {} split (images 0..{})", name_, i,
             reformer::split_name(split), split_images(split) - 1);
    const uint8_t* pixels = source.image(first + i);
    int64_t* x = inputs.data() + b * L;
    int64_t* y = targets.data() + b * L;
    x[0] = kStartToken;
    for (int64_t t = 1; t < L; ++t) x[t] = pixels[t - 1];
    for (int64_t t = 0; t < L; ++t) y[t] = pixels[t];
  }
  return {from_vector<int64_t>(inputs, Shape{n, L}), from_vector<int64_t>(targets, Shape{n, L})};
}

std::vector<int64_t> ImagePixelData::next_indices(int64_t batch_size) {
  RW_CHECK(batch_size > 0, "{}: batch_size must be positive, got {}", name_, batch_size);
  return randint(0, split_images(Split::train), {batch_size}, generator_).to_vector<int64_t>();
}

TokenBatch ImagePixelData::next(int64_t batch_size) {
  return images(Split::train, next_indices(batch_size));
}

std::vector<TokenBatch> ImagePixelData::evaluation_batches(int64_t batch_size,
                                                           int64_t max_batches) const {
  RW_CHECK(batch_size > 0, "{}: batch_size must be positive, got {}", name_, batch_size);
  const int64_t available = split_images(Split::valid);
  // Full batches only (the trainer averages batch means, so each batch must weigh the same),
  // unless the split is smaller than one batch.
  const int64_t per_batch = std::min(batch_size, available);
  const int64_t batches = std::min(max_batches, available / per_batch);
  std::vector<TokenBatch> out;
  for (int64_t k = 0; k < batches; ++k) {
    std::vector<int64_t> indices(static_cast<std::size_t>(per_batch));
    for (int64_t b = 0; b < per_batch; ++b)
      indices[static_cast<std::size_t>(b)] = k * per_batch + b;
    out.push_back(images(Split::valid, indices));
  }
  return out;
}

std::unique_ptr<ImagePixelData> fashion_mnist_data(uint64_t seed,
                                                   const std::filesystem::path& dir) {
  const std::filesystem::path train = dir / "train-images-idx3-ubyte.gz";
  const std::filesystem::path test = dir / "t10k-images-idx3-ubyte.gz";
  for (const auto& file : {train, test}) {
    RW_CHECK(std::filesystem::exists(file),
             "Fashion-MNIST is not installed: {} is missing. Install Debian's "
             "dataset-fashion-mnist package (tools/setup.sh does: apt-get install "
             "dataset-fashion-mnist)",
             file.string());
  }
  return std::make_unique<ImagePixelData>(train, test, seed, "Fashion-MNIST");
}

}  // namespace rw::tools
