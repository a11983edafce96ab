// The CPU-only build of the CUDA embedding kernels' interface: without
// CUDA (Debian's libtorch) the kernels are absent, tbe_available() says so,
// and callers keep their tensor-op path. With RECMOD_CUDA_KERNELS the
// definitions come from tbe.cu instead. The forward variant's setting is
// here in both builds.
#include "recmod/cuda/tbe.h"

#include <atomic>
#include <cstdlib>
#include <string>

#include "recmod/common/errors.h"

namespace recmod::cuda {

namespace {

TbeForward variant_from_environment() {
  const char* env = std::getenv("RECMOD_TBE_FORWARD");
  if (env == nullptr || *env == '\0') return TbeForward::baseline;
  const std::string v = env;
  for (auto f : {TbeForward::baseline, TbeForward::unrolled, TbeForward::split})
    if (v == tbe_forward_variant_name(f)) return f;
  throw UsageError("RECMOD_TBE_FORWARD=" + v + ": expected one of baseline, unrolled, split");
}

std::atomic<int> forward_override{-1};

}  // namespace

TbeForward tbe_forward_variant() {
  const int set = forward_override.load(std::memory_order_relaxed);
  if (set >= 0) return static_cast<TbeForward>(set);
  static const TbeForward from_env = variant_from_environment();
  return from_env;
}

void tbe_set_forward_variant(TbeForward variant) {
  forward_override.store(static_cast<int>(variant), std::memory_order_relaxed);
}

const char* tbe_forward_variant_name(TbeForward variant) {
  switch (variant) {
    case TbeForward::baseline:
      return "baseline";
    case TbeForward::unrolled:
      return "unrolled";
    case TbeForward::split:
      return "split";
  }
  return "unknown";
}

}  // namespace recmod::cuda

#ifndef RECMOD_CUDA_KERNELS

namespace recmod::cuda {
namespace {
[[noreturn]] void no_tbe_kernels() {
  throw UsageError("this build of recmod has no CUDA embedding kernels (built without CUDA)");
}
}  // namespace

bool tbe_available() { return false; }
int tbe_max_dim(bool) { return 0; }
void tbe_forward(const TbeLaunch&, float*) { no_tbe_kernels(); }
void tbe_backward_keys(const TbeLaunch&, int64_t, int64_t*) { no_tbe_kernels(); }
void tbe_weights_grad(const TbeLaunch&, int64_t, const float*, float*) { no_tbe_kernels(); }
void tbe_backward_update(const TbeLaunch&, int64_t, const int64_t*, const int64_t*, const float*, const TbeUpdate&) {
  no_tbe_kernels();
}

}  // namespace recmod::cuda

#endif
