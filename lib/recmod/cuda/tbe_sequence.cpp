// The CPU-only build of the CUDA sequence lookup (see tbe_sequence.h and
// tbe.cpp): without CUDA the kernel is absent (tbe_available() is false, so
// callers never reach it). With RECMOD_CUDA_KERNELS it comes from
// tbe_sequence.cu instead.
#include "recmod/cuda/tbe_sequence.h"

#ifndef RECMOD_CUDA_KERNELS

#include "recmod/common/errors.h"

namespace recmod::cuda {

void tbe_sequence_forward(const TbeLaunch&, int64_t, float*) {
  throw UsageError("this build of recmod has no CUDA embedding kernels (built without CUDA)");
}

}  // namespace recmod::cuda

#endif
