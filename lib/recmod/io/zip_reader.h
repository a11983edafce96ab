#pragma once
// The zip container of torch.save files, read strictly: every size and
// offset is checked against the file before anything is allocated, and
// every record's CRC-32 is verified as it is read.
#include <sys/stat.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "recmod/common/file_mapping.h"

namespace recmod::io {

/// A checkpoint file mapped into memory (private, copy-on-write: a write to
/// a mapped tensor changes this process's copy of that page, never the file)
/// so that tensors use its records in place (ZipArchive::map_record). Every
/// storage over it holds it; the last one unmaps it.
class MappedCheckpoint {
 public:
  /// Maps the open file `fd` (duplicated: kept to check the file later) of
  /// `size` bytes. CheckpointError naming `path` when it cannot be mapped.
  MappedCheckpoint(std::string path, int fd, uint64_t size);
  ~MappedCheckpoint();
  MappedCheckpoint(const MappedCheckpoint&) = delete;
  MappedCheckpoint& operator=(const MappedCheckpoint&) = delete;

  const std::string& path() const { return path_; }
  char* data() const { return mapping_->data(); }
  uint64_t size() const { return mapping_->size(); }
  /// Whether a read hit the end of the file after it was cut short.
  bool cut() const { return mapping_->cut(); }
  /// CheckpointError when the file was cut short since it was mapped (the
  /// pages past its new end then read as zeros, not SIGBUS) or written in
  /// place (its size or modification time changed): the tensors over it no
  /// longer hold what was verified. A file replaced by renaming a new one
  /// over its path is not a change: the mapping keeps the old file.
  void check_unchanged() const;

 private:
  std::string path_;
  int fd_ = -1;
  struct stat at_open_ {};
  std::unique_ptr<FileMapping> mapping_;
};

/// A torch.save archive: records stored uncompressed (as torch.save writes
/// them) under one top-level folder, "<archive>/data.pkl", "<archive>/data/0",
/// ...; records are named without that folder. Zip64 (files over 4 GiB) is
/// read. Throws CheckpointError "<path>: ..." for a file that is not such an
/// archive: missing or unreadable, empty, a legacy (pre-zip) torch.save
/// file, a cut or padded file, sizes or offsets outside the file, compressed
/// or encrypted records, names twice or outside the top-level folder, no
/// version record or a format version this reader does not know.
class ZipArchive {
 public:
  struct Record {
    uint64_t offset = 0;  // of the data in the file
    uint64_t size = 0;
    uint32_t crc32 = 0;  // from the central directory
  };

  explicit ZipArchive(std::string path);
  ~ZipArchive();
  ZipArchive(const ZipArchive&) = delete;
  ZipArchive& operator=(const ZipArchive&) = delete;

  const std::string& path() const { return path_; }
  uint64_t file_size() const { return file_size_; }
  /// torch.save's file format version (the "version" record), checked to be
  /// one libtorch 1.13 reads (1 to 10).
  uint64_t format_version() const { return version_; }

  /// The record `name` (without the top-level folder), or nullptr.
  const Record* find(const std::string& name) const;
  /// Reads `record` into `dest` (record.size bytes), computing its CRC-32
  /// on each piece as it lands (so the check costs no second pass over
  /// memory); CheckpointError naming the record when it does not match or
  /// the file ends early.
  void read(const std::string& name, const Record& record, void* dest) const;
  /// The record's bytes in place in the file's mapping (mapping()), after
  /// verifying its CRC-32 over them: every page is read once (from then on a
  /// clean page of the file, shared with the page cache and reclaimable, not
  /// the process's own memory). CheckpointError when the CRC does not match
  /// or the file was cut short while being read. nullptr for a record that
  /// cannot be used in place (empty, or not 64-byte aligned as torch.save
  /// aligns records): the caller reads it instead. With `release`, the
  /// whole pages of each verified piece are given back at once
  /// (MADV_DONTNEED), so verifying costs no resident memory however large
  /// the record (they are mapped again, from the file, when read).
  const char* map_record(const std::string& name, const Record& record, bool release = false) const;
  /// The file's mapping, made on first use.
  std::shared_ptr<MappedCheckpoint> mapping() const;
  /// A small record (at most 64 MiB) as bytes.
  std::string read_text(const std::string& name) const;

 private:
  void read_exact(uint64_t offset, void* dest, size_t n, const std::string& what) const;
  void read_directory();

  std::string path_;
  int fd_ = -1;
  uint64_t file_size_ = 0;
  uint64_t version_ = 0;
  std::unordered_map<std::string, Record> records_;
  mutable std::once_flag mapped_once_;
  mutable std::shared_ptr<MappedCheckpoint> mapping_;
};

/// The first bytes of a legacy (non-zip) torch.save file: protocol-2 pickle
/// of the magic number 0x1950a86a20f9469cfc6c.
bool is_legacy_torch_save(const void* data, size_t n);

}  // namespace recmod::io
