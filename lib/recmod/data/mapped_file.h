#pragma once
// A read-only memory mapping of a whole file (POSIX mmap), shared by the
// readers that parse or slice files in place.
//
// A file cut short while mapped (truncated by another process) would kill
// the process with SIGBUS at the first read past its new end. A SIGBUS
// handler, installed with the first mapping, maps zero pages over the rest
// of the mapping it hits and marks it cut; readers check cut() after reading
// and report the file instead (check_not_cut). Faults outside recmod's
// mappings keep their previous handling.
#include <atomic>
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

  /// Whether a read hit the end of a file that has shrunk since it was
  /// mapped (the bytes past it then read as zeros).
  bool cut() const { return cut_ && cut_->load(std::memory_order_relaxed); }
  /// Throws InputError "<path>: the file was cut short while being read ..."
  /// when cut(); `where` (e.g. ":1041") follows the path.
  void check_not_cut(const std::string& where = "") const {
    if (cut()) throw_cut(where);
  }

 private:
  [[noreturn]] void throw_cut(const std::string& where) const;

  std::string path_;
  const char* data_ = nullptr;
  size_t size_ = 0;
  int slot_ = -1;                          // in the SIGBUS handler's table
  const std::atomic<bool>* cut_ = nullptr;  // that slot's flag
};

}  // namespace recmod::data
