#pragma once
// A read-only memory mapping of a whole file (POSIX mmap), shared by the
// readers that parse or slice files in place.
#include <cstddef>
#include <string>

namespace recmod::data {

class MappedFile {
 public:
  /// Throws InputError "<path>: cannot open: <reason>" when the file cannot
  /// be opened or mapped. An empty file maps to data() == nullptr, size() 0.
  explicit MappedFile(std::string path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const char* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  /// Tells the kernel the file will be read front to back (read-ahead).
  void advise_sequential() const;

 private:
  std::string path_;
  const char* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace recmod::data
