#pragma once
// Builder of ManagedCollisionEmbeddingBagCollection nodes: an
// EmbeddingBagCollection whose tables each keep their zch_size most
// valuable ids (MCH managed collision, TorchRec's mc_modules).
#include <vector>

#include "recmod/config/node_builder.h"
#include "recmod/mc/mc_embedding_modules.h"

namespace recmod::config {

/// tables[i].managed_collision: {zch_size (= num_embeddings), eviction:
/// lfu | lru | distance_lfu, eviction_interval, decay_exponent, threshold:
/// none | average | dynamic, threshold_skew_multiplier, input_hash_size,
/// input_hash: mod | murmur3}; node option reset_evicted_rows (default true).
BuiltNode build_mc_embedding_bag_collection(const NodeSpec& spec, const std::vector<Port>& inputs);

}  // namespace recmod::config
