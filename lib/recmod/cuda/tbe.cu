// The CUDA table-batched embedding kernels (see tbe.h).
//
// Work mapping: a "group" of G threads (G a power of two <= 32, so groups
// never straddle a warp) handles one bag (forward) or one touched row
// (update); each thread owns columns lane*VEC + j*G*VEC. With VEC = 4 a
// thread moves 16 bytes of a float32 row (8 of a half/bfloat16 row) per
// load, so a warp reads whole rows in few transactions.
//
// Determinism: the backward never uses atomics on rows. Contributions are
// sorted stably by (table, row), and the group at the start of each run
// of equal keys sums that row's gradient in contribution order, then
// applies the optimizer once: the result is independent of scheduling.
#include "recmod/cuda/tbe.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <stdexcept>
#include <string>

// The CMake build compiles this file against a CUDA libtorch and defines
// RECMOD_TBE_TORCH_STREAM, so kernels run on libtorch's current stream.
#ifdef RECMOD_TBE_TORCH_STREAM
#include <c10/cuda/CUDAStream.h>
#endif

namespace recmod::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kMaxChunks = 8;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("recmod: CUDA embedding kernel ") + what + " failed: " + cudaGetErrorString(e));
}

cudaStream_t stream_of(const TbeLaunch& l) {
  if (l.stream != nullptr) return static_cast<cudaStream_t>(l.stream);
#ifdef RECMOD_TBE_TORCH_STREAM
  return c10::cuda::getCurrentCUDAStream().stream();
#else
  return nullptr;  // the legacy default stream: libtorch's unless a stream is set
#endif
}

int unit_of(const TbeLaunch& l) { return l.vec4 ? 4 : 1; }

/// Threads per bag/row: enough for one pass over the widest row, at most a warp.
int group_size(const TbeLaunch& l) {
  const int need = (l.max_dim + unit_of(l) - 1) / unit_of(l);
  int g = 1;
  while (g < need && g < 32) g <<= 1;
  return g;
}

int chunks_of(const TbeLaunch& l, int group) {
  const int per_pass = group * unit_of(l);
  return (l.max_dim + per_pass - 1) / per_pass;
}

unsigned blocks_for(int64_t groups, int group) {
  const int64_t threads = groups * group;
  return static_cast<unsigned>((threads + kBlock - 1) / kBlock);
}

// ---------------------------------------------------------------------------
// Row access

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

/// Plain loads for rows this kernel also writes (no read-only cache).
template <int VEC>
__device__ __forceinline__ void load_row_rw(const void* w, TbeDtype dt, int64_t idx, float* v) {
  if (dt == TbeDtype::f32) {
    const float* p = static_cast<const float*>(w) + idx;
    for (int k = 0; k < VEC; ++k) v[k] = p[k];
  } else if (dt == TbeDtype::f16) {
    const __half* p = static_cast<const __half*>(w) + idx;
    for (int k = 0; k < VEC; ++k) v[k] = __half2float(p[k]);
  } else {
    const __nv_bfloat16* p = static_cast<const __nv_bfloat16*>(w) + idx;
    for (int k = 0; k < VEC; ++k) v[k] = __bfloat162float(p[k]);
  }
}

/// Rounds to the storage type as the CPU path does (round to nearest even).
template <int VEC>
__device__ __forceinline__ void store_row(void* w, TbeDtype dt, int64_t idx, const float* v) {
  if (dt == TbeDtype::f32) {
    float* p = static_cast<float*>(w) + idx;
    if constexpr (VEC == 4) {
      *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
    } else {
      p[0] = v[0];
    }
  } else if (dt == TbeDtype::f16) {
    __half* p = static_cast<__half*>(w) + idx;
    for (int k = 0; k < VEC; ++k) p[k] = __float2half_rn(v[k]);
  } else {
    __nv_bfloat16* p = static_cast<__nv_bfloat16*>(w) + idx;
    for (int k = 0; k < VEC; ++k) p[k] = __float2bfloat16_rn(v[k]);
  }
}

template <typename index_t>
__device__ __forceinline__ int64_t id_at(const TbeLaunch& l, int64_t p) {
  return static_cast<int64_t>(static_cast<const index_t*>(l.ids)[p]);
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

/// The sample of position p of key k: offsets[k*B + b] <= p < offsets[k*B + b + 1].
__device__ __forceinline__ int64_t sample_of(const TbeLaunch& l, int32_t key, int64_t p) {
  const int64_t* o = l.offsets + static_cast<int64_t>(key) * l.batch;
  int64_t lo = 0, hi = l.batch;  // first b with o[b + 1] > p
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (o[mid + 1] <= p)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

// ---------------------------------------------------------------------------
// Forward: one group per (slot, sample) bag.

template <typename index_t, int VEC>
__global__ void forward_kernel(const TbeLaunch l, float* __restrict__ out, int group) {
  const int64_t g = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / group;
  const int lane = static_cast<int>(threadIdx.x % group);
  if (g >= static_cast<int64_t>(l.n_slots) * l.batch) return;
  const int s = static_cast<int>(g / l.batch);
  const int64_t b = g % l.batch;
  const TbeSlot slot = l.slots[s];
  const TbeTable t = l.tables[slot.table];
  const int64_t bag = static_cast<int64_t>(slot.key) * l.batch + b;
  const int64_t start = l.offsets[bag], end = l.offsets[bag + 1];
  float* o = out + b * l.out_dim + slot.column;
  constexpr int kUnroll = 4;
  for (int c = lane * VEC; c < t.dim; c += group * VEC) {
    float acc[VEC];
    for (int k = 0; k < VEC; ++k) acc[k] = 0.f;
    int64_t p = start;
    // Four rows in flight per thread: their loads do not wait on each other.
    for (; p + kUnroll <= end; p += kUnroll) {
      float v[kUnroll][VEC];
      float wgt[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t id = id_at<index_t>(l, p + u);
        const bool ok = id >= 0 && id < t.rows;
        wgt[u] = ok ? (l.per_sample_weights != nullptr ? l.per_sample_weights[p + u] : 1.f) : 0.f;
        if (ok) {
          load_row<VEC>(t.weights, t.dtype, id * t.dim + c, v[u]);
        } else {
          for (int k = 0; k < VEC; ++k) v[u][k] = 0.f;
          if (lane == 0 && c == 0) report_bad_id(l, p + u, id, slot);
        }
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
        for (int k = 0; k < VEC; ++k) acc[k] += wgt[u] * v[u][k];
    }
    for (; p < end; ++p) {
      int64_t id = id_at<index_t>(l, p);
      const bool ok = id >= 0 && id < t.rows;
      if (!ok) {
        if (lane == 0 && c == 0) report_bad_id(l, p, id, slot);
        continue;
      }
      const float wgt = l.per_sample_weights != nullptr ? l.per_sample_weights[p] : 1.f;
      float v[VEC];
      load_row<VEC>(t.weights, t.dtype, id * t.dim + c, v);
      for (int k = 0; k < VEC; ++k) acc[k] += wgt * v[k];
    }
    if (t.mean && end > start) {
      const float inv = 1.f / static_cast<float>(end - start);
      for (int k = 0; k < VEC; ++k) acc[k] *= inv;
    }
    if constexpr (VEC == 4) {
      *reinterpret_cast<float4*>(o + c) = make_float4(acc[0], acc[1], acc[2], acc[3]);
    } else {
      o[c] = acc[0];
    }
  }
}

// ---------------------------------------------------------------------------
// Backward

template <typename index_t>
__global__ void keys_kernel(const TbeLaunch l, int64_t contributions, int64_t* __restrict__ keys) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= contributions) return;
  const TbeSlot& slot = l.slots[slot_of(l, c)];
  const TbeTable& t = l.tables[slot.table];
  const int64_t id = id_at<index_t>(l, slot.id_begin + (c - slot.contrib_offset));
  keys[c] = id >= 0 && id < t.rows ? t.row_base + id : LLONG_MAX;
}

/// Sums x over the G lanes of each group (every lane of the warp calls it).
template <typename T>
__device__ __forceinline__ T group_sum(T x, int group) {
  for (int off = group / 2; off > 0; off /= 2) x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}

template <typename index_t, int VEC>
__global__ void weights_grad_kernel(const TbeLaunch l, int64_t contributions, const float* __restrict__ grad_out,
                                    float* __restrict__ weights_grad, int group) {
  const int64_t c = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / group;
  const int lane = static_cast<int>(threadIdx.x % group);
  float dot = 0.f;
  int64_t p = -1;
  if (c < contributions) {
    const TbeSlot& slot = l.slots[slot_of(l, c)];
    const TbeTable& t = l.tables[slot.table];
    p = slot.id_begin + (c - slot.contrib_offset);
    const int64_t id = id_at<index_t>(l, p);
    if (id >= 0 && id < t.rows) {
      const float* go = grad_out + sample_of(l, slot.key, p) * l.out_dim + slot.column;
      for (int col = lane * VEC; col < t.dim; col += group * VEC) {
        float v[VEC];
        load_row<VEC>(t.weights, t.dtype, id * t.dim + col, v);
        for (int k = 0; k < VEC; ++k) dot += v[k] * go[col + k];
      }
    }
  }
  dot = group_sum(dot, group);  // outside any branch: every lane of the warp takes part
  if (lane == 0 && p >= 0) atomicAdd(weights_grad + p, dot);
}

template <typename index_t, int VEC, int CH>
__global__ void update_kernel(const TbeLaunch l, int64_t contributions, const int64_t* __restrict__ keys,
                              const int64_t* __restrict__ order, const float* __restrict__ grad_out,
                              const TbeUpdate u, int group) {
  const int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / group;
  const int lane = static_cast<int>(threadIdx.x % group);
  // Only the first position of each run of equal keys works; every lane of
  // the warp still reaches the shuffles below (no early return).
  bool active = i < contributions;
  const int64_t key = active ? keys[i] : LLONG_MAX;
  if (active && (key == LLONG_MAX || (i > 0 && keys[i - 1] == key))) active = false;

  float g[CH][VEC];
  float w[CH][VEC];
  for (int ch = 0; ch < CH; ++ch)
    for (int k = 0; k < VEC; ++k) g[ch][k] = 0.f, w[ch][k] = 0.f;
  TbeTable t{};
  int64_t row = 0;
  if (active) {
    t = l.tables[l.slots[slot_of(l, order[i])].table];
    row = key - t.row_base;
    for (int64_t j = i; j < contributions && keys[j] == key; ++j) {
      const int64_t c = order[j];
      const TbeSlot& slot = l.slots[slot_of(l, c)];
      const int64_t p = slot.id_begin + (c - slot.contrib_offset);
      const int64_t b = sample_of(l, slot.key, p);
      float scale = 1.f;
      if (l.per_sample_weights != nullptr) {
        scale = l.per_sample_weights[p];
      } else if (t.mean) {
        const int64_t bag = static_cast<int64_t>(slot.key) * l.batch + b;
        scale = 1.f / static_cast<float>(l.offsets[bag + 1] - l.offsets[bag]);
      }
      const float* go = grad_out + b * l.out_dim + slot.column;
#pragma unroll
      for (int ch = 0; ch < CH; ++ch) {
        const int col = (lane + group * ch) * VEC;
        if (col >= t.dim) break;
        for (int k = 0; k < VEC; ++k) g[ch][k] += scale * go[col + k];
      }
    }
    // g' = g + weight_decay * w
#pragma unroll
    for (int ch = 0; ch < CH; ++ch) {
      const int col = (lane + group * ch) * VEC;
      if (col >= t.dim) break;
      load_row_rw<VEC>(t.weights, t.dtype, row * t.dim + col, w[ch]);
      for (int k = 0; k < VEC; ++k) g[ch][k] += u.weight_decay * w[ch][k];
    }
  }

  if (u.rule == TbeRule::rowwise_adagrad) {
    // s += mean(g'^2) over the row (squares summed in double, as on the CPU);
    // lane 0 alone reads and writes the row's state and broadcasts the step.
    double sq = 0;
    for (int ch = 0; ch < CH; ++ch)
      for (int k = 0; k < VEC; ++k) sq += static_cast<double>(g[ch][k]) * g[ch][k];
    sq = group_sum(sq, group);
    float multiplier = 0.f;
    if (active && lane == 0) {
      const float s = t.state[row] + static_cast<float>(sq / static_cast<double>(t.dim));
      t.state[row] = s;
      multiplier = u.lr / (sqrtf(s) + u.eps);
    }
    const int leader = static_cast<int>(threadIdx.x % 32) & ~(group - 1);
    multiplier = __shfl_sync(0xffffffffu, multiplier, leader);
    if (!active) return;
#pragma unroll
    for (int ch = 0; ch < CH; ++ch) {
      const int col = (lane + group * ch) * VEC;
      if (col >= t.dim) break;
      for (int k = 0; k < VEC; ++k) w[ch][k] = w[ch][k] - multiplier * g[ch][k];
      store_row<VEC>(t.weights, t.dtype, row * t.dim + col, w[ch]);
    }
    return;
  }
  if (!active) return;
#pragma unroll
  for (int ch = 0; ch < CH; ++ch) {
    const int col = (lane + group * ch) * VEC;
    if (col >= t.dim) break;
    if (u.rule == TbeRule::sgd) {
      for (int k = 0; k < VEC; ++k) w[ch][k] = w[ch][k] - u.lr * g[ch][k];
    } else {  // adagrad
      float* s = t.state + row * t.dim + col;
      for (int k = 0; k < VEC; ++k) {
        s[k] += g[ch][k] * g[ch][k];
        w[ch][k] = w[ch][k] - u.lr * g[ch][k] / (sqrtf(s[k]) + u.eps);
      }
    }
    store_row<VEC>(t.weights, t.dtype, row * t.dim + col, w[ch]);
  }
}

template <typename index_t, int VEC>
void launch_update(const TbeLaunch& l, int64_t contributions, const int64_t* keys, const int64_t* order,
                   const float* grad_out, const TbeUpdate& u, int group, int chunks, cudaStream_t stream) {
  const unsigned blocks = blocks_for(contributions, group);
  switch (chunks) {
    case 1:
      update_kernel<index_t, VEC, 1><<<blocks, kBlock, 0, stream>>>(l, contributions, keys, order, grad_out, u, group);
      break;
    case 2:
      update_kernel<index_t, VEC, 2><<<blocks, kBlock, 0, stream>>>(l, contributions, keys, order, grad_out, u, group);
      break;
    case 3:
    case 4:
      update_kernel<index_t, VEC, 4><<<blocks, kBlock, 0, stream>>>(l, contributions, keys, order, grad_out, u, group);
      break;
    default:
      update_kernel<index_t, VEC, kMaxChunks>
          <<<blocks, kBlock, 0, stream>>>(l, contributions, keys, order, grad_out, u, group);
      break;
  }
}

}  // namespace

bool tbe_available() { return true; }

int tbe_max_dim(bool vec4) { return 32 * kMaxChunks * (vec4 ? 4 : 1); }

void tbe_forward(const TbeLaunch& l, float* out) {
  const int64_t bags = static_cast<int64_t>(l.n_slots) * l.batch;
  if (bags == 0) return;
  const int group = group_size(l);
  const cudaStream_t stream = stream_of(l);
  const unsigned blocks = blocks_for(bags, group);
  if (l.vec4) {
    if (l.ids_int32)
      forward_kernel<int32_t, 4><<<blocks, kBlock, 0, stream>>>(l, out, group);
    else
      forward_kernel<int64_t, 4><<<blocks, kBlock, 0, stream>>>(l, out, group);
  } else {
    if (l.ids_int32)
      forward_kernel<int32_t, 1><<<blocks, kBlock, 0, stream>>>(l, out, group);
    else
      forward_kernel<int64_t, 1><<<blocks, kBlock, 0, stream>>>(l, out, group);
  }
  check(cudaGetLastError(), "forward");
}

void tbe_backward_keys(const TbeLaunch& l, int64_t contributions, int64_t* keys) {
  if (contributions == 0) return;
  const cudaStream_t stream = stream_of(l);
  const unsigned blocks = blocks_for(contributions, 1);
  if (l.ids_int32)
    keys_kernel<int32_t><<<blocks, kBlock, 0, stream>>>(l, contributions, keys);
  else
    keys_kernel<int64_t><<<blocks, kBlock, 0, stream>>>(l, contributions, keys);
  check(cudaGetLastError(), "backward keys");
}

void tbe_weights_grad(const TbeLaunch& l, int64_t contributions, const float* grad_out, float* weights_grad) {
  if (contributions == 0) return;
  const int group = group_size(l);
  const cudaStream_t stream = stream_of(l);
  const unsigned blocks = blocks_for(contributions, group);
  if (l.vec4) {
    if (l.ids_int32)
      weights_grad_kernel<int32_t, 4><<<blocks, kBlock, 0, stream>>>(l, contributions, grad_out, weights_grad, group);
    else
      weights_grad_kernel<int64_t, 4><<<blocks, kBlock, 0, stream>>>(l, contributions, grad_out, weights_grad, group);
  } else {
    if (l.ids_int32)
      weights_grad_kernel<int32_t, 1><<<blocks, kBlock, 0, stream>>>(l, contributions, grad_out, weights_grad, group);
    else
      weights_grad_kernel<int64_t, 1><<<blocks, kBlock, 0, stream>>>(l, contributions, grad_out, weights_grad, group);
  }
  check(cudaGetLastError(), "per-sample weight gradient");
}

void tbe_backward_update(const TbeLaunch& l, int64_t contributions, const int64_t* sorted_keys, const int64_t* order,
                         const float* grad_out, const TbeUpdate& update) {
  if (contributions == 0) return;
  const int group = group_size(l);
  const int chunks = chunks_of(l, group);
  if (chunks > kMaxChunks) throw std::runtime_error("recmod: CUDA embedding update: rows wider than tbe_max_dim");
  const cudaStream_t stream = stream_of(l);
  if (l.vec4) {
    if (l.ids_int32)
      launch_update<int32_t, 4>(l, contributions, sorted_keys, order, grad_out, update, group, chunks, stream);
    else
      launch_update<int64_t, 4>(l, contributions, sorted_keys, order, grad_out, update, group, chunks, stream);
  } else {
    if (l.ids_int32)
      launch_update<int32_t, 1>(l, contributions, sorted_keys, order, grad_out, update, group, chunks, stream);
    else
      launch_update<int64_t, 1>(l, contributions, sorted_keys, order, grad_out, update, group, chunks, stream);
  }
  check(cudaGetLastError(), "backward update");
}

}  // namespace recmod::cuda
