#pragma once
// Delimited text described by a column schema (a config's `data.columns`,
// docs/data.md "Delimited text"): CSV, TSV or any single-character
// delimiter, with or without a header row, RFC 4180 quoting, multi-valued
// cells, key:weight pairs, string ids hashed with XXH3, and side tables
// joined by key (MovieLens u.item joined to u.data by item id).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "recmod/data/example_reader.h"
#include "recmod/data/text_lines.h"

namespace recmod::data {

struct ColumnVocab;  // data/vocab.h

/// What a column of the file is for.
enum class ColumnRole {
  kLabel,   // the example's label (0/1, or a number compared with `threshold`)
  kDense,   // one dense float feature
  kSparse,  // ids of a sparse feature (one, or several split by `separator`)
  kWeight,  // per-id weights of another sparse column (`of`)
  kFlag,    // 0/1: when 1, adds the id `flag_id` to a sparse feature (one-hot genre columns)
  kSampleWeight,  // the example's weight in the loss and the metrics (a finite number >= 0)
  kIgnore,  // read past
};

/// How a sparse cell's text becomes an id.
enum class IdKind {
  kHash,  // XXH3_64bits_withSeed(text, seed) mod range (unsigned), any text
  kInt,   // a decimal int64, used as it is (the feature's `hash:` applies later, in the model)
  kVocab, // the text's id in a vocabulary (recmod vocab), or its out-of-vocabulary bucket
};

/// One column of a delimited file.
struct ColumnSpec {
  std::string name;  // the header's name, or the config's; used in messages
  ColumnRole role = ColumnRole::kIgnore;
  int64_t target = -1;  // dense index (kDense) or sparse feature index (kSparse, kFlag)
  // kSparse
  IdKind ids = IdKind::kHash;
  char separator = 0;         // between the values of a multi-valued cell; 0: one value
  char weight_separator = 0;  // "key<sep>weight" items; 0: no inline weights
  uint64_t range = 0;         // kHash: ids are hash mod range
  // kVocab: the vocabulary file (as the config resolved it) and its ids for
  // this column; null when the file does not exist yet (a reader then
  // refuses the column, saying to run recmod vocab).
  std::string vocab_path;
  std::shared_ptr<const ColumnVocab> vocab;
  // kVocab: texts not in the vocabulary hash into this many out-of-vocabulary
  // rows after its n ids: n + hash_string_id(text, hash_seed, oov_buckets).
  int64_t oov_buckets = 1;
  // kWeight: the index (in its ColumnSpec list) of the sparse column it weighs.
  int64_t weight_of = -1;
  // kFlag: the id added when the cell is 1.
  int64_t flag_id = 0;
  // kDense: log(1 + max(x, 0)) as Criteo's dense features.
  bool log1p = false;
  // kLabel: label = value >= threshold ? 1 : 0; without one the cell must be
  // 0 or 1 when `binary` (a binary cross-entropy task reads it), else any
  // finite number (a regression task's target).
  std::optional<double> threshold;
  bool binary = true;
  // An empty cell reads as this text; without it an empty cell is an empty
  // bag (sparse, weight), 0 (flag), or a bad record (label, dense).
  std::optional<std::string> default_value;
  // The name of a side table this column's text is a key of ("" = none).
  std::string join;
  // >= 0: not a column of the file but a second reading of column `source`
  // (an index into the same list), e.g. a rating read as a 0/1 label by
  // threshold and again as a regression target.
  int64_t source = -1;
  // kSparse: >= 0: the index (in the same list) of a 0/1 column that says
  // whether this cell holds an id (1) or padding (0): padded fixed-length
  // sequences with masks, as Alimama's DMR data has them. mask_name: as the
  // config named it.
  int64_t mask = -1;
  std::string mask_name;
};

/// A small file read whole before the data: rows keyed by one column, whose
/// sparse and flag columns are added to every data row with that key.
struct SideTableSpec {
  std::string name;
  std::string path;  // relative: next to the data file
  char delimiter = ',';
  char quote = '"';  // 0: no quoting
  bool header = false;
  int64_t key_column = -1;  // index into columns
  std::vector<ColumnSpec> columns;  // roles kSparse, kFlag, kIgnore only
  bool missing_is_bad = false;      // a data row's key not in the table: bad record (else no ids)
};

/// A whole file's layout, and the DataSchema it produces.
struct DelimitedSpec {
  char delimiter = ',';
  char quote = '"';  // 0: no quoting
  bool header = false;
  uint64_t hash_seed = 0;  // XXH3 seed of every hashed column (and side table column)
  // Without a header, the file's columns in order. With one, the columns the
  // config names are found by name in the header; the others are ignored.
  std::vector<ColumnSpec> columns;
  std::vector<SideTableSpec> side_tables;
  DataSchema schema;
  std::vector<std::string> label_names;  // the label columns' names, in label order
};

/// The id of a hashed string: XXH3_64bits_withSeed(text, seed) mod range,
/// in unsigned 64-bit arithmetic, as int64 (range <= 2^63).
int64_t hash_string_id(std::string_view text, uint64_t seed, uint64_t range);

/// Splits one record into fields: RFC 4180 (a field in `quote` may hold the
/// delimiter, a doubled quote and line breaks; nothing may follow its closing
/// quote but the delimiter). `quote` 0 = no quoting. Reads further lines from
/// `lines` while a quoted field is open. Views point into `line` or
/// `scratch`. Returns an error message ("" when fine).
std::string split_record(std::string_view line, TextLines& lines, char delimiter, char quote,
                         std::vector<std::string_view>& fields, std::string& scratch);

/// Reads a DelimitedSpec's file. Bad cells are "<path>:<line>: column
/// '<name>': expected ..., found '...'" (InputError, or skipped and counted).
class DelimitedReader : public ExampleReader {
 public:
  /// Side tables with a relative path are read from `path`'s directory.
  DelimitedReader(std::string path, std::shared_ptr<const DelimitedSpec> spec,
                  BadRecordPolicy policy = BadRecordPolicy::kFail);
  /// Parses `text` (not copied; must outlive the reader); `name` for
  /// messages; side tables relative to the current directory.
  DelimitedReader(std::string name, std::string_view text, std::shared_ptr<const DelimitedSpec> spec,
                  BadRecordPolicy policy = BadRecordPolicy::kFail);
  ~DelimitedReader() override;

  const DataSchema& schema() const override { return spec_->schema; }
  std::optional<ExampleColumns> read(int64_t max_rows) override;
  int64_t read_into(int64_t max_rows, ExampleColumns& out) override;
  /// Finds the next `n` records' ends (the header first, if not read yet);
  /// a line with the quote character is split, as its record may go on over
  /// line breaks, but no cell is parsed.
  int64_t skip(int64_t n) override;
  ReadReport report() const override { return report_; }
  int64_t records_skipped() const override { return report_.rows_skipped; }

  struct SideTable;

 private:
  void start(const std::string& dir);
  std::string parse_row(const std::vector<std::string_view>& fields, ExampleColumns& out);

  TextLines lines_;
  std::shared_ptr<const DelimitedSpec> spec_;
  BadRecordPolicy policy_;
  ReadReport report_;
  bool header_read_ = false;
  std::vector<int64_t> field_of_column_;  // per spec column: its field index in a row
  int64_t num_fields_ = 0;                // fields per row
  std::vector<std::unique_ptr<SideTable>> side_;  // per spec side table
  std::vector<std::string_view> fields_;
  std::string scratch_;
  std::vector<std::pair<int64_t, int64_t>> bag_range_;  // per column: its ids in its feature, this row
};

}  // namespace recmod::data
