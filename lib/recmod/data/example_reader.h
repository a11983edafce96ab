#pragma once
// ExampleReader: the interface every file reader implements. A reader hands
// out consecutive blocks of examples; the Batcher turns them into Batches.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "recmod/data/example_columns.h"

namespace recmod::data {

/// What a reader does with a malformed record.
enum class BadRecordPolicy {
  kFail,  // throw InputError "file:line: expected ..., found ..."
  kSkip,  // drop the record, count it, keep the first messages for the report
};

/// Counts a reader gathers on its way through a file.
struct ReadReport {
  int64_t rows_read = 0;
  int64_t rows_skipped = 0;
  std::vector<std::string> first_errors;  // the first few skipped records' messages
  static constexpr size_t kMaxErrors = 10;
  /// "1000 rows read, 3 bad records skipped (first: data.tsv:12: expected ...)".
  std::string summary() const;
  void skip(std::string message);
};

class ExampleReader {
 public:
  virtual ~ExampleReader() = default;
  virtual const DataSchema& schema() const = 0;
  /// The next up to `max_rows` examples in file order; nullopt at the end.
  virtual std::optional<ExampleColumns> read(int64_t max_rows) = 0;
  virtual ReadReport report() const = 0;
};

}  // namespace recmod::data
