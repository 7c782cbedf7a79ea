// safetensors files (nn/safetensors.h) and atomic writes (nn/atomic_file.h): bit-exact round trips
// for every dtype, golden bytes written by hand from the format's definition (and the reference
// implementation's own test vectors), a corpus of malformed files that must each fail with an
// error naming the file and the problem, and failed writes that leave the previous file intact.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "nn/atomic_file.h"
#include "nn/nn_test_util.h"
#include "nn/safetensors.h"
#include "test_util.h"

namespace rw::nn {

using namespace rw::test;
namespace fs = std::filesystem;

namespace {

using Bytes = std::vector<std::byte>;

Bytes read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Bytes out(chars.size());
  std::memcpy(out.data(), chars.data(), chars.size());
  return out;
}

void write_file(const fs::path& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

void append_u64_le(Bytes& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::byte>(v >> (8 * i)));
}
void append_text(Bytes& out, const std::string& s) {
  for (char c : s) out.push_back(static_cast<std::byte>(c));
}
void append_raw(Bytes& out, std::initializer_list<uint8_t> bytes) {
  for (uint8_t b : bytes) out.push_back(static_cast<std::byte>(b));
}
template <typename T>
void append_le(Bytes& out, T value) {  // the test hosts are little-endian like the format
  const auto* p = reinterpret_cast<const std::byte*>(&value);
  out.insert(out.end(), p, p + sizeof(T));
}

// A file: u64 length, `header` verbatim (no padding), then `data`. The length is header.size()
// unless `length` overrides it.
Bytes make_file(const std::string& header, const Bytes& data = {},
                std::optional<uint64_t> length = std::nullopt) {
  Bytes out;
  append_u64_le(out, length.value_or(header.size()));
  append_text(out, header);
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

// `header` padded with spaces to a multiple of 8, as the reference writer does.
std::string padded(std::string header) {
  header.append((8 - header.size() % 8) % 8, ' ');
  return header;
}

// The bytes of `t`'s elements in row-major order.
Bytes raw_bytes(const Tensor& t) {
  Tensor c = t.to(Device::cpu()).contiguous();
  Bytes out(c.nbytes());
  if (!out.empty()) std::memcpy(out.data(), c.data_ptr(), out.size());
  return out;
}

template <typename T>
Tensor from_bits(std::vector<T> bits, Shape shape, DType dtype) {
  return from_blob_copy(bits.data(), std::move(shape), dtype);
}

void check_same_tensors(const StateDict& got, const StateDict& expected) {
  REQUIRE(got.size() == expected.size());
  for (const auto& [key, want] : expected) {
    const std::string& name = key;  // INFO cannot capture a structured binding in clang 14
    INFO("tensor ", name);
    REQUIRE(got.count(name) == 1);
    const Tensor& t = got.at(name);
    CHECK(t.dtype() == want.dtype());
    CHECK(t.shape() == want.shape());
    CHECK(t.is_contiguous());
    CHECK(raw_bytes(t) == raw_bytes(want));
  }
}

// Every dtype, with values whose bits are easy to corrupt (NaN payloads, -0, infinities,
// subnormals, integer extremes), a 0-d tensor, zero-size tensors and non-contiguous views.
StateDict every_kind_of_tensor() {
  StateDict d;
  d["f32"] = from_bits<uint32_t>(
      {0x3f800000u, 0x80000000u, 0x7f800000u, 0x7fc00001u, 0x00000001u, 0xc0490fdbu}, {2, 3},
      DType::f32);
  d["f64"] = from_bits<uint64_t>(
      {0x3ff0000000000000ull, 0x8000000000000000ull, 0x7ff8000000000123ull, 0x0000000000000001ull},
      {4}, DType::f64);
  d["bf16"] = from_bits<uint16_t>({0x3f80, 0x8000, 0x7f80, 0x7fc1, 0x0001}, {5}, DType::bf16);
  d["f16"] =
      from_bits<uint16_t>({0x3c00, 0x8000, 0x7c00, 0x7e01, 0x0001, 0x7bff}, {3, 2}, DType::f16);
  d["i32"] = from_vector<int32_t>(
      {std::numeric_limits<int32_t>::min(), -1, 0, 1, std::numeric_limits<int32_t>::max()});
  d["i64"] = from_vector<int64_t>(
      {std::numeric_limits<int64_t>::min(), -1, 0, std::numeric_limits<int64_t>::max()},
      Shape{2, 2});
  d["u8"] = from_vector<uint8_t>({0, 1, 127, 128, 255});
  d["bool"] = from_vector<bool>({true, false, false, true});
  d["scalar"] = scalar_tensor(2.5, {.dtype = DType::f64});
  d["empty"] = empty({0}, {.dtype = DType::f32});
  d["empty_3d"] = empty({2, 0, 3}, {.dtype = DType::i64});
  d["transposed"] = iota({2, 3}).transpose(0, 1);
  d["strided"] = iota({10}).slice(0, 1, 10, 3);
  d["expanded"] = iota({3}).unsqueeze(0).expand({2, 3});
  return d;
}

}  // namespace

TEST_CASE("safetensors: every dtype, 0-d, zero-size and strided tensors round-trip bit-exactly") {
  TempDir dir("safetensors");
  StateDict tensors = every_kind_of_tensor();
  SafetensorsMetadata metadata{{"format", "pt"}, {"note", "ünïcode \"quoted\"\n\ttabs"}};
  const fs::path path = dir / "all.safetensors";
  save_safetensors(path, tensors, metadata);

  SafetensorsContents from_file = read_safetensors(path);
  check_same_tensors(from_file.tensors, tensors);
  CHECK(from_file.metadata == metadata);
  // The in-memory writer and reader agree with the file ones.
  CHECK(serialize_safetensors(tensors, metadata) == read_file(path));
  SafetensorsContents from_memory = parse_safetensors(read_file(path), "all");
  check_same_tensors(from_memory.tensors, tensors);
  CHECK(from_memory.metadata == metadata);

  // The views were written in logical (row-major) order, not storage order.
  CHECK(vals(from_file.tensors.at("transposed")) == std::vector<float>{0, 3, 1, 4, 2, 5});
  CHECK(vals(from_file.tensors.at("strided")) == std::vector<float>{1, 4, 7});
  CHECK(vals(from_file.tensors.at("expanded")) == std::vector<float>{0, 1, 2, 0, 1, 2});
  CHECK(from_file.tensors.at("scalar").dim() == 0);
  CHECK(from_file.tensors.at("scalar").item() == 2.5);
}

TEST_CASE("safetensors: GPU tensors are written from and read back to the GPU bit-exactly") {
  if (cuda_device_count() == 0) {
    std::puts("skipped: no GPU (no CUDA device visible to this process)");
    MESSAGE("skipped: no GPU");
    return;
  }
  TempDir dir("safetensors");
  StateDict on_host = every_kind_of_tensor();
  StateDict on_gpu;
  for (const auto& [name, t] : on_host) on_gpu[name] = t.contiguous().to(Device::cuda());
  on_gpu["transposed"] = iota({2, 3}).to(Device::cuda()).transpose(0, 1);  // a view on the GPU
  CHECK(serialize_safetensors(on_gpu) == serialize_safetensors(on_host));

  save_safetensors(dir / "gpu.safetensors", on_gpu);
  StateDict back = load_safetensors(dir / "gpu.safetensors", Device::cuda());
  for (const auto& [key, t] : back) {
    const std::string& name = key;
    INFO("tensor ", name);
    CHECK(t.device() == Device::cuda());
  }
  check_same_tensors(back, on_host);
}

TEST_CASE("safetensors: the writer lays the data out packed, 8-byte aligned, in reference order") {
  StateDict tensors = every_kind_of_tensor();
  Bytes bytes = serialize_safetensors(tensors);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  CHECK(n % 8 == 0);
  SafetensorsHeader header = [&] {
    TempDir dir("safetensors");
    write_file(dir / "f.safetensors", bytes);
    return read_safetensors_header(dir / "f.safetensors");
  }();
  CHECK(header.data_start == 8 + n);
  CHECK(header.metadata.empty());
  REQUIRE(header.tensors.size() == tensors.size());
  uint64_t total = 0;
  for (const auto& [key, info] : header.tensors) {
    const std::string& name = key;
    INFO("tensor ", name);
    CHECK(info.dtype == tensors.at(name).dtype());
    CHECK(info.shape == tensors.at(name).shape());
    CHECK(info.end - info.begin == tensors.at(name).nbytes());
    // Most aligned dtypes first: every tensor starts at a multiple of its element size.
    CHECK((header.data_start + info.begin) % dtype_size(info.dtype) == 0);
    total += info.end - info.begin;
  }
  CHECK(bytes.size() == header.data_start + total);
}

TEST_CASE("safetensors: golden bytes written by hand from the format's definition") {
  TempDir dir("safetensors");
  SUBCASE("one F32 tensor with metadata, padded to 8 bytes") {
    // {"a": F32 [2] = {1, 2}}, metadata {"format": "pt"}: compact JSON, __metadata__ first.
    std::string json = R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],)"
                       R"("data_offsets":[0,8]}})";
    REQUIRE(json.size() == 85);  // so 3 spaces of padding
    Bytes golden;
    append_u64_le(golden, 88);
    append_text(golden, json + "   ");
    append_raw(golden, {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40});

    StateDict tensors{{"a", f32({1, 2}, {2})}};
    SafetensorsMetadata metadata{{"format", "pt"}};
    CHECK(serialize_safetensors(tensors, metadata) == golden);
    save_safetensors(dir / "a.safetensors", tensors, metadata);
    CHECK(read_file(dir / "a.safetensors") == golden);

    SafetensorsContents back = parse_safetensors(golden, "golden");
    CHECK(back.metadata == metadata);
    REQUIRE(back.tensors.size() == 1);
    CHECK(back.tensors.at("a").dtype() == DType::f32);
    CHECK(vals(back.tensors.at("a")) == std::vector<float>{1, 2});
  }
  SUBCASE("the reference implementation's test vectors") {
    // safetensors' own tests: "attn.0" F32 [1, 2, 3] = 0..5 (a 64-byte header, no padding) and
    // an empty dict with metadata {"framework": "pt"}.
    Bytes attn;
    append_u64_le(attn, 64);
    append_text(attn, R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})");
    for (float v : {0.0f, 1.0f, 2.0f, 3.0f, 4.0f, 5.0f}) append_le(attn, v);
    StateDict tensors{{"attn.0", iota({1, 2, 3})}};
    CHECK(serialize_safetensors(tensors) == attn);
    CHECK(vals(parse_safetensors(attn, "attn").tensors.at("attn.0")) ==
          std::vector<float>{0, 1, 2, 3, 4, 5});

    Bytes empty_dict;
    append_u64_le(empty_dict, 40);
    append_text(empty_dict, R"({"__metadata__":{"framework":"pt"}}     )");
    CHECK(serialize_safetensors({}, {{"framework", "pt"}}) == empty_dict);
    CHECK(parse_safetensors(empty_dict, "empty").metadata ==
          SafetensorsMetadata{{"framework", "pt"}});

    Bytes nothing;
    append_u64_le(nothing, 8);
    append_text(nothing, "{}      ");
    CHECK(serialize_safetensors({}) == nothing);
    CHECK(parse_safetensors(nothing, "nothing").tensors.empty());
  }
  SUBCASE("mixed dtypes: the more aligned dtype comes first, then names in order") {
    std::string json = padded(R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                              R"("c":{"dtype":"F32","shape":[],"data_offsets":[4,8]},)"
                              R"("a":{"dtype":"U8","shape":[1],"data_offsets":[8,9]}})");
    Bytes golden;
    append_u64_le(golden, json.size());
    append_text(golden, json);
    append_le(golden, 1.0f);
    append_le(golden, -2.0f);
    append_raw(golden, {7});
    StateDict tensors{{"a", from_vector<uint8_t>({7})},
                      {"b", f32({1}, {1})},
                      {"c", scalar_tensor(-2.0, {.dtype = DType::f32})}};
    CHECK(serialize_safetensors(tensors) == golden);
    StateDict back = parse_safetensors(golden, "mixed").tensors;
    check_same_tensors(back, tensors);
  }
}

// Malformed files: each must fail with an rw::Error that names the file and says what is wrong.
TEST_CASE("safetensors: malformed files are errors naming the file and the problem") {
  TempDir dir("safetensors");
  const Bytes four_floats = [] {
    Bytes b;
    for (float v : {1.0f, 2.0f, 3.0f, 4.0f}) append_le(b, v);
    return b;
  }();
  auto entry = [](const std::string& name, const std::string& dtype, const std::string& shape,
                  const std::string& offsets) {
    return fmt::format(R"("{}":{{"dtype":"{}","shape":{},"data_offsets":{}}})", name, dtype, shape,
                       offsets);
  };
  const std::string a4 = entry("a", "F32", "[4]", "[0,16]");
  struct Case {
    const char* what;
    Bytes bytes;
    std::string fragment;
  };
  std::string deep = "{\"a\":" + std::string(100, '[') + std::string(100, ']') + "}";
  std::vector<Case> cases = {
      {"empty file", {}, "the file is 0 bytes, too short for the 8-byte header length"},
      {"five bytes", Bytes(5), "the file is 5 bytes, too short"},
      {"huge header length", make_file("{}", {}, 1ull << 63),
       "header length 9223372036854775808 exceeds the limit of 100000000 bytes"},
      {"header length past the file", make_file("{}", {}, 1000),
       "header length 1000 runs past the end of the file (2 bytes follow the length field)"},
      {"invalid UTF-8", make_file("{\"a\xff\":1}"), "header is not valid UTF-8 (bad byte 0xff"},
      {"overlong UTF-8", make_file("{\"\xc0\xaf\":1}"), "not valid UTF-8"},
      {"not JSON", make_file("{\"a\": "), "header is not valid JSON"},
      {"trailing JSON", make_file("{} x"), "header is not valid JSON"},
      {"JSON array", make_file("[1,2]"), "header is not a JSON object (found array [1,2])"},
      {"duplicate tensor", make_file("{" + a4 + "," + a4 + "}", four_floats),
       "duplicate key \"a\" in the header object"},
      {"duplicate field",
       make_file(R"({"a":{"dtype":"F32","dtype":"F64","shape":[4],"data_offsets":[0,16]}})",
                 four_floats),
       "duplicate key \"dtype\" in the object under \"a\""},
      {"duplicate metadata", make_file(R"({"__metadata__":{"k":"1","k":"2"}})"),
       "duplicate key \"k\" in the object under \"__metadata__\""},
      {"deep nesting", make_file(deep), "header JSON nests deeper than 64 levels"},
      {"entry not an object", make_file(R"({"a":[1]})"),
       "tensor \"a\": entry is not a JSON object (found array [1])"},
      {"missing shape", make_file(R"({"a":{"dtype":"F32","data_offsets":[0,16]}})", four_floats),
       "tensor \"a\": entry has no \"shape\" field"},
      {"missing offsets", make_file(R"({"a":{"dtype":"F32","shape":[4]}})", four_floats),
       "entry has no \"data_offsets\" field"},
      {"extra field",
       make_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16],"x":0}})", four_floats),
       "tensor \"a\": entry has an unexpected field \"x\""},
      {"unknown dtype", make_file("{" + entry("a", "F8", "[4]", "[0,16]") + "}", four_floats),
       "tensor \"a\": unsupported dtype \"F8\" (supported: BOOL, U8, F16, BF16, I32, F32, F64, "
       "I64)"},
      {"dtype not a string", make_file(R"({"a":{"dtype":4,"shape":[4],"data_offsets":[0,16]}})"),
       "dtype is not a string: 4"},
      {"shape not an array", make_file("{" + entry("a", "F32", "4", "[0,16]") + "}", four_floats),
       "shape is not an array: 4"},
      {"negative extent", make_file("{" + entry("a", "F32", "[-4]", "[0,16]") + "}", four_floats),
       "shape [-4] is not an array of non-negative integers (bad extent -4)"},
      {"fractional extent",
       make_file("{" + entry("a", "F32", "[4.0]", "[0,16]") + "}", four_floats),
       "(bad extent 4.0)"},
      {"extent beyond u64",
       make_file("{" + entry("a", "F32", "[18446744073709551616]", "[0,16]") + "}", four_floats),
       "bad extent"},
      {"element count overflows",
       make_file("{" + entry("a", "U8", "[4294967296,4294967296]", "[0,16]") + "}", four_floats),
       "shape [4294967296,4294967296] has too many elements (the count overflows int64)"},
      {"overflow hidden by a zero extent",
       make_file("{" + entry("a", "U8", "[4294967296,4294967296,0]", "[0,0]") + "}"),
       "has too many elements"},
      {"byte size overflows",
       make_file("{" + entry("a", "F64", "[4611686018427387904]", "[0,16]") + "}", four_floats),
       "shape [4611686018427387904] of dtype F64 is too large (its byte size overflows int64)"},
      {"offsets not a pair", make_file("{" + entry("a", "F32", "[4]", "[16]") + "}", four_floats),
       "tensor \"a\": data_offsets [16] is not a pair of non-negative integers"},
      {"negative offset", make_file("{" + entry("a", "F32", "[4]", "[-1,15]") + "}", four_floats),
       "data_offsets [-1,15] is not a pair of non-negative integers"},
      {"offsets reversed", make_file("{" + entry("a", "F32", "[0]", "[16,0]") + "}", four_floats),
       "data_offsets [16, 0] end before they begin"},
      {"offsets past the end",
       make_file("{" + entry("a", "F32", "[8]", "[0,32]") + "}", four_floats),
       "tensor \"a\": data_offsets [0, 32] run past the end of the data buffer (16 bytes)"},
      {"huge offsets",
       make_file(
           "{" + entry("a", "F32", "[0]", "[18446744073709551615,18446744073709551615]") + "}",
           four_floats),
       "run past the end of the data buffer (16 bytes)"},
      {"wrong byte count", make_file("{" + entry("a", "F32", "[3]", "[0,16]") + "}", four_floats),
       "tensor \"a\": data_offsets [0, 16] hold 16 bytes, but dtype F32 shape [3] needs 12"},
      {"overlapping tensors",
       make_file("{" + entry("a", "F32", "[3]", "[0,12]") + "," +
                     entry("b", "F32", "[2]", "[8,16]") + "}",
                 four_floats),
       "tensor \"b\" (data_offsets [8, 16]) overlaps tensor \"a\", which ends at 12"},
      {"hole in the buffer",
       make_file(
           "{" + entry("a", "F32", "[1]", "[0,4]") + "," + entry("b", "F32", "[2]", "[8,16]") + "}",
           four_floats),
       "the data buffer has a hole: bytes [4, 8) belong to no tensor (tensor \"b\" starts at 8)"},
      {"trailing bytes", make_file("{" + entry("a", "F32", "[3]", "[0,12]") + "}", four_floats),
       "4 bytes at the end of the data buffer belong to no tensor (the buffer is 16 bytes, the "
       "tensors cover 12)"},
      {"metadata not an object", make_file(R"({"__metadata__":["x"]})"),
       "__metadata__ is not a JSON object of strings (found array [\"x\"])"},
      {"metadata value not a string", make_file(R"({"__metadata__":{"k":1}})"),
       "__metadata__ value of \"k\" is not a string: 1"},
      {"BOOL byte other than 0 or 1",
       make_file("{" + entry("a", "BOOL", "[4]", "[0,4]") + "}",
                 Bytes{std::byte{1}, std::byte{0}, std::byte{2}, std::byte{1}}),
       "tensor \"a\": BOOL element 2 is the byte 2 (expected 0 or 1)"},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    INFO("case ", i, ": ", c.what);
    const fs::path path = dir / fmt::format("bad-{}.safetensors", i);
    write_file(path, c.bytes);
    std::string from_file = error_message([&] { load_safetensors(path); });
    CHECK(contains(from_file, "safetensors file '" + path.string() + "': "));
    CHECK_MESSAGE(contains(from_file, c.fragment), from_file);
    std::string from_memory = error_message([&] { parse_safetensors(c.bytes, "in-memory"); });
    CHECK(contains(from_memory, "safetensors file 'in-memory': "));
    CHECK_MESSAGE(contains(from_memory, c.fragment), from_memory);
  }
}

TEST_CASE("safetensors: a valid file cut short anywhere is an error, never a crash") {
  TempDir dir("safetensors");
  StateDict tensors{{"a", iota({3, 4})}, {"b", from_vector<int64_t>({1, 2, 3})}};
  const Bytes whole = serialize_safetensors(tensors, {{"k", "v"}});
  uint64_t header_end = 8;
  for (int i = 7; i >= 0; --i) header_end += static_cast<uint64_t>(whole[i]) << (8 * i);
  REQUIRE(header_end < whole.size());
  struct Cut {
    std::size_t size;
    std::string fragment;
  };
  const std::vector<Cut> cuts = {
      {0, "too short for the 8-byte header length"},
      {7, "the file is 7 bytes, too short"},
      {8, "runs past the end of the file (0 bytes follow the length field)"},
      {20, "runs past the end of the file (12 bytes follow"},
      {header_end - 1, "runs past the end of the file"},
      {header_end, "run past the end of the data buffer (0 bytes)"},
      {header_end + 20, "run past the end of the data buffer (20 bytes)"},
      {whole.size() - 1, "run past the end of the data buffer"},
  };
  for (const Cut& cut : cuts) {
    INFO("cut at ", cut.size, " of ", whole.size());
    const fs::path path = dir / "cut.safetensors";
    write_file(path, Bytes(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(cut.size)));
    std::string msg = error_message([&] { load_safetensors(path); });
    CHECK(contains(msg, path.string()));
    CHECK_MESSAGE(contains(msg, cut.fragment), msg);
  }
  // Every other cut fails too (the loop above names the expected problem for a few of them).
  for (std::size_t size = 0; size < whole.size(); ++size) {
    Bytes prefix(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(size));
    CHECK_THROWS_AS(parse_safetensors(prefix, "prefix"), Error);
  }
}

TEST_CASE("safetensors: missing files and directories are errors naming the path") {
  TempDir dir("safetensors");
  std::string msg = error_message([&] { load_safetensors(dir / "missing.safetensors"); });
  CHECK(contains(msg, "safetensors file '" + (dir / "missing.safetensors").string() +
                          "': cannot open: No such file or directory"));
  msg = error_message([&] { load_safetensors_metadata(dir / "."); });
  CHECK(contains(msg, "not a regular file"));
}

TEST_CASE("safetensors: the metadata and header are read without the tensor data") {
  TempDir dir("safetensors");
  StateDict tensors{{"w", iota({2, 2})}, {"n", from_vector<int32_t>({5})}};
  save_safetensors(dir / "m.safetensors", tensors, {{"epoch", "3"}});
  CHECK(load_safetensors_metadata(dir / "m.safetensors") == SafetensorsMetadata{{"epoch", "3"}});
  SafetensorsHeader header = read_safetensors_header(dir / "m.safetensors");
  REQUIRE(header.tensors.size() == 2);
  CHECK(header.tensors.at("w").dtype == DType::f32);
  CHECK(header.tensors.at("w").shape == Shape{2, 2});
  CHECK(header.tensors.at("n").dtype == DType::i32);
  // The reference's dtype order (by alignment, ties in its enum order) puts F32 after I32, so
  // the descending order writes "w" first although "n" sorts first by name.
  CHECK(header.tensors.at("w").begin == 0);
  CHECK(header.tensors.at("w").end == 16);
  CHECK(header.tensors.at("n").begin == 16);
  CHECK(header.tensors.at("n").end == 20);

  // The data itself is not read: a BOOL byte that fails a full load passes a header read.
  Bytes bad_bool =
      make_file(R"({"b":{"dtype":"BOOL","shape":[1],"data_offsets":[0,1]}})", Bytes{std::byte{7}});
  write_file(dir / "b.safetensors", bad_bool);
  CHECK(read_safetensors_header(dir / "b.safetensors").tensors.at("b").dtype == DType::boolean);
  CHECK(contains(error_message([&] { load_safetensors(dir / "b.safetensors"); }),
                 "BOOL element 0 is the byte 7"));
}

TEST_CASE("safetensors: names and dtypes the format cannot hold are errors before writing") {
  TempDir dir("safetensors");
  const fs::path path = dir / "x.safetensors";
  std::string msg = error_message([&] { save_safetensors(path, {{"__metadata__", iota({1})}}); });
  CHECK(contains(msg, "cannot write safetensors file '" + path.string() + "'"));
  CHECK(contains(msg, "a tensor cannot be named \"__metadata__\""));
  msg = error_message([&] { save_safetensors(path, {{"bad\xff", iota({1})}}); });
  CHECK(contains(msg, "is not valid UTF-8"));
  msg = error_message([&] { save_safetensors(path, {}, {{"k", "\xc3"}}); });
  CHECK(contains(msg, "__metadata__ entry \"k\" is not valid UTF-8"));
  CHECK(dir.entries().empty());
  CHECK(safetensors_dtype_from_name("BF16") == DType::bf16);
  CHECK(safetensors_dtype_name(DType::boolean) == "BOOL");
  CHECK(contains(error_message([] { safetensors_dtype_from_name("I8"); }),
                 "unsupported safetensors dtype \"I8\""));
}

// --- atomic writes
// ---------------------------------------------------------------------------------

namespace {

// Lowers this process's file size limit while alive, so writes past `bytes` fail with EFBIG (as
// on a full disk) instead of raising SIGXFSZ.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved_) == 0);
    previous_handler_ = ::signal(SIGXFSZ, SIG_IGN);
    rlimit lowered = saved_;
    lowered.rlim_cur = bytes;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &lowered) == 0);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &saved_);
    ::signal(SIGXFSZ, previous_handler_);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;

 private:
  rlimit saved_{};
  sighandler_t previous_handler_{};
};

}  // namespace

TEST_CASE("atomic writes: a failed save leaves the previous file byte-identical, no temp files") {
  TempDir dir("safetensors");
  const fs::path path = dir / "model.safetensors";
  save_safetensors(path, {{"a", iota({4})}}, {{"version", "1"}});
  const Bytes before = read_file(path);
  const std::vector<std::string> only_target = {"model.safetensors"};

  SUBCASE("a tensor that cannot be serialised (undefined)") {
    std::string msg = error_message([&] {
      save_safetensors(path, {{"a", iota({4})}, {"b", Tensor()}});
    });
    CHECK(contains(msg, path.string()));
    CHECK(contains(msg, "tensor \"b\" is undefined"));
  }
  SUBCASE("the disk fills up midway through the data") {
    std::string msg = error_message([&] {
      FileSizeLimit limit(4096);
      save_safetensors(path, {{"big", zeros({64 * 1024})}});
    });
    CHECK(contains(msg, "cannot write '" + path.string() + "': writing failed: File too large"));
  }
  SUBCASE("the writer is abandoned without a commit") {
    {
      AtomicFileWriter writer(path);
      writer.write(std::span<const std::byte>(before).first(10));
      CHECK(fs::exists(writer.temp_path()));
      CHECK(writer.temp_path().parent_path() == path.parent_path());
    }
  }
  CHECK(read_file(path) == before);
  CHECK(dir.entries() == only_target);
  CHECK(vals(load_safetensors(path).at("a")) == std::vector<float>{0, 1, 2, 3});
}

TEST_CASE("atomic writes: failures to create or rename are errors naming the target") {
  TempDir dir("safetensors");
  SUBCASE("the directory does not exist") {
    const fs::path path = dir / "no-such-dir" / "x.safetensors";
    std::string msg = error_message([&] { save_safetensors(path, {{"a", iota({2})}}); });
    CHECK(contains(msg, "cannot write '" + path.string() +
                            "': cannot create a temporary file in '" +
                            (dir / "no-such-dir").string() + "': No such file or directory"));
    CHECK(dir.entries().empty());
  }
  SUBCASE("the target is a directory") {
    const fs::path path = dir / "taken";
    fs::create_directory(path);
    std::string msg = error_message([&] { save_safetensors(path, {{"a", iota({2})}}); });
    CHECK(contains(msg, "cannot write '" + path.string() +
                            "': rename failed: Is a directory; the "
                            "previous file is unchanged"));
    CHECK(dir.entries() == std::vector<std::string>{"taken"});
    CHECK(fs::is_directory(path));
  }
  SUBCASE("the path names no file") {
    std::string msg = error_message([&] { AtomicFileWriter writer(dir / "sub/"); });
    CHECK(contains(msg, "the path names no file"));
  }
}

TEST_CASE("atomic writes: a commit replaces the file and only then") {
  TempDir dir("safetensors");
  const fs::path path = dir / "f.bin";
  write_file_atomically(path, Bytes{std::byte{1}, std::byte{2}});
  CHECK(read_file(path) == Bytes{std::byte{1}, std::byte{2}});
  AtomicFileWriter writer(path);
  writer.write(Bytes{std::byte{9}});
  CHECK(read_file(path) == Bytes{std::byte{1}, std::byte{2}});  // not yet visible
  writer.commit();
  CHECK(read_file(path) == Bytes{std::byte{9}});
  CHECK(dir.entries() == std::vector<std::string>{"f.bin"});
  CHECK(contains(error_message([&] { writer.write(Bytes{std::byte{1}}); }), "already committed"));
}

}  // namespace rw::nn
