#pragma once
// The per-row update of an embedding optimizer, written once: the row-sparse
// optimizer (sparse_optimizer.h) and the fused embedding backward
// (modules/fused_embedding_bag.h) both call apply_row_update() on the CPU
// and update_rows_with_tensor_ops() on other devices.
#include <torch/types.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "recmod/optim/optimizer_options.h"
#include "recmod/optim/stochastic_rounding.h"

namespace recmod::optim {

/// The row-update rules an embedding optimizer can be.
enum class RowUpdate { sgd, adagrad, rowwise_adagrad };

/// "sgd" | "adagrad" | "rowwise_adagrad"; InputError naming `who` and the
/// valid types otherwise.
RowUpdate row_update_of(const std::string& type, const std::string& who);

/// The name of a rule's state as TorchRec/FBGEMM call it: "sum" (adagrad,
/// (N, D)), "momentum1" (rowwise_adagrad, (N)), "" (sgd: no state).
const char* state_name(RowUpdate rule);
/// Elements of state per row: D (adagrad), 1 (rowwise_adagrad), 0 (sgd).
int64_t state_per_row(RowUpdate rule, int64_t dim);
/// The state of a table of shape (N, D), filled with initial_accumulator_value
/// (undefined for sgd), with `options`' device and dtype.
torch::Tensor make_row_state(RowUpdate rule, const OptimizerOptions& optimizer, torch::IntArrayRef table_shape,
                             const torch::TensorOptions& options);

/// The scalars of an update, in the arithmetic type of its state.
template <typename math_t>
struct RowUpdateScalars {
  math_t lr, eps, weight_decay;
  explicit RowUpdateScalars(const OptimizerOptions& o)
      : lr(static_cast<math_t>(o.lr())), eps(static_cast<math_t>(o.eps())),
        weight_decay(static_cast<math_t>(o.weight_decay())) {}
};

/// Where a table's values sit in the full table whose random stream its
/// stochastic rounding follows: a shard's first row and first column
/// ((0, 0) for a whole table). With them N ranks holding row_wise or
/// column_wise shards round every element as one process holding the whole
/// table does (docs/distributed.md).
struct ShardOffsets {
  uint64_t row = 0;
  uint64_t column = 0;
};

/// How a row of an fp16 / bf16 table is written back: to nearest, or
/// (stochastic) element j of local row `row` with round_stochastic and the
/// 16 bits stochastic_rounding_bits(seed, step, offsets.row + row,
/// offsets.column + j) (stochastic_rounding.h; `stream` is
/// stochastic_rounding_stream(seed, step)): a function of the global
/// element, so the result depends on the seed, not on the thread count or
/// the sharding. Ignored for fp32 / fp64 tables.
struct RowRounding {
  bool stochastic = false;
  uint64_t stream = 0;
  uint64_t row = 0;  // in the local table; the caller sets it per row
  ShardOffsets offsets;
};

/// The seed and step of a group of tables' stochastic rounding, held in an
/// int64 tensor [seed, step] so that a checkpoint saves it with the
/// optimizer state (key "stochastic_rounding...", see TrainingSetup) and a
/// resumed run continues the same random bits. Copies share the tensor.
/// Undefined (no table rounds stochastically) unless drawn() or given.
class RoundingState {
 public:
  RoundingState() = default;
  /// A seed drawn from torch's default generator (so torch::manual_seed
  /// fixes it), step 0.
  static RoundingState drawn();
  /// A given seed and step.
  static RoundingState given(uint64_t seed, uint64_t step);
  bool defined() const { return state_.defined(); }
  uint64_t seed() const;
  uint64_t step() const;
  /// How a table's rows are written at the current step: stochastically
  /// when `stochastic` and defined(), for a table at `offsets` in its full
  /// table (RowRounding::row left 0 for the caller).
  RowRounding rounding(bool stochastic, ShardOffsets offsets = {}) const;
  /// The next step's random bits.
  void advance();
  /// The int64 tensor [seed, step] (shared: load a checkpoint by copy_).
  const torch::Tensor& tensor() const { return state_; }

 private:
  torch::Tensor state_;
};

namespace detail {

/// Writes the values of one row as they are computed (element by element,
/// j = 0 .. dim - 1 in order): to nearest, or (kStochastic) through a
/// buffer of kChunk floats rounded by store_row_stochastic (one hash per
/// 4 elements).
template <typename weight_t, typename math_t, bool kStochastic>
class RowStore {
 public:
  RowStore(weight_t* w, int64_t dim, const RowRounding& r)
      : w_(w), dim_(dim), row_stream_(kStochastic ? stochastic_rounding_row(r.stream, r.offsets.row + r.row) : 0),
        first_column_(r.offsets.column) {}
  void operator()(int64_t j, math_t v) {
    if constexpr (kStochastic) {
      const int64_t k = j % kChunk;
      buffer_[k] = static_cast<float>(v);
      if (k == kChunk - 1 || j == dim_ - 1)
        store_row_stochastic<weight_t>(buffer_, w_ + (j - k), k + 1, row_stream_,
                                       first_column_ + static_cast<uint64_t>(j - k));
    } else {
      w_[j] = static_cast<weight_t>(v);
    }
  }

 private:
  static constexpr int64_t kChunk = 64;
  weight_t* w_;
  int64_t dim_;
  uint64_t row_stream_;
  uint64_t first_column_;
  float buffer_[kStochastic ? kChunk : 1];
};

template <typename weight_t, typename math_t, bool kStochastic>
inline void apply_row_update(RowUpdate rule, const RowUpdateScalars<math_t>& k, const math_t* __restrict__ g,
                             weight_t* __restrict__ w, math_t* __restrict__ s, int64_t dim,
                             const RowRounding& rounding) {
  const math_t lr = k.lr, eps = k.eps, wd = k.weight_decay;
  RowStore<weight_t, math_t, kStochastic> store(w, dim, rounding);
  switch (rule) {
    case RowUpdate::sgd:
      for (int64_t j = 0; j < dim; ++j) {
        const auto wj = static_cast<math_t>(w[j]);
        store(j, wj - lr * (g[j] + wd * wj));
      }
      break;
    case RowUpdate::adagrad:
      for (int64_t j = 0; j < dim; ++j) {
        const auto wj = static_cast<math_t>(w[j]);
        const math_t gj = g[j] + wd * wj;
        s[j] += gj * gj;
        store(j, wj - lr * gj / (std::sqrt(s[j]) + eps));
      }
      break;
    case RowUpdate::rowwise_adagrad: {
      double part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t j = 0;
      for (; j + 8 <= dim; j += 8)
        for (int p = 0; p < 8; ++p) {
          const double gj = g[j + p] + wd * static_cast<math_t>(w[j + p]);
          part[p] += gj * gj;
        }
      for (; j < dim; ++j) {
        const double gj = g[j] + wd * static_cast<math_t>(w[j]);
        part[j % 8] += gj * gj;
      }
      const double sum_sq = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
      s[0] += static_cast<math_t>(sum_sq / static_cast<double>(dim));
      const math_t multiplier = lr / (std::sqrt(s[0]) + eps);
      for (int64_t c = 0; c < dim; ++c) {
        const auto wc = static_cast<math_t>(w[c]);
        store(c, wc - multiplier * (g[c] + wd * wc));
      }
      break;
    }
  }
}

}  // namespace detail

/// Updates one row `w` (D values, stored as weight_t) from its summed
/// gradient `g` and its state `s` (D values for adagrad, 1 for
/// rowwise_adagrad, unused for sgd), computing in math_t (float, or double
/// for double tables). With g' = g + weight_decay * w:
///   sgd:             w -= lr * g'
///   adagrad:         s += g'^2;  w -= lr * g' / (sqrt(s) + eps)
///   rowwise_adagrad: s += mean(g'^2);  w -= lr * g' / (sqrt(s) + eps)
/// rowwise_adagrad sums the squares in double, in 8 interleaved partial sums
/// (one chain of dependent additions per row stalls the next rows' cache
/// misses); the squares of floats are exact in double. fp16 / bf16 rows
/// are written back as `rounding` says (to nearest by default).
template <typename weight_t, typename math_t>
inline void apply_row_update(RowUpdate rule, const RowUpdateScalars<math_t>& k, const math_t* __restrict__ g,
                             weight_t* __restrict__ w, math_t* __restrict__ s, int64_t dim,
                             const RowRounding& rounding = {}) {
  if constexpr (sizeof(weight_t) == 2) {
    if (rounding.stochastic) return detail::apply_row_update<weight_t, math_t, true>(rule, k, g, w, s, dim, rounding);
  }
  detail::apply_row_update<weight_t, math_t, false>(rule, k, g, w, s, dim, rounding);
}

/// The same rule with tensor ops, on any device and dtype: `rows` (int64, n,
/// unique) of `table` (N, D) get the update from `grad` (n, D, the state's
/// dtype); the rows are computed in grad's dtype and written back rounded to
/// the table's: to nearest, or, when rounding.stochastic and the table is
/// fp16 / bf16, with the CPU kernel's rule and bits (rounding.row unused;
/// the rows are rounded on the host, so bit-identical to apply_row_update).
void update_rows_with_tensor_ops(RowUpdate rule, const OptimizerOptions& options, torch::Tensor& table,
                                 torch::Tensor& state, const torch::Tensor& rows, torch::Tensor grad,
                                 const RowRounding& rounding = {});

}  // namespace recmod::optim
