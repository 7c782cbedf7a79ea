#include "common/compressed_file.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include <fmt/format.h>

#include "core/error.h"

namespace rw::tools {

namespace {

constexpr std::size_t kChunk = std::size_t{1} << 16;
// Deflate compresses at most about 1032:1, so a trailer claiming more than that is not believed.
constexpr uint64_t kMaxDeflateRatio = 1032;

// An open file that closes itself, so that every error path releases it.
class InputFile {
 public:
  explicit InputFile(const std::filesystem::path& path) : path_(path) {
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    RW_CHECK(std::filesystem::exists(status), "cannot open '{}': no such file", path.string());
    RW_CHECK(std::filesystem::is_regular_file(status), "cannot read '{}': not a regular file",
             path.string());
    file_ = std::fopen(path.c_str(), "rb");
    RW_CHECK(file_ != nullptr, "cannot open '{}': {}", path.string(), std::strerror(errno));
    size_ = std::filesystem::file_size(path, ec);
    if (ec) size_ = 0;  // only a hint for the buffer size
  }
  ~InputFile() { std::fclose(file_); }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  // Up to `n` bytes into `dst`; 0 at the end of the file. rw::Error on a read error.
  std::size_t read(uint8_t* dst, std::size_t n) {
    const std::size_t got = std::fread(dst, 1, n, file_);
    RW_CHECK(got == n || std::ferror(file_) == 0, "error while reading '{}': {}", path_.string(),
             std::strerror(errno));
    return got;
  }
  // The file's size when it was opened (0 if unknown).
  uint64_t size() const { return size_; }
  // The last four bytes, little-endian (a gzip trailer's ISIZE), or 0 when they cannot be read;
  // leaves the position at the start.
  uint32_t last_word() {
    uint32_t value = 0;
    std::array<uint8_t, 4> b{};
    if (size_ >= 18 && std::fseek(file_, -4, SEEK_END) == 0 &&
        std::fread(b.data(), 1, 4, file_) == 4) {
      value = uint32_t{b[0]} | uint32_t{b[1]} << 8 | uint32_t{b[2]} << 16 | uint32_t{b[3]} << 24;
    }
    rewind();
    return value;
  }
  // Back to the first byte.
  void rewind() {
    std::clearerr(file_);
    RW_CHECK(std::fseek(file_, 0, SEEK_SET) == 0, "cannot seek in '{}': {}", path_.string(),
             std::strerror(errno));
  }

 private:
  std::filesystem::path path_;
  std::FILE* file_ = nullptr;
  uint64_t size_ = 0;
};

// zlib's inflate state, ended on every path.
class Inflater {
 public:
  explicit Inflater(const std::filesystem::path& path) {
    // 16 + MAX_WBITS: a gzip wrapper (header, CRC-32 and length trailer) around the deflate data.
    RW_CHECK(inflateInit2(&stream_, 16 + MAX_WBITS) == Z_OK,
             "cannot decompress '{}': zlib failed to initialise", path.string());
  }
  ~Inflater() { inflateEnd(&stream_); }
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;
  z_stream& stream() { return stream_; }

 private:
  z_stream stream_{};
};

std::vector<uint8_t> read_plain(InputFile& file) {
  // One byte more than the size, so that the read which finds the end needs no reallocation.
  std::vector<uint8_t> bytes(static_cast<std::size_t>(file.size()) + 1);
  std::size_t have = 0;
  for (;;) {
    if (have == bytes.size()) bytes.resize(std::max(bytes.size() * 2, have + kChunk));
    const std::size_t got = file.read(bytes.data() + have, bytes.size() - have);
    if (got == 0) break;
    have += got;
  }
  bytes.resize(have);
  return bytes;
}

std::vector<uint8_t> read_gzip(InputFile& file, const std::filesystem::path& path) {
  const std::string name = path.string();
  // The last member's trailer gives its length (mod 2^32): for the usual single-member file, the
  // whole output, so it is allocated once.
  const uint64_t claimed = file.last_word();
  std::vector<uint8_t> out(claimed > 0 && claimed <= file.size() * kMaxDeflateRatio
                               ? static_cast<std::size_t>(claimed)
                               : static_cast<std::size_t>(file.size()) * 4);
  std::vector<uint8_t> in(kChunk);
  Inflater inflater(path);
  z_stream& zs = inflater.stream();
  std::size_t produced = 0;
  int64_t members_done = 0;
  bool in_member = true;  // inflate has started a member that has not ended yet
  bool end_of_file = false;
  for (;;) {
    if (zs.avail_in == 0 && !end_of_file) {
      const std::size_t got = file.read(in.data(), in.size());
      end_of_file = got == 0;
      zs.next_in = in.data();
      zs.avail_in = static_cast<uInt>(got);
    }
    if (zs.avail_in == 0 && end_of_file) {
      RW_CHECK(!in_member,
               "cannot decompress '{}': the gzip data is truncated (it ends inside member {} "
               "after {} bytes of output)",
               name, members_done + 1, produced);
      break;
    }
    if (!in_member) {  // more bytes after a member: they must be another member
      inflateReset(&zs);
      in_member = true;
    }
    if (produced == out.size()) out.resize(std::max(out.size() * 2, produced + kChunk));
    const std::size_t room = std::min<std::size_t>(out.size() - produced, UINT32_MAX);
    zs.next_out = out.data() + produced;
    zs.avail_out = static_cast<uInt>(room);
    const int rc = inflate(&zs, Z_NO_FLUSH);
    produced += room - zs.avail_out;
    if (rc == Z_STREAM_END) {
      ++members_done;
      in_member = false;
      continue;
    }
    if (rc == Z_OK || (rc == Z_BUF_ERROR && (zs.avail_in == 0 || zs.avail_out == 0))) continue;
    const std::string why = zs.msg != nullptr ? zs.msg : fmt::format("zlib error {}", rc);
    RW_CHECK(!(members_done > 0 && why == "incorrect header check"),
             "cannot decompress '{}': the bytes after gzip member {} are not another gzip member",
             name, members_done);
    RW_CHECK(rc != Z_MEM_ERROR, "cannot decompress '{}': out of memory", name);
    throw Error(fmt::format("cannot decompress '{}': corrupt gzip data in member {} ({})", name,
                            members_done + 1, why));
  }
  out.resize(produced);
  // A doubled buffer can hold up to twice the data for as long as the data lives: trim it.
  if (out.capacity() > produced + produced / 4) out.shrink_to_fit();
  return out;
}

}  // namespace

std::vector<uint8_t> read_file_bytes(const std::filesystem::path& path) {
  InputFile file(path);
  std::array<uint8_t, 2> magic{};
  const std::size_t got = file.read(magic.data(), magic.size());
  const bool gzip = got == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
  file.rewind();
  return gzip ? read_gzip(file, path) : read_plain(file);
}

}  // namespace rw::tools
