#pragma once
// EmbeddingBagCollection and EmbeddingCollection, as
// torchrec.modules.embedding_modules (v0.6).
#include <torch/nn/module.h>
#include <torch/nn/modules/container/moduledict.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "recmod/common/state_dict.h"
#include "recmod/modules/embedding_configs.h"
#include "recmod/modules/embedding_interfaces.h"
#include "recmod/sparse/jagged_tensor.h"
#include "recmod/sparse/keyed_jagged_tensor.h"
#include "recmod/sparse/keyed_tensor.h"
#include "recmod/optim/optimizer_options.h"
#include "recmod/optim/row_update.h"

namespace recmod {

class FusedEmbeddingOptimizer;
struct SequenceLookupPlan;

/// TorchRec's get_embedding_names_by_table: per table, the output name of
/// each of its features: the feature name, or "feature@table" when several
/// tables use that feature. Empty feature lists stand for [table name].
std::vector<std::vector<std::string>> get_embedding_names_by_table(
    const std::vector<std::string>& table_names, const std::vector<std::vector<std::string>>& feature_names);

template <typename Config>
std::vector<std::vector<std::string>> get_embedding_names_by_table(const std::vector<Config>& tables) {
  std::vector<std::string> names;
  std::vector<std::vector<std::string>> features;
  for (const auto& t : tables) {
    names.push_back(t.name);
    features.push_back(t.feature_names);
  }
  return get_embedding_names_by_table(names, features);
}

/// While one is alive on this thread, new embedding tables are not
/// allocated (their weights are meta tensors) and their default init only
/// advances torch's CPU generator exactly as drawing the table would,
/// remembering the generator's state, so that any block of rows and columns
/// can be drawn later with the values the full table would have had
/// (EmbeddingTableImpl::block). A distributed run builds its model this way
/// and each rank draws only its shards: no rank ever holds a whole table.
/// (torch's CPU uniform_ draws element by element in order, so a table
/// drawn in row chunks equals the table drawn at once.)
class DeferTableAllocation {
 public:
  /// `whole` says the tables will be allocated whole later (a checkpoint is
  /// loaded into them), so the one-host memory checks still apply; a
  /// distributed run's shards are checked by its planner instead.
  explicit DeferTableAllocation(bool whole = false);
  ~DeferTableAllocation();
  DeferTableAllocation(const DeferTableAllocation&) = delete;
  DeferTableAllocation& operator=(const DeferTableAllocation&) = delete;
  static bool active();
  /// Active, and the tables will not be allocated whole on this host.
  static bool sharded();

 private:
  bool previous_;
  bool previous_whole_;
};

/// One table's parameter holder: a module with a single parameter `weight`
/// of shape (num_embeddings, embedding_dim), so that a ModuleDict of them
/// gives TorchRec's keys `embedding_bags.<table>.weight`.
class EmbeddingTableImpl : public torch::nn::Module {
 public:
  EmbeddingTableImpl(int64_t num_embeddings, int64_t embedding_dim, torch::Dtype dtype, torch::Device device);
  void reset() {}
  /// The config's init (init_fn or uniform); deferred (see
  /// DeferTableAllocation) for an unallocated table with the uniform init.
  void init(const BaseEmbeddingConfig& config);
  /// Not allocated yet: block() draws its values, materialize() allocates it.
  bool deferred() const { return deferred_.has_value(); }
  /// Rows [row_offset, +rows) x columns [col_offset, +cols), a new CPU
  /// tensor: copied from the weight, or drawn as the full init would have.
  torch::Tensor block(int64_t row_offset, int64_t rows, int64_t col_offset, int64_t cols) const;
  /// Allocates a deferred table on the CPU and draws it in full (with
  /// `draw` false: uninitialised, to be loaded).
  void materialize(bool draw = true);
  torch::Tensor weight;

 private:
  struct Deferred {
    torch::Tensor generator_state;  // torch's CPU generator before the init
    double min = 0;
    double max = 0;
  };
  std::optional<Deferred> deferred_;
};
TORCH_MODULE(EmbeddingTable);

/// Allocates every deferred table of `module` (those no sharding took over),
/// drawn as the full init would have; with `draw` false the values are left
/// uninitialised, for a caller that loads them next (a checkpoint).
void materialize_deferred_tables(torch::nn::Module& module, bool draw = true);

struct EmbeddingBagCollectionOptions {
  /* implicit */ EmbeddingBagCollectionOptions(std::vector<EmbeddingBagConfig> tables)
      : tables_(std::move(tables)) {}
  TORCH_ARG(std::vector<EmbeddingBagConfig>, tables);
  /// Use the input KJT's weights as per-sample weights (SUM tables only).
  TORCH_ARG(bool, is_weighted) = false;
  TORCH_ARG(torch::Device, device) = torch::kCPU;
  /// Sparse gradients for the table weights (torch.nn.EmbeddingBag's
  /// `sparse`); off by default, as in torch.
  TORCH_ARG(bool, sparse) = false;
};

/// Pooled embeddings of several tables: KeyedJaggedTensor in, KeyedTensor out.
///
/// For table t with features f_1..f_F and sample b:
///   out[b, f] = pool_{i in bag(f, b)} w_i * W_t[id_i]   (pool = SUM or MEAN,
///   w_i = KJT weight when is_weighted else 1; an empty bag gives zeros).
/// Output keys: table order, then feature order within a table; a feature
/// used by several tables is named "feature@table". values: (B, sum D_k),
/// float32. Parameters: embedding_bags.<table>.weight (num_embeddings, D).
/// Input keys no table uses are ignored.
///
/// Variable batch per feature (TorchRec v0.6): feature k is pooled over its
/// own S_k samples, (S_k, D); with inverse_indices each feature's rows are
/// then gathered to B_out = inverse_indices.indices.size(1) rows
/// (process_pooled_embeddings), else all S_k must be equal. Gradients flow
/// back through the gather (a sample shown in n rows gets n times the
/// gradient). The fused training path takes one batch size only.
///
/// Implements EmbeddingBagCollectionInterface; forward is virtual, and a
/// subclass (dist::ShardedEmbeddingBagCollectionImpl) keeps this forward.
class EmbeddingBagCollectionImpl : public EmbeddingBagCollectionInterface {
 public:
  explicit EmbeddingBagCollectionImpl(EmbeddingBagCollectionOptions options);
  EmbeddingBagCollectionImpl(std::vector<EmbeddingBagConfig> tables, bool is_weighted,
                             torch::Device device = torch::kCPU);

  KeyedTensor forward(const KeyedJaggedTensor& features) override;

  /// The table configs, with empty feature_names filled in as [name].
  const std::vector<EmbeddingBagConfig>& embedding_bag_configs() const override { return options_.tables(); }
  bool is_weighted() const override { return options_.is_weighted(); }
  bool sparse() const { return options_.sparse(); }
  void set_sparse(bool sparse) { options_.sparse(sparse); }
  torch::Device device() const { return options_.device(); }
  /// Re-draws every table with its config's init (init_fn or uniform).
  void reset_parameters();
  /// Output keys in order, and the width of each.
  const std::vector<std::string>& embedding_names() const { return embedding_names_; }
  const std::vector<int64_t>& length_per_embedding() const { return length_per_embedding_; }
  /// sum(length_per_embedding): the width of the output values.
  int64_t output_dim() const;
  /// The weight of one table; throws InputError naming the tables.
  const torch::Tensor& table_weight(const std::string& table) const;
  /// A block of one table's values (EmbeddingTableImpl::block), allocated or not.
  torch::Tensor table_block(const std::string& table, int64_t row_offset, int64_t rows, int64_t col_offset,
                            int64_t cols) const;

  /// Changes the module's device (and options().device()).
  void to(torch::Device device, bool non_blocking = false) override;
  using torch::nn::Module::to;

  /// Opt-in fused training path (see fused_embedding_bag.h): forward pools
  /// every table in one CPU kernel, and backward applies `options`' update
  /// (sgd | adagrad | rowwise_adagrad, optim::apply_row_update) to the
  /// touched rows directly, so the tables never get a .grad and must not be
  /// given to another optimizer. Without grad mode, forward is only the
  /// lookup. On other devices the same semantics run with tensor ops
  /// (correct, not fast). Re-enabling resets the optimizer state.
  /// Throws InputError for invalid options. `offsets` (empty: all (0, 0))
  /// per table: where a sharded collection's local table sits in its full
  /// table, for stochastic rounding's random bits (optim::ShardOffsets).
  void enable_fused_optimizer(const optim::OptimizerOptions& options, std::vector<optim::ShardOffsets> offsets = {});
  /// Back to the default (autograd) path; drops the fused optimizer state.
  void disable_fused_optimizer();
  bool fused_optimizer_enabled() const { return fused_ != nullptr; }
  /// The fused optimizer's learning rate from now on (an lr schedule); the fused path must be on.
  void set_fused_lr(double lr);
  /// The fused optimizer's state under "embedding_bags.<table>.weight.sum"
  /// (adagrad) or ".momentum1" (rowwise_adagrad), float32, tensors shared;
  /// empty for sgd or when the fused path is off. Prefixed with
  /// "embedding.<module path>." these are ModelOptimizer's keys.
  StateDict fused_optimizer_state_dict() const;
  /// Strict counterpart of fused_optimizer_state_dict(): every key present
  /// with its shape, no other key; else CheckpointError naming `origin`.
  void load_fused_optimizer_state_dict(const StateDict& state, const std::string& origin);

 private:
  KeyedTensor forward_fused(const KeyedJaggedTensor& features);
  KeyedTensor forward_variable_batch(const KeyedJaggedTensor& features);

  EmbeddingBagCollectionOptions options_;
  std::shared_ptr<FusedEmbeddingOptimizer> fused_;
  torch::nn::ModuleDict embedding_bags_{nullptr};
  std::vector<EmbeddingTable> tables_;
  std::vector<std::string> embedding_names_;
  std::vector<int64_t> length_per_embedding_;
};

/// The module holder (TORCH_MODULE's), plus a constructor that takes a
/// braced list of tables: EmbeddingBagCollection({EmbeddingBagConfig(...)}, true).
class EmbeddingBagCollection : public torch::nn::ModuleHolder<EmbeddingBagCollectionImpl> {
 public:
  using torch::nn::ModuleHolder<EmbeddingBagCollectionImpl>::ModuleHolder;
  using Impl = EmbeddingBagCollectionImpl;
  EmbeddingBagCollection(std::vector<EmbeddingBagConfig> tables, bool is_weighted,
                         torch::Device device = torch::kCPU)
      : ModuleHolder(std::make_shared<Impl>(std::move(tables), is_weighted, device)) {}
};

struct EmbeddingCollectionOptions {
  /* implicit */ EmbeddingCollectionOptions(std::vector<EmbeddingConfig> tables) : tables_(std::move(tables)) {}
  TORCH_ARG(std::vector<EmbeddingConfig>, tables);
  /// Put each looked-up id in the output JaggedTensor's weights.
  TORCH_ARG(bool, need_indices) = false;
  TORCH_ARG(torch::Device, device) = torch::kCPU;
  TORCH_ARG(bool, sparse) = false;
};

/// Unpooled (sequence) embeddings: KeyedJaggedTensor in,
/// Dict[str, JaggedTensor] out in table order then feature order (names as
/// in EmbeddingBagCollection). Each output has values (n_f, D) float32 with
/// values[i] = W_t[id_i], the lengths of the input feature, and, with
/// need_indices, the ids as weights. All tables share one embedding_dim.
/// Parameters: embeddings.<table>.weight. Implements EmbeddingCollectionInterface.
class EmbeddingCollectionImpl : public EmbeddingCollectionInterface {
 public:
  explicit EmbeddingCollectionImpl(EmbeddingCollectionOptions options);
  EmbeddingCollectionImpl(std::vector<EmbeddingConfig> tables, bool need_indices,
                          torch::Device device = torch::kCPU);

  JaggedTensorDict forward(const KeyedJaggedTensor& features) override;

  const std::vector<EmbeddingConfig>& embedding_configs() const override { return options_.tables(); }
  bool need_indices() const override { return options_.need_indices(); }
  bool sparse() const { return options_.sparse(); }
  void set_sparse(bool sparse) { options_.sparse(sparse); }
  torch::Device device() const { return options_.device(); }
  /// The shared embedding_dim (-1 when there are no tables).
  int64_t embedding_dim() const override { return embedding_dim_; }
  void reset_parameters();
  /// Output keys per table (embedding_names_by_table) and flattened.
  const std::vector<std::vector<std::string>>& embedding_names_by_table() const override {
    return embedding_names_by_table_;
  }
  std::vector<std::string> embedding_names() const;
  const torch::Tensor& table_weight(const std::string& table) const;
  /// A block of one table's values (EmbeddingTableImpl::block), allocated or not.
  torch::Tensor table_block(const std::string& table, int64_t row_offset, int64_t rows, int64_t col_offset,
                            int64_t cols) const;

  void to(torch::Device device, bool non_blocking = false) override;
  using torch::nn::Module::to;

  /// Opt-in fused training path (see fused_embedding_collection.h): forward
  /// gathers every table's rows in one lookup (one kernel launch on CUDA),
  /// and backward applies `options`' update (sgd | adagrad |
  /// rowwise_adagrad, optim::apply_row_update's rule, as the row-sparse
  /// optimizer does) to the touched rows directly, so the tables never get
  /// a .grad and must not be given to another optimizer. Devices without the
  /// kernels run the same semantics with tensor ops. Re-enabling resets the
  /// optimizer state. Throws InputError for invalid options.
  void enable_fused_optimizer(const optim::OptimizerOptions& options);
  void disable_fused_optimizer();
  bool fused_optimizer_enabled() const { return fused_ != nullptr; }
  void set_fused_lr(double lr);
  /// The fused optimizer's state under "embeddings.<table>.weight.sum" or
  /// ".momentum1" (the row-sparse optimizer's names after "embedding.<module
  /// path>."), tensors shared; empty for sgd or when the fused path is off.
  StateDict fused_optimizer_state_dict() const;
  /// Strict counterpart; CheckpointError naming `origin`.
  void load_fused_optimizer_state_dict(const StateDict& state, const std::string& origin);

 private:
  SequenceLookupPlan sequence_plan(const KeyedJaggedTensor& features) const;
  JaggedTensorDict forward_fused(const KeyedJaggedTensor& features, const SequenceLookupPlan& plan);

  EmbeddingCollectionOptions options_;
  torch::nn::ModuleDict embeddings_{nullptr};
  std::vector<EmbeddingTable> tables_;
  std::vector<std::vector<std::string>> embedding_names_by_table_;
  int64_t embedding_dim_ = -1;
  std::shared_ptr<FusedEmbeddingOptimizer> fused_;
};

/// The module holder, plus a constructor that takes a braced list of tables.
class EmbeddingCollection : public torch::nn::ModuleHolder<EmbeddingCollectionImpl> {
 public:
  using torch::nn::ModuleHolder<EmbeddingCollectionImpl>::ModuleHolder;
  using Impl = EmbeddingCollectionImpl;
  EmbeddingCollection(std::vector<EmbeddingConfig> tables, bool need_indices, torch::Device device = torch::kCPU)
      : ModuleHolder(std::make_shared<Impl>(std::move(tables), need_indices, device)) {}
};

/// TorchRec's reorder_inverse_indices: the rows of inverse_indices for
/// `feature_names` in order, found by name ("f@table" uses row "f"); an
/// empty tensor without inverse indices. InputError naming a feature that
/// inverse_indices lacks.
torch::Tensor reorder_inverse_indices(const std::optional<InverseIndices>& inverse_indices,
                                      const std::vector<std::string>& feature_names);

/// TorchRec's process_pooled_embeddings: out = cat_k(pooled[k][inverse_indices[k]], dim 1),
/// (B_out, sum D_k); with an empty inverse_indices just the concatenation.
torch::Tensor process_pooled_embeddings(const std::vector<torch::Tensor>& pooled_embeddings,
                                        const torch::Tensor& inverse_indices);

}  // namespace recmod
