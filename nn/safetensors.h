#pragma once
// safetensors files (https://github.com/huggingface/safetensors): the checkpoint format shared
// with PyTorch, JAX and the Hugging Face tools.
//
// Layout: an 8-byte little-endian u64 N, then N bytes of UTF-8 JSON, then the data buffer. The
// JSON object maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (byte
// offsets into the buffer, little-endian row-major data) and may hold "__metadata__", a
// string -> string object.
//
// Writing follows the reference implementation byte for byte: tensors ordered by descending dtype
// alignment, then by name (so every tensor starts at an offset aligned for its dtype), packed with
// no gaps; compact JSON with "__metadata__" first (omitted when empty) and the tensors in buffer
// order; the JSON padded with spaces to a multiple of 8 bytes. Writes are atomic
// (nn/atomic_file.h).
//
// Reading treats every file as untrusted. Each violation of the format is an rw::Error naming the
// file and the problem; nothing is allocated from a size before it is checked against the bytes
// actually present. Beyond the reference reader, duplicate JSON keys, unknown fields in an entry
// and BOOL bytes other than 0 and 1 are errors too.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/shape.h"
#include "nn/module.h"

namespace rw::nn {

// The "__metadata__" strings of a file.
using SafetensorsMetadata = std::map<std::string, std::string>;

// One tensor as a (validated) header declares it.
struct SafetensorsTensorInfo {
  DType dtype = DType::f32;
  Shape shape;
  uint64_t begin = 0;  // byte offsets into the data buffer
  uint64_t end = 0;
};

struct SafetensorsHeader {
  SafetensorsMetadata metadata;
  std::map<std::string, SafetensorsTensorInfo> tensors;
  uint64_t data_start = 0;  // where the data buffer starts in the file: 8 + the JSON's length
};

struct SafetensorsContents {
  StateDict tensors;
  SafetensorsMetadata metadata;
};

// --- reading ------------------------------------------------------------------------------------
// The tensors (on `device`) and the metadata of a file.
SafetensorsContents read_safetensors(const std::filesystem::path& path,
                                     Device device = Device::cpu());
StateDict load_safetensors(const std::filesystem::path& path, Device device = Device::cpu());
// The header alone (validated against the file's size); reads no tensor data.
SafetensorsHeader read_safetensors_header(const std::filesystem::path& path);
SafetensorsMetadata load_safetensors_metadata(const std::filesystem::path& path);
// The same checks on a file's bytes held in memory; `name` stands for the file in messages.
SafetensorsContents parse_safetensors(std::span<const std::byte> bytes, std::string_view name,
                                      Device device = Device::cpu());

// --- writing ------------------------------------------------------------------------------------
// Tensors may live on any device and have any strides; they are written as contiguous host copies.
// Every tensor is copied to the host one at a time, so memory use grows by the largest tensor only.
void save_safetensors(const std::filesystem::path& path, const StateDict& tensors,
                      const SafetensorsMetadata& metadata = {});
std::vector<std::byte> serialize_safetensors(const StateDict& tensors,
                                             const SafetensorsMetadata& metadata = {});

// The format's names for rewind's dtypes ("F32", "BF16", "BOOL", ...) and back; the parser
// throws rw::Error naming the accepted names.
std::string_view safetensors_dtype_name(DType dtype);
DType safetensors_dtype_from_name(std::string_view name);

}  // namespace rw::nn
