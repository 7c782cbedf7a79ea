#include "nn/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <random>
#include <string>
#include <system_error>

#include "core/error.h"

namespace rw::nn {
namespace {

std::string errno_text(int err) { return std::generic_category().message(err); }

std::filesystem::path directory_of(const std::filesystem::path& path) {
  std::filesystem::path dir = path.parent_path();
  return dir.empty() ? std::filesystem::path(".") : dir;
}

// A name no other writer uses at the same time: the process id keeps processes apart, the counter
// keeps this process's writers apart, the random part guards against a stale file left by an
// earlier process with the same id (O_EXCL refuses to reuse it anyway).
std::filesystem::path temp_name_for(const std::filesystem::path& path) {
  static std::atomic<uint64_t> counter{0};
  thread_local std::mt19937_64 random_bits{std::random_device{}()};
  std::string name = fmt::format(".{}.tmp-{}-{}-{:08x}", path.filename().string(), ::getpid(),
                                 counter.fetch_add(1), random_bits() & 0xffffffffu);
  return directory_of(path) / name;
}

// fsync on a directory makes a rename in it durable. Some file systems cannot sync directories
// (EINVAL): there is nothing more to do on them.
int sync_directory(const std::filesystem::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  int err = ::fsync(fd) == 0 ? 0 : errno;
  ::close(fd);
  return err == EINVAL ? 0 : err;
}

}  // namespace

AtomicFileWriter::AtomicFileWriter(std::filesystem::path path) : path_(std::move(path)) {
  RW_CHECK(path_.has_filename(), "cannot write '{}': the path names no file", path_.string());
  for (int attempt = 0; attempt < 16 && fd_ < 0; ++attempt) {
    temp_path_ = temp_name_for(path_);
    // 0666 lets the umask decide the permissions, as for any newly created file.
    fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ < 0 && errno != EEXIST) break;
  }
  if (fd_ < 0) {
    int err = errno;
    throw Error(fmt::format("cannot write '{}': cannot create a temporary file in '{}': {}",
                            path_.string(), directory_of(path_).string(), errno_text(err)));
  }
}

AtomicFileWriter::~AtomicFileWriter() {
  if (!committed_) discard();
}

void AtomicFileWriter::discard() noexcept {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (!temp_path_.empty()) {
    ::unlink(temp_path_.c_str());
    temp_path_.clear();
  }
}

void AtomicFileWriter::write(const void* data, std::size_t size) {
  RW_CHECK(fd_ >= 0 && !committed_, "cannot write '{}': the file was already committed or failed",
           path_.string());
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd_, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      discard();
      throw Error(
          fmt::format("cannot write '{}': writing failed: {}", path_.string(), errno_text(err)));
    }
    p += n;
    size -= static_cast<std::size_t>(n);
  }
}

void AtomicFileWriter::commit() {
  RW_CHECK(fd_ >= 0 && !committed_, "cannot write '{}': the file was already committed or failed",
           path_.string());
  auto fail = [&](const char* step, int err) {
    discard();
    throw Error(fmt::format("cannot write '{}': {} failed: {}; the previous file is unchanged",
                            path_.string(), step, errno_text(err)));
  };
  // The data must be on disk before the rename publishes it, or a crash could leave the new name
  // pointing at an empty or partial file.
  if (::fsync(fd_) != 0) fail("fsync", errno);
  int closed = ::close(fd_);
  fd_ = -1;
  if (closed != 0) fail("close", errno);
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) fail("rename", errno);
  temp_path_.clear();
  committed_ = true;
  if (int err = sync_directory(directory_of(path_)); err != 0) {
    throw Error(
        fmt::format("wrote '{}', but syncing its directory failed: {}; the new file may "
                    "not survive a crash",
                    path_.string(), errno_text(err)));
  }
}

void write_file_atomically(const std::filesystem::path& path, std::span<const std::byte> bytes) {
  AtomicFileWriter writer(path);
  writer.write(bytes);
  writer.commit();
}

}  // namespace rw::nn
