#pragma once
// TextLines: a text file's lines, front to back, for the text readers
// (Criteo TSV, JSON lines). A plain file is memory-mapped and a line is a view
// into the mapping; a gzip or zstd file (detect_compression: by its first
// bytes) is decompressed a buffer at a time, so memory stays at about the
// longest line plus a megabyte, whatever the file's size.
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "recmod/data/compressed_stream.h"
#include "recmod/data/mapped_file.h"

namespace recmod::data {

class TextLines {
 public:
  /// Opens `path` (InputError "<path>: cannot open: ..." when it cannot be).
  explicit TextLines(const std::string& path);
  /// The lines of `text` (not copied; must outlive this); `name` for messages.
  TextLines(std::string name, std::string_view text);
  TextLines(const TextLines&) = delete;
  TextLines& operator=(const TextLines&) = delete;
  TextLines(TextLines&&) = default;
  TextLines& operator=(TextLines&&) = default;
  ~TextLines();

  const std::string& name() const { return name_; }
  Compression compression() const { return compression_; }

  /// The next line without its '\n' (a '\r' before it is kept); false at the
  /// end of the text, where a last line without '\n' still counts. `line`
  /// stays valid until the next call. A truncated or corrupt compressed file
  /// throws InputError "<name>:<line>: truncated gzip data: ..." with the
  /// number of the line it was reading.
  bool next(std::string_view& line) {
    for (;;) {
      const size_t left = size_ - pos_;
      const char* begin = data_ + pos_;
      const auto* nl = left ? static_cast<const char*>(std::memchr(begin, '\n', left)) : nullptr;
      if (nl) {
        const auto len = static_cast<size_t>(nl - begin);
        pos_ += len + 1;
        ++line_;
        line = std::string_view(begin, len);
        check_not_cut();
        return true;
      }
      if (refill()) continue;
      if (pos_ == size_) return false;
      line = std::string_view(data_ + pos_, size_ - pos_);
      pos_ = size_;
      ++line_;
      check_not_cut();
      return true;
    }
  }
  /// 1-based number of the line `next` returned last (0 before the first).
  int64_t line_number() const { return line_; }

 private:
  /// A mapped file cut short under us: its line is zeros, not text.
  void check_not_cut() const {
    if (file_ && file_->cut()) file_->check_not_cut(":" + std::to_string(line_));
  }
  /// Streams only: moves the unread rest to the front of the buffer and
  /// appends decompressed bytes; false when the stream has ended.
  bool refill();

  std::string name_;
  Compression compression_ = Compression::kNone;
  std::unique_ptr<MappedFile> file_;
  std::unique_ptr<DecompressingStream> stream_;
  std::vector<char> buffer_;
  bool stream_ended_ = true;
  const char* data_ = nullptr;
  size_t size_ = 0;
  size_t pos_ = 0;
  int64_t line_ = 0;
};

}  // namespace recmod::data
