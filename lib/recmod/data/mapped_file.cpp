#include "recmod/data/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "recmod/common/errors.h"

namespace recmod::data {

MappedFile::MappedFile(std::string path) : path_(std::move(path)) {
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_input_error(path_, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw_input_error(path_, ": cannot open: ", std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw_input_error(path_, ": cannot open: not a regular file");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    try {
      mapping_ = std::make_unique<FileMapping>(fd, size_, /*writable=*/false);
    } catch (const std::system_error& e) {
      ::close(fd);
      throw_input_error(path_, ": cannot map: ", std::strerror(e.code().value()));
    }
  }
  ::close(fd);  // the mapping stays valid without the descriptor
}

MappedFile::~MappedFile() = default;

void MappedFile::throw_cut(const std::string& where) const {
  struct stat st {};
  const std::string now = ::stat(path_.c_str(), &st) == 0 ? str_cat(", now ", st.st_size) : "";
  throw_input_error(path_, where, ": the file was cut short while being read (", size_, " bytes when opened", now,
                    "); was it truncated or rewritten in place by another program? (replace files by renaming a "
                    "new one over them)");
}

void MappedFile::advise_sequential() const {
  if (mapping_) ::madvise(mapping_->data(), size_, MADV_SEQUENTIAL);
}

}  // namespace recmod::data
