// Interoperability with the reference implementation:
// tests/nn/data/reference_all_dtypes.safetensors was written by Python's safetensors 0.8.0
// (safetensors.torch.save_file, on the GPU machine; the script is in the file's "note" metadata).
// rewind must read every dtype's values and write the same dict back byte for byte.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "nn/safetensors.h"

namespace rw {
namespace {

const std::filesystem::path kReference =
    std::filesystem::path(__FILE__).parent_path() / "data" / "reference_all_dtypes.safetensors";

TEST_CASE(
    "safetensors: a file written by Python's safetensors reads and re-serialises to the same "
    "bytes") {
  nn::StateDict d = nn::load_safetensors(kReference);
  REQUIRE(d.size() == 10);
  CHECK(d.at("f32").shape() == Shape{2, 3});
  CHECK(d.at("f32").to_vector<float>() ==
        std::vector<float>{1.0f, -2.5f, 3.25f, 0.0f, 1e-3f, -7.0f});
  CHECK(d.at("f64").to_vector<double>() == std::vector<double>{1.0 / 3, -2.0});
  CHECK(d.at("bf16").dtype() == DType::bf16);
  CHECK(d.at("bf16").to_vector<float>() == std::vector<float>{1.0f, -0.5f, 3.140625f});
  CHECK(d.at("f16").to_vector<float>() == std::vector<float>{0.5f, -1.25f});
  CHECK(d.at("i32").to_vector<int32_t>() == std::vector<int32_t>{1, -2, 2147483647});
  CHECK(d.at("i64").to_vector<int64_t>() == std::vector<int64_t>{-(int64_t{1} << 40), 5});
  CHECK(d.at("u8").to_vector<uint8_t>() == std::vector<uint8_t>{0, 7, 255});
  CHECK(d.at("bool").to_vector<bool>() == std::vector<bool>{true, false, true});
  CHECK(d.at("scalar").dim() == 0);
  CHECK(d.at("scalar").item() == 4.5);
  CHECK(d.at("empty").shape() == Shape{0, 3});

  nn::SafetensorsMetadata meta = nn::load_safetensors_metadata(kReference);
  std::ifstream in(kReference, std::ios::binary);
  std::vector<char> want((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> got = nn::serialize_safetensors(d, meta);
  // Python keeps __metadata__ in a hash map (its key order is arbitrary): compare everything after
  // the metadata object (tensor entries, padding, data) byte for byte, and the length.
  REQUIRE(got.size() == want.size());
  std::string g(reinterpret_cast<const char*>(got.data()), got.size());
  std::string w(want.data(), want.size());
  const std::size_t gi = g.find("},\"i64\""), wi = w.find("},\"i64\"");
  REQUIRE(gi != std::string::npos);
  CHECK(gi == wi);
  CHECK(g.substr(gi) == w.substr(wi));
}

}  // namespace
}  // namespace rw
