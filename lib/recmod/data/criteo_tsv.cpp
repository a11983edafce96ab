#include "recmod/data/criteo_tsv.h"

#include <array>
#include <charconv>
#include <cmath>
#include <cstring>

#include "recmod/common/errors.h"

namespace recmod::data {

namespace {

constexpr int kMaxFields = 1 + kCriteoNumDense + kCriteoNumSparse;  // 40
constexpr int kMinFields = 1 + kCriteoNumDense;                     // 14: all categoricals trimmed

/// A field as it appears in a message: quoted, cut at 40 characters.
std::string quoted(std::string_view field) {
  constexpr size_t kMax = 40;
  if (field.size() > kMax) return str_cat("'", field.substr(0, kMax), "...'");
  return str_cat("'", field, "'");
}

/// Parses one line (no newline) into `out`; returns an error message
/// ("expected ..., found ...") or an empty string. On error the caller
/// truncates `out` back to its previous row count. `misshapen` is set when the
/// line is not Criteo-shaped at all (field count, or a label that is not a
/// number: a header row).
std::string parse_line(std::string_view line, ExampleColumns& out, bool& misshapen) {
  std::array<std::string_view, kMaxFields> fields;
  int n = 0;
  const char* p = line.data();
  const char* end = p + line.size();
  while (true) {
    const auto* tab = static_cast<const char*>(std::memchr(p, '\t', end - p));
    const char* field_end = tab ? tab : end;
    if (n < kMaxFields) fields[n] = std::string_view(p, field_end - p);
    ++n;
    if (!tab) break;
    p = tab + 1;
  }
  misshapen = n < kMinFields || n > kMaxFields;
  if (misshapen)
    return str_cat("expected ", kMaxFields, " tab-separated fields (at least ", kMinFields,
                   " when trailing empty fields are trimmed), found ", n);

  const std::string_view label = fields[0];
  if (label != "0" && label != "1") {
    misshapen = label.empty() || label.find_first_not_of("0123456789.-+eE") != std::string_view::npos;
    return str_cat("expected label 0 or 1, found ", quoted(label));
  }
  out.labels.push_back(label[0] == '1' ? 1.0f : 0.0f);

  for (int i = 0; i < kCriteoNumDense; ++i) {
    const std::string_view f = fields[1 + i];
    int64_t x = 0;
    if (!f.empty()) {
      const auto [ptr, ec] = std::from_chars(f.data(), f.data() + f.size(), x);
      if (ec != std::errc() || ptr != f.data() + f.size())
        return str_cat("expected an integer for I", i + 1, ", found ", quoted(f));
    }
    out.dense.push_back(static_cast<float>(std::log1p(static_cast<double>(std::max<int64_t>(x, 0)))));
  }

  for (int k = 0; k < kCriteoNumSparse; ++k) {
    const int idx = 1 + kCriteoNumDense + k;
    const std::string_view f = idx < n ? fields[idx] : std::string_view();
    if (!f.empty()) {
      uint32_t id = 0;
      const auto [ptr, ec] = std::from_chars(f.data(), f.data() + f.size(), id, 16);
      if (ec != std::errc() || ptr != f.data() + f.size())
        return str_cat("expected a 32-bit hex id for C", k + 1, ", found ", quoted(f));
      out.sparse[k].ids.push_back(static_cast<int64_t>(id));
    }
    out.close_bag(k);
  }
  out.finish_row();
  return {};
}

}  // namespace

DataSchema criteo_schema() {
  DataSchema s;
  s.num_dense = kCriteoNumDense;
  for (int k = 1; k <= kCriteoNumSparse; ++k) s.sparse_features.push_back("C" + std::to_string(k));
  s.num_labels = 1;
  return s;
}

CriteoTsvReader::CriteoTsvReader(std::string path, BadRecordPolicy policy)
    : lines_(path), policy_(policy), schema_(criteo_schema()) {}

CriteoTsvReader::CriteoTsvReader(std::string name, std::string_view text, BadRecordPolicy policy)
    : lines_(std::move(name), text), policy_(policy), schema_(criteo_schema()) {}

std::optional<ExampleColumns> CriteoTsvReader::read(int64_t max_rows) {
  TORCH_CHECK(max_rows > 0, "CriteoTsvReader::read: expected max_rows > 0, got ", max_rows);
  ExampleColumns out(schema_);
  out.reserve(max_rows);
  if (read_into(max_rows, out) == 0) return std::nullopt;  // only bad records were left
  return out;
}

int64_t CriteoTsvReader::read_into(int64_t max_rows, ExampleColumns& out) {
  const int64_t start = out.num_rows();
  std::string_view line;
  while (out.num_rows() - start < max_rows && lines_.next(line)) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // CRLF files
    if (line.empty()) continue;                                     // blank lines are not records
    const int64_t rows_before = out.num_rows();
    bool misshapen = false;
    std::string error = parse_line(line, out, misshapen);
    if (error.empty()) continue;
    out.truncate(rows_before);
    std::string message = str_cat(lines_.name(), ":", lines_.line_number(), ": ", error);
    // The file's first record is not Criteo-shaped: most likely the file is not Criteo TSV.
    if (misshapen && rows_before == start && report_.rows_read == 0 && report_.rows_skipped == 0 && !passed_)
      message += kReadAsCriteoHint;
    if (policy_ == BadRecordPolicy::kFail) throw InputError(message);
    report_.skip(std::move(message));
  }
  report_.rows_read += out.num_rows() - start;
  return out.num_rows() - start;
}

int64_t CriteoTsvReader::skip(int64_t n) {
  int64_t passed = 0;
  std::string_view line;
  while (passed < n && lines_.next(line)) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!line.empty()) ++passed;  // blank lines are not records (as in read)
  }
  passed_ = passed_ || passed > 0;
  return passed;
}

}  // namespace recmod::data
