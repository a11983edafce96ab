// The CUDA sequence (unpooled) lookup (see tbe_sequence.h).
//
// Work mapping as in tbe.cu: a group of G threads (a power of two <= 32,
// so groups never straddle a warp) copies one id's row; each thread owns
// columns lane*VEC + j*G*VEC, and with VEC = 4 moves 16 bytes of a float32
// row (8 of a half / bfloat16 row) per load and 16 bytes of output per store.
#include "recmod/cuda/tbe_sequence.h"
#include "recmod/cuda/tbe_kernel_common.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace recmod::cuda {
namespace {

constexpr int kBlock = 256;

template <typename index_t, int VEC>
__global__ void sequence_forward_kernel(const TbeLaunch l, int64_t contributions, float* __restrict__ out, int group) {
  const int64_t c = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / group;
  const int lane = static_cast<int>(threadIdx.x % group);
  if (c >= contributions) return;  // no shuffles below: an early return is safe
  const int s = slot_of(l, c);
  if (s < 0) return;  // cannot happen when slot 0 starts at contribution 0
  const TbeSlot slot = l.slots[s];
  const TbeTable t = l.tables[slot.table];
  const int64_t p = slot.id_begin + (c - slot.contrib_offset);
  const int64_t id = static_cast<int64_t>(static_cast<const index_t*>(l.ids)[p]);
  const bool ok = id >= 0 && id < t.rows;
  if (!ok && lane == 0) report_bad_id(l, p, id, slot);
  float* o = out + c * l.out_dim;
  for (int col = lane * VEC; col < t.dim; col += group * VEC) {
    float v[VEC];
    if (ok) {
      load_row<VEC>(t.weights, t.dtype, id * t.dim + col, v);
    } else {
      for (int k = 0; k < VEC; ++k) v[k] = 0.f;
    }
    if constexpr (VEC == 4) {
      *reinterpret_cast<float4*>(o + col) = make_float4(v[0], v[1], v[2], v[3]);
    } else {
      o[col] = v[0];
    }
  }
}

template <int VEC>
void launch_forward(const TbeLaunch& l, int64_t contributions, float* out, int group, cudaStream_t stream) {
  const int64_t threads = contributions * group;
  const auto blocks = static_cast<unsigned>((threads + kBlock - 1) / kBlock);
  if (l.ids_int32)
    sequence_forward_kernel<int32_t, VEC><<<blocks, kBlock, 0, stream>>>(l, contributions, out, group);
  else
    sequence_forward_kernel<int64_t, VEC><<<blocks, kBlock, 0, stream>>>(l, contributions, out, group);
}

}  // namespace

void tbe_sequence_forward(const TbeLaunch& l, int64_t contributions, float* out) {
  if (contributions <= 0 || l.n_slots <= 0) return;
  const int unit = l.vec4 ? 4 : 1;
  const int need = (l.max_dim + unit - 1) / unit;
  int group = 1;
  while (group < need && group < 32) group <<= 1;
  const cudaStream_t stream = stream_of(l);
  if (l.vec4)
    launch_forward<4>(l, contributions, out, group, stream);
  else
    launch_forward<1>(l, contributions, out, group, stream);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("recmod: CUDA sequence embedding lookup failed: ") + cudaGetErrorString(e));
}

}  // namespace recmod::cuda
