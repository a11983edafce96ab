#pragma once
// A memory mapping of a whole file (POSIX mmap) that survives the file being
// cut short under it: the data readers' MappedFile and the checkpoint
// reader's mapped tensors (io/zip_reader) both build on it.
//
// A file truncated by another process while mapped would kill the process
// with SIGBUS at the first read past its new end. A SIGBUS handler,
// installed with the first mapping, maps zero pages over the rest of the
// mapping it hits and marks it cut; the owner checks cut() after reading and
// reports the file. Faults outside these mappings keep their previous
// handling.
#include <atomic>
#include <cstddef>

namespace recmod {

class FileMapping {
 public:
  /// Maps the first `size` (> 0) bytes of the open file `fd`: read-only, or
  /// private copy-on-write when `writable` (writes go to the process's own
  /// pages, never to the file). The mapping does not need `fd` afterwards.
  /// Throws std::system_error with mmap's errno when it fails.
  FileMapping(int fd, size_t size, bool writable);
  ~FileMapping();
  FileMapping(const FileMapping&) = delete;
  FileMapping& operator=(const FileMapping&) = delete;

  char* data() const { return data_; }
  size_t size() const { return size_; }
  /// Whether a read hit the end of the file after it shrank (the bytes past
  /// the new end read as zeros from then on).
  bool cut() const { return cut_ && cut_->load(std::memory_order_relaxed); }

 private:
  char* data_ = nullptr;
  size_t size_ = 0;
  int slot_ = -1;                           // in the SIGBUS handler's table
  const std::atomic<bool>* cut_ = nullptr;  // that slot's flag
};

}  // namespace recmod
