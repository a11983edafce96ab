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
#include "recmod/cuda/tbe_kernel_common.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <climits>
#include <stdexcept>
#include <string>

namespace recmod::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kMaxChunks = 8;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("recmod: CUDA embedding kernel ") + what + " failed: " + cudaGetErrorString(e));
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
// Row access (load_row, stream_of, slot_of and report_bad_id: tbe_kernel_common.cuh)

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

// ---------------------------------------------------------------------------
// Stochastic rounding: optim/stochastic_rounding.h's bits and rules, on the
// device (that header is host code over c10's types). The CPU kernel's
// results are the reference: tests/cuda/tbe_test.cpp compares them bit for bit.

/// splitmix64's finalizer (detail::mix64).
__host__ __device__ __forceinline__ uint64_t sr_mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/// round_stochastic<c10::BFloat16>, as bits; the top gap, infinities and NaN
/// round to nearest as c10::BFloat16(float) does (NaN: 0x7fc0).
__device__ __forceinline__ uint16_t bf16_stochastic_bits(float x, uint32_t random) {
  const uint32_t b = __float_as_uint(x);
  const uint32_t magnitude = b & 0x7fffffffu;
  if (magnitude >= 0x7f7f0000u) {
    if (magnitude > 0x7f800000u) return 0x7fc0u;
    return static_cast<uint16_t>((b + (((b >> 16) & 1u) + 0x7fffu)) >> 16);
  }
  return static_cast<uint16_t>((b + random) >> 16);
}

/// round_stochastic<c10::Half>; |x| >= 65504, infinities and NaN round to
/// nearest as c10::Half(float) does (NaN: sign | 0x7e00).
__device__ __forceinline__ __half half_stochastic(float x, uint32_t random) {
  const uint32_t b = __float_as_uint(x);
  const uint32_t magnitude = b & 0x7fffffffu;
  if (magnitude >= 0x477fe000u) {
    if (magnitude > 0x7f800000u) return __ushort_as_half(static_cast<unsigned short>(((b >> 16) & 0x8000u) | 0x7e00u));
    return __float2half_rn(x);
  }
  if (magnitude >= 0x38800000u)  // a normal half keeps 10 of the 23 bits: exact
    return __float2half_rn(__uint_as_float((b + (random >> 3)) & ~0x1fffu));
  // Subnormal halves: multiples of 2^-24 (every operation below is exact).
  const float q = __fmul_rn(fabsf(x), 16777216.0f);
  const float whole = floorf(q);
  const auto share = static_cast<uint32_t>(__fmul_rn(__fsub_rn(q, whole), 65536.0f));
  const float up = __fadd_rn(whole, random < share ? 1.0f : 0.0f);
  return __float2half_rn(copysignf(__fmul_rn(up, 1.0f / 16777216.0f), x));
}

/// Stores VEC values of one row of a 16-bit table rounded stochastically:
/// v[k] is global column `column` + k of the row whose stream is
/// `row_stream`; column c takes the 16-bit lane c % 4 of mix64(row_stream ^ c / 4).
template <int VEC>
__device__ __forceinline__ void store_row_stochastic(void* w, TbeDtype dt, int64_t idx, const float* v,
                                                     uint64_t row_stream, uint64_t column) {
  uint64_t bits = sr_mix64(row_stream ^ (column / 4));
#pragma unroll
  for (int k = 0; k < VEC; ++k) {
    const uint64_t c = column + static_cast<uint64_t>(k);
    if (k > 0 && c % 4 == 0) bits = sr_mix64(row_stream ^ (c / 4));
    const uint32_t random = static_cast<uint16_t>(bits >> (16 * (c % 4)));
    if (dt == TbeDtype::f16)
      static_cast<__half*>(w)[idx + k] = half_stochastic(v[k], random);
    else
      static_cast<__nv_bfloat16*>(w)[idx + k] = __ushort_as_bfloat16(bf16_stochastic_bits(v[k], random));
  }
}

/// row-wise Adagrad's sum of squares in the CPU kernel's order
/// (apply_row_update: column j into partial sum j % 8, in column order; the
/// 8 partials added as a fixed tree). Every lane of the warp calls it (group,
/// CH and VEC are the launch's); each lane returns its group's sum.
template <int VEC, int CH>
__device__ __forceinline__ double sum_squares_in_cpu_order(const float (&g)[CH][VEC], int dim, int group) {
  double part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#pragma unroll
  for (int ch = 0; ch < CH; ++ch)
    for (int m = 0; m < group; ++m)
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        const double x = static_cast<double>(g[ch][k]);
        const double sq = __shfl_sync(0xffffffffu, __dmul_rn(x, x), m, group);
        const int col = (m + group * ch) * VEC + k;
        if (col < dim) part[col % 8] = __dadd_rn(part[col % 8], sq);
      }
  return __dadd_rn(__dadd_rn(__dadd_rn(part[0], part[1]), __dadd_rn(part[2], part[3])),
                   __dadd_rn(__dadd_rn(part[4], part[5]), __dadd_rn(part[6], part[7])));
}

template <typename index_t>
__device__ __forceinline__ int64_t id_at(const TbeLaunch& l, int64_t p) {
  return static_cast<int64_t>(static_cast<const index_t*>(l.ids)[p]);
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

/// The bag ids [lo, hi) of one slot pooled into acc (columns c .. c + VEC
/// of the table), U rows in flight: the U ids are read, their U row loads
/// issued, then the rows added in id order, each product and sum rounded on
/// its own as the CPU kernel does (w * x, then +; no fused multiply-add).
/// Out-of-range ids contribute nothing (reported when `report`).
template <typename index_t, int VEC, int U>
__device__ __forceinline__ void pool_ids(const TbeLaunch& l, const TbeTable& t, const TbeSlot& slot, int64_t lo,
                                         int64_t hi, int c, bool report, float (&acc)[VEC]) {
  for (int64_t p = lo; p < hi; p += U) {
    const int64_t n = hi - p < U ? hi - p : U;
    int64_t id[U];
    float wgt[U];
    float v[U][VEC];
#pragma unroll
    for (int u = 0; u < U; ++u) id[u] = u < n ? id_at<index_t>(l, p + u) : 0;
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const bool ok = u < n && id[u] >= 0 && id[u] < t.rows;
      wgt[u] = ok ? (l.per_sample_weights != nullptr ? l.per_sample_weights[p + u] : 1.f) : 0.f;
      if (ok) {
        load_row<VEC>(t.weights, t.dtype, id[u] * t.dim + c, v[u]);
      } else {
        for (int k = 0; k < VEC; ++k) v[u][k] = 0.f;
        if (u < n && report) report_bad_id(l, p + u, id[u], slot);
      }
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (u >= n) break;
      if (l.per_sample_weights != nullptr) {
        for (int k = 0; k < VEC; ++k) acc[k] = __fadd_rn(acc[k], __fmul_rn(wgt[u], v[u][k]));
      } else if (wgt[u] != 0.f) {  // the CPU kernel skips a bad id (and then throws)
        for (int k = 0; k < VEC; ++k) acc[k] = __fadd_rn(acc[k], v[u][k]);
      }
    }
  }
}

/// The unrolled and split forward: a team of group * split lanes (a power
/// of two <= 32, inside one warp) per (slot, sample) bag. Sub-group s of
/// the team pools the s-th of `split` contiguous parts of the bag's ids
/// (pool_ids, kRows rows in flight); the parts' sums are added by a fixed
/// butterfly over the team (deterministic), so with split == 1 the sum is
/// the CPU kernel's, operation for operation. MEAN divides by the length.
constexpr int kRows = 8;

// At most 85 registers (3 blocks of kBlock threads an SM): 8 rows of 4
// floats in flight per thread with more threads resident than without.
template <typename index_t, int VEC>
__global__ void __launch_bounds__(kBlock, 3)
    forward_team_kernel(const TbeLaunch l, float* __restrict__ out, int group, int split) {
  const int team = group * split;
  const int64_t g = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / team;
  if (g >= static_cast<int64_t>(l.n_slots) * l.batch) return;  // the whole team leaves
  const int in_team = static_cast<int>(threadIdx.x % team);
  const int sub = in_team / group;
  const int lane = in_team % group;
  const int s = static_cast<int>(g / l.batch);
  const int64_t b = g % l.batch;
  const TbeSlot slot = l.slots[s];
  const TbeTable t = l.tables[slot.table];
  const int64_t bag = static_cast<int64_t>(slot.key) * l.batch + b;
  const int64_t start = l.offsets[bag], end = l.offsets[bag + 1];
  const int64_t per = (end - start + split - 1) / split;
  const int64_t lo = start + sub * per < end ? start + sub * per : end;
  const int64_t hi = lo + per < end ? lo + per : end;
  // The team's lanes: `team` consecutive lanes of the warp, aligned.
  const unsigned mask =
      team == 32 ? 0xffffffffu : ((1u << team) - 1u) << ((threadIdx.x % 32) & ~static_cast<unsigned>(team - 1));
  float* o = out + b * l.out_dim + slot.column;
  // The same number of passes on every lane of the team (one table), so
  // that all of them reach the shuffles.
  const int passes = (t.dim + group * VEC - 1) / (group * VEC);
  for (int pass = 0; pass < passes; ++pass) {
    const int c = (lane + group * pass) * VEC;
    const bool valid = c < t.dim;
    float acc[VEC];
    for (int k = 0; k < VEC; ++k) acc[k] = 0.f;
    if (valid) pool_ids<index_t, VEC, kRows>(l, t, slot, lo, hi, c, lane == 0 && pass == 0, acc);
    for (int off = group; off < team; off <<= 1)
      for (int k = 0; k < VEC; ++k) acc[k] = __fadd_rn(acc[k], __shfl_xor_sync(mask, acc[k], off));
    if (!valid || sub != 0) continue;
    if (t.mean && end > start) {
      const float len = static_cast<float>(end - start);
      for (int k = 0; k < VEC; ++k) acc[k] = __fdiv_rn(acc[k], len);
    }
    if constexpr (VEC == 4) {
      *reinterpret_cast<float4*>(o + c) = make_float4(acc[0], acc[1], acc[2], acc[3]);
    } else {
      o[c] = acc[0];
    }
  }
}

/// Threads a device holds at once (SMs x threads per SM), read once per device.
int64_t resident_threads() {
  static std::atomic<int64_t> cache[64];
  int device = 0;
  check(cudaGetDevice(&device), "device query");
  if (device < 0 || device >= 64) device = 0;
  int64_t v = cache[device].load(std::memory_order_relaxed);
  if (v > 0) return v;
  int sms = 0, per_sm = 0;
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "device query");
  check(cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxThreadsPerMultiProcessor, device), "device query");
  v = static_cast<int64_t>(sms) * per_sm;
  if (v <= 0) v = 1;
  cache[device].store(v, std::memory_order_relaxed);
  return v;
}

/// split: parts per bag so that the bags' threads fill two waves of the
/// device, at most a warp per bag.
int split_of(int64_t bags, int group) {
  const int64_t want = 2 * resident_threads();
  int split = 1;
  while (group * split * 2 <= 32 && bags * group * split < want) split *= 2;
  return split;
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

  // Every float operation below is rounded on its own (__f*_rn: never
  // contracted into a fused multiply-add), in the CPU kernel's order.
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
        // As the CPU kernel (and torch's embedding_bag backward): (float)(1.0 / len).
        const int64_t bag = static_cast<int64_t>(slot.key) * l.batch + b;
        scale = static_cast<float>(1.0 / static_cast<double>(l.offsets[bag + 1] - l.offsets[bag]));
      }
      const float* go = grad_out + b * l.out_dim + slot.column;
#pragma unroll
      for (int ch = 0; ch < CH; ++ch) {
        const int col = (lane + group * ch) * VEC;
        if (col >= t.dim) break;
        for (int k = 0; k < VEC; ++k) g[ch][k] = __fadd_rn(g[ch][k], __fmul_rn(scale, go[col + k]));
      }
    }
    // g' = g + weight_decay * w
#pragma unroll
    for (int ch = 0; ch < CH; ++ch) {
      const int col = (lane + group * ch) * VEC;
      if (col >= t.dim) break;
      load_row_rw<VEC>(t.weights, t.dtype, row * t.dim + col, w[ch]);
      for (int k = 0; k < VEC; ++k) g[ch][k] = __fadd_rn(g[ch][k], __fmul_rn(u.weight_decay, w[ch][k]));
    }
  }
  // Stochastic rounding of this row (fp16 / bf16 tables that ask for it):
  // its stream within the step's, from its global row.
  const bool stochastic = active && t.stochastic_rounding != 0 && t.dtype != TbeDtype::f32;
  const uint64_t row_stream =
      stochastic ? sr_mix64(sr_mix64(sr_mix64(u.sr_seed) ^ u.sr_step) ^ (t.sr_row_offset + static_cast<uint64_t>(row)))
                 : 0;

  if (u.rule == TbeRule::rowwise_adagrad) {
    // s += mean(g'^2) over the row (squares summed in double, as on the CPU);
    // lane 0 alone reads and writes the row's state and broadcasts the step.
    // u.stochastic_rounding is the launch's, so every lane of the warp takes
    // the same branch (both have shuffles).
    double sq = 0;
    if (u.stochastic_rounding) {
      sq = sum_squares_in_cpu_order<VEC, CH>(g, t.dim, group);
    } else {
      for (int ch = 0; ch < CH; ++ch)
        for (int k = 0; k < VEC; ++k) sq += static_cast<double>(g[ch][k]) * g[ch][k];
      sq = group_sum(sq, group);
    }
    float multiplier = 0.f;
    if (active && lane == 0) {
      const float s = __fadd_rn(t.state[row], static_cast<float>(sq / static_cast<double>(t.dim)));
      t.state[row] = s;
      multiplier = __fdiv_rn(u.lr, __fadd_rn(__fsqrt_rn(s), u.eps));
    }
    const int leader = static_cast<int>(threadIdx.x % 32) & ~(group - 1);
    multiplier = __shfl_sync(0xffffffffu, multiplier, leader);
    if (!active) return;
#pragma unroll
    for (int ch = 0; ch < CH; ++ch) {
      const int col = (lane + group * ch) * VEC;
      if (col >= t.dim) break;
      for (int k = 0; k < VEC; ++k) w[ch][k] = __fsub_rn(w[ch][k], __fmul_rn(multiplier, g[ch][k]));
      if (stochastic)
        store_row_stochastic<VEC>(t.weights, t.dtype, row * t.dim + col, w[ch], row_stream,
                                  t.sr_column_offset + static_cast<uint64_t>(col));
      else
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
      for (int k = 0; k < VEC; ++k) w[ch][k] = __fsub_rn(w[ch][k], __fmul_rn(u.lr, g[ch][k]));
    } else {  // adagrad: s += g'^2; w -= lr * g' / (sqrt(s) + eps)
      float* s = t.state + row * t.dim + col;
      for (int k = 0; k < VEC; ++k) {
        const float sk = __fadd_rn(s[k], __fmul_rn(g[ch][k], g[ch][k]));
        s[k] = sk;
        w[ch][k] = __fsub_rn(w[ch][k], __fdiv_rn(__fmul_rn(u.lr, g[ch][k]), __fadd_rn(__fsqrt_rn(sk), u.eps)));
      }
    }
    if (stochastic)
      store_row_stochastic<VEC>(t.weights, t.dtype, row * t.dim + col, w[ch], row_stream,
                                t.sr_column_offset + static_cast<uint64_t>(col));
    else
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
  const TbeForward variant = tbe_forward_variant();
  if (variant != TbeForward::baseline) {
    const int split = variant == TbeForward::split ? split_of(bags, group) : 1;
    const unsigned blocks = blocks_for(bags, group * split);
    if (l.vec4) {
      if (l.ids_int32)
        forward_team_kernel<int32_t, 4><<<blocks, kBlock, 0, stream>>>(l, out, group, split);
      else
        forward_team_kernel<int64_t, 4><<<blocks, kBlock, 0, stream>>>(l, out, group, split);
    } else {
      if (l.ids_int32)
        forward_team_kernel<int32_t, 1><<<blocks, kBlock, 0, stream>>>(l, out, group, split);
      else
        forward_team_kernel<int64_t, 1><<<blocks, kBlock, 0, stream>>>(l, out, group, split);
    }
    check(cudaGetLastError(), "forward");
    return;
  }
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
