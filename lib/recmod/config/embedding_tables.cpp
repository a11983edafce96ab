#include "recmod/config/embedding_tables.h"

#include <algorithm>
#include <set>

#include "recmod/common/errors.h"
#include "recmod/config/yaml_args.h"
#include "recmod/modules/module_args.h"

namespace recmod::config {

const std::vector<std::string>& embedding_node_types() {
  static const std::vector<std::string> types = {
      "EmbeddingBagCollection", "EmbeddingCollection", "ManagedCollisionEmbeddingBagCollection",
      "ManagedCollisionEmbeddingCollection", "FeatureProcessedEmbeddingBagCollection"};
  return types;
}

namespace {

/// The tables of one `tables:` list, as module `module`.
void add_tables_of(const ConfigNode& tables, const std::string& module, std::vector<dist::TableShape>& out) {
  if (tables.size() == 0) tables.fail("expected at least one table");
  std::set<std::string> seen;
  for (const auto& t : tables.items()) {
    t.expect_map();
    // The node's builder reads the same fields with the same reader
    // (allowed keys and the kind's own rules are checked there).
    BaseEmbeddingConfig table;
    read_table_args(YamlArgs(t), table, /*allow_quantized=*/true);
    if (!seen.insert(table.name).second) t["name"].fail("duplicate table name '" + table.name + "'");
    dist::TableShape shape;
    shape.module = module;
    shape.name = table.name;
    shape.num_embeddings = table.num_embeddings;
    shape.embedding_dim = table.embedding_dim;
    shape.feature_names = table.feature_names;
    // fp16 / bf16 tables train in 2 bytes; the others (int types too) in float32.
    shape.bytes_per_element = table.data_type == DataType::FP16 || table.data_type == DataType::BF16 ? 2 : 4;
    out.push_back(std::move(shape));
  }
}

/// A tower's `embedding:` node map, when it is one of the table-holding types.
void add_tower_tables(const ConfigNode& tower, const std::string& module, std::vector<dist::TableShape>& out) {
  if (!tower.is_map() || !tower.has("embedding")) return;  // the node's builder names what is missing
  const ConfigNode embedding = tower["embedding"];
  if (!embedding.is_map() || !embedding.has("type") || !embedding.has("tables")) return;
  const auto& types = embedding_node_types();
  if (std::find(types.begin(), types.end(), embedding["type"].as_string()) == types.end()) return;
  add_tables_of(embedding["tables"], module, out);
}

}  // namespace

std::vector<dist::TableShape> embedding_tables_of(const ModelSpec& spec) {
  const auto& types = embedding_node_types();
  std::vector<dist::TableShape> out;
  for (const auto& node : spec.nodes) {
    if (std::find(types.begin(), types.end(), node.type) == types.end()) continue;
    add_tables_of(node.yaml["tables"], node.name, out);
  }
  return out;
}

std::vector<dist::TableShape> tower_tables_of(const ModelSpec& spec) {
  std::vector<dist::TableShape> out;
  for (const auto& node : spec.nodes) {
    if (node.type == "EmbeddingTower") {
      add_tower_tables(node.yaml, node.name + ".embedding", out);
    } else if (node.type == "EmbeddingTowerCollection" && node.yaml.has("towers")) {
      const ConfigNode towers = node.yaml["towers"];
      for (size_t i = 0; i < towers.size(); ++i)
        add_tower_tables(towers.at(i), str_cat(node.name, ".towers.", i, ".embedding"), out);
    }
  }
  return out;
}

dist::ShardingRequest towers_sharding_request(const ModelSpec& spec, dist::ShardingRequest request) {
  for (const auto& t : tower_tables_of(spec)) {
    // (A config's `sharding:` cannot name these: parse_sharding knows only embedding_tables_of's.)
    request.tables[t.module + "." + t.name] = dist::TableRequest{dist::ShardingType::data_parallel, {}};
  }
  return request;
}

}  // namespace recmod::config
