#include "recmod/conformance/embedding_args.h"

#include <torch/torch.h>

#include "recmod/common/errors.h"

namespace recmod::conformance {

using json = nlohmann::ordered_json;

namespace {

const json& required(const json& j, const char* key, const std::string& where) {
  if (!j.is_object() || !j.contains(key)) throw_input_error(where, ": missing field '", key, "'");
  return j.at(key);
}

template <typename T>
T get_as(const json& j, const char* key, const std::string& where) {
  try {
    return required(j, key, where).get<T>();
  } catch (const json::exception& e) {
    throw_input_error(where, ".", key, ": ", e.what());
  }
}

void read_base(const json& t, const std::string& where, BaseEmbeddingConfig& c) {
  c.name = get_as<std::string>(t, "name", where);
  c.num_embeddings = get_as<int64_t>(t, "num_embeddings", where);
  c.embedding_dim = get_as<int64_t>(t, "embedding_dim", where);
  if (t.contains("feature_names")) c.feature_names = get_as<std::vector<std::string>>(t, "feature_names", where);
  if (t.contains("data_type")) c.data_type = data_type_from_string(get_as<std::string>(t, "data_type", where));
  if (t.contains("weight_init_min")) c.weight_init_min = get_as<double>(t, "weight_init_min", where);
  if (t.contains("weight_init_max")) c.weight_init_max = get_as<double>(t, "weight_init_max", where);
}

}  // namespace

ParsedTables tables_from_json(const json& tables) {
  if (!tables.is_array()) throw_input_error("tables: expected a list of tables");
  ParsedTables out;
  for (size_t i = 0; i < tables.size(); ++i) {
    const json& t = tables[i];
    const std::string where = str_cat("tables[", i, "]");
    const PoolingType pooling =
        t.contains("pooling") ? pooling_type_from_string(get_as<std::string>(t, "pooling", where)) : PoolingType::SUM;
    if (pooling == PoolingType::NONE) {
      EmbeddingConfig c;
      read_base(t, where, c);
      out.configs.push_back(std::move(c));
    } else {
      EmbeddingBagConfig c;
      read_base(t, where, c);
      c.pooling = pooling;
      out.bag_configs.push_back(std::move(c));
    }
  }
  return out;
}

std::vector<EmbeddingBagConfig> bag_configs_from_json(const json& tables) {
  ParsedTables parsed = tables_from_json(tables);
  if (!parsed.configs.empty())
    throw_input_error("tables: table '", parsed.configs.front().name,
                      "' has pooling NONE, but an EmbeddingBagCollection needs SUM or MEAN");
  return std::move(parsed.bag_configs);
}

std::vector<EmbeddingConfig> embedding_configs_from_json(const json& tables) {
  ParsedTables parsed = tables_from_json(tables);
  if (!parsed.bag_configs.empty())
    throw_input_error("tables: table '", parsed.bag_configs.front().name, "' has pooling ",
                      to_string(parsed.bag_configs.front().pooling), ", but an EmbeddingCollection needs NONE");
  return std::move(parsed.configs);
}

EmbeddingBagCollection ebc_from_json(const json& args) {
  return EmbeddingBagCollection(bag_configs_from_json(required(args, "tables", "args")),
                                args.value("is_weighted", false));
}

EmbeddingCollection ec_from_json(const json& args) {
  return EmbeddingCollection(embedding_configs_from_json(required(args, "tables", "args")),
                             args.value("need_indices", false));
}

}  // namespace recmod::conformance
