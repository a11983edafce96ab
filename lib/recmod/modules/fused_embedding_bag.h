#pragma once
// The fused embedding training path (FBGEMM's "TBE with fused optimizer", on
// the CPU): pooled lookups of every table of an EmbeddingBagCollection in
// one pass, and a backward that writes the optimizer update straight into
// the rows the batch touched. No dense gradient and no sparse COO gradient
// is ever built: ids are grouped by row (a stable radix sort), duplicate ids
// of the batch are summed, and each touched row is read and written once.
#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

#include "recmod/common/state_dict.h"
#include "recmod/modules/embedding_configs.h"
#include "recmod/optim/optimizer_options.h"
#include "recmod/optim/row_update.h"

namespace recmod {

/// One pooled output of a fused lookup: the bags of KJT key `key` looked up
/// in table `table`, written to output columns [column, column + D_table).
struct FusedSlot {
  int64_t table = 0;
  int64_t key = 0;
  int64_t column = 0;
};

/// What a fused lookup reads: the tables (N_t, D_t) (float32, float16 or
/// bfloat16, contiguous), their pooling (SUM or MEAN) and the slots.
struct FusedLookupPlan {
  std::vector<torch::Tensor> tables;
  std::vector<PoolingType> pooling;
  std::vector<FusedSlot> slots;
  int64_t output_dim = 0;
};

/// The input of a fused lookup, laid out as a KeyedJaggedTensor's:
/// ids (int64 or int32, n), offsets (K*B + 1, the KJT's), optional
/// per-sample weights (float32, n; SUM tables only) and the batch size B.
struct FusedLookupInput {
  torch::Tensor ids;
  torch::Tensor offsets;
  torch::Tensor per_sample_weights;  // undefined when unweighted
  int64_t batch_size = 0;
  /// The KJT's offset_per_key (K + 1 entries), host side.
  std::vector<int64_t> offset_per_key;
};

/// An embedding optimizer whose update runs inside the fused backward.
/// The same per-row update as the row-sparse optimizer (optim::apply_row_update:
/// sgd, adagrad, rowwise_adagrad); for float32 tables the results are bitwise
/// equal given the same row gradients. The state is kept in float32
/// whatever the table's storage dtype: adagrad's `sum` (N, D), rowwise
/// adagrad's `momentum1` (N). Updated rows are written back rounded to the
/// table's dtype.
class FusedEmbeddingOptimizer {
 public:
  /// Throws InputError for invalid options (validate_optimizer_options).
  /// `stochastic_rounding` (empty: all false) per table: its fp16 / bf16
  /// rows are written back rounded stochastically; when any is set, the
  /// seed is drawn from torch's default generator (so torch::manual_seed
  /// fixes it), and each backward pass is one step of the random bits.
  /// `offsets` (empty: all (0, 0)) per table: where a shard's values sit in
  /// its full table, so that it rounds with the full table's random bits
  /// (optim::ShardOffsets; a sharded collection's local tables).
  FusedEmbeddingOptimizer(const std::vector<torch::Tensor>& tables, optim::OptimizerOptions options,
                          std::vector<bool> stochastic_rounding = {}, std::vector<optim::ShardOffsets> offsets = {});
  const optim::OptimizerOptions& options() const { return options_; }
  /// The learning rate of the next backward passes (a schedule sets it before each step).
  void set_lr(double lr) { options_.lr(lr); }
  optim::RowUpdate rule() const { return rule_; }
  /// Per table: undefined for sgd, else the state tensor (float32).
  std::vector<torch::Tensor>& states() { return states_; }
  const std::vector<torch::Tensor>& states() const { return states_; }
  /// "sum" (adagrad), "momentum1" (rowwise_adagrad), "" (sgd): TorchRec/FBGEMM's names.
  std::string state_name() const;
  /// Moves the state to `device` (the tables moved there).
  void to(torch::Device device);
  /// How table t's updated rows are written back at the current step
  /// (RowRounding::row left 0 for the caller).
  optim::RowRounding rounding(size_t t) const {
    return rounding_.rounding(t < stochastic_rounding_.size() && stochastic_rounding_[t],
                              t < offsets_.size() ? offsets_[t] : optim::ShardOffsets{});
  }
  bool any_stochastic_rounding() const;
  /// Called once per backward update (the next step's random bits).
  void advance_step() { rounding_.advance(); }
  /// The rounding's seed and step (optim::RoundingState; undefined tensor
  /// when no table rounds stochastically), saved with the optimizer state.
  optim::RoundingState& rounding_state() { return rounding_; }
  const optim::RoundingState& rounding_state() const { return rounding_; }

 private:
  optim::OptimizerOptions options_;
  optim::RowUpdate rule_;
  std::vector<torch::Tensor> states_;
  std::vector<bool> stochastic_rounding_;
  std::vector<optim::ShardOffsets> offsets_;
  optim::RoundingState rounding_;
};

/// True when fused lookups on `device` run a kernel of their own (the CPU
/// always; CUDA when this build has recmod's CUDA kernels) rather than the
/// tensor-op path.
bool fused_lookup_has_kernel(const torch::Device& device);

/// Raises (InputError) an out-of-range id that a CUDA lookup on `device`
/// met: the GPU does not stop at a bad id (that would stall it every step);
/// the id contributes nothing and the next lookup on the device, or this
/// call (which synchronizes the device), reports it. No-op elsewhere.
void check_fused_lookup_errors(const torch::Device& device);

/// Pooled lookups, (B, plan.output_dim) float32: for slot s = (t, k, c) and
/// sample b, out[b, c:c+D_t] = pool_{i in bag(k, b)} w_i * W_t[id_i], with
/// fp32 accumulation (SUM; MEAN divides by the bag length; empty bags give
/// zeros). CPU tables use one kernel parallel over bags (each output written
/// by one thread, so the result does not depend on the thread count); CUDA
/// tables one kernel launch for every table (recmod/cuda/tbe.h, when built
/// with CUDA); other devices, or `generic`, torch::embedding_bag per slot.
/// Throws InputError for an id outside its table.
torch::Tensor fused_pooled_forward(const FusedLookupPlan& plan, const FusedLookupInput& input, bool generic = false);

/// The backward of fused_pooled_forward fused with the optimizer: given
/// grad_out (B, output_dim), for each table sums the gradient of every
/// touched row over the batch (duplicate ids combined, in input order) and
/// applies `optimizer`'s update to that row once. Returns the gradient of
/// the per-sample weights (computed from the weights before the update)
/// when `need_weights_grad`, else an undefined tensor. On the CPU the rows
/// are grouped with a stable radix sort and updated in parallel, each row by
/// one thread: deterministic, and independent of the thread count.
torch::Tensor fused_backward_update(const FusedLookupPlan& plan, const FusedLookupInput& input,
                                    const torch::Tensor& grad_out, FusedEmbeddingOptimizer& optimizer,
                                    bool need_weights_grad, bool generic = false);

/// fused_pooled_forward with autograd: when grad mode is on and a table or
/// the per-sample weights require grad, the output gets a backward node that
/// runs fused_backward_update. The tables never receive a .grad (their
/// update has been applied when backward returns); the per-sample weights
/// receive theirs as usual.
torch::Tensor fused_embedding_bag(const FusedLookupPlan& plan, const FusedLookupInput& input,
                                  std::shared_ptr<FusedEmbeddingOptimizer> optimizer, bool generic = false);

}  // namespace recmod
