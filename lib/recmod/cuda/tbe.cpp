// The CPU-only build of the CUDA embedding kernels' interface: without
// CUDA (Debian's libtorch) the kernels are absent, tbe_available() says so,
// and callers keep their tensor-op path. With RECMOD_CUDA_KERNELS the
// definitions come from tbe.cu instead.
#include "recmod/cuda/tbe.h"

#ifndef RECMOD_CUDA_KERNELS

#include "recmod/common/errors.h"

namespace recmod::cuda {
namespace {
[[noreturn]] void unavailable() {
  throw UsageError("this build of recmod has no CUDA embedding kernels (built without CUDA)");
}
}  // namespace

bool tbe_available() { return false; }
int tbe_max_dim(bool) { return 0; }
void tbe_forward(const TbeLaunch&, float*) { unavailable(); }
void tbe_backward_keys(const TbeLaunch&, int64_t, int64_t*) { unavailable(); }
void tbe_weights_grad(const TbeLaunch&, int64_t, const float*, float*) { unavailable(); }
void tbe_backward_update(const TbeLaunch&, int64_t, const int64_t*, const int64_t*, const float*, const TbeUpdate&) {
  unavailable();
}

}  // namespace recmod::cuda

#endif
