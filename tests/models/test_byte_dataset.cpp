// The byte-level LM dataset over a temporary file: exact splits, windows inside their split,
// seeded and resumable sampling, the sequential evaluation walk, and errors naming the file.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "models/reformer/byte_dataset.h"
#include "nn/nn_test_util.h"
#include "test_util.h"

namespace {

using rw::reformer::ByteDataset;
using rw::reformer::ByteWindows;
using rw::reformer::SequentialWindows;
using rw::reformer::Split;
using rw::reformer::WindowSampler;

// Writes n bytes where byte i is (i * 7 + i / 256) % 256, so a byte's value tells (almost) where
// it came from, and returns the path.
std::string write_bytes(const rw::test::TempDir& dir, const std::string& name, int64_t n) {
  const std::string path = (dir / name).string();
  std::ofstream out(path, std::ios::binary);
  for (int64_t i = 0; i < n; ++i) out.put(static_cast<char>((i * 7 + i / 256) % 256));
  return path;
}

int64_t byte_at(int64_t i) { return (i * 7 + i / 256) % 256; }

std::vector<int64_t> row(const rw::Tensor& t, int64_t b) {
  return t.select(0, b).contiguous().to_vector<int64_t>();
}

}  // namespace

TEST_CASE("ByteDataset splits 90/5/5 by contiguous ranges") {
  rw::test::TempDir dir("bytes");
  struct Expected {
    int64_t n, train, held_out;
  };
  for (const Expected& e : {Expected{1000, 900, 50}, Expected{1019, 919, 50}, Expected{20, 18, 1},
                            Expected{4567, 4111, 228}}) {
    CAPTURE(e.n);
    ByteDataset data(write_bytes(dir, fmt::format("f{}", e.n), e.n));
    CHECK(data.size() == e.n);
    CHECK(data.split_size(Split::train) == e.train);
    CHECK(data.split_size(Split::valid) == e.held_out);
    CHECK(data.split_size(Split::test) == e.held_out);
    CHECK(data.split_offset(Split::train) == 0);
    CHECK(data.split_offset(Split::valid) == e.train);
    CHECK(data.split_offset(Split::test) == e.train + e.held_out);
  }
}

TEST_CASE("ByteDataset windows hold consecutive bytes of their split") {
  rw::test::TempDir dir("bytes");
  ByteDataset data(write_bytes(dir, "data", 2000));  // train 1800, valid 100 @1800, test 100 @1900
  const ByteWindows w = data.window(Split::valid, 10, 5);
  CHECK(w.inputs.shape() == rw::Shape{1, 5});
  CHECK(w.inputs.dtype() == rw::DType::i64);
  for (int64_t t = 0; t < 5; ++t) {
    CHECK(row(w.inputs, 0)[t] == byte_at(1810 + t));
    CHECK(row(w.targets, 0)[t] == byte_at(1811 + t));
  }
  // The last window of the test split ends at the last byte of the file.
  const ByteWindows last = data.window(Split::test, 100 - 6, 5);
  CHECK(row(last.targets, 0).back() == byte_at(1999));
  using rw::test::contains;
  using rw::test::error_message;
  const std::string m = error_message([&] { data.window(Split::test, 95, 5); });
  CHECK(contains(m, "window start 95 of length 5 leaves the test split of '"));
  CHECK(contains(m, "(100 bytes: starts 0..94)"));
}

TEST_CASE("WindowSampler draws windows inside the split, deterministically per seed") {
  rw::test::TempDir dir("bytes");
  auto data = std::make_shared<ByteDataset>(write_bytes(dir, "data", 4000));
  // Valid: 200 bytes at 3600. Length 16 leaves starts 0..183.
  WindowSampler sampler(data, Split::valid, 16, 11);
  int64_t lowest = 1 << 30, highest = -1;
  for (int step = 0; step < 50; ++step) {
    const rw::PhiloxState before = sampler.state();
    const std::vector<int64_t> starts = sampler.next_starts(8);
    sampler.set_state(before);
    const ByteWindows w = sampler.next(8);
    REQUIRE(w.inputs.shape() == rw::Shape{8, 16});
    for (int64_t b = 0; b < 8; ++b) {
      const int64_t s = starts[static_cast<std::size_t>(b)];
      REQUIRE(s >= 0);
      REQUIRE(s <= 200 - 17);
      lowest = std::min(lowest, s);
      highest = std::max(highest, s);
      const std::vector<int64_t> x = row(w.inputs, b), y = row(w.targets, b);
      for (int64_t t = 0; t < 16; ++t) {
        CHECK(x[t] == byte_at(3600 + s + t));
        CHECK(y[t] == byte_at(3600 + s + t + 1));
      }
    }
  }
  // 400 draws over 184 starts reach both ends' neighbourhoods.
  CHECK(lowest < 10);
  CHECK(highest > 173);

  WindowSampler same(data, Split::train, 32, 5), again(data, Split::train, 32, 5),
      other(data, Split::train, 32, 6);
  const std::vector<int64_t> first = same.next_starts(16);
  CHECK(again.next_starts(16) == first);
  CHECK(other.next_starts(16) != first);
}

TEST_CASE("WindowSampler state saved and restored continues the same data order") {
  rw::test::TempDir dir("bytes");
  auto data = std::make_shared<ByteDataset>(write_bytes(dir, "data", 5000));
  WindowSampler sampler(data, Split::train, 64, 3);
  sampler.next(4);
  sampler.next(4);
  const rw::PhiloxState saved = sampler.state();
  // Plain integers: what a checkpoint stores.
  const uint64_t seed = saved.seed, stream = saved.stream, counter = saved.counter;
  const ByteWindows third = sampler.next(4), fourth = sampler.next(4);

  WindowSampler resumed(data, Split::train, 64, 999);
  resumed.set_state({.seed = seed, .stream = stream, .counter = counter});
  CHECK(resumed.next(4).inputs.to_vector<int64_t>() == third.inputs.to_vector<int64_t>());
  CHECK(resumed.next(4).targets.to_vector<int64_t>() == fourth.targets.to_vector<int64_t>());
  CHECK(resumed.state() == sampler.state());
}

TEST_CASE("SequentialWindows covers every target of a split once, last window shorter") {
  rw::test::TempDir dir("bytes");
  auto data = std::make_shared<ByteDataset>(write_bytes(dir, "data", 2000));
  // Valid: 100 bytes at 1800, 99 targets; length 10 gives 9 full windows and one of 9.
  SequentialWindows eval(data, Split::valid, 10);
  CHECK(eval.num_targets() == 99);
  CHECK(eval.num_windows() == 10);
  std::vector<int64_t> batch_sizes, lengths, all_inputs, all_targets;
  while (!eval.done()) {
    const ByteWindows b = eval.next(4);
    batch_sizes.push_back(b.inputs.size(0));
    lengths.push_back(b.inputs.size(1));
    for (int64_t v : b.inputs.to_vector<int64_t>()) all_inputs.push_back(v);
    for (int64_t v : b.targets.to_vector<int64_t>()) all_targets.push_back(v);
  }
  CHECK(batch_sizes == std::vector<int64_t>{4, 4, 1, 1});
  CHECK(lengths == std::vector<int64_t>{10, 10, 10, 9});
  REQUIRE(all_targets.size() == 99);
  for (int64_t t = 0; t < 99; ++t) {
    CHECK(all_inputs[t] == byte_at(1800 + t));
    CHECK(all_targets[t] == byte_at(1801 + t));
  }
  using rw::test::contains;
  using rw::test::error_message;
  CHECK(contains(error_message([&] { eval.next(4); }), "all 10 windows of the valid split"));
  eval.reset();
  CHECK(eval.next(100).inputs.size(0) == 9);

  // A length that divides the targets exactly: no short window.
  SequentialWindows exact(data, Split::test, 33);
  CHECK(exact.num_windows() == 3);
  CHECK(exact.next(8).inputs.shape() == rw::Shape{3, 33});
  CHECK(exact.done());
}

TEST_CASE("ByteDataset errors name the file and the sizes") {
  using rw::test::contains;
  using rw::test::error_message;
  rw::test::TempDir dir("bytes");
  const std::string missing = (dir / "nope.txt").string();
  std::string m = error_message([&] { ByteDataset data(missing); });
  CHECK(contains(m, fmt::format("ByteDataset: cannot open '{}': no such file", missing)));
  const std::string folder = (dir / "folder").string();
  std::filesystem::create_directories(folder);
  m = error_message([&] { ByteDataset data(folder); });
  CHECK(contains(m, fmt::format("cannot read '{}': not a regular file", folder)));
  const std::string tiny = write_bytes(dir, "tiny", 19);
  m = error_message([&] { ByteDataset data(tiny); });
  CHECK(contains(m, fmt::format("'{}' has 19 bytes, too few for a 90/5/5", tiny)));

  const std::string small = write_bytes(dir, "small", 400);  // valid 20 bytes
  auto data = std::make_shared<ByteDataset>(small);
  m = error_message([&] { WindowSampler(data, Split::valid, 20, 0); });
  CHECK(contains(m, fmt::format("the valid split of '{}' has 20 bytes (file: 400 bytes), too few "
                                "for windows of length 20 (each needs 21 bytes)",
                                small)));
  CHECK_NOTHROW(WindowSampler(data, Split::valid, 19, 0));
  m = error_message([&] { WindowSampler(data, Split::train, 0, 0); });
  CHECK(contains(m, "window length must be positive, got 0"));
}

TEST_CASE("ByteDataset from bytes in memory: same splits and windows as from the file") {
  rw::test::TempDir dir("bytes");
  const std::string path = write_bytes(dir, "data", 3000);
  std::vector<uint8_t> bytes;
  for (int64_t i = 0; i < 3000; ++i) bytes.push_back(static_cast<uint8_t>(byte_at(i)));
  const ByteDataset from_file(path);
  const ByteDataset from_bytes(bytes, "corpus.gz");
  CHECK(from_bytes.path() == "corpus.gz");
  CHECK(from_bytes.size() == 3000);
  for (Split split : {Split::train, Split::valid, Split::test}) {
    CAPTURE(rw::reformer::split_name(split));
    CHECK(from_bytes.split_size(split) == from_file.split_size(split));
    CHECK(from_bytes.split_offset(split) == from_file.split_offset(split));
  }
  const std::vector<int64_t> starts{0, 7, 50, 148 - 12};
  const ByteWindows a = from_file.windows(Split::test, starts, 11);
  const ByteWindows b = from_bytes.windows(Split::test, starts, 11);
  CHECK(a.inputs.to_vector<int64_t>() == b.inputs.to_vector<int64_t>());
  CHECK(a.targets.to_vector<int64_t>() == b.targets.to_vector<int64_t>());
  // Test split: 150 bytes at 2850.
  CHECK(row(b.inputs, 1)[0] == byte_at(2850 + 7));

  // Samplers over either give the same windows for the same seed.
  WindowSampler file_sampler(std::make_shared<ByteDataset>(path), Split::train, 32, 4);
  WindowSampler bytes_sampler(std::make_shared<ByteDataset>(bytes, "corpus.gz"), Split::train, 32,
                              4);
  CHECK(file_sampler.next(3).inputs.to_vector<int64_t>() ==
        bytes_sampler.next(3).inputs.to_vector<int64_t>());
}

TEST_CASE("ByteDataset from bytes: errors name the given name") {
  using rw::test::contains;
  using rw::test::error_message;
  const std::vector<uint8_t> few(19, 'x');
  CHECK(contains(error_message([&] { ByteDataset data(few, "tiny.gz"); }),
                 "ByteDataset: 'tiny.gz' has 19 bytes, too few for a 90/5/5"));
  CHECK_NOTHROW(ByteDataset(std::vector<uint8_t>(20, 'x'), "enough"));
  const ByteDataset data(std::vector<uint8_t>(400, 'x'), "memory text");
  CHECK(contains(error_message([&] { data.check_window_fits(Split::valid, 20); }),
                 "the valid split of 'memory text' has 20 bytes (file: 400 bytes)"));
}
