#include "recmod/data/text_lines.h"

namespace recmod::data {

namespace {
constexpr size_t kBufferBytes = size_t{1} << 20;
}  // namespace

TextLines::TextLines(const std::string& path) : name_(path), compression_(detect_compression(path)) {
  if (compression_ == Compression::kNone) {
    file_ = std::make_unique<MappedFile>(path);
    file_->advise_sequential();
    data_ = file_->data();
    size_ = file_->size();
    return;
  }
  stream_ = open_decompressing_stream(path, compression_);
  stream_ended_ = false;
  buffer_.resize(kBufferBytes);
  data_ = buffer_.data();
}

TextLines::TextLines(std::string name, std::string_view text)
    : name_(std::move(name)), data_(text.data()), size_(text.size()) {}

TextLines::~TextLines() = default;

bool TextLines::refill() {
  if (stream_ended_) return false;
  const size_t rest = size_ - pos_;
  if (pos_ > 0 && rest > 0) std::memmove(buffer_.data(), buffer_.data() + pos_, rest);
  pos_ = 0;
  size_ = rest;
  if (size_ == buffer_.size()) buffer_.resize(2 * buffer_.size());  // a line longer than the buffer
  data_ = buffer_.data();
  size_t got = 0;
  try {
    got = stream_->read(buffer_.data() + size_, buffer_.size() - size_);
  } catch (const DecompressError& e) {
    throw InputError(str_cat(name_, ":", line_ + 1, ": ", e.detail()));
  }
  if (got == 0) {
    stream_ended_ = true;
    return false;
  }
  size_ += got;
  return true;
}

}  // namespace recmod::data
