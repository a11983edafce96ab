#pragma once
// Reading gzip (.gz) and zstd (.zst) files as a stream of their decompressed
// bytes, a buffer at a time (the whole text is never held in memory). zlib
// and libzstd do the work; this is only the plumbing and the messages.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "recmod/common/errors.h"

namespace recmod::data {

enum class Compression { kNone, kGzip, kZstd };

/// "none", "gzip", "zstd".
std::string compression_name(Compression compression);

/// By the file's first bytes (gzip 1f 8b, zstd 28 b5 2f fd). A name ending
/// in .gz or .zst whose bytes are not that format (an empty, cut or damaged
/// file) is an InputError saying so, rather than text parsed as garbage.
/// Throws InputError "<path>: cannot open: <reason>" like MappedFile.
Compression detect_compression(const std::string& path);

/// The decompressed bytes of a gzip or zstd file, front to back. Several
/// concatenated gzip members or zstd frames read as one stream (as `gzip -d`
/// and `zstd -d` do).
class DecompressingStream {
 public:
  virtual ~DecompressingStream() = default;
  /// Up to `capacity` bytes into `out`; 0 only at the end of the data. A
  /// truncated or corrupt file throws DecompressError.
  virtual size_t read(char* out, size_t capacity) = 0;
  /// Bytes of the compressed file consumed / decompressed bytes handed out.
  virtual uint64_t compressed_position() const = 0;
  virtual uint64_t decompressed_position() const = 0;
};

/// A truncated or corrupt compressed file: "<path>: <detail>", where detail
/// is e.g. "truncated gzip data: the file ends at byte 812 inside a
/// compressed stream (4096 bytes of text decompressed)". A line reader
/// rethrows it as "<path>:<line>: <detail>".
class DecompressError : public InputError {
 public:
  DecompressError(const std::string& path, std::string detail)
      : InputError(path + ": " + detail), detail_(std::move(detail)) {}
  const std::string& detail() const { return detail_; }

 private:
  std::string detail_;
};

/// Opens `path` (compressed as `compression`, not kNone) for reading.
std::unique_ptr<DecompressingStream> open_decompressing_stream(const std::string& path, Compression compression);

/// Up to `n` bytes from the start of the file's text: decompressed when the
/// file is gzip or zstd, as is otherwise (what format detection looks at).
std::string read_text_prefix(const std::string& path, size_t n);

}  // namespace recmod::data
