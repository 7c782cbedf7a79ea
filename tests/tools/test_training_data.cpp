// The tools' data sources: gzip-transparent file reading (zlib writes the gzip files here, single
// and multi-member, with a dictzip-like extra header field), IDX image parsing on small synthetic
// files, Fashion-MNIST-style pixel sequences (start token, targets, splits, resumable order), the
// default corpus, and rewind-train's --data names.
#include <doctest/doctest.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "common/compressed_file.h"
#include "common/image_data.h"
#include "common/training_data.h"
#include "nn/nn_test_util.h"
#include "process.h"
#include "test_util.h"

namespace rw::tools {
namespace {

using reformer::Split;
using test::contains;
using test::error_message;

using Bytes = std::vector<uint8_t>;

// `n` bytes from a linear congruential generator: hardly compressible, so the gzip stream spans
// several of the reader's 64 KB input chunks.
Bytes noise(std::size_t n, uint32_t seed) {
  Bytes out(n);
  uint32_t x = seed;
  for (auto& b : out) {
    x = x * 1103515245u + 12345u;
    b = static_cast<uint8_t>(x >> 23);
  }
  return out;
}

Bytes text_bytes(const std::string& s) { return Bytes(s.begin(), s.end()); }

// One gzip member holding `data`, written by zlib; with `extra`, the header carries an FEXTRA
// field as dictzip's does (its chunk table) and a file name.
Bytes gzip(const Bytes& data, bool extra = false) {
  z_stream zs{};
  REQUIRE(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  Bytes extra_field{'R', 'A', 4, 0, 1, 2, 3, 4};
  char file_name[] = "data.txt";
  gz_header header{};
  if (extra) {
    header.extra = extra_field.data();
    header.extra_len = static_cast<uInt>(extra_field.size());
    header.name = reinterpret_cast<Bytef*>(file_name);
    REQUIRE(deflateSetHeader(&zs, &header) == Z_OK);
  }
  Bytes out(deflateBound(&zs, static_cast<uLong>(data.size())) + 64);
  zs.next_in = const_cast<Bytef*>(data.data());
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

Bytes concat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::string write_file(const test::TempDir& dir, const std::string& name, const Bytes& bytes) {
  const std::string path = (dir / name).string();
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  return path;
}

TEST_CASE("read_file_bytes returns plain files as they are") {
  test::TempDir dir("compressed");
  const Bytes data = noise(200000, 1);
  CHECK(read_file_bytes(write_file(dir, "plain.bin", data)) == data);
  CHECK(read_file_bytes(write_file(dir, "empty", {})).empty());
  // A first byte like gzip's, but not both magic bytes: not gzip.
  CHECK(read_file_bytes(write_file(dir, "one", {0x1f})) == Bytes{0x1f});
  CHECK(read_file_bytes(write_file(dir, "almost.gz", {0x1f, 0x8c, 7})) == Bytes{0x1f, 0x8c, 7});
}

TEST_CASE("read_file_bytes decompresses gzip: single member, dictzip-style header, any name") {
  test::TempDir dir("compressed");
  const Bytes text = text_bytes("Affect \\Af*fect\"\\, v. t.\n   [1913 Webster]\n");
  CHECK(read_file_bytes(write_file(dir, "a.gz", gzip(text))) == text);
  CHECK(read_file_bytes(write_file(dir, "b.dict.dz", gzip(text, /*extra=*/true))) == text);
  // Detected by the magic bytes, not the name.
  CHECK(read_file_bytes(write_file(dir, "named.txt", gzip(text))) == text);
  // Larger than the input and output buffers; an empty member.
  const Bytes big = noise(300000, 2);
  CHECK(read_file_bytes(write_file(dir, "big.gz", gzip(big))) == big);
  CHECK(read_file_bytes(write_file(dir, "empty.gz", gzip({}))).empty());
  // Highly compressible: the output is ~1000 times the input.
  const Bytes zeros(2000000, 0);
  CHECK(read_file_bytes(write_file(dir, "zeros.gz", gzip(zeros))) == zeros);
}

TEST_CASE("read_file_bytes reads every member of a multi-member gzip file") {
  test::TempDir dir("compressed");
  const Bytes a = noise(150000, 3), b = text_bytes("second member\n"), c = noise(70000, 4);
  // The last member is the smallest, so its trailer's length undersizes the output buffer.
  const Bytes all = concat(concat(a, c), b);
  const std::string path =
      write_file(dir, "multi.gz", concat(concat(gzip(a), gzip(c, true)), gzip(b)));
  CHECK(read_file_bytes(path) == all);
  CHECK(read_file_bytes(write_file(dir, "two.gz", concat(gzip(b), gzip(b)))) == concat(b, b));
}

TEST_CASE("read_file_bytes errors name the file: missing, not a file, truncated, corrupt gzip") {
  test::TempDir dir("compressed");
  const std::string missing = (dir / "nope.gz").string();
  CHECK(contains(error_message([&] { read_file_bytes(missing); }),
                 fmt::format("cannot open '{}': no such file", missing)));
  const std::string folder = (dir / "folder").string();
  std::filesystem::create_directories(folder);
  CHECK(contains(error_message([&] { read_file_bytes(folder); }),
                 fmt::format("cannot read '{}': not a regular file", folder)));

  const Bytes data = noise(100000, 5);
  const Bytes whole = gzip(data);
  for (std::size_t cut :
       {std::size_t{2}, std::size_t{10}, whole.size() / 2, whole.size() - 4, whole.size() - 1}) {
    CAPTURE(cut);
    const std::string path =
        write_file(dir, fmt::format("cut{}.gz", cut),
                   Bytes(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(cut)));
    const std::string m = error_message([&] { read_file_bytes(path); });
    CHECK(contains(m, fmt::format("cannot decompress '{}': the gzip data is truncated", path)));
    CHECK(contains(m, "inside member 1"));
  }
  // A truncated second member.
  const Bytes two = concat(gzip(text_bytes("first")), whole);
  const std::string cut_second =
      write_file(dir, "cut_second.gz", Bytes(two.begin(), two.end() - 100));
  CHECK(contains(error_message([&] { read_file_bytes(cut_second); }),
                 "truncated (it ends inside member 2"));

  // A wrong CRC-32 in the trailer (the 8th byte from the end).
  Bytes bad_crc = whole;
  bad_crc[bad_crc.size() - 8] ^= 0xff;
  const std::string crc_path = write_file(dir, "crc.gz", bad_crc);
  CHECK(contains(error_message([&] { read_file_bytes(crc_path); }),
                 fmt::format("cannot decompress '{}': corrupt gzip data in member 1 (incorrect "
                             "data check)",
                             crc_path)));
  // A wrong length in the trailer.
  Bytes bad_length = whole;
  bad_length[bad_length.size() - 2] ^= 0x01;
  CHECK(contains(error_message([&] { read_file_bytes(write_file(dir, "len.gz", bad_length)); }),
                 "corrupt gzip data in member 1 (incorrect length check)"));
  // An unknown compression method in the header.
  Bytes bad_method = whole;
  bad_method[2] = 7;
  CHECK(contains(error_message([&] { read_file_bytes(write_file(dir, "method.gz", bad_method)); }),
                 "corrupt gzip data in member 1 (unknown compression method)"));
  // Bytes after a member that are not another member.
  const std::string trailing = write_file(dir, "trailing.gz", concat(whole, text_bytes("junk")));
  CHECK(contains(error_message([&] { read_file_bytes(trailing); }),
                 fmt::format("cannot decompress '{}': the bytes after gzip member 1 are not "
                             "another gzip member",
                             trailing)));
}

// --- IDX images --------------------------------------------------------------------------------

void put_u32(Bytes& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}

// The pixel at position p of image i: distinct images differ at every position.
uint8_t pixel(int64_t image, int64_t p) { return static_cast<uint8_t>((image * 31 + p * 7) % 256); }

// An IDX file: magic, the dimensions, then `count * rows * cols` pixels (or `body` bytes).
Bytes idx_images(uint32_t count, uint32_t rows, uint32_t cols, uint32_t magic = 0x00000803,
                 std::optional<std::size_t> body = std::nullopt) {
  Bytes out;
  put_u32(out, magic);
  put_u32(out, count);
  put_u32(out, rows);
  put_u32(out, cols);
  const std::size_t n = body.value_or(std::size_t{count} * rows * cols);
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t per_image = std::size_t{rows} * cols;
    out.push_back(pixel(static_cast<int64_t>(k / per_image), static_cast<int64_t>(k % per_image)));
  }
  return out;
}

TEST_CASE("IDX images parse from plain and gzip files") {
  test::TempDir dir("idx");
  for (bool compressed : {false, true}) {
    CAPTURE(compressed);
    const Bytes file = idx_images(5, 3, 4);
    const std::string path =
        write_file(dir, compressed ? "i.gz" : "i.idx", compressed ? gzip(file) : file);
    const IdxImages images = read_idx_images(path);
    CHECK(images.count == 5);
    CHECK(images.rows == 3);
    CHECK(images.cols == 4);
    CHECK(images.pixels_per_image() == 12);
    REQUIRE(images.pixels.size() == 60);
    for (int64_t i = 0; i < 5; ++i) {
      for (int64_t p = 0; p < 12; ++p) CHECK(images.image(i)[p] == pixel(i, p));
    }
  }
}

TEST_CASE("IDX image errors name the file and what is wrong") {
  const std::string name = "x-idx3-ubyte";
  auto parse_error = [&](const Bytes& bytes) {
    return error_message([&] { parse_idx_images(bytes, name); });
  };
  CHECK(contains(parse_error(Bytes(15, 0)),
                 "IDX images 'x-idx3-ubyte': 15 bytes, too few for the 16-byte header"));
  // A label file (magic 0x801, one dimension).
  Bytes labels;
  put_u32(labels, 0x00000801);
  put_u32(labels, 3);
  labels.insert(labels.end(), {1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  CHECK(contains(parse_error(labels),
                 "IDX images 'x-idx3-ubyte': magic 0x00000801 is an IDX file of unsigned-byte "
                 "labels (1 dimension), not images; expected 0x00000803"));
  CHECK(contains(parse_error(idx_images(1, 2, 2, 0x00000d03)),
                 "magic 0x00000d03 is an IDX file of element type 0x0d with 3 dimensions"));
  CHECK(contains(parse_error(idx_images(1, 2, 2, 0x00000804)),
                 "magic 0x00000804 is an IDX file of element type 0x08 with 4 dimensions"));
  CHECK(contains(parse_error(idx_images(1, 2, 2, 0x1f8b0803)),
                 "magic 0x1f8b0803 is not an IDX file"));
  CHECK(contains(parse_error(idx_images(2, 0, 4)),
                 "the header gives 2 images of 0x4 pixels; every dimension must be positive"));
  CHECK(contains(parse_error(idx_images(3, 2, 2, 0x803, 11)),
                 "IDX images 'x-idx3-ubyte': the header gives 3 images of 2x2 pixels (12 bytes), "
                 "but the file holds 11 bytes after the header (truncated)"));
  CHECK(contains(parse_error(idx_images(3, 2, 2, 0x803, 13)),
                 "(12 bytes), but the file holds 13 bytes after the header (extra bytes)"));
  // Dimensions whose product overflows 64 bits.
  CHECK(contains(parse_error(idx_images(0xffffffffu, 0xffffffffu, 0xffffffffu, 0x803, 8)),
                 "pixels (over 2^64 bytes), but the file holds 8 bytes after the header "
                 "(truncated)"));
  CHECK_NOTHROW(parse_idx_images(idx_images(3, 2, 2), name));
}

// --- Images as pixel sequences -----------------------------------------------------------------

struct SyntheticImages {
  test::TempDir dir{"images"};
  std::string train, test;
  // 10 training and 11 test images of 3x4 pixels: valid = test images 0..4, test = 5..10. Test
  // image i is written as image 100 + i, so it differs from every training image.
  SyntheticImages() {
    train = write_file(dir, "train.gz", gzip(idx_images(10, 3, 4)));
    Bytes t = idx_images(11, 3, 4);
    for (std::size_t k = 16; k < t.size(); ++k) t[k] = pixel(100 + (k - 16) / 12, (k - 16) % 12);
    test = write_file(dir, "t10k.gz", gzip(t));
  }
};

// Checks that row b of `batch` is image `image` (see pixel()): start token, then the pixels.
void check_image_row(const TokenBatch& batch, int64_t b, int64_t image) {
  const std::vector<int64_t> x = batch.inputs.select(0, b).contiguous().to_vector<int64_t>();
  const std::vector<int64_t> y = batch.targets.select(0, b).contiguous().to_vector<int64_t>();
  REQUIRE(x.size() == 12);
  CHECK(x[0] == ImagePixelData::kStartToken);
  for (int64_t p = 0; p < 12; ++p) {
    CHECK(y[p] == pixel(image, p));
    if (p > 0) CHECK(x[p] == pixel(image, p - 1));
  }
}

// Which training image (0..9) row b of the inputs is, from its first pixel (image * 31).
int64_t training_image_of(const TokenBatch& batch, int64_t b) {
  return batch.targets.select(0, b).contiguous().to_vector<int64_t>()[0] / 31;
}

TEST_CASE("ImagePixelData: a start token, then every pixel as a target, splits of the test file") {
  SyntheticImages files;
  ImagePixelData data(files.train, files.test, 3, "tiny images");
  CHECK(data.vocab_size() == 257);
  CHECK(data.length() == 12);
  CHECK(data.unit() == "bits/dim");
  CHECK(data.split_images(Split::train) == 10);
  CHECK(data.split_images(Split::valid) == 5);
  CHECK(data.split_images(Split::test) == 6);
  CHECK(data.description() ==
        "tiny images: 3x4 images as 12-pixel sequences (10 train, 5 valid, 6 test images)");

  const TokenBatch some = data.images(Split::train, {7, 0, 7});
  CHECK(some.inputs.shape() == Shape{3, 12});
  CHECK(some.targets.shape() == Shape{3, 12});
  CHECK(some.inputs.dtype() == DType::i64);
  check_image_row(some, 0, 7);
  check_image_row(some, 1, 0);
  check_image_row(some, 2, 7);
  check_image_row(data.images(Split::valid, {4}), 0, 104);
  check_image_row(data.images(Split::test, {0, 5}), 0, 105);
  check_image_row(data.images(Split::test, {0, 5}), 1, 110);
  CHECK(contains(error_message([&] { data.images(Split::valid, {5}); }),
                 "tiny images: image 5 is not in the valid split (images 0..4)"));

  // Training batches are training images; over many draws, every one of them.
  std::vector<int> seen(10, 0);
  for (int step = 0; step < 20; ++step) {
    const std::vector<int64_t> indices = data.next_indices(4);
    for (int64_t i : indices) {
      REQUIRE(i >= 0);
      REQUIRE(i < 10);
      ++seen[static_cast<std::size_t>(i)];
    }
  }
  for (int count : seen) CHECK(count > 0);
  const TokenBatch b = data.next(5);
  CHECK(b.inputs.shape() == Shape{5, 12});
  for (int64_t r = 0; r < 5; ++r) check_image_row(b, r, training_image_of(b, r));
}

TEST_CASE("ImagePixelData: evaluation is the valid split in order, the same at every call") {
  SyntheticImages files;
  ImagePixelData data(files.train, files.test, 3);
  const std::vector<TokenBatch> eval = data.evaluation_batches(2, 10);
  REQUIRE(eval.size() == 2);  // 5 valid images: two full batches, the fifth left out
  check_image_row(eval[0], 0, 100);
  check_image_row(eval[0], 1, 101);
  check_image_row(eval[1], 0, 102);
  check_image_row(eval[1], 1, 103);
  CHECK(data.evaluation_batches(2, 1).size() == 1);
  // Fewer valid images than a batch: one batch of all of them.
  const std::vector<TokenBatch> small = data.evaluation_batches(8, 10);
  REQUIRE(small.size() == 1);
  CHECK(small[0].inputs.shape() == Shape{5, 12});
  check_image_row(small[0], 4, 104);
  // Training does not move the evaluation batches.
  data.next(4);
  CHECK(data.evaluation_batches(2, 10)[1].targets.to_vector<int64_t>() ==
        eval[1].targets.to_vector<int64_t>());
}

TEST_CASE("ImagePixelData: a saved state replays the same training batches") {
  SyntheticImages files;
  ImagePixelData data(files.train, files.test, 11);
  data.next(4);
  const PhiloxState saved = data.state();
  const TokenBatch second = data.next(4), third = data.next(4);

  ImagePixelData resumed(files.train, files.test, 999);
  resumed.set_state(saved);
  CHECK(resumed.next(4).inputs.to_vector<int64_t>() == second.inputs.to_vector<int64_t>());
  CHECK(resumed.next(4).targets.to_vector<int64_t>() == third.targets.to_vector<int64_t>());
  CHECK(resumed.state() == data.state());
  // Another seed, another order.
  ImagePixelData same(files.train, files.test, 11), other(files.train, files.test, 12);
  const std::vector<int64_t> first = same.next_indices(16);
  CHECK(ImagePixelData(files.train, files.test, 11).next_indices(16) == first);
  CHECK(other.next_indices(16) != first);
}

TEST_CASE("ImagePixelData errors: mismatched sizes, too few test images, missing Fashion-MNIST") {
  test::TempDir dir("images");
  const std::string train = write_file(dir, "train", idx_images(4, 3, 4));
  const std::string wide = write_file(dir, "wide", idx_images(4, 3, 5));
  const std::string single = write_file(dir, "single", idx_images(1, 3, 4));
  CHECK(contains(error_message([&] { ImagePixelData(train, wide, 0, "imgs"); }),
                 fmt::format("imgs: the training images '{}' are 3x4 pixels but the test images "
                             "'{}' are 3x5",
                             train, wide)));
  CHECK(contains(error_message([&] { ImagePixelData(train, single, 0, "imgs"); }),
                 fmt::format("imgs: the test images '{}' hold 1 image; valid and test need at "
                             "least one each",
                             single)));
  CHECK(contains(error_message([&] { ImagePixelData(train, (dir / "none").string(), 0); }),
                 "cannot open '"));
  const std::string m = error_message([&] { fashion_mnist_data(0, dir / "no-such-dir"); });
  CHECK(contains(m, fmt::format("Fashion-MNIST is not installed: {} is missing",
                                (dir / "no-such-dir" / "train-images-idx3-ubyte.gz").string())));
  CHECK(contains(m, "dataset-fashion-mnist"));
}

TEST_CASE("Fashion-MNIST as installed: 60000 train, 5000 valid, 5000 test 784-pixel sequences") {
  if (!std::filesystem::exists(std::string(kFashionMnistDir) + "/train-images-idx3-ubyte.gz")) {
    MESSAGE("Fashion-MNIST is not installed (tools/setup.sh installs dataset-fashion-mnist)");
    return;
  }
  std::unique_ptr<TrainingData> data = open_training_data("fashion-mnist", std::nullopt, 0);
  CHECK(data->vocab_size() == 257);
  CHECK(data->length() == 784);
  CHECK(data->unit() == "bits/dim");
  CHECK(data->description() ==
        "Fashion-MNIST: 28x28 images as 784-pixel sequences (60000 train, 5000 valid, 5000 test "
        "images)");
  const TokenBatch b = data->next(2);
  CHECK(b.inputs.shape() == Shape{2, 784});
  const std::vector<int64_t> x = b.inputs.to_vector<int64_t>(), y = b.targets.to_vector<int64_t>();
  CHECK(x[0] == 256);
  for (std::size_t t = 1; t < 784; ++t) CHECK(x[t] == y[t - 1]);
  CHECK(*std::max_element(y.begin(), y.end()) <= 255);
  CHECK(*std::max_element(y.begin(), y.end()) > 0);  // not a blank image
  CHECK_NOTHROW(open_training_data("fashion-mnist", 784, 0));
  CHECK(contains(error_message([&] { open_training_data("fashion-mnist", 100, 0); }),
                 "fashion-mnist: a sequence is one whole 28x28 image, 784 pixels, so the length "
                 "cannot be 100 (leave --length out)"));
}

// --- Text corpora ------------------------------------------------------------------------------

TEST_CASE("ByteTextData reads gzip-compressed text like the plain file") {
  test::TempDir dir("text");
  Bytes text;
  for (int i = 0; i < 30000; ++i) text.push_back(static_cast<uint8_t>('a' + (i * 7 + i / 26) % 26));
  const std::string plain = write_file(dir, "t.txt", text);
  const std::string packed = write_file(dir, "t.txt.gz", gzip(text));
  ByteTextData a(plain, 16, 5), b(packed, 16, 5, "packed text");
  CHECK(b.description() == fmt::format("packed text: {} (30000 bytes: 27000 train, 1500 valid, "
                                       "1500 test)",
                                       packed));
  CHECK(a.next(3).inputs.to_vector<int64_t>() == b.next(3).inputs.to_vector<int64_t>());
  CHECK(a.evaluation_batches(2, 3)[2].targets.to_vector<int64_t>() ==
        b.evaluation_batches(2, 3)[2].targets.to_vector<int64_t>());
  // Through open_training_data, with the default length.
  std::unique_ptr<TrainingData> opened = open_training_data(packed, std::nullopt, 5);
  CHECK(opened->length() == kDefaultTextLength);
  CHECK(opened->vocab_size() == 256);
}

TEST_CASE("open_training_data: a missing file is an error naming it and the data names") {
  test::TempDir dir("text");
  const std::string missing = (dir / "fashion_mnist").string();
  CHECK(contains(error_message([&] { open_training_data(missing, 64, 0); }),
                 fmt::format("--data: no such file '{}' (give a file, or one of the names gcide, "
                             "fashion-mnist)",
                             missing)));
  const std::string m =
      error_message([&] { gcide_corpus(64, 0, (dir / "gcide.dict.dz").string()); });
  CHECK(contains(m, fmt::format("the default corpus (GCIDE) is not installed: {} is missing",
                                (dir / "gcide.dict.dz").string())));
  CHECK(contains(m, "dict-gcide"));
  CHECK(contains(m, "--data FILE"));
}

TEST_CASE("the default corpus: GCIDE, decompressed, split 90/5/5") {
  if (!std::filesystem::exists(kGcidePath)) {
    MESSAGE("GCIDE is not installed (tools/setup.sh installs dict-gcide)");
    return;
  }
  for (const std::string name : {"", "gcide"}) {
    CAPTURE(name);
    std::unique_ptr<TrainingData> data = open_training_data(name, 64, 0);
    CHECK(data->vocab_size() == 256);
    CHECK(data->length() == 64);
    CHECK(data->unit() == "bits/byte");
    CHECK(contains(data->description(), fmt::format("GCIDE dictionary: {} (", kGcidePath)));
  }
  const Bytes text = read_file_bytes(kGcidePath);
  // Tens of megabytes of text (the dictzip file is about 13 MB), starting with dictd's header.
  CHECK(text.size() > 30000000);
  const std::string head(text.begin(), text.begin() + 200);
  CHECK(contains(head, "00-database-url"));
  ByteTextData corpus(kGcidePath, 64, 0);
  const int64_t n = static_cast<int64_t>(text.size());
  CHECK(contains(corpus.description(), fmt::format("({} bytes: {} train, {} valid, {} test)", n,
                                                   n - 2 * (n / 20), n / 20, n / 20)));
  // Evaluation windows are the valid split's first bytes.
  const std::vector<int64_t> first = corpus.evaluation_batches(1, 1)[0].inputs.to_vector<int64_t>();
  for (std::size_t t = 0; t < first.size(); ++t) {
    CHECK(first[t] == text[static_cast<std::size_t>(n - 2 * (n / 20)) + t]);
  }
}

// --- rewind-train's --data ---------------------------------------------------------------------

TEST_CASE("rewind-train --data: names, missing files and the fashion-mnist length") {
  test::TempDir dir("train-data");
  const std::string train = REWIND_TRAIN_EXE;
  test::ProcessResult r = test::run_process({train, "--data", (dir / "nope.txt").string(), "--out",
                                             (dir / "run").string(), "--no-progress"},
                                            dir / "");
  CHECK(r.exit_code == 1);
  CHECK(contains(r.err, fmt::format("rewind-train: error: --data: no such file '{}'",
                                    (dir / "nope.txt").string())));
  r = test::run_process({train, "--help"}, dir / "");
  CHECK(r.exit_code == 0);
  CHECK(contains(r.out, "fashion-mnist"));
  CHECK(contains(r.out, "gcide"));
  if (std::filesystem::exists(std::string(kFashionMnistDir) + "/train-images-idx3-ubyte.gz")) {
    r = test::run_process({train, "--data", "fashion-mnist", "--length", "100", "--out",
                           (dir / "run").string(), "--no-progress"},
                          dir / "");
    CHECK(r.exit_code == 1);
    CHECK(contains(r.err,
                   "rewind-train: error: fashion-mnist: a sequence is one whole 28x28 "
                   "image, 784 pixels, so the length cannot be 100"));
    // One tiny step: the model's vocabulary (257) and length (784) come from the data.
    r = test::run_process({train, "--data", "fashion-mnist", "--out", (dir / "img").string(),
                           "--steps", "1", "--batch", "1", "--layers", "1", "--d-model", "16",
                           "--d-ff", "16", "--eval-batches", "1", "--no-progress"},
                          dir / "");
    CHECK(r.exit_code == 0);
    CHECK(contains(r.out, "bits/dim"));
  }
}

}  // namespace
}  // namespace rw::tools
