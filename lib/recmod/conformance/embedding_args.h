#pragma once
// Builds embedding table configs and modules from golden-case "args"
// (../shared/golden/FORMAT.md, "args conventions"), for every case family
// that holds an EmbeddingBagCollection or EmbeddingCollection.
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "recmod/modules/embedding_configs.h"
#include "recmod/modules/embedding_modules.h"

namespace recmod::conformance {

/// Golden "tables": SUM/MEAN tables become EmbeddingBagConfigs, "NONE"
/// tables EmbeddingConfigs (each table lands in exactly one list).
struct ParsedTables {
  std::vector<EmbeddingBagConfig> bag_configs;
  std::vector<EmbeddingConfig> configs;
};

/// Reads [{"name","embedding_dim","num_embeddings","feature_names","pooling"}, ...]
/// with the config's table reader (modules/module_args.h: "pooling" SUM when
/// absent, "feature_names" [name]; optional "data_type", "weight_init_min/max").
/// Throws InputError naming the table index and field.
ParsedTables tables_from_json(const nlohmann::ordered_json& tables);
/// The same, requiring pooled resp. unpooled tables only.
std::vector<EmbeddingBagConfig> bag_configs_from_json(const nlohmann::ordered_json& tables);
std::vector<EmbeddingConfig> embedding_configs_from_json(const nlohmann::ordered_json& tables);

/// EmbeddingBagCollection / EmbeddingCollection from their case args
/// ({"tables": [...], "is_weighted": bool} / {"tables": [...], "need_indices": bool}).
EmbeddingBagCollection ebc_from_json(const nlohmann::ordered_json& args);
EmbeddingCollection ec_from_json(const nlohmann::ordered_json& args);

}  // namespace recmod::conformance
