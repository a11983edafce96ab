#pragma once
// The zip container of torch.save files, read strictly: every size and
// offset is checked against the file before anything is allocated, and
// every record's CRC-32 is verified as it is read.
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace recmod::io {

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
};

/// The first bytes of a legacy (non-zip) torch.save file: protocol-2 pickle
/// of the magic number 0x1950a86a20f9469cfc6c.
bool is_legacy_torch_save(const void* data, size_t n);

}  // namespace recmod::io
