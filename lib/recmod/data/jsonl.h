#pragma once
// JSON lines: one example per line, for any jagged features.
//   {"label": 1, "dense": [0.5, 1.0], "sparse": {"f1": [3, 7], "f2": {"ids": [4], "weights": [0.5]}}}
// "label" is a number, or a list of schema.num_labels numbers; "dense" a list
// of schema.num_dense numbers (may be left out when num_dense is 0); "sparse"
// maps schema features to a list of integer ids or to {"ids", "weights"}.
// A feature left out is an empty bag; ids without weights get weight 1 when
// the schema is weighted. Blank lines are ignored. A .gz or .zst file is read
// as its decompressed text (TextLines), with the same line numbers.
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>

#include "recmod/data/example_reader.h"
#include "recmod/data/text_lines.h"

namespace recmod::data {

class JsonlReader : public ExampleReader {
 public:
  JsonlReader(std::string path, DataSchema schema, BadRecordPolicy policy = BadRecordPolicy::kFail);
  /// Parses `text` (not copied; must outlive the reader); `name` is used in messages.
  JsonlReader(std::string name, std::string_view text, DataSchema schema,
              BadRecordPolicy policy = BadRecordPolicy::kFail);

  const DataSchema& schema() const override { return schema_; }
  std::optional<ExampleColumns> read(int64_t max_rows) override;
  ReadReport report() const override { return report_; }

 private:
  TextLines lines_;
  DataSchema schema_;
  BadRecordPolicy policy_;
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
