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
  int64_t rows_passed = 0;  // records passed over unparsed: a rank's share of the others' rows (Batcher rank mode)
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
  /// The next `max_rows` examples in file order (fewer only when the data
  /// ends); nullopt at the end.
  virtual std::optional<ExampleColumns> read(int64_t max_rows) = 0;
  /// The same rows as read(), as one Batch. The default converts read()'s
  /// block; readers that can build tensors directly (BinaryReader) override it.
  virtual std::optional<Batch> read_batch(int64_t max_rows);
  /// The same rows as read(), appended to `out` (of this reader's schema);
  /// returns how many (0 at the end). What a rank uses to gather its
  /// scattered rows without a block per run. The default appends read()'s.
  virtual int64_t read_into(int64_t max_rows, ExampleColumns& out);
  /// Passes over the next `n` records without building them (a text reader
  /// only finds their line ends, keeping its line numbers; .rmb and .npy move
  /// their cursor); returns how many it passed, fewer only where the data
  /// ends. A passed record is not checked: a bad one is reported only by a
  /// read. What a rank of a distributed run does with the other ranks' rows.
  /// The default reads and drops.
  virtual int64_t skip(int64_t n);
  /// How many records the data holds, where the file says so without being
  /// read (.rmb, .npy); nullopt for text (count_records passes over it).
  virtual std::optional<int64_t> num_records() const { return std::nullopt; }
  virtual ReadReport report() const = 0;
  /// report().rows_skipped without copying the report (find_bad_records asks
  /// after every record).
  virtual int64_t records_skipped() const { return report().rows_skipped; }
};

}  // namespace recmod::data
