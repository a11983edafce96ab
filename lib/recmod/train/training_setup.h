#pragma once
// How `recmod train` trains a model, in one place for the trainer, `recmod
// profile` and the benchmarks, so that what they time is what trains: on
// the CPU every EmbeddingBagCollection takes the fused path
// (training.fused_embeddings: its tables are updated inside backward by the
// embedding optimizer); every other parameter goes to a ModelOptimizer.
#include <torch/types.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "recmod/common/state_dict.h"
#include "recmod/config/graph.h"
#include "recmod/dist/communicator.h"
#include "recmod/dist/sharding_plan.h"
#include "recmod/optim/model_optimizer.h"

namespace recmod {
class EmbeddingBagCollectionImpl;
class EmbeddingCollectionImpl;
}

namespace recmod::train {

class GraphStep;

/// EmbeddingBagCollections on the fused path, by module path.
using FusedCollections = std::vector<std::pair<std::string, std::shared_ptr<EmbeddingBagCollectionImpl>>>;
/// EmbeddingCollections on the fused path (CUDA kernels only), by module path.
using FusedSequenceCollections = std::vector<std::pair<std::string, std::shared_ptr<EmbeddingCollectionImpl>>>;

class TrainingSetup {
 public:
  /// Enables the fused path where the config and device allow it and builds
  /// the ModelOptimizer for the rest. The model must already be on `device`.
  TrainingSetup(config::ModelGraph& model, const config::TrainingSpec& training, const torch::Device& device);
  /// The same, for one rank of a distributed run (a model already sharded
  /// with shard_model): the replicated parameters' gradients are summed over
  /// the ranks before each step (DDP's all-reduce; each rank's loss is
  /// weighted by its share of the global batch, so the sum is the gradient
  /// of the global mean).
  /// `plan` (the one shard_model applied; empty: none known) places each
  /// sharded table in its full table, so that stochastic rounding draws
  /// the random bits of the global row and column and N ranks round as one
  /// process (optim::ShardOffsets); without it shards round by local row.
  TrainingSetup(config::ModelGraph& model, const config::TrainingSpec& training, const torch::Device& device,
                std::shared_ptr<dist::Communicator> comm, const dist::ShardingPlan& plan = {});

  /// Before forward / after backward, as for any optimizer.
  void zero_grad() { optimizer_.zero_grad(); }
  void step() { optimizer_.step(); }
  /// Sets every optimizer's (fused ones included) learning rate to its
  /// schedule's value for optimizer step `step` (0-based: the steps done
  /// before it; optim::scheduled_lr). The trainer calls it before each step,
  /// so a resumed run (same step count) gets the same rates.
  void schedule_lr(int64_t step);
  /// The learning rates schedule_lr() last set (the configured ones before).
  double dense_lr() const { return dense_lr_; }
  double embedding_lr() const { return embedding_lr_; }

  /// All optimizer state under ModelOptimizer's key names; the fused
  /// collections' state under the keys the ModelOptimizer would give it
  /// ("embedding.<path>.embedding_bags.<t>.weight.momentum1"), so a
  /// checkpoint does not depend on which path trained it. Tensors shared.
  /// When a table rounds stochastically, recmod's own int64 [seed, step]
  /// of the rounding: "stochastic_rounding" (the row-sparse optimizer) and
  /// "stochastic_rounding.<path>" (a fused collection), so that a resumed
  /// run continues the same random bits.
  StateDict state_dict() const;
  /// Strict: exactly state_dict()'s keys and shapes; else CheckpointError naming `origin`.
  void load_state_dict(const StateDict& state, const std::string& origin);

  /// training.cuda_graphs: the split step with its dense part captured
  /// (train/graph_step.h); null when every step runs train_step_eager.
  GraphStep* graph_step() const { return graph_step_.get(); }
  /// What recmod profile reports: "captured (...)", "warming up (...)",
  /// "eager: <reason>".
  std::string cuda_graphs_status() const;
  /// Log lines about the graph decision not yet taken (each reason once;
  /// "" when none), for the trainer to print after a step.
  std::string take_cuda_graphs_notes();
  /// Tests: run the split step without capturing it, on any device (the
  /// same math as a captured step); throws when the model cannot be split.
  void use_uncaptured_split_step(const config::ModelGraph& model);

  const FusedCollections& fused() const { return fused_; }
  /// The EmbeddingCollections on the fused path: on a CUDA device with
  /// recmod's kernels, single process, unsharded, every table float32 /
  /// float16 / bfloat16 rounded to nearest and at most cuda::tbe_max_dim
  /// wide (elsewhere autograd + the row-sparse optimizer, as on the CPU).
  const FusedSequenceCollections& fused_sequences() const { return fused_sequences_; }
  /// The config's tasks (empty: one BCE task), for loss_of.
  const std::vector<config::TaskSpec>& tasks() const { return tasks_; }

  /// The run's ranks (a one-process communicator when not distributed).
  dist::Communicator& comm() const { return *comm_; }
  bool distributed() const { return comm_->world_size() > 1; }
  /// Collective: sums the replicated parameters' gradients over the ranks
  /// (one flat buffer; a parameter without a gradient counts as zeros), and
  /// `extras` (per-step scalars: the loss, a stop request) in the same
  /// buffer, so they cost no collective of their own; returns their sums
  /// (`extras` itself when not distributed).
  std::vector<double> all_reduce_gradients(const std::vector<double>& extras = {});

 private:
  TrainingSetup(config::ModelGraph& model, const config::TrainingSpec& training, const torch::Device& device,
                std::shared_ptr<dist::Communicator> comm, const std::map<const void*, optim::ShardOffsets>& offsets);

  FusedCollections fused_;
  FusedSequenceCollections fused_sequences_;
  optim::ModelOptimizer optimizer_;
  optim::OptimizerOptions dense_options_, embedding_options_;  // as configured (base lr, schedule)
  double dense_lr_ = 0, embedding_lr_ = 0;
  std::shared_ptr<dist::Communicator> comm_;
  std::vector<torch::Tensor> replicated_;  // parameters every rank holds whole
  std::vector<config::TaskSpec> tasks_;
  std::shared_ptr<GraphStep> graph_step_;
  std::string graph_refusal_;  // why graph_step_ is null
  bool refusal_noted_ = false;
};

}  // namespace recmod::train
