#include "recmod/data/device_prefetcher.h"

// Device-generic c10 streams and events: they live in libc10 and dispatch
// to the CUDA backend at run time, so this file builds and links against a
// CPU-only libtorch (where the CUDA path is never taken).
#include <c10/core/Event.h>
#include <c10/core/Stream.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include <utility>

#include "recmod/data/batcher.h"

namespace recmod::data {

namespace {

// A host tensor in page-locked memory, so that its copy to the GPU is a
// DMA the host does not wait for. Empty tensors are not copied at all.
torch::Tensor pinned(const torch::Tensor& t) {
  if (!t.is_cpu() || t.numel() == 0 || t.is_pinned()) return t;
  return t.pin_memory();
}

}  // namespace

// The copy stream is one of libtorch's pooled streams of the device; the
// event is recorded on it after the copies of the batch in flight.
struct DevicePrefetcher::Async {
  explicit Async(const torch::Device& device)
      : guard(device.type()), copy_stream(guard.getStreamFromGlobalPool(device)), copied(device.type()) {}
  c10::impl::VirtualGuardImpl guard;
  c10::Stream copy_stream;
  c10::Event copied;
  std::optional<DeviceBatch> in_flight;
};

DevicePrefetcher::DevicePrefetcher(BatchSource& source, torch::Device device, Prepare prepare)
    : source_(source), device_(device), prepare_(std::move(prepare)) {
  if (device_.is_cuda()) async_ = std::make_unique<Async>(device_);
}

DevicePrefetcher::~DevicePrefetcher() = default;

std::optional<DeviceBatch> DevicePrefetcher::take() {
  if (exhausted_) return std::nullopt;
  std::optional<Batch> batch = source_.next();
  if (!batch) {
    exhausted_ = true;
    return std::nullopt;
  }
  DeviceBatch out;
  out.source_size = batch->size();
  const auto* batcher = dynamic_cast<const Batcher*>(&source_);
  if (batcher && batcher->rank_mode()) out.rank_sizes = batcher->rank_sizes();
  out.host = prepare_ ? prepare_(*batch) : std::move(*batch);
  return out;
}

void DevicePrefetcher::issue() {
  try {
    std::optional<DeviceBatch> batch = take();
    if (!batch) return;
    batch->host = batch->host.map_tensors(pinned);
    {
      // Allocated and copied on the copy stream: the caller's stream keeps
      // running the previous step meanwhile.
      c10::StreamGuard on_copy_stream(async_->copy_stream);
      batch->device = batch->host.to(device_, /*non_blocking=*/true);
    }
    async_->copied.record(async_->copy_stream);
    async_->in_flight = std::move(batch);
  } catch (...) {
    // Handed to the caller once the batches before this one are out.
    exhausted_ = true;
    error_ = std::current_exception();
  }
}

std::optional<DeviceBatch> DevicePrefetcher::next() {
  if (!async_) {
    std::optional<DeviceBatch> batch = take();
    if (!batch) return std::nullopt;
    // The CPU: the host batch itself. Another device: a plain copy.
    batch->device = device_.is_cpu() ? batch->host : batch->host.to(device_);
    return batch;
  }
  if (!started_) {
    started_ = true;
    issue();
  }
  if (!async_->in_flight) {
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
    return std::nullopt;
  }
  DeviceBatch out = std::move(*async_->in_flight);
  async_->in_flight.reset();
  // The caller's stream waits (on the GPU) for the copies, and the caching
  // allocator is told the tensors are used there: without record_stream
  // their memory, allocated on the copy stream, could be handed to the next
  // copy as soon as they are freed, while this stream still reads them.
  const c10::Stream current = async_->guard.getStream(async_->copy_stream.device());
  async_->copied.block(current);
  for (const torch::Tensor& t : out.device.tensors())
    if (t.device().type() == current.device_type()) t.record_stream(current);
  issue();  // batch k+1's copy overlaps the caller's step k
  return out;
}

}  // namespace recmod::data
