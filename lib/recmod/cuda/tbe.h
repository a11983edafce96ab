#pragma once
// Table-batched embedding kernels for CUDA (FBGEMM's "TBE" design): every
// table of a collection looked up in one kernel launch, and a backward that
// applies the optimizer to each touched row in the kernel. The interface is
// plain C++ over raw device pointers, so the CPU-only build compiles its
// callers (modules/fused_embedding_bag.cpp) unchanged; tbe.cu holds the
// kernels and is built only when CMake finds CUDA and a CUDA libtorch
// (RECMOD_CUDA_KERNELS); otherwise tbe.cpp reports them unavailable.
//
// Layout (the fused lookup's, see modules/fused_embedding_bag.h): ids
// (int32 or int64, n) in KeyedJaggedTensor order, offsets (int64, K*B + 1),
// one "slot" per (table, key) pair writing columns [column, column + D) of
// the (B, out_dim) float32 output.
#include <cstdint>

namespace recmod::cuda {

/// Storage type of a table's rows.
enum class TbeDtype : int32_t { f32 = 0, f16 = 1, bf16 = 2 };
/// The row update applied in the backward (optim::RowUpdate's rules).
enum class TbeRule : int32_t { sgd = 0, adagrad = 1, rowwise_adagrad = 2 };

/// One table, as the kernels see it.
struct TbeTable {
  void* weights = nullptr;  // rows x dim, contiguous, of `dtype`
  float* state = nullptr;   // adagrad: rows x dim; rowwise_adagrad: rows; sgd: null
  int64_t rows = 0;
  int64_t row_base = 0;  // sum of the rows of the tables before this one (sort keys)
  int32_t dim = 0;
  TbeDtype dtype = TbeDtype::f32;
  int32_t mean = 0;  // pooling MEAN (else SUM)
  /// fp16 / bf16 rows written back by tbe_backward_update with stochastic
  /// rounding (optim/stochastic_rounding.h; ignored for f32): element
  /// (row, j) takes the bits of global row sr_row_offset + row and global
  /// column sr_column_offset + j (optim::ShardOffsets), as the CPU kernel.
  int32_t stochastic_rounding = 0;
  uint64_t sr_row_offset = 0;
  uint64_t sr_column_offset = 0;
};

/// One (table, key) pair: the key's ids pooled with the table into output
/// columns [column, column + dim). `contrib_offset` is the index of the
/// slot's first id among all slots' ids (the backward's contributions).
struct TbeSlot {
  int32_t table = 0;
  int32_t key = 0;
  int64_t column = 0;
  int64_t id_begin = 0;  // the key's first position in ids (offset_per_key[key])
  int64_t id_end = 0;
  int64_t contrib_offset = 0;
};

/// What every launch needs. `tables` and `slots` point to DEVICE copies of
/// the arrays (n_tables, n_slots entries); `error` to 3 device int64s,
/// (-1, 0, 0) when clear: the first out-of-range id's position, id and slot
/// are written there (atomically, once) and the id contributes nothing.
struct TbeLaunch {
  const TbeTable* tables = nullptr;
  const TbeSlot* slots = nullptr;
  int32_t n_tables = 0;
  int32_t n_slots = 0;
  int32_t max_dim = 0;
  int32_t vec4 = 0;      // every dim a multiple of 4 (16-byte row loads)
  int32_t ids_int32 = 0;  // ids are int32 (else int64)
  const void* ids = nullptr;
  const int64_t* offsets = nullptr;  // K*B + 1
  const float* per_sample_weights = nullptr;  // n, or null
  int64_t batch = 0;
  int64_t out_dim = 0;
  int64_t* error = nullptr;
  void* stream = nullptr;  // cudaStream_t; null: the current stream of libtorch
};

/// The forward kernel's work mapping. baseline: one group of threads per
/// bag, 4 rows in flight per thread (fused multiply-adds). unrolled: the
/// same mapping, 8 rows in flight (a bag's last rows too), each product and
/// sum rounded on its own and MEAN a division, so the pooled values are the
/// CPU kernel's to the bit. split: when the bags alone fill less than two
/// waves of the GPU, each bag's ids are split over up to 32 / group groups of
/// one warp, whose partial sums are added in a fixed tree (deterministic,
/// within float tolerance of the CPU); else as unrolled.
enum class TbeForward : int32_t { baseline = 0, unrolled = 1, split = 2 };
/// The variant tbe_forward runs (process-wide): the last
/// tbe_set_forward_variant, else RECMOD_TBE_FORWARD (baseline | unrolled |
/// split; read once, a UsageError for another value), else baseline.
TbeForward tbe_forward_variant();
void tbe_set_forward_variant(TbeForward variant);
/// "baseline", "unrolled", "split".
const char* tbe_forward_variant_name(TbeForward variant);

/// True when this build has the kernels (and so a CUDA libtorch).
bool tbe_available();
/// The widest row the kernels take (wider tables use the tensor-op path).
int tbe_max_dim(bool vec4);

/// out (batch x out_dim float32, zero where no slot writes) = the pooled
/// lookups of every slot.
void tbe_forward(const TbeLaunch& launch, float* out);

/// keys[c] for each of the `contributions` (= all slots' ids): the
/// table's row_base + id, or INT64_MAX for an out-of-range id.
void tbe_backward_keys(const TbeLaunch& launch, int64_t contributions, int64_t* keys);

/// weights_grad[p] = <W_t[id_p], grad_out[b, column .. column + D)> for
/// every id (weighted collections; run before tbe_backward_update).
void tbe_weights_grad(const TbeLaunch& launch, int64_t contributions, const float* grad_out, float* weights_grad);

/// The optimizer step of every touched row: `sorted_keys` and `order`
/// (the contributions sorted stably by key) group the contributions of a
/// row; each row's gradient is summed in contribution order (deterministic)
/// and the rule applied once, as optim::apply_row_update does on the CPU.
///
/// The arithmetic is the CPU kernel's (optim::apply_row_update) operation
/// for operation, every float operation rounded on its own (no fused
/// multiply-add), so the stored rows match it to the last bit whenever the
/// summed gradients do. With `stochastic_rounding` set (some table of the
/// launch has TbeTable::stochastic_rounding), the rows of those tables are
/// rounded with the bits of (sr_seed, sr_step, global row, global column)
/// (optim::stochastic_rounding_bits) and row-wise Adagrad sums a row's
/// squares in the CPU kernel's order, so the result is bit-identical to
/// the CPU kernel's.
struct TbeUpdate {
  TbeRule rule = TbeRule::sgd;
  float lr = 0, eps = 0, weight_decay = 0;
  int32_t stochastic_rounding = 0;
  uint64_t sr_seed = 0, sr_step = 0;  // optim::RoundingState's seed and step
};
void tbe_backward_update(const TbeLaunch& launch, int64_t contributions, const int64_t* sorted_keys,
                         const int64_t* order, const float* grad_out, const TbeUpdate& update);

}  // namespace recmod::cuda
