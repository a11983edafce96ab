#pragma once
// How `recmod train` trains a model, in one place for the trainer, `recmod
// profile` and the benchmarks, so that what they time is what trains: on
// the CPU every EmbeddingBagCollection takes the fused path
// (training.fused_embeddings: its tables are updated inside backward by the
// embedding optimizer); every other parameter goes to a ModelOptimizer.
#include <torch/types.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "recmod/common/state_dict.h"
#include "recmod/config/graph.h"
#include "recmod/optim/model_optimizer.h"

namespace recmod {
class EmbeddingBagCollectionImpl;
}

namespace recmod::train {

/// EmbeddingBagCollections on the fused path, by module path.
using FusedCollections = std::vector<std::pair<std::string, std::shared_ptr<EmbeddingBagCollectionImpl>>>;

class TrainingSetup {
 public:
  /// Enables the fused path where the config and device allow it and builds
  /// the ModelOptimizer for the rest. The model must already be on `device`.
  TrainingSetup(config::ModelGraph& model, const config::TrainingSpec& training, const torch::Device& device);

  /// Before forward / after backward, as for any optimizer.
  void zero_grad() { optimizer_.zero_grad(); }
  void step() { optimizer_.step(); }

  /// All optimizer state under ModelOptimizer's key names; the fused
  /// collections' state under the keys the ModelOptimizer would give it
  /// ("embedding.<path>.embedding_bags.<t>.weight.momentum1"), so a
  /// checkpoint does not depend on which path trained it. Tensors shared.
  StateDict state_dict() const;
  /// Strict: exactly state_dict()'s keys and shapes; else CheckpointError naming `origin`.
  void load_state_dict(const StateDict& state, const std::string& origin);

  const FusedCollections& fused() const { return fused_; }

 private:
  FusedCollections fused_;
  optim::ModelOptimizer optimizer_;
};

}  // namespace recmod::train
