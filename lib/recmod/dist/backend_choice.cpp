#include "recmod/dist/backend_choice.h"

#include "recmod/common/errors.h"

namespace recmod::dist {

BackendChoice choose_backend(const BackendRequest& r) {
  BackendChoice choice;
  if (r.requested.empty()) {
    // NCCL where it can run: a GPU of its own for every local rank.
    const bool own_gpus = !r.distributed || r.local_world_size <= 1 ||
                          (r.device_index < 0 && r.local_world_size <= r.visible_gpus);
    choice.backend = r.cuda && r.nccl_built && own_gpus ? "nccl" : "gloo";
  } else if (r.requested == "gloo" || r.requested == "nccl") {
    choice.backend = r.requested;
  } else {
    throw UsageError(str_cat("--dist-backend ", r.requested, ": unknown backend; valid: gloo, nccl"));
  }
  if (choice.backend == "nccl") {
    if (!r.cuda)
      throw UsageError("--dist-backend nccl needs a CUDA device (--device cuda); on the CPU use --dist-backend gloo");
    if (!r.nccl_built)
      throw UsageError("--dist-backend nccl: this build of recmod has no NCCL (it needs a CUDA libtorch with NCCL); "
                       "use --dist-backend gloo");
  }
  if (!r.cuda) return choice;
  if (r.device_index >= 0) {
    if (choice.backend == "nccl" && r.distributed && r.local_world_size > 1)
      throw UsageError(str_cat("--dist-backend nccl: ", r.local_world_size, " local ranks cannot all run on cuda:",
                               r.device_index, " (NCCL needs one GPU per rank); give --device cuda to put local rank r "
                               "on cuda:r, or use --dist-backend gloo"));
    choice.device_index = r.device_index;
    return choice;
  }
  if (r.visible_gpus <= 0) {
    choice.device_index = 0;  // the CUDA runtime reports the missing device
    return choice;
  }
  if (choice.backend == "nccl" && r.distributed && r.local_world_size > r.visible_gpus)
    throw UsageError(str_cat("--dist-backend nccl: ", r.local_world_size, " local ranks but ", r.visible_gpus,
                             " visible GPU(s); NCCL needs one GPU per rank: start at most ", r.visible_gpus,
                             " ranks on this host, or use --dist-backend gloo (ranks may share a GPU)"));
  choice.device_index = r.distributed ? static_cast<int>(r.local_rank % r.visible_gpus) : 0;
  return choice;
}

}  // namespace recmod::dist
