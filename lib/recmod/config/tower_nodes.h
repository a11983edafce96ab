#pragma once
// Builders of EmbeddingTower and EmbeddingTowerCollection nodes (TorchRec's
// torchrec.modules.embedding_tower): an embedding node and an interaction
// node given as nested node maps, built by the registry's own builders.
#include <vector>

#include "recmod/config/node_builder.h"

namespace recmod::config {

/// embedding: {type: EmbeddingBagCollection | EmbeddingCollection |
/// FeatureProcessedEmbeddingBagCollection, <its options>}; interaction:
/// {type: any one-input node type, <its options>}, fed the embedding
/// module's output and giving (B, N). Keys embedding.*, interaction.*.
BuiltNode build_embedding_tower(const NodeSpec& spec, const std::vector<Port>& inputs);

/// towers: a list of {embedding, interaction} as EmbeddingTower's; the
/// outputs concatenated along dim 1. Keys towers.<i>.embedding.*, towers.<i>.interaction.*.
BuiltNode build_embedding_tower_collection(const NodeSpec& spec, const std::vector<Port>& inputs);

}  // namespace recmod::config
