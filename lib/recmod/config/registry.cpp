#include "recmod/config/registry.h"

#include "recmod/config/basic_nodes.h"
#include "recmod/config/dense_nodes.h"
#include "recmod/config/embedding_nodes.h"
#include "recmod/config/fp_nodes.h"
#include "recmod/config/mc_nodes.h"

namespace recmod::config {

const std::vector<NodeType>& node_types() {
  static const std::vector<NodeType> types = {
      {"EmbeddingBagCollection", build_embedding_bag_collection},
      {"EmbeddingCollection", build_embedding_collection},
      {"ManagedCollisionEmbeddingBagCollection", build_mc_embedding_bag_collection},
      {"ManagedCollisionEmbeddingCollection", build_mc_embedding_collection},
      {"FeatureProcessedEmbeddingBagCollection", build_feature_processed_embedding_bag_collection},
      {"MLP", build_mlp},
      {"Perceptron", build_perceptron},
      {"SwishLayerNorm", build_swish_layer_norm},
      {"CrossNet", build_crossnet},
      {"LowRankCrossNet", build_low_rank_crossnet},
      {"VectorCrossNet", build_vector_crossnet},
      {"LowRankMixtureCrossNet", build_low_rank_mixture_crossnet},
      {"DeepFM", build_deepfm},
      {"FactorizationMachine", build_factorization_machine},
      {"Concat", build_concat},
      {"DotInteraction", build_dot_interaction},
      {"SequencePool", build_sequence_pool},
      {"Linear", build_linear},
  };
  return types;
}

const NodeType* find_node_type(const std::string& name) {
  for (const auto& t : node_types())
    if (t.name == name) return &t;
  return nullptr;
}

std::vector<std::string> node_type_names() {
  std::vector<std::string> names;
  for (const auto& t : node_types()) names.push_back(t.name);
  return names;
}

}  // namespace recmod::config
