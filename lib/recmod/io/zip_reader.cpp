#include "recmod/io/zip_reader.h"

#include <caffe2/serialize/versions.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <system_error>

#include "recmod/common/errors.h"
#include "recmod/io/crc32.h"

namespace recmod::io {

namespace {

// Zip's fixed-size parts (APPNOTE.TXT 4.3): end of central directory (22
// bytes without a comment), zip64 end locator (20) and record (56), central
// directory header (46), local header (30); little-endian fields.
constexpr size_t kEndSize = 22, kZip64LocatorSize = 20, kZip64EndSize = 56, kCentralSize = 46, kLocalSize = 30;

uint16_t u16(const unsigned char* p) { return static_cast<uint16_t>(p[0] | p[1] << 8); }
uint32_t u32(const unsigned char* p) { return u16(p) | static_cast<uint32_t>(u16(p + 2)) << 16; }
uint64_t u64(const unsigned char* p) { return u32(p) | static_cast<uint64_t>(u32(p + 4)) << 32; }
bool has_signature(const unsigned char* p, const char* sig) { return std::memcmp(p, sig, 4) == 0; }

std::string hex32(uint32_t v) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%08x", v);
  return text;
}

std::string first_bytes(const unsigned char* p, size_t n) {
  std::string out;
  for (size_t i = 0; i < std::min<size_t>(n, 8); ++i) {
    char text[4];
    std::snprintf(text, sizeof text, "%02x", p[i]);
    out += (i ? " " : "") + std::string(text);
  }
  return out;
}

[[noreturn]] void throw_corrupt(const std::string& path, const std::string& what, uint32_t crc, uint32_t expected) {
  throw CheckpointError(str_cat(path, ": ", what, " is corrupt: its bytes have CRC-32 ", hex32(crc),
                                ", the zip directory says ", hex32(expected), " (changed after it was written?)"));
}

// One piece of a record read and checksummed at a time: the CRC runs over
// bytes still in the CPU's cache.
constexpr size_t kReadPiece = size_t{1} << 20;

}  // namespace

bool is_legacy_torch_save(const void* data, size_t n) {
  // PROTO 2, LONG1 of 10 bytes: 0x1950a86a20f9469cfc6c (torch/serialization.py MAGIC_NUMBER).
  static const unsigned char kMagic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
  return n >= sizeof kMagic && std::memcmp(data, kMagic, sizeof kMagic) == 0;
}

MappedCheckpoint::MappedCheckpoint(std::string path, int fd, uint64_t size) : path_(std::move(path)) {
  fd_ = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (fd_ < 0 || ::fstat(fd_, &at_open_) != 0) {
    const int err = errno;
    if (fd_ >= 0) ::close(fd_);
    throw CheckpointError(str_cat(path_, ": cannot map the checkpoint (", std::strerror(err), ")"));
  }
  try {
    mapping_ = std::make_unique<FileMapping>(fd_, static_cast<size_t>(size), /*writable=*/true);
  } catch (const std::system_error& e) {
    ::close(fd_);
    throw CheckpointError(str_cat(path_, ": cannot map the checkpoint (", std::strerror(e.code().value()), ")"));
  }
}

MappedCheckpoint::~MappedCheckpoint() {
  mapping_.reset();
  ::close(fd_);
}

void MappedCheckpoint::check_unchanged() const {
  struct stat now {};
  const bool stat_ok = ::fstat(fd_, &now) == 0;
  if (cut() || (stat_ok && now.st_size < at_open_.st_size))
    throw CheckpointError(str_cat(path_, ": the checkpoint was cut short while in use (", at_open_.st_size,
                                  " bytes when opened", stat_ok ? str_cat(", now ", now.st_size) : std::string(),
                                  "); was it truncated or rewritten in place by another program? (replace files "
                                  "by renaming a new one over them)"));
  if (stat_ok && (now.st_size != at_open_.st_size || now.st_mtim.tv_sec != at_open_.st_mtim.tv_sec ||
                  now.st_mtim.tv_nsec != at_open_.st_mtim.tv_nsec))
    throw CheckpointError(str_cat(path_, ": the checkpoint was written in place while in use (its size or "
                                  "modification time changed), so the weights read from it may be mixed; replace "
                                  "files by renaming a new one over them"));
}

ZipArchive::ZipArchive(std::string path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw CheckpointError(str_cat(path_, ": cannot open the checkpoint (", std::strerror(errno), ")"));
  try {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) throw CheckpointError(str_cat(path_, ": cannot read the checkpoint (", std::strerror(errno), ")"));
    if (!S_ISREG(st.st_mode)) throw CheckpointError(str_cat(path_, ": not a regular file"));
    file_size_ = static_cast<uint64_t>(st.st_size);
    read_directory();
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

ZipArchive::~ZipArchive() {
  if (fd_ >= 0) ::close(fd_);
}

void ZipArchive::read_exact(uint64_t offset, void* dest, size_t n, const std::string& what) const {
  auto* out = static_cast<char*>(dest);
  while (n > 0) {
    const ssize_t got = ::pread(fd_, out, n, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) throw CheckpointError(str_cat(path_, ": cannot read ", what, " (", std::strerror(errno), ")"));
    if (got == 0)
      throw CheckpointError(str_cat(path_, ": the file ended at byte ", offset, " while reading ", what,
                                    " (it is ", file_size_, " bytes when opened; cut while being read?)"));
    out += got;
    offset += static_cast<uint64_t>(got);
    n -= static_cast<size_t>(got);
  }
}

void ZipArchive::read_directory() {
  if (file_size_ == 0) throw CheckpointError(str_cat(path_, ": the checkpoint is empty"));
  unsigned char head[16] = {};
  const size_t head_size = static_cast<size_t>(std::min<uint64_t>(file_size_, sizeof head));
  read_exact(0, head, head_size, "the file's first bytes");
  if (is_legacy_torch_save(head, head_size))
    throw CheckpointError(str_cat(path_,
                                  ": legacy torch.save format (PyTorch < 1.6, or _use_new_zipfile_serialization=False); "
                                  "re-save it with torch.save's default (zip) format: torch.save(torch.load(path), path)"));
  if (head_size < 4 || !has_signature(head, "PK\x03\x04"))
    throw CheckpointError(str_cat(path_, ": not a readable torch.save file: expected a zip archive (bytes 50 4b 03 04), found ",
                                  first_bytes(head, head_size)));
  const std::string corrupt = str_cat(path_, ": not a readable torch.save file (truncated or corrupt?): ");
  // torch.save's zip ends with the end record, without a comment.
  unsigned char end[kEndSize + kZip64LocatorSize] = {};
  if (file_size_ < kEndSize + kLocalSize) throw CheckpointError(str_cat(corrupt, "only ", file_size_, " bytes, too short for a zip archive"));
  const uint64_t end_at = file_size_ - kEndSize;
  const size_t with_locator = end_at >= kZip64LocatorSize ? kZip64LocatorSize : 0;
  read_exact(end_at - with_locator, end, kEndSize + with_locator, "the zip end record");
  const unsigned char* e = end + with_locator;
  if (!has_signature(e, "PK\x05\x06")) throw CheckpointError(str_cat(corrupt, "no zip end record in its last 22 bytes"));
  if (u16(e + 4) != 0 || u16(e + 6) != 0 || u16(e + 8) != u16(e + 10) || u16(e + 20) != 0)
    throw CheckpointError(str_cat(corrupt, "a zip end record for a multi-part archive or with a comment"));
  uint64_t entries = u16(e + 10), directory_size = u32(e + 12), directory_at = u32(e + 16);
  uint64_t directory_limit = end_at;  // the directory ends before the end records
  if (with_locator && has_signature(end, "PK\x06\x07")) {  // zip64: the real counts are in its end record
    const uint64_t zip64_at = u64(end + 8);
    if (zip64_at > end_at - kZip64LocatorSize || end_at - kZip64LocatorSize - zip64_at < kZip64EndSize)
      throw CheckpointError(str_cat(corrupt, "the zip64 end record at byte ", zip64_at, " is outside the file"));
    unsigned char z[kZip64EndSize];
    read_exact(zip64_at, z, sizeof z, "the zip64 end record");
    if (!has_signature(z, "PK\x06\x06")) throw CheckpointError(str_cat(corrupt, "no zip64 end record at byte ", zip64_at));
    if (u64(z + 24) != u64(z + 32)) throw CheckpointError(str_cat(corrupt, "a zip64 end record for a multi-part archive"));
    // The 16/32-bit copies in the end record are either "see zip64" or the same values.
    const auto agrees = [](uint64_t small, uint64_t sentinel, uint64_t full) { return small == sentinel || small == full; };
    if (!agrees(entries, 0xFFFF, u64(z + 32)) || !agrees(directory_size, 0xFFFFFFFF, u64(z + 40)) ||
        !agrees(directory_at, 0xFFFFFFFF, u64(z + 48)))
      throw CheckpointError(str_cat(corrupt, "the zip end record and the zip64 end record disagree"));
    entries = u64(z + 32);
    directory_size = u64(z + 40);
    directory_at = u64(z + 48);
    directory_limit = zip64_at;
  }
  if (directory_at > directory_limit || directory_size > directory_limit - directory_at)
    throw CheckpointError(str_cat(corrupt, "the zip directory (", directory_size, " bytes at byte ", directory_at,
                                  ") reaches past its end at byte ", directory_limit));
  if (entries > directory_size / kCentralSize)
    throw CheckpointError(str_cat(corrupt, "the zip directory says ", entries, " records, but its ", directory_size,
                                  " bytes hold at most ", directory_size / kCentralSize));
  // Bounded by the file: directory_size <= file_size_.
  std::vector<unsigned char> dir(static_cast<size_t>(directory_size));
  read_exact(directory_at, dir.data(), dir.size(), "the zip directory");

  struct Span {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Span> spans;
  spans.reserve(static_cast<size_t>(entries));
  std::string archive;  // "<top-level folder>/"
  size_t at = 0;
  for (uint64_t i = 0; i < entries; ++i) {
    const std::string which = str_cat("zip directory entry ", i);
    if (dir.size() - at < kCentralSize || !has_signature(&dir[at], "PK\x01\x02"))
      throw CheckpointError(str_cat(corrupt, which, " is not a directory header"));
    const unsigned char* h = &dir[at];
    const uint16_t flags = u16(h + 8), method = u16(h + 10);
    const uint32_t crc = u32(h + 16);
    uint64_t compressed = u32(h + 20), size = u32(h + 24), local_at = u32(h + 42);
    const size_t name_len = u16(h + 28), extra_len = u16(h + 30), comment_len = u16(h + 32);
    if (dir.size() - at - kCentralSize < name_len + extra_len + comment_len)
      throw CheckpointError(str_cat(corrupt, which, " reaches past the zip directory"));
    const std::string full_name(reinterpret_cast<const char*>(h + kCentralSize), name_len);
    // Zip64 extra field (id 1): the 64-bit values of the fields set to 0xFFFFFFFF, in this order.
    const unsigned char* x = h + kCentralSize + name_len;
    for (size_t k = 0; k + 4 <= extra_len;) {
      const uint16_t id = u16(x + k), len = u16(x + k + 2);
      if (len > extra_len - k - 4) throw CheckpointError(str_cat(corrupt, "record '", full_name, "' has a bad extra field"));
      if (id == 1) {
        size_t f = k + 4;
        for (uint64_t* field : {&size, &compressed, &local_at}) {
          if (*field != 0xFFFFFFFFu) continue;
          if (f + 8 > k + 4 + len) throw CheckpointError(str_cat(corrupt, "record '", full_name, "' has a short zip64 field"));
          *field = u64(x + f);
          f += 8;
        }
      }
      k += 4 + len;
    }
    at += kCentralSize + name_len + extra_len + comment_len;
    if (flags & 1) throw CheckpointError(str_cat(path_, ": record '", full_name, "' is encrypted; torch.save never encrypts"));
    if (method != 0 || compressed != size)
      throw CheckpointError(str_cat(path_, ": record '", full_name, "' is compressed (zip method ", method,
                                    "); torch.save stores records uncompressed: re-save with torch.save"));
    if (i == 0) {
      const size_t slash = full_name.find('/');
      if (slash == std::string::npos || slash == 0)
        throw CheckpointError(str_cat(corrupt, "record '", full_name, "' is not inside a top-level folder"));
      archive = full_name.substr(0, slash + 1);
    }
    if (full_name.size() <= archive.size() || full_name.compare(0, archive.size(), archive) != 0)
      throw CheckpointError(str_cat(corrupt, "record '", full_name, "' is not in the archive's folder '", archive, "'"));
    // The local header: its name (checked) and extra field (alignment padding) come before the data.
    if (local_at > directory_at || directory_at - local_at < kLocalSize + name_len)
      throw CheckpointError(str_cat(corrupt, "record '", full_name, "' starts at byte ", local_at,
                                    ", past the zip directory at byte ", directory_at));
    std::vector<unsigned char> local(kLocalSize + name_len);
    read_exact(local_at, local.data(), local.size(), str_cat("the local header of '", full_name, "'"));
    if (!has_signature(local.data(), "PK\x03\x04") || u16(&local[26]) != name_len ||
        std::memcmp(&local[kLocalSize], full_name.data(), name_len) != 0)
      throw CheckpointError(str_cat(corrupt, "the local header of record '", full_name, "' at byte ", local_at,
                                    " does not match the zip directory"));
    const uint64_t data_at = local_at + kLocalSize + name_len + u16(&local[28]);
    if (data_at > directory_at || size > directory_at - data_at)
      throw CheckpointError(str_cat(corrupt, "record '", full_name, "' declares ", size, " bytes at byte ", data_at,
                                    ", but the file holds only ", directory_at > data_at ? directory_at - data_at : 0,
                                    " bytes before its zip directory"));
    const std::string name = full_name.substr(archive.size());
    if (!records_.emplace(name, Record{data_at, size, crc}).second)
      throw CheckpointError(str_cat(corrupt, "record '", full_name, "' appears twice"));
    spans.push_back({local_at, data_at + size, full_name});
  }
  // Records may not share bytes: every record is allocated once, so what
  // reading them all allocates is bounded by the file's size.
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < spans.size(); ++i)
    if (spans[i].begin < spans[i - 1].end)
      throw CheckpointError(str_cat(corrupt, "records '", spans[i - 1].name, "' and '", spans[i].name, "' overlap"));

  // The format version comes first: a file from a newer PyTorch may differ in anything else.
  const std::string version_name = find(".data/version") ? ".data/version" : "version";
  if (!find(version_name)) throw CheckpointError(str_cat(corrupt, "the archive has no version record"));
  std::string text = read_text(version_name);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
  const bool digits = !text.empty() && text.size() <= 18 && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits) throw CheckpointError(str_cat(corrupt, "the version record holds '", text.substr(0, 32), "', not a number"));
  version_ = std::stoull(text);
  using caffe2::serialize::kMaxSupportedFileFormatVersion;
  using caffe2::serialize::kMinSupportedFileFormatVersion;
  if (version_ < kMinSupportedFileFormatVersion || version_ > kMaxSupportedFileFormatVersion)
    throw CheckpointError(str_cat(path_, ": torch.save file format version ", version_, ", but recmod reads versions ",
                                  kMinSupportedFileFormatVersion, " to ", kMaxSupportedFileFormatVersion,
                                  " (libtorch 1.13's range); ",
                                  version_ > kMaxSupportedFileFormatVersion ? "written by a newer PyTorch? " : "",
                                  "re-save it with a PyTorch that writes a version in that range"));
}

const ZipArchive::Record* ZipArchive::find(const std::string& name) const {
  auto it = records_.find(name);
  return it == records_.end() ? nullptr : &it->second;
}

void ZipArchive::read(const std::string& name, const Record& record, void* dest) const {
  auto* out = static_cast<char*>(dest);
  const std::string what = str_cat("record '", name, "'");
  uint32_t crc = 0;
  for (uint64_t done = 0; done < record.size;) {
    const size_t piece = static_cast<size_t>(std::min<uint64_t>(kReadPiece, record.size - done));
    read_exact(record.offset + done, out + done, piece, what);
    crc = crc32(crc, out + done, piece);
    done += piece;
  }
  if (crc != record.crc32) throw_corrupt(path_, what, crc, record.crc32);
}

std::shared_ptr<MappedCheckpoint> ZipArchive::mapping() const {
  std::call_once(mapped_once_, [&] {
    mapping_ = std::make_shared<MappedCheckpoint>(path_, fd_, file_size_);
    // Records are verified front to back: read ahead.
    ::madvise(mapping_->data(), static_cast<size_t>(file_size_), MADV_SEQUENTIAL);
  });
  return mapping_;
}

const char* ZipArchive::map_record(const std::string& name, const Record& record, bool release) const {
  if (record.size == 0 || record.offset % 64 != 0) return nullptr;
  const std::shared_ptr<MappedCheckpoint> mapped = mapping();
  const char* bytes = mapped->data() + record.offset;
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  uintptr_t released = (reinterpret_cast<uintptr_t>(bytes) + page - 1) & ~(page - 1);  // whole pages of the record only
  uint32_t crc = 0;
  for (uint64_t done = 0; done < record.size;) {
    const size_t piece = static_cast<size_t>(std::min<uint64_t>(kReadPiece, record.size - done));
    crc = crc32(crc, bytes + done, piece);
    done += piece;
    if (const uintptr_t end = reinterpret_cast<uintptr_t>(bytes + done) & ~(page - 1); release && end > released) {
      ::madvise(reinterpret_cast<void*>(released), end - released, MADV_DONTNEED);  // nothing wrote them: clean pages
      released = end;
    }
  }
  const std::string what = str_cat("record '", name, "'");
  if (mapped->cut()) {
    struct stat now {};
    throw CheckpointError(str_cat(path_, ": the file was cut short while reading ", what, " (it is ", file_size_,
                                  " bytes when opened",
                                  ::fstat(fd_, &now) == 0 ? str_cat(", now ", now.st_size) : std::string(),
                                  "; truncated or rewritten in place by another program?)"));
  }
  if (crc != record.crc32) throw_corrupt(path_, what, crc, record.crc32);
  return bytes;
}

std::string ZipArchive::read_text(const std::string& name) const {
  const Record* record = find(name);
  if (!record) throw CheckpointError(str_cat(path_, ": the archive has no record '", name, "'"));
  std::string text(static_cast<size_t>(record->size), '\0');  // bounded by the file's size
  read(name, *record, text.data());
  return text;
}

}  // namespace recmod::io
