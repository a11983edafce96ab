#pragma once
// Builder of FeatureProcessedEmbeddingBagCollection nodes (TorchRec's
// torchrec.modules.fp_embedding_modules): position-weighted feature
// processors in front of a weighted EmbeddingBagCollection.
#include <vector>

#include "recmod/config/node_builder.h"

namespace recmod::config {

/// tables: as EmbeddingBagCollection (pooling sum); feature_processors:
/// {feature: {max_feature_length: N}}, one PositionWeightedModule per listed
/// feature (the others get weight 1). The position weights are dense
/// parameters (dense optimizer), the tables go to the embedding optimizer.
BuiltNode build_feature_processed_embedding_bag_collection(const NodeSpec& spec, const std::vector<Port>& inputs);

}  // namespace recmod::config
