#pragma once
// Reader for the Criteo display-ads TSV as published (Kaggle DAC / Terabyte):
//   label \t I1 .. I13 \t C1 .. C26
// label 0/1; I* integers (may be negative or empty); C* 32-bit ids written as
// hex (empty when missing). Trailing empty fields may be trimmed, so a row
// has 14 to 40 fields. Blank lines are ignored. A .gz or .zst file is read
// as its decompressed text (TextLines), with the same line numbers.
#include <memory>
#include <string>
#include <string_view>

#include "recmod/data/example_reader.h"
#include "recmod/data/text_lines.h"

namespace recmod::data {

inline constexpr int kCriteoNumDense = 13;
inline constexpr int kCriteoNumSparse = 26;

/// num_dense 13, sparse features C1..C26, one label, unweighted.
DataSchema criteo_schema();

/// Added to the error of a file whose first record is not Criteo-shaped (a
/// field count outside 14..40, a label that is not a number: most likely not
/// Criteo TSV at all): what recmod reads and how to describe a file.
inline constexpr char kReadAsCriteoHint[] =
    "\n  (read as Criteo TSV: label, 13 integers, 26 hex ids, tab-separated, no header. recmod reads criteo_tsv, "
    "jsonl, binary (.rmb) and delimited text such as CSV whose columns the config describes in data.columns; "
    "see docs/data.md \"Delimited text\")";

/// Parses rows in place over a memory-mapped file, or over a buffer of a
/// compressed file's text (no per-field allocation).
/// Each row becomes:
///   dense[i]  = log(1 + max(I_i, 0)), missing -> 0 (as the DLRM reference);
///   sparse Ck = [the hex parsed as uint32, as int64], or an empty bag if missing;
///   label     = 0 or 1.
/// Bad records ("<path>:<line>: expected ..., found ...") throw InputError
/// or are skipped and counted, according to the policy.
class CriteoTsvReader : public ExampleReader {
 public:
  explicit CriteoTsvReader(std::string path, BadRecordPolicy policy = BadRecordPolicy::kFail);
  /// Parses `text` (not copied; must outlive the reader); `name` is the file
  /// name used in messages.
  CriteoTsvReader(std::string name, std::string_view text, BadRecordPolicy policy = BadRecordPolicy::kFail);

  const DataSchema& schema() const override { return schema_; }
  std::optional<ExampleColumns> read(int64_t max_rows) override;
  int64_t read_into(int64_t max_rows, ExampleColumns& out) override;
  /// Finds the next `n` non-blank lines' ends; no field is looked at.
  int64_t skip(int64_t n) override;
  ReadReport report() const override { return report_; }
  int64_t records_skipped() const override { return report_.rows_skipped; }

 private:
  TextLines lines_;
  BadRecordPolicy policy_;
  DataSchema schema_;
  ReadReport report_;
  bool passed_ = false;  // skip() passed over records: the first one read is not the file's first
};

}  // namespace recmod::data
