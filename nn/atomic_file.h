#pragma once
// All-or-nothing file replacement: readers of `path` see either the previous file or the complete
// new one, never a torn write, even if the process dies or the machine loses power midway.
//
// The bytes go to a temporary file in the same directory (a rename is only atomic within one
// file system); commit() fsyncs it, renames it over the target and fsyncs the directory so the
// rename itself is durable. A writer destroyed without a commit (an exception while writing)
// removes its temporary file and leaves the previous file untouched.
#include <cstddef>
#include <filesystem>
#include <span>

namespace rw::nn {

class AtomicFileWriter {
 public:
  // Creates the temporary file next to `path`; throws rw::Error naming `path` when it cannot.
  explicit AtomicFileWriter(std::filesystem::path path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  // Appends bytes (all of them: short writes are retried); throws rw::Error naming the target.
  void write(const void* data, std::size_t size);
  void write(std::span<const std::byte> bytes) { write(bytes.data(), bytes.size()); }
  // Makes the written bytes the content of `path`. On failure the temporary file is removed and
  // rw::Error names the target and the failed step.
  void commit();

  const std::filesystem::path& path() const { return path_; }
  const std::filesystem::path& temp_path() const { return temp_path_; }

 private:
  void discard() noexcept;  // closes and removes the temporary file (idempotent)

  std::filesystem::path path_;
  std::filesystem::path temp_path_;
  int fd_ = -1;
  bool committed_ = false;
};

// Replaces `path` with `bytes` atomically (AtomicFileWriter in one call).
void write_file_atomically(const std::filesystem::path& path, std::span<const std::byte> bytes);

}  // namespace rw::nn
