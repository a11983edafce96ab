#pragma once
// DevicePrefetcher: the batches of a BatchSource on the training device,
// copied one batch ahead. On a CUDA device each host batch is pinned and
// copied with non-blocking copies on a side stream while the caller's
// current stream still runs the previous step (double buffering: the copy
// of batch k+1 overlaps step k); the caller's stream waits for the copy on
// the GPU (an event), never the host. On the CPU it is a pass-through: the
// source's batches themselves, no copy, no thread.
#include <torch/types.h>

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "recmod/data/batch.h"

namespace recmod::data {

/// One batch as DevicePrefetcher::next() hands it out.
struct DeviceBatch {
  /// The source's batch (after the prefetcher's `prepare`), on the host;
  /// its tensors are pinned when they were copied to a CUDA device.
  Batch host;
  /// The same batch on the device, ready for the caller's current stream
  /// (it has waited for the copy). On the CPU: `host`'s tensors themselves.
  Batch device;
  /// Rows of the batch as the source gave it (before `prepare`).
  int64_t source_size = 0;
  /// A Batcher in rank mode: its rank_sizes() for this batch, read when the
  /// batch was taken from it (the prefetcher reads one batch ahead, so the
  /// Batcher's own answer is already the next batch's). Empty otherwise.
  std::vector<int64_t> rank_sizes;
};

class DevicePrefetcher {
 public:
  /// Optional work on each host batch before its copy (e.g. keeping one
  /// rank's rows), run where the batch is taken from the source.
  using Prepare = std::function<Batch(const Batch&)>;

  /// `source` must outlive the prefetcher. Nothing is read before next().
  DevicePrefetcher(BatchSource& source, torch::Device device, Prepare prepare = {});
  ~DevicePrefetcher();
  DevicePrefetcher(const DevicePrefetcher&) = delete;
  DevicePrefetcher& operator=(const DevicePrefetcher&) = delete;

  /// The next batch, nullopt at the end of the data. The batches and their
  /// order are the source's; an exception the source throws (e.g. a parse
  /// error) is re-thrown by the call that would have returned that batch,
  /// after every batch before it was handed out.
  std::optional<DeviceBatch> next();
  /// True when batches are copied ahead on a side stream (a CUDA device);
  /// false for the CPU pass-through (and any other device, copied
  /// synchronously when asked for).
  bool asynchronous() const { return async_ != nullptr; }

 private:
  struct Async;                       // the side stream, its event and the batch in flight
  void issue();                       // takes the next host batch and starts its copy
  std::optional<DeviceBatch> take();  // the source's next batch, prepared; nullopt at its end

  BatchSource& source_;
  torch::Device device_;
  Prepare prepare_;
  std::unique_ptr<Async> async_;
  bool started_ = false;
  bool exhausted_ = false;    // the source ended (or threw)
  std::exception_ptr error_;  // what the source threw, for the call after the last good batch
};

}  // namespace recmod::data
