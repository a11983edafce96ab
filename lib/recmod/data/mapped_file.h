#pragma once
// A read-only memory mapping of a whole file (POSIX mmap), shared by the
// readers that parse or slice files in place.
//
// A file cut short while mapped (truncated by another process) would kill
// the process with SIGBUS at the first read past its new end; the mapping
// (common/file_mapping.h) reads zeros past the new end instead and marks
// itself cut, and readers check cut() after reading and report the file
// (check_not_cut).
#include <cstddef>
#include <memory>
#include <string>

#include "recmod/common/file_mapping.h"

namespace recmod::data {

class MappedFile {
 public:
  /// Throws InputError "<path>: cannot open: <reason>" when the file cannot
  /// be opened or mapped. An empty file maps to data() == nullptr, size() 0.
  explicit MappedFile(std::string path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const char* data() const { return mapping_ ? mapping_->data() : nullptr; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  /// Tells the kernel the file will be read front to back (read-ahead).
  void advise_sequential() const;

  /// Whether a read hit the end of a file that has shrunk since it was
  /// mapped (the bytes past it then read as zeros).
  bool cut() const { return mapping_ && mapping_->cut(); }
  /// Throws InputError "<path>: the file was cut short while being read ..."
  /// when cut(); `where` (e.g. ":1041") follows the path.
  void check_not_cut(const std::string& where = "") const {
    if (cut()) throw_cut(where);
  }

 private:
  [[noreturn]] void throw_cut(const std::string& where) const;

  std::string path_;
  size_t size_ = 0;
  std::unique_ptr<FileMapping> mapping_;  // none for an empty file
};

}  // namespace recmod::data
