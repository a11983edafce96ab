// Device helpers shared by the table-batched embedding kernels: tbe.cu
// (pooled forward, backward and update) and tbe_sequence.cu (the unpooled
// lookup). Include it only from those .cu files: like the rest of each
// kernel file it sits in an unnamed namespace, so every kernel file keeps its
// own internal copy, inlined as before.
#pragma once

#include "recmod/cuda/tbe.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

// The CMake build compiles the kernels against a CUDA libtorch and defines
// RECMOD_TBE_TORCH_STREAM, so kernels run on libtorch's current stream.
#ifdef RECMOD_TBE_TORCH_STREAM
#include <c10/cuda/CUDAStream.h>
#endif

namespace recmod::cuda {
namespace {

cudaStream_t stream_of(const TbeLaunch& l) {
  if (l.stream != nullptr) return static_cast<cudaStream_t>(l.stream);
#ifdef RECMOD_TBE_TORCH_STREAM
  return c10::cuda::getCurrentCUDAStream().stream();
#else
  return nullptr;  // the legacy default stream: libtorch's unless a stream is set
#endif
}

/// VEC-wide load of columns [idx, idx + VEC) of a row, as float32, through
/// the read-only cache (for rows the kernel does not write).
template <int VEC>
__device__ __forceinline__ void load_row(const void* w, TbeDtype dt, int64_t idx, float* v) {
  if (dt == TbeDtype::f32) {
    const float* p = static_cast<const float*>(w) + idx;
    if constexpr (VEC == 4) {
      const float4 x = __ldg(reinterpret_cast<const float4*>(p));
      v[0] = x.x, v[1] = x.y, v[2] = x.z, v[3] = x.w;
    } else {
      v[0] = __ldg(p);
    }
  } else if (dt == TbeDtype::f16) {
    const __half* p = static_cast<const __half*>(w) + idx;
    if constexpr (VEC == 4) {
      const uint2 raw = __ldg(reinterpret_cast<const uint2*>(p));
      const float2 a = __half22float2(*reinterpret_cast<const __half2*>(&raw.x));
      const float2 b = __half22float2(*reinterpret_cast<const __half2*>(&raw.y));
      v[0] = a.x, v[1] = a.y, v[2] = b.x, v[3] = b.y;
    } else {
      v[0] = __half2float(p[0]);
    }
  } else {
    const __nv_bfloat16* p = static_cast<const __nv_bfloat16*>(w) + idx;
    if constexpr (VEC == 4) {
      const uint2 raw = __ldg(reinterpret_cast<const uint2*>(p));
      const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.x));
      const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.y));
      v[0] = a.x, v[1] = a.y, v[2] = b.x, v[3] = b.y;
    } else {
      v[0] = __bfloat162float(p[0]);
    }
  }
}

/// Records the first out-of-range id (position, id, table << 32 | key).
__device__ void report_bad_id(const TbeLaunch& l, int64_t p, int64_t id, const TbeSlot& slot) {
  auto* first = reinterpret_cast<unsigned long long*>(l.error);
  if (atomicCAS(first, static_cast<unsigned long long>(-1LL), static_cast<unsigned long long>(p)) ==
      static_cast<unsigned long long>(-1LL)) {
    l.error[1] = id;
    l.error[2] = (static_cast<int64_t>(slot.table) << 32) | static_cast<int64_t>(slot.key);
  }
}

/// The slot of contribution c: the last slot whose contrib_offset <= c
/// (empty slots share their successor's offset and are skipped).
__device__ __forceinline__ int slot_of(const TbeLaunch& l, int64_t c) {
  int lo = 0, hi = l.n_slots;  // first slot with contrib_offset > c
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (l.slots[mid].contrib_offset <= c)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo - 1;
}

}  // namespace
}  // namespace recmod::cuda
