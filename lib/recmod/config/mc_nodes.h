#pragma once
// Builders of ManagedCollisionEmbeddingBagCollection and
// ManagedCollisionEmbeddingCollection nodes: an embedding collection whose tables each keep their zch_size most
// valuable ids (MCH managed collision, TorchRec's mc_modules).
#include <vector>

#include "recmod/config/node_builder.h"
#include "recmod/mc/mc_embedding_modules.h"

namespace recmod::config {

/// tables[i].managed_collision: {zch_size (+ mch_size = num_embeddings), eviction:
/// lfu | lru | distance_lfu, eviction_interval, decay_exponent, threshold:
/// none | average | dynamic, threshold_skew_multiplier, input_hash_size,
/// input_hash: mod | murmur3, mch_size, mch_hash_func: mod | murmur3,
/// output_global_offset}; node options reset_evicted_rows (default true),
/// is_weighted.
BuiltNode build_mc_embedding_bag_collection(const NodeSpec& spec, const std::vector<Port>& inputs);
/// The same managed tables around an EmbeddingCollection (sequence output).
BuiltNode build_mc_embedding_collection(const NodeSpec& spec, const std::vector<Port>& inputs);

}  // namespace recmod::config
