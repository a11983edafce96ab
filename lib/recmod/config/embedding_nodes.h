#pragma once
// Builders of the embedding node types: EmbeddingBagCollection (pooled,
// KeyedTensor out) and EmbeddingCollection (sequence, JaggedTensors out).
#include <memory>
#include <string>
#include <vector>

#include "recmod/config/node_builder.h"
#include "recmod/modules/embedding_configs.h"
#include "recmod/modules/embedding_interfaces.h"

namespace recmod::config {

/// tables: [{name, num_embeddings, embedding_dim, feature_names, pooling,
/// data_type}]; `extra_keys` are further keys a table may have (read by the
/// caller). data_type: fp32 | fp16 | bf16 | int8 | int4 | int2 (either
/// case); the int types only where `allow_quantized` (plain EBC / EC).
std::vector<EmbeddingBagConfig> read_embedding_bag_configs(const ConfigNode& tables,
                                                           const std::vector<std::string>& extra_keys = {},
                                                           bool allow_quantized = true);

/// tables: [{name, num_embeddings, embedding_dim, feature_names}], one
/// embedding_dim for all (an EmbeddingCollection's rule).
std::vector<EmbeddingConfig> read_embedding_configs(const ConfigNode& tables,
                                                   const std::vector<std::string>& extra_keys = {},
                                                   bool allow_quantized = true);
BuiltNode build_embedding_bag_collection(const NodeSpec& spec, const std::vector<Port>& inputs);
BuiltNode build_embedding_collection(const NodeSpec& spec, const std::vector<Port>& inputs);

/// The graph node of any EmbeddingBagCollectionInterface (the built-in
/// EmbeddingBagCollection's too): its shape is pooled with the configs'
/// embedding names and each table's embedding_dim; forward checks the ids
/// against the configs' num_embeddings and, for a module other than the
/// built-in one, that its output has those keys and widths (InputError
/// naming nodes.<node>). One sparse input.
BuiltNode embedding_bag_collection_node(std::shared_ptr<EmbeddingBagCollectionInterface> module,
                                        const std::string& node);
/// The same for any EmbeddingCollectionInterface: sequence of
/// embedding_names_by_table(), each embedding_dim() wide.
BuiltNode embedding_collection_node(std::shared_ptr<EmbeddingCollectionInterface> module, const std::string& node);
/// The output shape a module implementing the interface promises.
ValueShape embedding_output_shape(const EmbeddingBagCollectionInterface& module);
ValueShape embedding_output_shape(const EmbeddingCollectionInterface& module);

/// The features a list of tables reads (for the input check).
template <typename Config>
std::vector<std::string> features_of(const std::vector<Config>& tables) {
  std::vector<std::string> out;
  for (const auto& t : tables)
    for (const auto& f : t.feature_names.empty() ? std::vector<std::string>{t.name} : t.feature_names) out.push_back(f);
  return out;
}

}  // namespace recmod::config
