#pragma once
// How the CUDA kernels of a fused lookup report an out-of-range id: the GPU
// does not stop at a bad id (checking at once would stall it every step);
// the kernel records the first one in a per-device slot, which is copied
// after each lookup into pinned host memory that the next lookup reads.

#include <torch/types.h>

#include <map>
#include <mutex>
#include <string>

namespace recmod {

/// 3 int64s on the device (position, id, table << 32 | key; -1 when clear)
/// and their pinned host copy.
struct CudaErrorSlot {
  torch::Tensor device, host;
};

/// The error slots of one lookup path (the fused EmbeddingBagCollection's
/// pooled lookup, the fused EmbeddingCollection's sequence lookup): one slot
/// per device, so a bad id is raised by the next lookup of the same path on
/// that device, or by check(). Keep instances forever (never destroy them):
/// at exit libtorch's CUDA state may be gone before a destructor frees
/// pinned memory (PyTorch 2.11 then aborts with "Unrecognized stream" in
/// ~TensorImpl, seen on the GPU machine).
class CudaLookupErrors {
 public:
  /// `lookup` starts the message ("fused embedding lookup"); `on_gpu` says
  /// what the kernel made of the bad id ("a bad id contributes nothing").
  CudaLookupErrors(std::string lookup, std::string on_gpu);

  /// The slot of `device` (created, cleared, on first use).
  CudaErrorSlot& slot(const torch::Device& device);

  /// Throws InputError for the id `slot`'s host copy holds, clearing the
  /// slot first; returns when it holds none.
  void throw_reported_bad_id(CudaErrorSlot& slot) const;

  /// Synchronizes `device` and throws its reported bad id; a no-op unless
  /// `device` is CUDA and this build has recmod's CUDA kernels.
  void check(const torch::Device& device);

 private:
  std::string lookup_, on_gpu_;
  std::mutex mutex_;
  std::map<int, CudaErrorSlot> slots_;
};

}  // namespace recmod
