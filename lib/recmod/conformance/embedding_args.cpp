#include "recmod/conformance/embedding_args.h"

#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/conformance/json_args.h"
#include "recmod/modules/module_args.h"

namespace recmod::conformance {

using json = nlohmann::ordered_json;

namespace {

const json& required(const json& j, const char* key, const std::string& where) {
  if (!j.is_object() || !j.contains(key)) throw_input_error(where, ": missing argument '", key, "'");
  return j.at(key);
}

}  // namespace

ParsedTables tables_from_json(const json& tables) {
  if (!tables.is_array()) throw_input_error("tables: expected a list of tables");
  ParsedTables out;
  for (size_t i = 0; i < tables.size(); ++i) {
    const JsonArgs t(tables[i], str_cat("tables[", i, "]"));
    const PoolingType pooling = read_pooling(t, /*allow_none=*/true);
    if (pooling == PoolingType::NONE) {
      EmbeddingConfig c;
      read_table_args(t, c, /*allow_quantized=*/true);
      out.configs.push_back(std::move(c));
    } else {
      EmbeddingBagConfig c;
      read_table_args(t, c, /*allow_quantized=*/true);
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
