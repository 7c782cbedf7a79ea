#include "nn/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>
#include <set>
#include <system_error>
#include <utility>

#include <nlohmann/json.hpp>

#include "autograd/tape.h"
#include "core/error.h"
#include "core/tensor.h"
#include "nn/atomic_file.h"

namespace rw::nn {

// The format stores little-endian data, which rewind's tensors hold natively on the hosts it
// supports; a big-endian port would need byte swapping here.
static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes little endian");

using Json = nlohmann::json;

namespace {

// The reference implementation's limit: no real header comes near it, and it bounds what a
// corrupt length field can make the reader allocate.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
// A valid header nests three levels (header, entry, shape); the limit only keeps hostile input
// from building arbitrarily deep documents.
constexpr int kMaxJsonDepth = 64;

struct DTypeEntry {
  DType dtype;
  std::string_view name;
  // Position in the reference implementation's Dtype enum, which is ordered by alignment; the
  // writer orders tensors by it (descending), as the reference does.
  int reference_rank;
};
constexpr DTypeEntry kDTypes[] = {
    {DType::boolean, "BOOL", 0}, {DType::u8, "U8", 1},   {DType::f16, "F16", 2},
    {DType::bf16, "BF16", 3},    {DType::i32, "I32", 4}, {DType::f32, "F32", 5},
    {DType::f64, "F64", 6},      {DType::i64, "I64", 7},
};

const DTypeEntry& dtype_entry(DType dtype) {
  for (const DTypeEntry& e : kDTypes) {
    if (e.dtype == dtype) return e;
  }
  RW_ASSERT(false);
  return kDTypes[0];
}

std::optional<DType> find_dtype(std::string_view name) {
  for (const DTypeEntry& e : kDTypes) {
    if (e.name == name) return e.dtype;
  }
  return std::nullopt;
}

std::string accepted_dtype_names() {
  std::string out;
  for (const DTypeEntry& e : kDTypes) {
    if (!out.empty()) out += ", ";
    out += e.name;
  }
  return out;
}

// Byte offset of the first invalid UTF-8 sequence (overlong forms, surrogates and code points past
// U+10FFFF are invalid), or nullopt when `s` is valid.
std::optional<std::size_t> invalid_utf8_at(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    unsigned char c = byte(i);
    std::size_t len;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return i;
    }
    if (s.size() - i < len) return i;
    for (std::size_t k = 1; k < len; ++k) {
      if ((byte(i + k) & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (byte(i + k) & 0x3F);
    }
    constexpr uint32_t kMinForLength[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMinForLength[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return std::nullopt;
}

// A JSON value or a name for an error message: escaped, and cut short so that a hostile header
// cannot make a message megabytes long.
std::string excerpt(const Json& value) {
  std::string s = value.dump(-1, ' ', false, Json::error_handler_t::replace);
  constexpr std::size_t kMax = 80;
  if (s.size() > kMax) s = s.substr(0, kMax) + "...";
  return s;
}
std::string quote_name(std::string_view name) { return excerpt(Json(std::string(name))); }

// Every reader failure: "safetensors file '<file>': <problem>".
[[noreturn]] void fail(std::string_view file, std::string_view problem) {
  throw Error(fmt::format("safetensors file '{}': {}", file, problem));
}

// --- where the bytes come from -----------------------------------------------------------------

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual uint64_t size() const = 0;
  // Exactly `n` bytes at `offset`; the caller has checked offset + n <= size().
  virtual void read(uint64_t offset, void* dst, std::size_t n) = 0;
};

class SpanSource final : public ByteSource {
 public:
  explicit SpanSource(std::span<const std::byte> bytes) : bytes_(bytes) {}
  uint64_t size() const override { return bytes_.size(); }
  void read(uint64_t offset, void* dst, std::size_t n) override {
    RW_ASSERT(offset <= bytes_.size() && n <= bytes_.size() - offset);
    if (n > 0) std::memcpy(dst, bytes_.data() + offset, n);
  }

 private:
  std::span<const std::byte> bytes_;
};

class FileSource final : public ByteSource {
 public:
  explicit FileSource(const std::filesystem::path& path) : name_(path.string()) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0)
      fail(name_, fmt::format("cannot open: {}", std::generic_category().message(errno)));
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
      int err = errno;
      ::close(fd_);
      fail(name_, fmt::format("cannot stat: {}", std::generic_category().message(err)));
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd_);
      fail(name_, "not a regular file");
    }
    size_ = static_cast<uint64_t>(st.st_size);
  }
  ~FileSource() override { ::close(fd_); }
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;

  uint64_t size() const override { return size_; }
  void read(uint64_t offset, void* dst, std::size_t n) override {
    auto* p = static_cast<char*>(dst);
    while (n > 0) {
      ssize_t got = ::pread(fd_, p, n, static_cast<off_t>(offset));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) {
        fail(name_, fmt::format("reading {} bytes at offset {} failed: {}", n, offset,
                                std::generic_category().message(errno)));
      }
      if (got == 0) {
        fail(name_, fmt::format("the file ended at offset {} while {} more bytes were expected "
                                "(did it change while being read?)",
                                offset, n));
      }
      p += got;
      n -= static_cast<std::size_t>(got);
      offset += static_cast<uint64_t>(got);
    }
  }

 private:
  std::string name_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// --- the header --------------------------------------------------------------------------------

// Parses the JSON text, rejecting duplicate keys at any level (nlohmann's DOM parser would keep one
// of them silently: a file that says two different things about a tensor is corrupt).
Json parse_json(const std::string& text, std::string_view file) {
  struct OpenObject {
    std::set<std::string> keys;
    std::string last_key;
  };
  std::vector<OpenObject> open;
  auto on_event = [&](int depth, Json::parse_event_t event, Json& parsed) {
    if (depth > kMaxJsonDepth) {
      fail(file, fmt::format("header JSON nests deeper than {} levels", kMaxJsonDepth));
    }
    switch (event) {
      case Json::parse_event_t::object_start:
        open.emplace_back();
        break;
      case Json::parse_event_t::object_end:
        open.pop_back();
        break;
      case Json::parse_event_t::key: {
        const auto& key = parsed.get_ref<const std::string&>();
        OpenObject& object = open.back();
        if (!object.keys.insert(key).second) {
          std::string where =
              open.size() == 1
                  ? std::string("the header object")
                  : fmt::format("the object under {}", quote_name(open[open.size() - 2].last_key));
          fail(file, fmt::format("duplicate key {} in {}", quote_name(key), where));
        }
        object.last_key = key;
        break;
      }
      default:
        break;
    }
    return true;
  };
  try {
    return Json::parse(text, on_event);
  } catch (const Json::exception& e) {
    fail(file, fmt::format("header is not valid JSON: {}", e.what()));
  }
}

// A JSON integer in [0, limit], or nullopt (negative, fractional, not a number, too large).
std::optional<uint64_t> as_count(const Json& v, uint64_t limit) {
  if (!v.is_number_unsigned()) return std::nullopt;
  auto n = v.get<uint64_t>();
  if (n > limit) return std::nullopt;
  return n;
}

SafetensorsTensorInfo parse_entry(const std::string& name, const Json& entry, uint64_t buffer_size,
                                  std::string_view file) {
  std::string tensor = fmt::format("tensor {}", quote_name(name));
  auto entry_fail = [&](const std::string& problem) {
    fail(file, fmt::format("{}: {}", tensor, problem));
  };
  if (!entry.is_object()) {
    entry_fail(
        fmt::format("entry is not a JSON object (found {} {})", entry.type_name(), excerpt(entry)));
  }
  for (const char* field : {"dtype", "shape", "data_offsets"}) {
    if (!entry.contains(field)) entry_fail(fmt::format("entry has no \"{}\" field", field));
  }
  for (const auto& [key, value] : entry.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      entry_fail(
          fmt::format("entry has an unexpected field {} (expected only dtype, shape, "
                      "data_offsets)",
                      quote_name(key)));
    }
  }

  SafetensorsTensorInfo info;
  const Json& dtype = entry.at("dtype");
  if (!dtype.is_string()) entry_fail(fmt::format("dtype is not a string: {}", excerpt(dtype)));
  std::optional<DType> found = find_dtype(dtype.get_ref<const std::string&>());
  if (!found) {
    entry_fail(fmt::format("unsupported dtype {} (supported: {})", excerpt(dtype),
                           accepted_dtype_names()));
  }
  info.dtype = *found;

  const Json& shape = entry.at("shape");
  if (!shape.is_array()) entry_fail(fmt::format("shape is not an array: {}", excerpt(shape)));
  constexpr auto kInt64Max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  // Every stride and the element count must fit in int64, and so must the byte size: bounding
  // the product of the extents (zeros counted as ones) guarantees all of them.
  uint64_t product = 1;
  for (const Json& extent : shape) {
    std::optional<uint64_t> d = as_count(extent, kInt64Max);
    if (!d) {
      entry_fail(fmt::format("shape {} is not an array of non-negative integers (bad extent {})",
                             excerpt(shape), excerpt(extent)));
    }
    uint64_t factor = std::max<uint64_t>(*d, 1);
    if (product > kInt64Max / factor) {
      entry_fail(fmt::format("shape {} has too many elements (the count overflows int64)",
                             excerpt(shape)));
    }
    product *= factor;
    info.shape.push_back(static_cast<int64_t>(*d));
  }
  const int64_t numel = shape_numel(info.shape);
  const uint64_t element_size = dtype_size(info.dtype);
  if (static_cast<uint64_t>(numel) > kInt64Max / element_size) {
    entry_fail(fmt::format("shape {} of dtype {} is too large (its byte size overflows int64)",
                           excerpt(shape), dtype_entry(info.dtype).name));
  }
  const uint64_t nbytes = static_cast<uint64_t>(numel) * element_size;

  const Json& offsets = entry.at("data_offsets");
  std::optional<uint64_t> begin, end;
  if (offsets.is_array() && offsets.size() == 2) {
    begin = as_count(offsets[0], std::numeric_limits<uint64_t>::max());
    end = as_count(offsets[1], std::numeric_limits<uint64_t>::max());
  }
  if (!begin || !end) {
    entry_fail(
        fmt::format("data_offsets {} is not a pair of non-negative integers", excerpt(offsets)));
  }
  if (*begin > *end) {
    entry_fail(fmt::format("data_offsets [{}, {}] end before they begin", *begin, *end));
  }
  if (*end > buffer_size) {
    entry_fail(fmt::format("data_offsets [{}, {}] run past the end of the data buffer ({} bytes)",
                           *begin, *end, buffer_size));
  }
  if (*end - *begin != nbytes) {
    entry_fail(fmt::format("data_offsets [{}, {}] hold {} bytes, but dtype {} shape {} needs {}",
                           *begin, *end, *end - *begin, dtype_entry(info.dtype).name,
                           excerpt(shape), nbytes));
  }
  info.begin = *begin;
  info.end = *end;
  return info;
}

SafetensorsMetadata parse_metadata(const Json& value, std::string_view file) {
  if (!value.is_object()) {
    fail(file, fmt::format("__metadata__ is not a JSON object of strings (found {} {})",
                           value.type_name(), excerpt(value)));
  }
  SafetensorsMetadata metadata;
  for (const auto& [key, v] : value.items()) {
    if (!v.is_string()) {
      fail(file, fmt::format("__metadata__ value of {} is not a string: {}", quote_name(key),
                             excerpt(v)));
    }
    metadata.emplace(key, v.get<std::string>());
  }
  return metadata;
}

// The data buffer must be covered exactly: tensors in offset order, each starting where the
// previous one ended, the last one ending at the end of the file. Overlaps would alias tensors,
// gaps and trailing bytes hide data no tensor accounts for (the reference reader rejects both).
void check_coverage(const SafetensorsHeader& header, uint64_t buffer_size, std::string_view file) {
  std::vector<std::pair<const std::string*, const SafetensorsTensorInfo*>> order;
  order.reserve(header.tensors.size());
  for (const auto& [name, info] : header.tensors) order.emplace_back(&name, &info);
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return std::pair(a.second->begin, a.second->end) < std::pair(b.second->begin, b.second->end);
  });
  uint64_t covered = 0;
  const std::string* previous = nullptr;
  for (const auto& [name, info] : order) {
    if (info->begin < covered) {
      fail(file,
           fmt::format("tensor {} (data_offsets [{}, {}]) overlaps tensor {}, which ends at "
                       "{}",
                       quote_name(*name), info->begin, info->end, quote_name(*previous), covered));
    }
    if (info->begin > covered) {
      fail(file, fmt::format("the data buffer has a hole: bytes [{}, {}) belong to no tensor "
                             "(tensor {} starts at {})",
                             covered, info->begin, quote_name(*name), info->begin));
    }
    covered = info->end;
    previous = name;
  }
  if (covered != buffer_size) {
    fail(file, fmt::format("{} bytes at the end of the data buffer belong to no tensor (the "
                           "buffer is {} bytes, the tensors cover {})",
                           buffer_size - covered, buffer_size, covered));
  }
}

SafetensorsHeader parse_header(ByteSource& source, std::string_view file) {
  const uint64_t file_size = source.size();
  if (file_size < 8) {
    fail(file,
         fmt::format("the file is {} bytes, too short for the 8-byte header length", file_size));
  }
  unsigned char length_bytes[8];
  source.read(0, length_bytes, 8);
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | length_bytes[i];
  if (header_size > kMaxHeaderBytes) {
    fail(file, fmt::format("header length {} exceeds the limit of {} bytes", header_size,
                           kMaxHeaderBytes));
  }
  if (header_size > file_size - 8) {
    fail(file, fmt::format("header length {} runs past the end of the file ({} bytes follow the "
                           "length field)",
                           header_size, file_size - 8));
  }
  std::string text(header_size, '\0');
  source.read(8, text.data(), header_size);
  if (std::optional<std::size_t> bad = invalid_utf8_at(text)) {
    fail(file, fmt::format("header is not valid UTF-8 (bad byte 0x{:02x} at header offset {})",
                           static_cast<unsigned char>(text[*bad]), *bad));
  }
  Json root = parse_json(text, file);
  if (!root.is_object()) {
    fail(file,
         fmt::format("header is not a JSON object (found {} {})", root.type_name(), excerpt(root)));
  }

  SafetensorsHeader header;
  header.data_start = 8 + header_size;
  const uint64_t buffer_size = file_size - header.data_start;
  for (const auto& [key, value] : root.items()) {
    if (key == "__metadata__") {
      header.metadata = parse_metadata(value, file);
    } else {
      header.tensors.emplace(key, parse_entry(key, value, buffer_size, file));
    }
  }
  check_coverage(header, buffer_size, file);
  return header;
}

// Reads every tensor the (validated) header lists: allocation sizes come from the header only
// after the coverage check proved the bytes are present.
SafetensorsContents read_contents(ByteSource& source, std::string_view file, Device device) {
  SafetensorsHeader header = parse_header(source, file);
  SafetensorsContents contents;
  contents.metadata = std::move(header.metadata);
  for (auto& [name, info] : header.tensors) {
    Tensor host = empty(info.shape, {.dtype = info.dtype});
    const uint64_t nbytes = info.end - info.begin;
    if (nbytes > 0) source.read(header.data_start + info.begin, host.data_ptr(), nbytes);
    if (info.dtype == DType::boolean) {
      // Any other byte would be an invalid C++ bool in every op that reads the tensor.
      const auto* bytes = static_cast<const unsigned char*>(host.data_ptr());
      for (uint64_t i = 0; i < nbytes; ++i) {
        if (bytes[i] > 1) {
          fail(file, fmt::format("tensor {}: BOOL element {} is the byte {} (expected 0 or 1)",
                                 quote_name(name), i, bytes[i]));
        }
      }
    }
    contents.tensors.emplace(name, host.to(device));
  }
  return contents;
}

// --- writing -----------------------------------------------------------------------------------

using ByteSink = std::function<void(const void*, std::size_t)>;

[[noreturn]] void fail_write(std::string_view target, std::string_view problem) {
  throw Error(fmt::format("cannot write safetensors file '{}': {}", target, problem));
}

std::string json_string(std::string_view s) { return Json(std::string(s)).dump(); }

// Checks everything that can be checked before the first byte is written, then streams the file.
void write_contents(const StateDict& tensors, const SafetensorsMetadata& metadata,
                    std::string_view target, const ByteSink& sink) {
  for (const auto& [key, value] : metadata) {
    if (invalid_utf8_at(key) || invalid_utf8_at(value)) {
      fail_write(target, fmt::format("__metadata__ entry {} is not valid UTF-8", quote_name(key)));
    }
  }
  struct Planned {
    const std::string* name;
    const Tensor* tensor;
    int rank;
  };
  std::vector<Planned> order;
  order.reserve(tensors.size());
  for (const auto& [name, tensor] : tensors) {
    if (name == "__metadata__") fail_write(target, "a tensor cannot be named \"__metadata__\"");
    if (invalid_utf8_at(name))
      fail_write(target, fmt::format("tensor name {} is not valid UTF-8", quote_name(name)));
    if (!tensor.defined())
      fail_write(target, fmt::format("tensor {} is undefined", quote_name(name)));
    order.push_back({&name, &tensor, dtype_entry(tensor.dtype()).reference_rank});
  }
  // The reference order: most aligned dtype first, then by name (std::map gives name order).
  std::stable_sort(order.begin(), order.end(),
                   [](const Planned& a, const Planned& b) { return a.rank > b.rank; });

  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [key, value] : metadata) {
      if (!first) header += ',';
      first = false;
      header += json_string(key) + ':' + json_string(value);
    }
    header += '}';
  }
  uint64_t offset = 0;
  for (const Planned& p : order) {
    if (header.size() > 1) header += ',';
    const Tensor& t = *p.tensor;
    header += json_string(*p.name);
    header += fmt::format(R"(:{{"dtype":"{}","shape":[{}],"data_offsets":[{},{}]}})",
                          dtype_entry(t.dtype()).name, fmt::join(t.shape(), ","), offset,
                          offset + t.nbytes());
    offset += t.nbytes();
  }
  header += '}';
  // Padding to a multiple of 8 keeps the data buffer, and so every tensor, 8-byte aligned.
  header.append((8 - header.size() % 8) % 8, ' ');

  unsigned char length_bytes[8];
  for (int i = 0; i < 8; ++i)
    length_bytes[i] = static_cast<unsigned char>(header.size() >> (8 * i));
  sink(length_bytes, 8);
  sink(header.data(), header.size());
  NoGradGuard no_grad;
  for (const Planned& p : order) {
    if (p.tensor->numel() == 0) continue;
    Tensor host = p.tensor->detach().to(Device::cpu()).contiguous();
    sink(host.data_ptr(), host.nbytes());
  }
}

}  // namespace

std::string_view safetensors_dtype_name(DType dtype) { return dtype_entry(dtype).name; }

DType safetensors_dtype_from_name(std::string_view name) {
  std::optional<DType> found = find_dtype(name);
  RW_CHECK(found, "unsupported safetensors dtype {} (supported: {})", quote_name(name),
           accepted_dtype_names());
  return *found;
}

SafetensorsContents read_safetensors(const std::filesystem::path& path, Device device) {
  FileSource source(path);
  return read_contents(source, path.string(), device);
}

StateDict load_safetensors(const std::filesystem::path& path, Device device) {
  return read_safetensors(path, device).tensors;
}

SafetensorsHeader read_safetensors_header(const std::filesystem::path& path) {
  FileSource source(path);
  return parse_header(source, path.string());
}

SafetensorsMetadata load_safetensors_metadata(const std::filesystem::path& path) {
  return read_safetensors_header(path).metadata;
}

SafetensorsContents parse_safetensors(std::span<const std::byte> bytes, std::string_view name,
                                      Device device) {
  SpanSource source(bytes);
  return read_contents(source, name, device);
}

void save_safetensors(const std::filesystem::path& path, const StateDict& tensors,
                      const SafetensorsMetadata& metadata) {
  AtomicFileWriter file(path);
  write_contents(tensors, metadata, path.string(),
                 [&](const void* data, std::size_t n) { file.write(data, n); });
  file.commit();
}

std::vector<std::byte> serialize_safetensors(const StateDict& tensors,
                                             const SafetensorsMetadata& metadata) {
  std::vector<std::byte> out;
  write_contents(tensors, metadata, "<memory>", [&](const void* data, std::size_t n) {
    const auto* p = static_cast<const std::byte*>(data);
    out.insert(out.end(), p, p + n);
  });
  return out;
}

}  // namespace rw::nn
