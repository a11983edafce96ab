#pragma once
// `recmod evict` in a distributed run: EvictionTracker's counts over the
// sharded ManagedCollisionEmbeddingBagCollection nodes. Each rank streams
// its rows of each global batch through the nodes (the ids go to their
// shards as in training, each shard profiles, remaps and evicts its own
// ids, evicted rows re-drawn as in training) and counts what its shards
// met; every id goes to exactly one shard, so the counts add up over the
// ranks (distinct ids after the input hash).
#include <nlohmann/json.hpp>
#include <torch/nn/module.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "recmod/dist/communicator.h"
#include "recmod/dist/managed_shards.h"
#include "recmod/dist/sharded_mc_embedding_bag.h"
#include "recmod/mc/eviction_report.h"
#include "recmod/sparse/keyed_jagged_tensor.h"

namespace recmod::dist {

class ShardedEvictionTracker {
 public:
  /// The model's direct children that are sharded MC-EBCs; InputError when
  /// there is none. Starts counting their shards' lookups.
  ShardedEvictionTracker(torch::nn::Module& model, std::shared_ptr<Communicator> comm);
  /// This rank's rows of one global batch through every node, in training
  /// mode and without grad. Collective.
  void observe(const KeyedJaggedTensor& features);
  /// EvictionTracker::to_json's entries, summed over the ranks (the same
  /// on every rank). Collective.
  nlohmann::json to_json() const;

 private:
  struct Table {
    TableEvictionStats stats;  // this rank's shard: ids_seen, hits, evicted, slots_used
    std::shared_ptr<ManagedLookupCounts> counts;  // null: no rows of it here
  };
  std::shared_ptr<Communicator> comm_;
  std::vector<std::pair<std::string, std::shared_ptr<ShardedManagedCollisionEmbeddingBagCollectionImpl>>> nodes_;
  std::vector<Table> tables_;  // grouped by node, in nodes_' order
};

}  // namespace recmod::dist
