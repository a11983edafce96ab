#pragma once
// The NCCL backend: compiled only in a build whose configure-time check
// found ProcessGroupNCCL usable (RECMOD_WITH_NCCL; lib/CMakeLists.txt).
// dist::connect is the entry point; this is its NCCL half.
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <memory>

#include "recmod/dist/communicator.h"

namespace recmod::dist::detail {

/// A ProcessGroupNCCL over `store` on GPU options.device_index (made the
/// current CUDA device first). UsageError when that GPU does not exist,
/// DistributedError when the group does not form.
std::shared_ptr<Communicator> nccl_communicator(const LaunchEnv& env, const CommunicatorOptions& options,
                                                c10::intrusive_ptr<c10d::Store> store);

}  // namespace recmod::dist::detail
