#include "recmod/io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace recmod::io {

namespace {

[[noreturn]] void throw_os_error(const std::string& path, const char* what, int error) {
  throw FileWriteError(str_cat(path, ": ", what, ": ", std::strerror(error)));
}

std::string directory_of(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

/// A failed write names the file being replaced (not its temp file, which is
/// removed) and says that the old one stands.
[[noreturn]] void throw_write_error(const std::string& target, int error) {
  const bool no_room = error == ENOSPC || error == EFBIG || error == EDQUOT;
  throw FileWriteError(str_cat(target, ": cannot write it: ", std::strerror(error),
                               no_room ? " (the disk is full, or a quota or file-size limit was reached)" : "",
                               "; the previous file, if any, is unchanged"));
}

void write_all(int fd, std::string_view bytes, const std::string& target) {
  const char* data = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, data, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_write_error(target, errno);
    }
    data += n;
    left -= static_cast<size_t>(n);
  }
}

/// Owns the temp file until commit(): the destructor closes and removes it.
class TempFile {
 public:
  explicit TempFile(const std::string& target) {
    const auto slash = target.rfind('/');
    const std::string base = slash == std::string::npos ? target : target.substr(slash + 1);
    std::string pattern = directory_of(target) + "/." + base + ".tmp.XXXXXX";
    std::vector<char> buffer(pattern.begin(), pattern.end());
    buffer.push_back('\0');
    fd_ = ::mkstemp(buffer.data());
    if (fd_ < 0) throw_os_error(target, "cannot create a temp file in its directory", errno);
    path_ = buffer.data();
  }
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  int fd() const { return fd_; }
  const std::string& path() const { return path_; }
  void close() {
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) throw_os_error(path_, "close failed", errno);
  }
  void committed() { committed_ = true; }

 private:
  int fd_ = -1;
  std::string path_;
  bool committed_ = false;
};

/// Makes the rename itself durable; best effort (some filesystems refuse).
void sync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

void write_file_atomically(const std::string& path, std::string_view bytes) {
  write_file_atomically(path, bytes, nullptr);
}

void write_file_atomically(const std::string& path, std::string_view bytes,
                           const std::function<void(const std::string& temp_path)>& before_commit) {
  write_file_atomically(
      path, [&](const ByteSink& sink) { sink(bytes.data(), bytes.size()); }, before_commit);
}

void write_file_atomically(const std::string& path, const std::function<void(const ByteSink& sink)>& produce,
                           const std::function<void(const std::string& temp_path)>& before_commit) {
  TempFile temp(path);
  produce([&](const void* data, size_t size) {
    write_all(temp.fd(), std::string_view(static_cast<const char*>(data), size), path);
  });
  if (::fsync(temp.fd()) != 0) throw_write_error(path, errno);
  // mkstemp creates 0600; give the file the usual rw-r--r-- (reading the
  // umask would mean changing it, which races with other threads).
  ::fchmod(temp.fd(), 0644);
  temp.close();
  if (before_commit) before_commit(temp.path());
  if (::rename(temp.path().c_str(), path.c_str()) != 0) throw_os_error(path, "cannot replace the file", errno);
  temp.committed();
  sync_directory(directory_of(path));
}

}  // namespace recmod::io
