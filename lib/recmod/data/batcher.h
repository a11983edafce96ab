#pragma once
// Batcher: a BatchSource that reads, shuffles and assembles batches on a
// background thread, so the training loop never waits for the reader.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>

#include "recmod/data/example_reader.h"

namespace recmod::data {

struct BatcherOptions {
  int64_t batch_size = 512;
  /// Rows shuffled together (a buffer is filled, permuted and cut into
  /// batches); 0 keeps file order.
  int64_t shuffle_buffer = 0;
  uint64_t seed = 0;       // the shuffle's seed: same seed, same order
  bool drop_last = false;  // drop a final batch smaller than batch_size
  int64_t prefetch = 4;    // batches built ahead of the consumer (queue bound)
  int64_t read_rows = 8192;  // rows asked of the reader per call
};

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
  /// has returned nullopt.
  ReadReport report() const;

 private:
  void run();                   // the background thread
  bool push(Batch batch);       // false when stopped

  std::unique_ptr<ExampleReader> reader_;
  BatcherOptions options_;
  DataSchema schema_;

  mutable std::mutex mutex_;
  std::condition_variable not_full_, not_empty_;
  std::deque<Batch> queue_;
  bool done_ = false;      // producer finished (end of data or error)
  bool stopping_ = false;  // consumer asked to stop
  std::exception_ptr error_;
  ReadReport report_;
  std::thread thread_;
};

}  // namespace recmod::data
