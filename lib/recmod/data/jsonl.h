#pragma once
// JSON lines: one example per line, for any jagged features.
//   {"label": 1, "dense": [0.5, 1.0], "sparse": {"f1": [3, 7], "f2": {"ids": [4], "weights": [0.5]}}}
// "label" is a number, or a list of schema.num_labels numbers; "dense" a list
// of schema.num_dense numbers (may be left out when num_dense is 0); "sparse"
// maps schema features to a list of ids or to {"ids", "weights"}. An id is
// an integer, or a string hashed as delimited text's (XXH3 mod the feature's
// range, JsonlOptions). A feature left out is an empty bag; ids without
// weights get weight 1 when the schema is weighted. Features the schema does
// not name are ignored (errors with JsonlOptions::strict). Blank lines are
// ignored. With schema.sample_weights a record may carry "weight": w (a
// number >= 0; 1 when left out). A .gz or .zst file is read as its decompressed text (TextLines),
// with the same line numbers.
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "recmod/data/example_reader.h"
#include "recmod/data/text_lines.h"

namespace recmod::data {

struct ColumnVocab;  // data/vocab.h

/// What a model asks of its JSON lines beyond the schema (a config's
/// features and data sections; train::open_batches fills it).
struct JsonlOptions {
  bool strict = false;         // a feature the schema does not name is a bad record (else ignored)
  bool binary_labels = false;  // labels must be 0 or 1 (binary cross-entropy)
  /// Per label column (multi-task: a regression task's label is any number);
  /// when shorter than the labels, binary_labels decides for the rest.
  std::vector<bool> binary_per_label;
  /// Per schema feature: whether it may carry weights ({"ids", "weights"});
  /// empty: every feature may when the schema is weighted.
  std::vector<bool> weighted;
  /// Per schema feature: string ids are XXH3_64bits_withSeed(text, hash_seed)
  /// mod this (hash_string_id); 0 or empty: string ids are bad records.
  std::vector<uint64_t> string_id_range;
  uint64_t hash_seed = 0;
  /// Per schema feature: a vocabulary (a feature's `vocab:`): its string ids,
  /// and integer ids by their decimal text, map through it (ColumnVocab::id
  /// with oov_buckets[f] and hash_seed) instead of being hashed or taken as
  /// they are. null or empty: none.
  std::vector<std::shared_ptr<const ColumnVocab>> vocab;
  std::vector<int64_t> oov_buckets;
  /// Per schema feature: integer ids must be in [0, limit) (the table of an
  /// unhashed feature), else a bad record naming the line; 0 or empty: any id.
  std::vector<int64_t> id_limit;
};

class JsonlReader : public ExampleReader {
 public:
  JsonlReader(std::string path, DataSchema schema, BadRecordPolicy policy = BadRecordPolicy::kFail,
              JsonlOptions options = {});
  /// Parses `text` (not copied; must outlive the reader); `name` is used in messages.
  JsonlReader(std::string name, std::string_view text, DataSchema schema,
              BadRecordPolicy policy = BadRecordPolicy::kFail, JsonlOptions options = {});

  const DataSchema& schema() const override { return schema_; }
  std::optional<ExampleColumns> read(int64_t max_rows) override;
  int64_t read_into(int64_t max_rows, ExampleColumns& out) override;
  /// Finds the next `n` non-blank lines' ends; no JSON is parsed.
  int64_t skip(int64_t n) override;
  ReadReport report() const override { return report_; }
  int64_t records_skipped() const override { return report_.rows_skipped; }

 private:
  TextLines lines_;
  DataSchema schema_;
  BadRecordPolicy policy_;
  JsonlOptions options_;
  ReadReport report_;
};

/// Writes examples as JSON lines (shortest round-trip float text), one line
/// per example, every feature present (empty bags as []).
class JsonlWriter {
 public:
  explicit JsonlWriter(std::string path);
  ~JsonlWriter();
  JsonlWriter(const JsonlWriter&) = delete;
  JsonlWriter& operator=(const JsonlWriter&) = delete;
  void write(const ExampleColumns& block);
  void close();

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

void write_jsonl(const std::string& path, const ExampleColumns& data);

}  // namespace recmod::data
