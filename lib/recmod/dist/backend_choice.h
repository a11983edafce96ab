#pragma once
// Which c10d backend a distributed run uses, and on which device each rank
// runs: the rules of `--dist-backend` and `--device` together, as a pure
// function (no CUDA call), so that they are tested without a GPU.
#include <cstdint>
#include <string>

namespace recmod::dist {

struct BackendRequest {
  /// --dist-backend as given: "" (the default), "gloo" or "nccl".
  std::string requested;
  /// --device: CUDA or not, and its index (-1 when none was given: "cuda").
  bool cuda = false;
  int device_index = -1;
  /// Whether the collectives run between several processes (WORLD_SIZE > 1).
  bool distributed = false;
  int64_t local_rank = 0;
  int64_t local_world_size = 1;
  /// CUDA devices this process sees (torch::cuda::device_count()).
  int64_t visible_gpus = 0;
  /// Whether this build has ProcessGroupNCCL (dist::nccl_built()).
  bool nccl_built = false;
};

struct BackendChoice {
  /// "gloo" or "nccl".
  std::string backend;
  /// The CUDA device of this rank; -1 on the CPU.
  int device_index = -1;
};

/// The default is nccl when the device is CUDA, the build has NCCL and every
/// local rank can have a GPU of its own (--device cuda, local ranks <=
/// visible GPUs); else gloo. A CUDA device without an index puts local rank r on GPU
/// r % visible_gpus (gloo: several ranks may share a GPU; nccl needs one GPU
/// per local rank). UsageError, one line saying what to change, for: an
/// unknown backend; nccl with a CPU device, or in a build without NCCL;
/// nccl with more local ranks than visible GPUs, or with one explicit GPU
/// index (cuda:N) for several local ranks.
BackendChoice choose_backend(const BackendRequest& request);

}  // namespace recmod::dist
