#pragma once
// Batcher: a BatchSource that reads, shuffles and assembles batches on a
// background thread, so the training loop never waits for the reader.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "recmod/data/example_reader.h"

namespace recmod::data {

/// The bad records of data read with BadRecordPolicy::kSkip, found before a
/// pass: what a rank of a distributed run with --bad-records skip needs to
/// plan the pass one skipping process makes. Each rank checks a contiguous
/// part of the records (find_bad_records), the parts are exchanged and
/// merged (merge_bad_records), so every rank knows every bad record.
struct BadRecords {
  int64_t num_records = 0;       // records covered, good and bad (the whole data once merged)
  std::vector<int64_t> records;  // the bad ones' record numbers (0-based, blank lines not counted), ascending
  /// The messages of the first bad records (at most ReadReport::kMaxErrors,
  /// in file order): the skip report's and the budget error's.
  std::vector<std::string> first_errors;
};

/// Parses records [first, first + count) of `reader` (one that skips bad
/// records, at the start of its data; the records before `first` are passed
/// over unparsed) and returns the bad ones among them.
BadRecords find_bad_records(ExampleReader& reader, int64_t first, int64_t count);
/// Contiguous parts in record order (rank order) -> the whole data's.
BadRecords merge_bad_records(const std::vector<BadRecords>& parts);
/// The part of `all` in records [first, first + count): its bad records and
/// those of the whole data's first messages that are theirs (enough for
/// merge_bad_records to give back `all`'s).
BadRecords bad_records_within(const BadRecords& all, int64_t first, int64_t count);

struct BatcherOptions {
  int64_t batch_size = 512;
  /// Rows shuffled together (a buffer is filled, permuted and cut into
  /// batches); 0 keeps file order.
  int64_t shuffle_buffer = 0;
  uint64_t seed = 0;       // the shuffle's seed: same seed, same order
  bool drop_last = false;  // drop a final batch smaller than batch_size
  int64_t prefetch = 4;    // batches built ahead of the consumer (queue bound)
  int64_t read_rows = 8192;  // rows asked of the reader per call when shuffling
  /// One rank of a data-parallel run (world_size > 1): batch_size is the
  /// global batch, and next() returns this rank's rows (rank_rows' split) of
  /// each global batch that one Batcher with these options would make, the
  /// shuffle included. Only those rows are parsed: the others are passed over
  /// with ExampleReader::skip. A reader that fails on a bad record, or one
  /// that skips them together with `bad_records` (with skipping, which rows
  /// fill a batch depends on which rows are bad).
  int64_t rank = 0;
  int64_t world_size = 1;
  /// Records in the data (rank mode plans the pass from it); -1: the
  /// reader's num_records(), or bad_records' count.
  int64_t num_records = -1;
  /// Rank mode over a reader that skips bad records: all the data's bad
  /// records. The plan is then that of one Batcher over a skipping reader
  /// wrapped in a BadRecordBudget: batches of good records only, the budget
  /// checked where that reader would check it (its error thrown where that
  /// Batcher would throw it), and report() gives that reader's counts.
  std::shared_ptr<const BadRecords> bad_records;
  double max_bad_fraction = 1.0;  // with bad_records: BadRecordBudget's max_fraction
  int64_t min_bad_check = 1000;   // ... and its min_records
};

/// The rows of a global batch of `total` rows that `rank` takes: an even
/// split in rank order (rank r gets total / W rows, one more when r < total %
/// W), as {first row, count}.
std::pair<int64_t, int64_t> rank_rows(int64_t total, int64_t rank, int64_t world_size);

/// The records of a text file, found by passing over them (ExampleReader::skip):
/// what a rank needs before it can plan its part of a shuffled pass.
int64_t count_records(ExampleReader& reader);

/// count_records of the file at `path`, remembered for this process by
/// (path, `how` it is read, its size and mtime), so that later epochs and
/// evaluations of an unchanged file do not pass over it again; `open` opens
/// the reader when the count is not known yet. A file that cannot be stat'ed
/// is counted every time.
int64_t count_records_cached(const std::string& path, const std::string& how,
                             const std::function<std::unique_ptr<ExampleReader>()>& open);
/// How many files count_records_cached counted (rather than remembered).
int64_t record_count_scans();

/// One pass over the reader's examples, each exactly once (unless drop_last
/// drops the tail). next() blocks until a batch is ready; an exception thrown
/// by the reader (e.g. "data.tsv:12: expected ...") is re-thrown from next().
/// Destroying the Batcher (or stop()) ends the thread even when the consumer
/// stopped early.
class Batcher : public BatchSource {
 public:
  Batcher(std::unique_ptr<ExampleReader> reader, BatcherOptions options);
  ~Batcher() override;
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  const DataSchema& schema() const override { return schema_; }
  std::optional<Batch> next() override;
  /// Stops the background thread and waits for it; next() then returns nullopt.
  void stop();
  /// The reader's counts (rows read, bad records skipped); final once next()
  /// has returned nullopt. With bad_records (rank mode): the counts and
  /// messages one skipping process's reader reports (rows read is then every
  /// rank's rows, not this rank's), rows_passed this rank's.
  ReadReport report() const;
  /// Rank mode (options.world_size > 1): every rank's row count of the
  /// global batch next() returned last (rank_rows' split; they sum to its
  /// size). Empty otherwise.
  std::vector<int64_t> rank_sizes() const;
  bool rank_mode() const { return options_.world_size > 1; }

 private:
  void run();  // the background thread
  void run_in_order();   // batches straight from reader.read_batch
  void run_shuffled();   // buffer, permute, cut
  void run_rank();       // rank mode: this rank's rows of each global batch
  /// Rank mode: passes over `n` records; the data ending first is an error.
  void pass(int64_t n, int64_t& cursor);
  bool stopping() const;
  bool push(Batch batch, int64_t global_size = 0);  // false when stopped

  std::unique_ptr<ExampleReader> reader_;
  BatcherOptions options_;
  DataSchema schema_;

  mutable std::mutex mutex_;
  std::condition_variable not_full_, not_empty_;
  std::deque<Batch> queue_;
  std::deque<int64_t> queue_global_;  // rank mode: each queued batch's global size
  int64_t last_global_ = 0;           // rank mode: that of the batch next() returned last
  int64_t passed_ = 0;                // rank mode: records passed over unparsed
  int64_t plan_good_ = 0, plan_bad_ = 0;  // with bad_records: records one skipping reader has read (producer thread)
  bool done_ = false;      // producer finished (end of data or error)
  bool stopping_ = false;  // consumer asked to stop
  std::exception_ptr error_;
  ReadReport report_;
  std::thread thread_;
};

}  // namespace recmod::data
