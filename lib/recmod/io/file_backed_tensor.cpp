#include "recmod/io/file_backed_tensor.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "recmod/common/memory.h"
#include "recmod/common/strings.h"
#include "recmod/io/atomic_file.h"

namespace recmod::io {

namespace {

/// The storage's DataPtr context: the mapping to undo.
struct FileBackedBytes {
  void* data;
  size_t size;
};

void unmap_file_backed(void* context) {
  auto* bytes = static_cast<FileBackedBytes*>(context);
  ::munmap(bytes->data, bytes->size);
  delete bytes;
}

[[noreturn]] void fail(const std::string& dir, size_t bytes, const std::string& what, int error) {
  throw FileWriteError(str_cat(dir, ": cannot hold a ", format_bytes(static_cast<double>(bytes)),
                               " tensor in a file there (", what, ": ", std::strerror(error), ")"));
}

/// A new file in `dir` without a name, open for reading and writing.
int nameless_file(const std::string& dir, size_t bytes) {
#ifdef O_TMPFILE
  const int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0) return fd;
  if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) fail(dir, bytes, "open", errno);
#endif
  std::string path = dir + "/.recmod-tensor-XXXXXX";
  const int named = ::mkostemp(path.data(), O_CLOEXEC);
  if (named < 0) fail(dir, bytes, "mkstemp", errno);
  ::unlink(path.c_str());
  return named;
}

}  // namespace

torch::Tensor file_backed_zeros(torch::IntArrayRef sizes, torch::Dtype dtype, const std::string& dir) {
  const auto options = torch::TensorOptions(dtype);
  const size_t bytes = static_cast<size_t>(c10::multiply_integers(sizes)) * c10::elementSize(dtype);
  if (bytes == 0) return torch::zeros(sizes, options);
  const int fd = nameless_file(dir, bytes);
  if (const int error = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes)); error != 0) {
    ::close(fd);
    fail(dir, bytes, "posix_fallocate", error);
  }
  void* data = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int map_error = errno;
  ::close(fd);  // the mapping keeps the file
  if (data == MAP_FAILED) fail(dir, bytes, "mmap", map_error);
  auto* context = new FileBackedBytes{data, bytes};
  at::DataPtr data_ptr(data, context, &unmap_file_backed, c10::Device(c10::kCPU));
  c10::Storage storage(c10::Storage::use_byte_size_t(), bytes, std::move(data_ptr), nullptr, false);
  return torch::empty({0}, options).set_(storage, 0, sizes);
}

bool is_file_backed(const torch::Tensor& tensor) {
  return tensor.defined() && tensor.has_storage() &&
         tensor.storage().data_ptr().get_deleter() == &unmap_file_backed;
}

}  // namespace recmod::io
