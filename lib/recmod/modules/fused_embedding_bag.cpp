#include "recmod/modules/fused_embedding_bag.h"

#include "recmod/optim/row_update.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/torch.h>

#include <array>
#include <atomic>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "recmod/common/errors.h"
#include "recmod/cuda/tbe.h"
#include "recmod/modules/cuda_lookup_errors.h"
#include "recmod/modules/tbe_rule.h"

namespace recmod {

namespace {

using optim::RowUpdate;
using optim::RowUpdateScalars;

/// Rows ahead of the current one whose cache lines are requested early: a
/// random row is a main-memory miss, and a bag's ids are known in advance.
constexpr int64_t kPrefetchDistance = 8;
/// The same for the rows the backward reads and writes.
constexpr int64_t kUpdatePrefetchDistance = 6;

/// Bytes of scattered rows a parallel task must at least touch before a
/// second thread pays: about 30 us at the ~65 ns per backward lookup (its
/// 16-float gradient row, a 64-byte table row and the row-wise Adagrad
/// state, ~132 bytes) measured at batch 2048 on 1 thread, against the tens
/// of microseconds it takes to wake a sleeping OpenMP worker (futex, with
/// OMP_WAIT_POLICY=PASSIVE). Smaller regions run on the calling thread. One
/// table's update at batch 128 (128 rows, ~17 KB) is far below it: split by
/// rows, each of DLRM's 26 tables woke the worker for a few microseconds of
/// work, and 2 threads were 1.4x slower than 1 (see backward_cpu).
constexpr int64_t kMinTaskBytes = int64_t{64} << 10;

inline void prefetch_lines(const void* p, int64_t bytes, bool for_write) {
  const char* c = static_cast<const char*>(p);
  for (int64_t o = 0; o < bytes; o += 64) {
    if (for_write)
      __builtin_prefetch(c + o, 1, 3);
    else
      __builtin_prefetch(c + o, 0, 3);
  }
}

bool cpu_kernel_applies(const FusedLookupPlan& plan, const FusedLookupInput& input) {
  if (!input.ids.is_cpu()) return false;
  for (const auto& w : plan.tables) {
    if (!w.is_cpu() || !w.is_contiguous()) return false;
    const auto st = w.scalar_type();
    if (st != torch::kFloat && st != torch::kHalf && st != torch::kBFloat16) return false;
  }
  return true;
}

void check_input(const FusedLookupPlan& plan, const FusedLookupInput& input) {
  TORCH_CHECK(plan.tables.size() == plan.pooling.size(), "fused embedding lookup: ", plan.tables.size(),
              " tables but ", plan.pooling.size(), " pooling types");
  TORCH_CHECK(input.ids.dim() == 1 && (input.ids.scalar_type() == torch::kLong || input.ids.scalar_type() == torch::kInt),
              "fused embedding lookup: expected 1-d int64 or int32 ids, got ", input.ids.scalar_type(), " of shape ",
              input.ids.sizes());
  TORCH_CHECK(!input.offset_per_key.empty(), "fused embedding lookup: offset_per_key is empty");
  const auto keys = static_cast<int64_t>(input.offset_per_key.size()) - 1;
  TORCH_CHECK(input.offsets.dim() == 1 && input.offsets.numel() == keys * input.batch_size + 1,
              "fused embedding lookup: expected offsets of length K*B+1 = ", keys * input.batch_size + 1, ", got ",
              input.offsets.sizes());
  TORCH_CHECK(input.offset_per_key.back() == input.ids.numel(), "fused embedding lookup: offset_per_key ends at ",
              input.offset_per_key.back(), " but there are ", input.ids.numel(), " ids");
  if (input.per_sample_weights.defined())
    TORCH_CHECK(input.per_sample_weights.dim() == 1 && input.per_sample_weights.numel() == input.ids.numel(),
                "fused embedding lookup: expected ", input.ids.numel(), " per-sample weights, got ",
                input.per_sample_weights.sizes());
  for (const auto& s : plan.slots) {
    TORCH_CHECK(s.table >= 0 && s.table < static_cast<int64_t>(plan.tables.size()) && s.key >= 0 && s.key < keys &&
                    s.column >= 0 && s.column + plan.tables[s.table].size(1) <= plan.output_dim,
                "fused embedding lookup: slot (table ", s.table, ", key ", s.key, ", column ", s.column,
                ") does not fit ", plan.tables.size(), " tables, ", keys, " keys and ", plan.output_dim, " columns");
    if (input.per_sample_weights.defined())
      TORCH_CHECK(plan.pooling[s.table] == PoolingType::SUM,
                  "fused embedding lookup: per-sample weights are only supported with pooling SUM");
  }
}

template <typename index_t>
[[noreturn]] void throw_bad_id(const FusedLookupPlan& plan, const FusedLookupInput& input) {
  const index_t* ids = input.ids.data_ptr<index_t>();
  for (const auto& s : plan.slots) {
    const int64_t rows = plan.tables[s.table].size(0);
    for (int64_t p = input.offset_per_key[s.key]; p < input.offset_per_key[s.key + 1]; ++p)
      if (ids[p] < 0 || ids[p] >= rows)
        throw_input_error("fused embedding lookup: id ", static_cast<int64_t>(ids[p]), " (input key ", s.key,
                          ", position ", p, ") is out of range for table ", s.table, " with ", rows, " rows");
  }
  throw_input_error("fused embedding lookup: an id is out of range");
}

// ---------------------------------------------------------------------------
// Forward

/// Pools bags [b0, b1) of one slot into out rows b0..b1-1 (row stride
/// `out_stride`). `offs` are the key's B+1 offsets into `ids`. Returns false
/// when an id is out of range (the bag is then incomplete; the caller throws).
template <typename scalar_t, typename index_t>
bool pool_bags(const scalar_t* table, int64_t rows, int64_t dim, bool mean, const index_t* ids, const int64_t* offs,
               const float* psw, float* out, int64_t out_stride, int64_t b0, int64_t b1) {
  bool ok = true;
  const int64_t p_last = offs[b1];
  const int64_t row_bytes = dim * static_cast<int64_t>(sizeof(scalar_t));
  for (int64_t p = offs[b0]; p < std::min(p_last, offs[b0] + kPrefetchDistance); ++p)
    if (ids[p] >= 0 && ids[p] < rows) prefetch_lines(table + static_cast<int64_t>(ids[p]) * dim, row_bytes, false);
  for (int64_t b = b0; b < b1; ++b) {
    float* __restrict__ o = out + b * out_stride;
    std::fill(o, o + dim, 0.0f);
    const int64_t start = offs[b], end = offs[b + 1];
    for (int64_t p = start; p < end; ++p) {
      if (p + kPrefetchDistance < p_last) {
        const int64_t ahead = ids[p + kPrefetchDistance];
        if (ahead >= 0 && ahead < rows) prefetch_lines(table + ahead * dim, row_bytes, false);
      }
      const int64_t id = ids[p];
      if (id < 0 || id >= rows) {
        ok = false;
        continue;
      }
      const scalar_t* __restrict__ r = table + id * dim;
      if (psw != nullptr) {
        const float w = psw[p];
        for (int64_t j = 0; j < dim; ++j) o[j] += w * static_cast<float>(r[j]);
      } else {
        for (int64_t j = 0; j < dim; ++j) o[j] += static_cast<float>(r[j]);
      }
    }
    if (mean && end > start) {
      const auto len = static_cast<float>(end - start);
      for (int64_t j = 0; j < dim; ++j) o[j] /= len;
    }
  }
  return ok;
}

// float32 tables: the bag's sum is kept in vector registers (one block of
// up to kBlockVectors vectors of the row at a time), so a row costs a few
// instructions and the out-of-order window spans many rows' cache misses;
// a loop that loads and stores the output per row sees about one row in
// flight and runs several times slower on random rows. Same additions in
// the same order as pool_bags, so the results are identical.
using Vec8 = float __attribute__((vector_size(32)));
using Vec4 = float __attribute__((vector_size(16)));
constexpr int kBlockVectors = 8;

template <typename V, int NV, typename index_t>
__attribute__((always_inline)) inline void pool_block_f32(const float* table, int64_t dim, const index_t* ids,
                                                          int64_t start, int64_t end, int64_t prefetch_end,
                                                          const float* psw, float* out) {
  constexpr int64_t kLanes = sizeof(V) / sizeof(float);
  V acc[NV];
  for (int k = 0; k < NV; ++k) acc[k] = V{};
  for (int64_t p = start; p < end; ++p) {
    if (p + kPrefetchDistance < prefetch_end)
      prefetch_lines(table + static_cast<int64_t>(ids[p + kPrefetchDistance]) * dim, NV * kLanes * 4, false);
    const float* r = table + static_cast<int64_t>(ids[p]) * dim;
    if (psw != nullptr) {
      const float w = psw[p];
      for (int k = 0; k < NV; ++k) {
        V x;
        std::memcpy(&x, r + k * kLanes, sizeof(V));
        acc[k] += w * x;
      }
    } else {
      for (int k = 0; k < NV; ++k) {
        V x;
        std::memcpy(&x, r + k * kLanes, sizeof(V));
        acc[k] += x;
      }
    }
  }
  for (int k = 0; k < NV; ++k) std::memcpy(out + k * kLanes, &acc[k], sizeof(V));
}

/// Bags [b0, b1) of one slot of a float32 table; ids already checked.
template <typename V, typename index_t>
__attribute__((always_inline)) inline void pool_bags_f32_impl(const float* table, int64_t dim, bool mean,
                                                              const index_t* ids, const int64_t* offs,
                                                              const float* psw, float* out, int64_t out_stride,
                                                              int64_t b0, int64_t b1) {
  constexpr int64_t kLanes = sizeof(V) / sizeof(float);
  const int64_t p_last = offs[b1];
  for (int64_t b = b0; b < b1; ++b) {
    float* o = out + b * out_stride;
    const int64_t start = offs[b], end = offs[b + 1];
    int64_t col = 0;
    for (; col + kBlockVectors * kLanes <= dim; col += kBlockVectors * kLanes)
      pool_block_f32<V, kBlockVectors>(table + col, dim, ids, start, end, p_last, psw, o + col);
    switch ((dim - col) / kLanes) {
#define RECMOD_POOL_CASE(n) \
  case n:                   \
    pool_block_f32<V, n>(table + col, dim, ids, start, end, p_last, psw, o + col); \
    break;
      RECMOD_POOL_CASE(1)
      RECMOD_POOL_CASE(2)
      RECMOD_POOL_CASE(3)
      RECMOD_POOL_CASE(4)
      RECMOD_POOL_CASE(5)
      RECMOD_POOL_CASE(6)
      RECMOD_POOL_CASE(7)
#undef RECMOD_POOL_CASE
      default:
        break;
    }
    col += (dim - col) / kLanes * kLanes;
    if (col < dim) {  // the last dim % kLanes columns
      std::fill(o + col, o + dim, 0.0f);
      for (int64_t p = start; p < end; ++p) {
        const float* r = table + static_cast<int64_t>(ids[p]) * dim;
        const float w = psw != nullptr ? psw[p] : 1.0f;
        for (int64_t j = col; j < dim; ++j) o[j] += psw != nullptr ? w * r[j] : r[j];
      }
    }
    if (mean && end > start) {
      const auto len = static_cast<float>(end - start);
      for (int64_t j = 0; j < dim; ++j) o[j] /= len;
    }
  }
}

template <typename index_t>
__attribute__((target("avx2"))) void pool_bags_f32_avx2(const float* table, int64_t dim, bool mean,
                                                        const index_t* ids, const int64_t* offs, const float* psw,
                                                        float* out, int64_t out_stride, int64_t b0, int64_t b1) {
  pool_bags_f32_impl<Vec8, index_t>(table, dim, mean, ids, offs, psw, out, out_stride, b0, b1);
}

template <typename index_t>
void pool_bags_f32_sse(const float* table, int64_t dim, bool mean, const index_t* ids, const int64_t* offs,
                       const float* psw, float* out, int64_t out_stride, int64_t b0, int64_t b1) {
  pool_bags_f32_impl<Vec4, index_t>(table, dim, mean, ids, offs, psw, out, out_stride, b0, b1);
}

bool has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes;
}

// AVX-512: half the instructions per row, which is what bounds a lookup
// whose rows are cached (Zipf's hot rows: 1.4x the AVX2 kernel there, as
// fast as libtorch's embedding_bag; BENCHMARKS.md). The same additions in
// the same order, so identical results. Only for unweighted bags: with
// per-sample weights AVX-512F's FMA would contract w * x + acc and round
// differently from the AVX2 path.
using Vec16 = float __attribute__((vector_size(64)));

template <typename index_t>
__attribute__((target("avx512f"))) void pool_bags_f32_avx512(const float* table, int64_t dim, bool mean,
                                                            const index_t* ids, const int64_t* offs, float* out,
                                                            int64_t out_stride, int64_t b0, int64_t b1) {
  pool_bags_f32_impl<Vec16, index_t>(table, dim, mean, ids, offs, nullptr, out, out_stride, b0, b1);
}

bool has_avx512f() {
  static const bool yes = __builtin_cpu_supports("avx512f");
  return yes;
}

template <typename index_t>
void forward_cpu(const FusedLookupPlan& plan, const FusedLookupInput& input, const torch::Tensor& offsets,
                 torch::Tensor& out) {
  const int64_t batch = input.batch_size;
  const auto num_slots = static_cast<int64_t>(plan.slots.size());
  const index_t* ids = input.ids.data_ptr<index_t>();
  const int64_t* offs = offsets.data_ptr<int64_t>();
  const float* psw = input.per_sample_weights.defined() ? input.per_sample_weights.data_ptr<float>() : nullptr;
  float* out_data = out.data_ptr<float>();
  const int64_t out_stride = plan.output_dim;
  std::atomic<bool> ok{true};
  // Items are (slot, bag) pairs, slot-major, so that a chunk walks the ids
  // of a key in order and can prefetch across bags. A task gets at least
  // kMinTaskBytes of table rows read and output rows written.
  int64_t bytes = 0;
  for (const auto& s : plan.slots) {
    const torch::Tensor& w = plan.tables[s.table];
    bytes += (input.offset_per_key[s.key + 1] - input.offset_per_key[s.key]) * w.size(1) *
                 static_cast<int64_t>(w.element_size()) +
             batch * w.size(1) * 4;
  }
  const int64_t grain = std::max<int64_t>(1, kMinTaskBytes * num_slots * batch / std::max<int64_t>(bytes, 1));
  at::parallel_for(0, num_slots * batch, grain, [&](int64_t begin, int64_t end) {
    int64_t i = begin;
    while (i < end) {
      const int64_t s = i / batch;
      const int64_t b0 = i % batch;
      const int64_t b1 = std::min(batch, b0 + (end - i));
      const FusedSlot& slot = plan.slots[s];
      const torch::Tensor& w = plan.tables[slot.table];
      const bool mean = plan.pooling[slot.table] == PoolingType::MEAN;
      if (w.scalar_type() == torch::kFloat) {
        const float* table = w.data_ptr<float>();
        const int64_t* key_offs = offs + slot.key * batch;
        bool in_range = true;
        for (int64_t p = key_offs[b0]; p < key_offs[b1]; ++p) in_range = in_range && ids[p] >= 0 && ids[p] < w.size(0);
        if (!in_range) {
          ok = false;
        } else if (psw == nullptr && w.size(1) % 16 == 0 && has_avx512f()) {
          pool_bags_f32_avx512<index_t>(table, w.size(1), mean, ids, key_offs, out_data + slot.column, out_stride, b0,
                                        b1);
        } else if (has_avx2()) {
          pool_bags_f32_avx2<index_t>(table, w.size(1), mean, ids, key_offs, psw, out_data + slot.column, out_stride,
                                      b0, b1);
        } else {
          pool_bags_f32_sse<index_t>(table, w.size(1), mean, ids, key_offs, psw, out_data + slot.column, out_stride,
                                     b0, b1);
        }
        i += b1 - b0;
        continue;
      }
      AT_DISPATCH_FLOATING_TYPES_AND2(torch::kHalf, torch::kBFloat16, w.scalar_type(), "fused_pooled_forward", [&] {
        if (!pool_bags<scalar_t, index_t>(w.data_ptr<scalar_t>(), w.size(0), w.size(1), mean, ids,
                                          offs + slot.key * batch, psw, out_data + slot.column, out_stride, b0, b1))
          ok = false;
      });
      i += b1 - b0;
    }
  });
  if (!ok) throw_bad_id<index_t>(plan, input);
}

torch::Tensor forward_generic(const FusedLookupPlan& plan, const FusedLookupInput& input) {
  const int64_t batch = input.batch_size;
  torch::Tensor out = torch::zeros({batch, plan.output_dim}, input.ids.options().dtype(torch::kFloat));
  const torch::Tensor offsets = input.offsets.to(input.ids.scalar_type());
  const auto& opk = input.offset_per_key;
  for (const auto& s : plan.slots) {
    // libtorch 1.13 has no CPU embedding_bag for bfloat16.
    const torch::Tensor w = plan.tables[s.table].scalar_type() == torch::kBFloat16 && plan.tables[s.table].is_cpu()
                                ? plan.tables[s.table].to(torch::kFloat)
                                : plan.tables[s.table];
    const int64_t k = s.key;
    const torch::Tensor ids = input.ids.slice(0, opk[k], opk[k + 1]);
    const torch::Tensor offs = offsets.slice(0, k * batch, (k + 1) * batch + 1) - opk[k];
    torch::Tensor psw;
    if (input.per_sample_weights.defined())
      psw = input.per_sample_weights.slice(0, opk[k], opk[k + 1]).to(w.scalar_type());
    auto r = torch::embedding_bag(w, ids, offs, /*scale_grad_by_freq=*/false,
                                  pooling_type_to_embedding_bag_mode(plan.pooling[s.table]), /*sparse=*/false, psw,
                                  /*include_last_offset=*/true);
    out.slice(1, s.column, s.column + w.size(1)).copy_(std::get<0>(r));
  }
  return out;
}

// ---------------------------------------------------------------------------
// Backward + update

/// Stable LSD radix sort of packed (row << 32 | entry) words by row, which
/// has `row_bits` significant bits. Ties keep entry order.
void radix_sort_rows(std::vector<uint64_t>& a, std::vector<uint64_t>& tmp, int row_bits) {
  constexpr int kDigitBits = 11;
  constexpr size_t kBuckets = size_t{1} << kDigitBits;
  tmp.resize(a.size());
  for (int shift = 32; shift < 32 + row_bits; shift += kDigitBits) {
    std::array<size_t, kBuckets> count{};
    for (uint64_t x : a) ++count[(x >> shift) & (kBuckets - 1)];
    size_t sum = 0;
    for (auto& c : count) {
      const size_t n = c;
      c = sum;
      sum += n;
    }
    for (uint64_t x : a) tmp[count[(x >> shift) & (kBuckets - 1)]++] = x;
    a.swap(tmp);
  }
}

int bits_for(int64_t rows) {
  int bits = 1;
  while (bits < 63 && (int64_t{1} << bits) < rows) ++bits;
  return bits;
}

/// What the backward of every table shares.
struct BackwardContext {
  const FusedLookupPlan& plan;
  const FusedLookupInput& input;
  const int64_t* offs;
  const float* psw;
  const float* go;
  int64_t go_stride;
  float* wgrad;
  FusedEmbeddingOptimizer& optimizer;
  RowUpdate rule;
  RowUpdateScalars<float> scalars;
};

/// One table's entries, sort buffers and touched-row segments; one per
/// thread, reused across tables.
struct BackwardScratch {
  std::vector<uint64_t> keys, tmp;
  std::vector<int64_t> out_off, segments, position;
  std::vector<float> scale;
};

/// Lookups of table t in this batch.
int64_t table_lookups(const FusedLookupPlan& plan, const FusedLookupInput& input, size_t t) {
  int64_t n = 0;
  for (const auto& s : plan.slots)
    if (s.table == static_cast<int64_t>(t)) n += input.offset_per_key[s.key + 1] - input.offset_per_key[s.key];
  return n;
}

/// Bytes the backward of a table with n lookups touches: per lookup its
/// gradient row, and (at most one per lookup) a table row and its state.
int64_t table_update_bytes(const FusedLookupPlan& plan, const FusedEmbeddingOptimizer& optimizer, size_t t, int64_t n) {
  const torch::Tensor& table = plan.tables[t];
  const int64_t dim = table.size(1);
  return n * (dim * 4 + dim * static_cast<int64_t>(table.element_size()) +
              optim::state_per_row(optimizer.rule(), dim) * 4);
}

/// Table t's backward and update (n > 0 lookups): each touched row's
/// gradient summed from its entries in input order, then the optimizer's row
/// update. The row updates split over threads in tasks of at least
/// kMinTaskBytes (serial inside a parallel region). Returns false, updating
/// nothing, when an id is out of range.
template <typename index_t>
bool backward_table(const BackwardContext& c, size_t t, int64_t n, BackwardScratch& sc) {
  const FusedLookupPlan& plan = c.plan;
  const torch::Tensor& table = plan.tables[t];
  const int64_t rows = table.size(0), dim = table.size(1);
  const bool mean = plan.pooling[t] == PoolingType::MEAN;
  const int64_t batch = c.input.batch_size;
  const index_t* ids = c.input.ids.data_ptr<index_t>();
  TORCH_CHECK(rows <= (int64_t{1} << 32) && n < (int64_t{1} << 32), "fused embedding backward: table ", t, " has ",
              rows, " rows and ", n, " lookups; the CPU kernel handles at most 2^32 of each");
  // Entries in input order (slot, then bag, then position): what each id
  // contributes, and where its gradient row is.
  auto& keys = sc.keys;
  auto& out_off = sc.out_off;
  auto& scale = sc.scale;
  auto& position = sc.position;
  keys.resize(n);
  out_off.resize(n);
  scale.resize(n);
  position.resize(c.wgrad != nullptr ? n : 0);
  int64_t e = 0;
  bool ok = true;
  for (const auto& s : plan.slots) {
    if (s.table != static_cast<int64_t>(t)) continue;
    const int64_t* o = c.offs + s.key * batch;
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t len = o[b + 1] - o[b];
      // torch's embedding_bag backward scales a MEAN bag's gradient by (float)(1.0 / len).
      const float bag_scale = mean ? static_cast<float>(1.0 / static_cast<double>(len)) : 1.0f;
      for (int64_t p = o[b]; p < o[b + 1]; ++p, ++e) {
        const int64_t id = ids[p];
        ok = ok && id >= 0 && id < rows;
        keys[e] = (static_cast<uint64_t>(id) << 32) | static_cast<uint64_t>(e);
        out_off[e] = b * c.go_stride + s.column;
        scale[e] = c.psw != nullptr ? c.psw[p] : bag_scale;
        if (c.wgrad != nullptr) position[e] = p;
      }
    }
  }
  if (!ok) return false;

  const int64_t entry_bytes = table_update_bytes(plan, c.optimizer, t, 1);
  AT_DISPATCH_FLOATING_TYPES_AND2(torch::kHalf, torch::kBFloat16, table.scalar_type(), "fused_backward_update", [&] {
    scalar_t* w_all = table.data_ptr<scalar_t>();
    const float* go = c.go;
    // Per-sample weight gradients read the weights before the update.
    if (c.wgrad != nullptr) {
      float* wgrad = c.wgrad;
      // A task reads a table row and a gradient row per entry.
      at::parallel_for(0, n, std::max<int64_t>(1, kMinTaskBytes / entry_bytes), [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          const scalar_t* r = w_all + static_cast<int64_t>(keys[i] >> 32) * dim;
          const float* g = go + out_off[i];
          float dot = 0;
          for (int64_t j = 0; j < dim; ++j) dot += static_cast<float>(r[j]) * g[j];
          wgrad[position[i]] += dot;  // a key looked up in several tables gets each one's part
        }
      });
    }
    radix_sort_rows(keys, sc.tmp, bits_for(rows));
    auto& segments = sc.segments;
    segments.clear();
    for (int64_t i = 0; i < n; ++i)
      if (i == 0 || (keys[i] >> 32) != (keys[i - 1] >> 32)) segments.push_back(i);
    segments.push_back(n);
    const auto num_rows = static_cast<int64_t>(segments.size()) - 1;
    float* state = c.optimizer.states()[t].defined() ? c.optimizer.states()[t].data_ptr<float>() : nullptr;
    const int64_t state_stride = optim::state_per_row(c.rule, dim);
    const int64_t row_bytes = dim * static_cast<int64_t>(sizeof(scalar_t));
    // A touched row costs at least one entry's bytes.
    const int64_t grain = std::max<int64_t>(1, kMinTaskBytes / entry_bytes);
    // Each touched row is summed and updated by exactly one thread, its
    // entries in input order: deterministic, whatever the thread count.
    at::parallel_for(0, num_rows, grain, [&](int64_t begin, int64_t end) {
      std::vector<float> g(dim);
      optim::RowRounding rounding = c.optimizer.rounding(t);
      for (int64_t r = begin; r < end; ++r) {
        if (r + kUpdatePrefetchDistance < end) {
          const int64_t ahead = static_cast<int64_t>(keys[segments[r + kUpdatePrefetchDistance]] >> 32);
          prefetch_lines(w_all + ahead * dim, row_bytes, true);
          if (state != nullptr) prefetch_lines(state + ahead * state_stride, state_stride * 4, true);
        }
        const auto row = static_cast<int64_t>(keys[segments[r]] >> 32);
        std::fill(g.begin(), g.end(), 0.0f);
        for (int64_t i = segments[r]; i < segments[r + 1]; ++i) {
          const auto entry = static_cast<int64_t>(keys[i] & 0xffffffffu);
          const float a = scale[entry];
          const float* __restrict__ x = go + out_off[entry];
          for (int64_t j = 0; j < dim; ++j) g[j] += a * x[j];
        }
        rounding.row = static_cast<uint64_t>(row);
        optim::apply_row_update<scalar_t, float>(c.rule, c.scalars, g.data(), w_all + row * dim,
                                                 state != nullptr ? state + row * state_stride : nullptr, dim,
                                                 rounding);
      }
    });
  });
  return true;
}

/// The tables are independent (each row of each table is updated by one
/// thread, its entries in input order), so the update is the same whatever
/// runs where. A table too small to split its rows over threads (the
/// common case at small batches: 128 lookups of 26 tables) would run on one
/// thread while the others wait; such tables are instead shared out whole,
/// one at a time from a queue, which also parallelizes their entry lists and
/// sorts. A table larger than 1 / (2 x threads) of all the work splits its
/// rows instead, so that whole tables never leave a thread idle for long.
/// Per-sample weight gradients add each table's part to shared positions in
/// table order, so with them the tables run one after the other.
template <typename index_t>
void backward_cpu(const FusedLookupPlan& plan, const FusedLookupInput& input, const torch::Tensor& offsets,
                  const torch::Tensor& grad_out, FusedEmbeddingOptimizer& optimizer, torch::Tensor& weights_grad) {
  const BackwardContext c{plan,
                          input,
                          offsets.data_ptr<int64_t>(),
                          input.per_sample_weights.defined() ? input.per_sample_weights.data_ptr<float>() : nullptr,
                          grad_out.data_ptr<float>(),
                          grad_out.size(1),
                          weights_grad.defined() ? weights_grad.data_ptr<float>() : nullptr,
                          optimizer,
                          optimizer.rule(),
                          RowUpdateScalars<float>(optimizer.options())};
  const size_t num_tables = plan.tables.size();
  std::vector<int64_t> lookups(num_tables), bytes(num_tables);
  int64_t total_bytes = 0;
  for (size_t t = 0; t < num_tables; ++t) {
    lookups[t] = table_lookups(plan, input, t);
    bytes[t] = table_update_bytes(plan, optimizer, t, lookups[t]);
    total_bytes += bytes[t];
  }
  const int64_t threads = at::get_num_threads();
  std::vector<size_t> whole;  // tables shared out whole
  BackwardScratch scratch;
  for (size_t t = 0; t < num_tables; ++t) {
    if (lookups[t] == 0) continue;
    if (c.wgrad == nullptr && threads > 1 && bytes[t] * 2 * threads <= total_bytes) {
      whole.push_back(t);
      continue;
    }
    if (!backward_table<index_t>(c, t, lookups[t], scratch)) throw_bad_id<index_t>(plan, input);
  }
  if (whole.empty()) return;
  int64_t whole_bytes = 0;
  for (size_t t : whole) whole_bytes += bytes[t];
  const int64_t tasks = std::min<int64_t>(threads, std::max<int64_t>(1, whole_bytes / kMinTaskBytes));
  std::atomic<size_t> next{0};
  std::atomic<bool> ok{true};
  at::parallel_for(0, tasks, 1, [&](int64_t, int64_t) {
    BackwardScratch local;
    for (size_t k = next++; k < whole.size(); k = next++)
      if (!backward_table<index_t>(c, whole[k], lookups[whole[k]], local)) ok = false;
  });
  if (!ok) throw_bad_id<index_t>(plan, input);
}

/// The same update with tensor ops on any device: touched rows (unique ids),
/// their summed gradients (index_add_), then the algorithm's expressions.
void backward_generic(const FusedLookupPlan& plan, const FusedLookupInput& input, const torch::Tensor& grad_out,
                      FusedEmbeddingOptimizer& optimizer, torch::Tensor& weights_grad) {
  const int64_t batch = input.batch_size;
  const auto& opk = input.offset_per_key;
  const torch::Tensor offsets = input.offsets.to(torch::kLong);
  for (size_t t = 0; t < plan.tables.size(); ++t) {
    torch::Tensor table = plan.tables[t];
    const int64_t dim = table.size(1);
    std::vector<torch::Tensor> ids, grads;
    for (const auto& s : plan.slots) {
      if (s.table != static_cast<int64_t>(t) || opk[s.key + 1] == opk[s.key]) continue;
      const int64_t k = s.key;
      const torch::Tensor lengths = offsets.slice(0, k * batch, (k + 1) * batch + 1).diff();
      const torch::Tensor bag = torch::repeat_interleave(lengths);
      const torch::Tensor key_ids = input.ids.slice(0, opk[k], opk[k + 1]).to(torch::kLong);
      torch::Tensor g = grad_out.slice(1, s.column, s.column + dim).index_select(0, bag);
      if (weights_grad.defined())
        weights_grad.slice(0, opk[k], opk[k + 1]).add_((table.index_select(0, key_ids).to(torch::kFloat) * g).sum(1));
      if (input.per_sample_weights.defined()) {
        g = g * input.per_sample_weights.slice(0, opk[k], opk[k + 1]).unsqueeze(1);
      } else if (plan.pooling[t] == PoolingType::MEAN) {
        g = g * (1.0 / lengths.clamp_min(1).to(torch::kDouble)).to(torch::kFloat).index_select(0, bag).unsqueeze(1);
      }
      ids.push_back(key_ids);
      grads.push_back(g);
    }
    if (ids.empty()) continue;
    const auto unique = at::_unique(torch::cat(ids), /*sorted=*/true, /*return_inverse=*/true);
    const torch::Tensor& rows = std::get<0>(unique);
    torch::Tensor g = torch::zeros({rows.numel(), dim}, grad_out.options()).index_add_(0, std::get<1>(unique),
                                                                                        torch::cat(grads));
    optim::update_rows_with_tensor_ops(optimizer.rule(), optimizer.options(), table, optimizer.states()[t], rows, g,
                                       optimizer.rounding(t));
  }
}

// ---------------------------------------------------------------------------
// CUDA: the table-batched kernels of recmod/cuda (one launch for every table)

bool cuda_kernel_applies(const FusedLookupPlan& plan, const FusedLookupInput& input) {
  if (!input.ids.is_cuda() || !cuda::tbe_available()) return false;
  if (input.per_sample_weights.defined() && input.per_sample_weights.device() != input.ids.device()) return false;
  bool vec4 = true;
  int64_t max_dim = 0;
  for (const auto& w : plan.tables) {
    if (w.device() != input.ids.device() || !w.is_contiguous() || w.dim() != 2) return false;
    const auto st = w.scalar_type();
    if (st != torch::kFloat && st != torch::kHalf && st != torch::kBFloat16) return false;
    vec4 = vec4 && w.size(1) % 4 == 0 && reinterpret_cast<uintptr_t>(w.data_ptr()) % 16 == 0;
    max_dim = std::max(max_dim, w.size(1));
  }
  return max_dim <= cuda::tbe_max_dim(vec4) && plan.tables.size() < (size_t{1} << 30) &&
         input.offset_per_key.size() < (size_t{1} << 30);
}

/// Where the pooled kernels of one device report an out-of-range id. The
/// GPU does not stop at a bad id: the id contributes nothing, and the error
/// is raised by the next lookup on that device, or by check_fused_lookup_errors.
CudaLookupErrors& pooled_lookup_errors() {
  static auto& errors = *new CudaLookupErrors("fused embedding lookup", "a bad id contributes nothing");
  return errors;
}

/// The kernels' view of a lookup; the tensors keep what it points to alive
/// until the kernels are queued (the caching allocator orders reuse).
struct PooledCudaLookup {
  cuda::TbeLaunch launch;
  torch::Tensor meta, ids, offsets, per_sample_weights;
  int64_t contributions = 0;
};

PooledCudaLookup make_cuda_lookup(const FusedLookupPlan& plan, const FusedLookupInput& input,
                            FusedEmbeddingOptimizer* optimizer, CudaErrorSlot& errors) {
  static_assert(std::is_trivially_copyable<cuda::TbeTable>::value && std::is_trivially_copyable<cuda::TbeSlot>::value,
                "the kernels' metadata is copied as bytes");
  PooledCudaLookup c;
  std::vector<cuda::TbeTable> tables;
  int64_t row_base = 0, max_dim = 0;
  bool vec4 = true;
  for (size_t t = 0; t < plan.tables.size(); ++t) {
    const torch::Tensor& w = plan.tables[t];
    cuda::TbeTable e;
    e.weights = w.data_ptr();
    if (optimizer != nullptr && optimizer->states()[t].defined()) e.state = optimizer->states()[t].data_ptr<float>();
    e.rows = w.size(0);
    e.row_base = row_base;
    e.dim = static_cast<int32_t>(w.size(1));
    e.dtype = w.scalar_type() == torch::kFloat  ? cuda::TbeDtype::f32
              : w.scalar_type() == torch::kHalf ? cuda::TbeDtype::f16
                                                : cuda::TbeDtype::bf16;
    e.mean = plan.pooling[t] == PoolingType::MEAN ? 1 : 0;
    if (optimizer != nullptr) {
      // The kernel rounds as the CPU kernel: the same bits of the global row and column.
      const optim::RowRounding rounding = optimizer->rounding(t);
      e.stochastic_rounding = rounding.stochastic && e.dtype != cuda::TbeDtype::f32 ? 1 : 0;
      e.sr_row_offset = rounding.offsets.row;
      e.sr_column_offset = rounding.offsets.column;
    }
    row_base += e.rows;
    max_dim = std::max(max_dim, w.size(1));
    vec4 = vec4 && w.size(1) % 4 == 0 && reinterpret_cast<uintptr_t>(w.data_ptr()) % 16 == 0;
    tables.push_back(e);
  }
  std::vector<cuda::TbeSlot> slots;
  for (const auto& s : plan.slots) {
    cuda::TbeSlot e;
    e.table = static_cast<int32_t>(s.table);
    e.key = static_cast<int32_t>(s.key);
    e.column = s.column;
    e.id_begin = input.offset_per_key[s.key];
    e.id_end = input.offset_per_key[s.key + 1];
    e.contrib_offset = c.contributions;
    c.contributions += e.id_end - e.id_begin;
    slots.push_back(e);
  }
  const size_t table_bytes = tables.size() * sizeof(cuda::TbeTable), slot_bytes = slots.size() * sizeof(cuda::TbeSlot);
  torch::Tensor host = torch::empty({static_cast<int64_t>(table_bytes + slot_bytes)},
                                    torch::TensorOptions().dtype(torch::kUInt8).pinned_memory(true));
  if (table_bytes > 0) std::memcpy(host.data_ptr<uint8_t>(), tables.data(), table_bytes);
  if (slot_bytes > 0) std::memcpy(host.data_ptr<uint8_t>() + table_bytes, slots.data(), slot_bytes);
  c.meta = host.to(input.ids.device(), /*non_blocking=*/true);
  c.ids = input.ids.contiguous();
  c.offsets = input.offsets.to(torch::kLong).contiguous();
  if (input.per_sample_weights.defined()) c.per_sample_weights = input.per_sample_weights.to(torch::kFloat).contiguous();

  cuda::TbeLaunch& l = c.launch;
  l.tables = reinterpret_cast<const cuda::TbeTable*>(c.meta.data_ptr<uint8_t>());
  l.slots = reinterpret_cast<const cuda::TbeSlot*>(c.meta.data_ptr<uint8_t>() + table_bytes);
  l.n_tables = static_cast<int32_t>(tables.size());
  l.n_slots = static_cast<int32_t>(slots.size());
  l.max_dim = static_cast<int32_t>(max_dim);
  l.vec4 = vec4 ? 1 : 0;
  l.ids_int32 = c.ids.scalar_type() == torch::kInt ? 1 : 0;
  l.ids = c.ids.data_ptr();
  l.offsets = c.offsets.data_ptr<int64_t>();
  l.per_sample_weights = c.per_sample_weights.defined() ? c.per_sample_weights.data_ptr<float>() : nullptr;
  l.batch = input.batch_size;
  l.out_dim = plan.output_dim;
  l.error = errors.device.data_ptr<int64_t>();
  return c;
}

torch::Tensor forward_cuda(const FusedLookupPlan& plan, const FusedLookupInput& input) {
  CudaErrorSlot& errors = pooled_lookup_errors().slot(input.ids.device());
  pooled_lookup_errors().throw_reported_bad_id(errors);
  const PooledCudaLookup c = make_cuda_lookup(plan, input, nullptr, errors);
  int64_t covered = 0;
  for (const auto& s : plan.slots) covered += plan.tables[s.table].size(1);
  const auto options = input.ids.options().dtype(torch::kFloat);
  torch::Tensor out = covered == plan.output_dim ? torch::empty({input.batch_size, plan.output_dim}, options)
                                                 : torch::zeros({input.batch_size, plan.output_dim}, options);
  cuda::tbe_forward(c.launch, out.data_ptr<float>());
  errors.host.copy_(errors.device, /*non_blocking=*/true);
  return out;
}

/// Sorts the batch's (table, row) keys stably (so equal rows keep input
/// order), then one kernel sums each row's gradient and applies the rule.
void backward_cuda(const FusedLookupPlan& plan, const FusedLookupInput& input, const torch::Tensor& grad_out,
                   FusedEmbeddingOptimizer& optimizer, torch::Tensor& weights_grad) {
  CudaErrorSlot& errors = pooled_lookup_errors().slot(input.ids.device());
  const PooledCudaLookup c = make_cuda_lookup(plan, input, &optimizer, errors);
  if (c.contributions == 0) return;
  torch::Tensor keys = torch::empty({c.contributions}, input.ids.options().dtype(torch::kLong));
  cuda::tbe_backward_keys(c.launch, c.contributions, keys.data_ptr<int64_t>());
  if (weights_grad.defined())
    cuda::tbe_weights_grad(c.launch, c.contributions, grad_out.data_ptr<float>(), weights_grad.data_ptr<float>());
  const auto sorted = torch::sort(keys, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  cuda::TbeUpdate update;
  update.rule = tbe_rule_of(optimizer.rule());
  update.lr = static_cast<float>(optimizer.options().lr());
  update.eps = static_cast<float>(optimizer.options().eps());
  update.weight_decay = static_cast<float>(optimizer.options().weight_decay());
  if (optimizer.any_stochastic_rounding() && optimizer.rounding_state().defined()) {
    update.stochastic_rounding = 1;
    update.sr_seed = optimizer.rounding_state().seed();
    update.sr_step = optimizer.rounding_state().step();
  }
  cuda::tbe_backward_update(c.launch, c.contributions, std::get<0>(sorted).data_ptr<int64_t>(),
                            std::get<1>(sorted).data_ptr<int64_t>(), grad_out.data_ptr<float>(), update);
}

/// The autograd node of fused_embedding_bag: its inputs are the tables and
/// the per-sample weights; backward updates the tables and returns only the
/// per-sample weights' gradient.
class FusedEmbeddingBagBackward : public torch::autograd::Node {
 public:
  FusedEmbeddingBagBackward(FusedLookupPlan plan, FusedLookupInput input,
                            std::shared_ptr<FusedEmbeddingOptimizer> optimizer, bool need_weights_grad, bool generic)
      : plan_(std::move(plan)),
        input_(std::move(input)),
        optimizer_(std::move(optimizer)),
        need_weights_grad_(need_weights_grad),
        generic_(generic) {}

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    TORCH_CHECK(!released_, "FusedEmbeddingBagBackward: backward ran twice; the update has been applied already");
    torch::autograd::variable_list out(num_outputs());
    if (grads.empty() || !grads[0].defined()) return out;
    torch::NoGradGuard no_grad;
    torch::Tensor wgrad = fused_backward_update(plan_, input_, grads[0], *optimizer_, need_weights_grad_, generic_);
    if (need_weights_grad_) out.back() = wgrad;
    return out;
  }
  std::string name() const override { return "FusedEmbeddingBagBackward"; }
  void release_variables() override {
    plan_.tables.clear();
    input_ = FusedLookupInput();
    released_ = true;
  }

 private:
  FusedLookupPlan plan_;
  FusedLookupInput input_;
  std::shared_ptr<FusedEmbeddingOptimizer> optimizer_;
  bool need_weights_grad_;
  bool generic_;
  bool released_ = false;
};

}  // namespace

// ---------------------------------------------------------------------------

FusedEmbeddingOptimizer::FusedEmbeddingOptimizer(const std::vector<torch::Tensor>& tables,
                                                 optim::OptimizerOptions options,
                                                 std::vector<bool> stochastic_rounding,
                                                 std::vector<optim::ShardOffsets> offsets)
    : options_(std::move(options)),
      stochastic_rounding_(std::move(stochastic_rounding)),
      offsets_(std::move(offsets)) {
  TORCH_CHECK(stochastic_rounding_.empty() || stochastic_rounding_.size() == tables.size(),
              "fused embedding optimizer: ", stochastic_rounding_.size(), " stochastic_rounding flags for ",
              tables.size(), " tables");
  TORCH_CHECK(offsets_.empty() || offsets_.size() == tables.size(), "fused embedding optimizer: ", offsets_.size(),
              " shard offsets for ", tables.size(), " tables");
  if (any_stochastic_rounding()) rounding_ = optim::RoundingState::drawn();
  optim::validate(options_, optim::OptimizerRole::embedding);
  rule_ = optim::row_update_of(options_.type(), "fused embedding optimizer");
  for (const auto& w : tables) {
    TORCH_CHECK(w.defined() && w.dim() == 2, "fused embedding optimizer: expected tables of shape (N, D), got ",
                w.defined() ? w.sizes() : torch::IntArrayRef{});
    states_.push_back(optim::make_row_state(rule_, options_, w.sizes(), w.options().dtype(torch::kFloat)));
  }
}

bool FusedEmbeddingOptimizer::any_stochastic_rounding() const {
  return std::find(stochastic_rounding_.begin(), stochastic_rounding_.end(), true) != stochastic_rounding_.end();
}

std::string FusedEmbeddingOptimizer::state_name() const { return optim::state_name(rule_); }

void FusedEmbeddingOptimizer::to(torch::Device device) {
  for (auto& s : states_)
    if (s.defined()) s = s.to(device);
}

bool fused_lookup_has_kernel(const torch::Device& device) {
  return device.is_cpu() || (device.is_cuda() && cuda::tbe_available());
}

void check_fused_lookup_errors(const torch::Device& device) { pooled_lookup_errors().check(device); }

torch::Tensor fused_pooled_forward(const FusedLookupPlan& plan, const FusedLookupInput& input, bool generic) {
  check_input(plan, input);
  if (!generic && cuda_kernel_applies(plan, input)) return forward_cuda(plan, input);
  if (generic || !cpu_kernel_applies(plan, input)) return forward_generic(plan, input);
  FusedLookupInput in = input;
  in.ids = input.ids.contiguous();
  if (in.per_sample_weights.defined()) in.per_sample_weights = input.per_sample_weights.to(torch::kFloat).contiguous();
  const torch::Tensor offsets = input.offsets.to(torch::kLong).contiguous();
  torch::Tensor out = torch::empty({input.batch_size, plan.output_dim}, torch::kFloat);
  // Columns no slot writes stay zero.
  int64_t covered = 0;
  for (const auto& s : plan.slots) covered += plan.tables[s.table].size(1);
  if (covered != plan.output_dim) out.zero_();
  if (in.ids.scalar_type() == torch::kLong)
    forward_cpu<int64_t>(plan, in, offsets, out);
  else
    forward_cpu<int32_t>(plan, in, offsets, out);
  return out;
}

torch::Tensor fused_backward_update(const FusedLookupPlan& plan, const FusedLookupInput& input,
                                    const torch::Tensor& grad_out, FusedEmbeddingOptimizer& optimizer,
                                    bool need_weights_grad, bool generic) {
  check_input(plan, input);
  TORCH_CHECK(optimizer.states().size() == plan.tables.size(), "fused embedding backward: the optimizer has ",
              optimizer.states().size(), " tables, the lookup ", plan.tables.size());
  TORCH_CHECK(grad_out.dim() == 2 && grad_out.size(0) == input.batch_size && grad_out.size(1) == plan.output_dim,
              "fused embedding backward: expected a gradient of shape (", input.batch_size, ", ", plan.output_dim,
              "), got ", grad_out.sizes());
  TORCH_CHECK(!need_weights_grad || input.per_sample_weights.defined(),
              "fused embedding backward: per-sample weight gradients requested without per-sample weights");
  torch::NoGradGuard no_grad;
  const torch::Tensor g = grad_out.to(torch::kFloat).contiguous();
  torch::Tensor weights_grad;
  if (need_weights_grad) weights_grad = torch::zeros({input.ids.numel()}, g.options());
  // The CUDA kernels round stochastically as the CPU kernel does (same bits).
  if (!generic && cuda_kernel_applies(plan, input)) {
    backward_cuda(plan, input, g, optimizer, weights_grad);
    optimizer.advance_step();
    return weights_grad;
  }
  if (generic || !cpu_kernel_applies(plan, input)) {
    backward_generic(plan, input, g, optimizer, weights_grad);
    optimizer.advance_step();
    return weights_grad;
  }
  FusedLookupInput in = input;
  in.ids = input.ids.contiguous();
  if (in.per_sample_weights.defined()) in.per_sample_weights = input.per_sample_weights.to(torch::kFloat).contiguous();
  const torch::Tensor offsets = input.offsets.to(torch::kLong).contiguous();
  if (in.ids.scalar_type() == torch::kLong)
    backward_cpu<int64_t>(plan, in, offsets, g, optimizer, weights_grad);
  else
    backward_cpu<int32_t>(plan, in, offsets, g, optimizer, weights_grad);
  optimizer.advance_step();
  return weights_grad;
}

torch::Tensor fused_embedding_bag(const FusedLookupPlan& plan, const FusedLookupInput& input,
                                  std::shared_ptr<FusedEmbeddingOptimizer> optimizer, bool generic) {
  TORCH_CHECK(optimizer != nullptr, "fused_embedding_bag: no optimizer");
  torch::Tensor out;
  {
    torch::NoGradGuard no_grad;
    out = fused_pooled_forward(plan, input, generic);
  }
  bool tables_need_grad = false;
  for (const auto& w : plan.tables) tables_need_grad = tables_need_grad || w.requires_grad();
  const bool weights_need_grad = input.per_sample_weights.defined() && input.per_sample_weights.requires_grad();
  if (!torch::autograd::GradMode::is_enabled() || !(tables_need_grad || weights_need_grad)) return out;

  torch::autograd::edge_list edges;
  for (const auto& w : plan.tables) edges.push_back(torch::autograd::impl::gradient_edge(w));
  edges.push_back(input.per_sample_weights.defined() ? torch::autograd::impl::gradient_edge(input.per_sample_weights)
                                                     : torch::autograd::Edge());
  FusedLookupInput saved = input;
  if (saved.per_sample_weights.defined()) saved.per_sample_weights = saved.per_sample_weights.detach();
  std::shared_ptr<FusedEmbeddingBagBackward> node(
      new FusedEmbeddingBagBackward(plan, std::move(saved), std::move(optimizer), weights_need_grad, generic),
      torch::autograd::deleteNode);
  node->set_next_edges(std::move(edges));
  torch::autograd::set_history(out, node);
  return out;
}

}  // namespace recmod
