#include "recmod/modules/cuda_lookup_errors.h"

#include <torch/torch.h>

#include <utility>

#include "recmod/common/errors.h"
#include "recmod/cuda/tbe.h"

namespace recmod {

CudaLookupErrors::CudaLookupErrors(std::string lookup, std::string on_gpu)
    : lookup_(std::move(lookup)), on_gpu_(std::move(on_gpu)) {}

CudaErrorSlot& CudaLookupErrors::slot(const torch::Device& device) {
  std::lock_guard<std::mutex> lock(mutex_);
  CudaErrorSlot& slot = slots_[device.has_index() ? device.index() : 0];
  if (!slot.device.defined()) {
    slot.device = torch::full({3}, -1, torch::TensorOptions().dtype(torch::kLong).device(device));
    slot.host = torch::full({3}, -1, torch::TensorOptions().dtype(torch::kLong).pinned_memory(true));
  }
  return slot;
}

void CudaLookupErrors::throw_reported_bad_id(CudaErrorSlot& slot) const {
  const volatile int64_t* h = slot.host.data_ptr<int64_t>();
  if (h[0] < 0) return;
  const int64_t position = h[0], id = h[1], table = h[2] >> 32, key = h[2] & 0xffffffff;
  slot.device.fill_(-1);
  slot.host.fill_(-1);
  throw_input_error(lookup_, ": id ", id, " (input key ", key, ", position ", position, ") is out of range for table ",
                    table, " (reported by the CUDA lookup of an earlier batch; on the GPU ", on_gpu_,
                    " and is reported afterwards)");
}

void CudaLookupErrors::check(const torch::Device& device) {
  if (!device.is_cuda() || !cuda::tbe_available()) return;
  torch::cuda::synchronize(device.index());
  throw_reported_bad_id(slot(device));
}

}  // namespace recmod
