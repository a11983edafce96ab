#pragma once
// What `recmod evict` reports: data streamed through a model's
// managed-collision tables (which record ids and evict in training mode),
// counted per table. Works on any module tree, so it is tested without the
// binary.
#include <nlohmann/json.hpp>
#include <torch/nn/module.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "recmod/mc/mc_embedding_modules.h"
#include "recmod/sparse/keyed_jagged_tensor.h"

namespace recmod {

/// One managed table's counts since the tracker started.
struct TableEvictionStats {
  std::string node;   // the MC-EBC's name among the model's children
  std::string table;
  std::vector<std::string> features;
  int64_t slots = 0;       // the table's rows (zch_size)
  int64_t ids_seen = 0;    // ids looked up
  int64_t hits = 0;        // ids that found a slot of their own
  int64_t evicted = 0;     // ids that lost their slot
  int64_t slots_used = 0;  // slots holding an id now
  std::unordered_set<int64_t> distinct;  // raw ids seen
  double hit_rate() const { return ids_seen ? static_cast<double>(hits) / static_cast<double>(ids_seen) : 0.0; }
};

/// A table's entry before any batch: its node, name, features and slots.
TableEvictionStats stats_before_any_batch(const std::string& node, const EmbeddingBagConfig& table);

/// The ids a managed-collision module has placed, ascending (its
/// _mch_sorted_raw_ids without the empty entries). InputError for a module
/// without that buffer.
torch::Tensor placed_ids(torch::nn::Module& module, const std::string& table);

/// One report entry: {node, table, ids_seen, distinct_ids, slots,
/// slots_used, evicted, hit_rate}, `distinct_ids` given (a distributed run
/// counts it per shard).
nlohmann::json eviction_entry(const TableEvictionStats& stats, int64_t distinct_ids);

/// Streams batches through every ManagedCollisionEmbeddingBagCollection
/// child of a model, counting per table.
class EvictionTracker {
 public:
  /// The model's direct children that are MC-EBCs (built with
  /// return_remapped_features, as config nodes are); InputError when there
  /// is none.
  explicit EvictionTracker(torch::nn::Module& model);
  /// One batch's (hashed) sparse features through every MC node, in training
  /// mode and without grad: the modules record the ids and evict.
  void observe(const KeyedJaggedTensor& features);
  const std::vector<TableEvictionStats>& tables() const { return stats_; }
  /// [{node, table, ids_seen, distinct_ids, slots, slots_used, evicted, hit_rate}]
  nlohmann::json to_json() const;

 private:
  std::vector<std::pair<std::string, std::shared_ptr<ManagedCollisionEmbeddingBagCollectionImpl>>> nodes_;
  std::vector<TableEvictionStats> stats_;  // grouped by node, in nodes_' order
};

}  // namespace recmod
