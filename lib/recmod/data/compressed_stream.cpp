#include "recmod/data/compressed_stream.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <c10/util/Exception.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

#include "recmod/common/strings.h"

namespace recmod::data {

namespace {

constexpr unsigned char kGzipMagic[] = {0x1f, 0x8b};
constexpr unsigned char kZstdMagic[] = {0x28, 0xb5, 0x2f, 0xfd};
constexpr size_t kInputChunk = size_t{256} << 10;

/// A regular file opened for reading, with MappedFile's messages.
class InputFile {
 public:
  explicit InputFile(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw_input_error(path, ": cannot open: ", std::strerror(errno));
    struct stat st {};
    const bool stated = ::fstat(fd_, &st) == 0;
    if (!stated || !S_ISREG(st.st_mode)) {
      const std::string why = stated ? "not a regular file" : std::strerror(errno);
      ::close(fd_);
      throw_input_error(path, ": cannot open: ", why);
    }
#ifdef POSIX_FADV_SEQUENTIAL
    ::posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
  }
  ~InputFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  /// Up to `n` bytes; 0 at the end of the file.
  size_t read(void* out, size_t n) {
    for (;;) {
      const ssize_t got = ::read(fd_, out, n);
      if (got >= 0) return static_cast<size_t>(got);
      if (errno != EINTR) throw_input_error(path_, ": cannot read: ", std::strerror(errno));
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
};

/// What both streams share: an error met after some text came out of the
/// same call is raised at the next call, so that a reader parses (and
/// numbers) the lines before the damage first, as it would in a plain file.
class StreamBase : public DecompressingStream {
 protected:
  size_t fail(DecompressError error, size_t produced) {
    if (produced == 0) throw error;
    pending_ = std::move(error);
    return produced;
  }
  std::optional<DecompressError> pending_;
};

class GzipStream : public StreamBase {
 public:
  explicit GzipStream(const std::string& path) : path_(path), file_(path), buffer_(kInputChunk) {
    // 16 + 15: a gzip header and trailer (CRC-32 and length, both checked)
    // around a deflate stream with a window of up to 32 KiB.
    if (inflateInit2(&z_, 16 + MAX_WBITS) != Z_OK) throw_input_error(path, ": zlib cannot start: out of memory");
  }
  ~GzipStream() override { inflateEnd(&z_); }

  size_t read(char* out, size_t capacity) override {
    if (pending_) throw *pending_;
    if (capacity == 0) return 0;
    z_.next_out = reinterpret_cast<Bytef*>(out);
    z_.avail_out = static_cast<uInt>(std::min<size_t>(capacity, 1u << 30));
    const uInt room = z_.avail_out;
    for (;;) {
      if (z_.avail_in == 0 && !eof_) fill();
      if (z_.avail_in == 0 && eof_ && !in_member_) {
        if (read_total_ == 0) throw truncated("the file is empty");
        return 0;  // every member ended where the file does
      }
      if (!in_member_) {  // the next member of a multi-member file
        inflateReset(&z_);
        in_member_ = true;
      }
      const int rc = inflate(&z_, Z_NO_FLUSH);
      const size_t produced = room - z_.avail_out;
      text_total_ += produced;
      if (rc == Z_STREAM_END) {
        in_member_ = false;
      } else if (rc == Z_DATA_ERROR || rc == Z_NEED_DICT || rc == Z_STREAM_ERROR) {
        return fail(corrupt(z_.msg ? z_.msg : "invalid data"), produced);
      } else if (rc == Z_MEM_ERROR) {
        throw_input_error(path_, ": zlib ran out of memory");
      }  // Z_OK, or Z_BUF_ERROR: needs more input
      if (produced > 0) return produced;
      if (z_.avail_in == 0 && eof_ && in_member_)
        throw truncated("the file ends inside a compressed stream");
    }
  }

  uint64_t compressed_position() const override { return read_total_ - z_.avail_in; }
  uint64_t decompressed_position() const override { return text_total_; }

 private:
  void fill() {
    const size_t got = file_.read(buffer_.data(), buffer_.size());
    if (got == 0) eof_ = true;
    read_total_ += got;
    z_.next_in = reinterpret_cast<Bytef*>(buffer_.data());
    z_.avail_in = static_cast<uInt>(got);
  }
  DecompressError truncated(const std::string& what) const {
    return DecompressError(path_, str_cat("truncated gzip data: ", what, " at byte ", compressed_position(), " (",
                                          text_total_, " bytes of text decompressed)"));
  }
  DecompressError corrupt(const std::string& what) const {
    return DecompressError(path_, str_cat("corrupt gzip data at byte ", compressed_position(), " of the file (", what,
                                          "; ", text_total_, " bytes of text decompressed)"));
  }

  std::string path_;
  InputFile file_;
  std::vector<char> buffer_;
  z_stream z_{};
  bool eof_ = false;
  bool in_member_ = false;
  uint64_t read_total_ = 0;
  uint64_t text_total_ = 0;
};

class ZstdStream : public StreamBase {
 public:
  explicit ZstdStream(const std::string& path)
      : path_(path), file_(path), buffer_(kInputChunk), dctx_(ZSTD_createDCtx()) {
    if (!dctx_) throw_input_error(path, ": libzstd cannot start: out of memory");
  }
  ~ZstdStream() override { ZSTD_freeDCtx(dctx_); }

  size_t read(char* out, size_t capacity) override {
    if (pending_) throw *pending_;
    if (capacity == 0) return 0;
    ZSTD_outBuffer output{out, capacity, 0};
    for (;;) {
      if (input_.pos == input_.size && !eof_) fill();
      if (input_.pos == input_.size && eof_ && !in_frame_) {
        if (read_total_ == 0) throw truncated("the file is empty");
        return 0;  // every frame ended where the file does
      }
      const size_t rc = ZSTD_decompressStream(dctx_, &output, &input_);
      text_total_ += output.pos;
      if (ZSTD_isError(rc)) return fail(corrupt(ZSTD_getErrorName(rc)), output.pos);
      in_frame_ = rc != 0;  // 0: a frame is complete and flushed
      if (output.pos > 0) return output.pos;
      if (input_.pos == input_.size && eof_ && in_frame_)
        throw truncated("the file ends inside a compressed frame");
    }
  }

  uint64_t compressed_position() const override { return read_total_ - (input_.size - input_.pos); }
  uint64_t decompressed_position() const override { return text_total_; }

 private:
  void fill() {
    const size_t got = file_.read(buffer_.data(), buffer_.size());
    if (got == 0) eof_ = true;
    read_total_ += got;
    input_ = ZSTD_inBuffer{buffer_.data(), got, 0};
  }
  DecompressError truncated(const std::string& what) const {
    return DecompressError(path_, str_cat("truncated zstd data: ", what, " at byte ", compressed_position(), " (",
                                          text_total_, " bytes of text decompressed)"));
  }
  DecompressError corrupt(const std::string& what) const {
    // libzstd does not move input.pos on an error (and may have decoded a
    // whole frame in one call), so the position is the bytes read so far.
    return DecompressError(path_, str_cat("corrupt zstd data within the first ", read_total_, " bytes of the file (",
                                          what, "; ", text_total_, " bytes of text decompressed)"));
  }

  std::string path_;
  InputFile file_;
  std::vector<char> buffer_;
  ZSTD_DCtx* dctx_;
  ZSTD_inBuffer input_{nullptr, 0, 0};
  bool eof_ = false;
  bool in_frame_ = false;
  uint64_t read_total_ = 0;
  uint64_t text_total_ = 0;
};

std::string hex_bytes(const unsigned char* p, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    if (i) out += ' ';
    out += digits[p[i] >> 4];
    out += digits[p[i] & 15];
  }
  return out;
}

}  // namespace

std::string compression_name(Compression compression) {
  switch (compression) {
    case Compression::kNone: return "none";
    case Compression::kGzip: return "gzip";
    case Compression::kZstd: return "zstd";
  }
  return "?";
}

Compression detect_compression(const std::string& path) {
  unsigned char head[4] = {};
  size_t n = 0;
  {
    InputFile file(path);
    while (n < sizeof(head)) {
      const size_t got = file.read(head + n, sizeof(head) - n);
      if (got == 0) break;
      n += got;
    }
  }
  if (n >= sizeof(kGzipMagic) && std::memcmp(head, kGzipMagic, sizeof(kGzipMagic)) == 0) return Compression::kGzip;
  if (n >= sizeof(kZstdMagic) && std::memcmp(head, kZstdMagic, sizeof(kZstdMagic)) == 0) return Compression::kZstd;
  const auto named = [&](const char* suffix, const char* format, const char* magic) {
    if (!ends_with(path, suffix)) return;
    throw_input_error(path, ": the name ends in ", suffix, " but the file is not ", format, " data (it starts with ",
                      n ? "bytes " + hex_bytes(head, n) : std::string("nothing: it is empty"), ", ", format,
                      " starts with ", magic, "); the file is cut or damaged, or misnamed");
  };
  named(".gz", "gzip", "1f 8b");
  named(".zst", "zstd", "28 b5 2f fd");
  return Compression::kNone;
}

std::unique_ptr<DecompressingStream> open_decompressing_stream(const std::string& path, Compression compression) {
  switch (compression) {
    case Compression::kGzip: return std::make_unique<GzipStream>(path);
    case Compression::kZstd: return std::make_unique<ZstdStream>(path);
    case Compression::kNone: break;
  }
  TORCH_CHECK(false, "open_decompressing_stream: ", path, " is not compressed");
}

std::string read_text_prefix(const std::string& path, size_t n) {
  std::string out(n, '\0');
  size_t have = 0;
  const Compression compression = detect_compression(path);
  if (compression == Compression::kNone) {
    InputFile file(path);
    while (have < n) {
      const size_t got = file.read(out.data() + have, n - have);
      if (got == 0) break;
      have += got;
    }
  } else {
    auto stream = open_decompressing_stream(path, compression);
    while (have < n) {
      const size_t got = stream->read(out.data() + have, n - have);
      if (got == 0) break;
      have += got;
    }
  }
  out.resize(have);
  return out;
}

}  // namespace recmod::data
