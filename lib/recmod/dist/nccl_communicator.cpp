// Compiled only where lib/CMakeLists.txt's check found ProcessGroupNCCL
// (a CUDA libtorch with NCCL); elsewhere this file is empty.
#ifdef RECMOD_WITH_NCCL

#include "recmod/dist/nccl_communicator.h"

// ProcessGroupNCCL.hpp declares its class only under USE_C10D_NCCL (what
// PyTorch's own build defines); CMake defines it for this file only.
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL
#endif
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include "recmod/common/errors.h"
#include "recmod/dist/process_group_communicator.h"

namespace recmod::dist::detail {

std::shared_ptr<Communicator> nccl_communicator(const LaunchEnv& env, const CommunicatorOptions& options,
                                                c10::intrusive_ptr<c10d::Store> store) {
  const int64_t gpus = static_cast<int64_t>(c10::cuda::device_count());
  if (options.device_index < 0 || options.device_index >= gpus)
    throw UsageError(str_cat("--dist-backend nccl: rank ", env.rank, " needs cuda:", options.device_index, " but ",
                             gpus, " GPU(s) are visible; use --dist-backend gloo or fewer ranks per host"));
  const auto index = static_cast<c10::DeviceIndex>(options.device_index);
  c10::cuda::set_device(index);
  auto nccl = c10d::ProcessGroupNCCL::Options::create();
  nccl->timeout = options.timeout;
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> group;
  try {
    group = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, static_cast<int>(env.rank),
                                                        static_cast<int>(env.world_size), nccl);
  } catch (const std::exception& e) {
    throw DistributedError(str_cat("rank ", env.rank, ": the NCCL process group over ", env.master_addr, ":",
                                   env.master_port, " did not form: ", first_line(message_of(e))));
  }
  return std::make_shared<ProcessGroupCommunicator<c10d::ProcessGroupNCCL>>(
      env.rank, env.world_size, options.timeout, torch::Device(torch::kCUDA, index), store, group,
      /*barrier_by_all_reduce=*/true);
}

}  // namespace recmod::dist::detail

#endif  // RECMOD_WITH_NCCL
