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

std::vector<dist::TableShape> embedding_tables_of(const ModelSpec& spec) {
  const auto& types = embedding_node_types();
  std::vector<dist::TableShape> out;
  for (const auto& node : spec.nodes) {
    if (std::find(types.begin(), types.end(), node.type) == types.end()) continue;
    ConfigNode tables = node.yaml["tables"];
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
      shape.module = node.name;
      shape.name = table.name;
      shape.num_embeddings = table.num_embeddings;
      shape.embedding_dim = table.embedding_dim;
      shape.feature_names = table.feature_names;
      // fp16 / bf16 tables train in 2 bytes; the others (int types too) in float32.
      shape.bytes_per_element =
          table.data_type == DataType::FP16 || table.data_type == DataType::BF16 ? 2 : 4;
      out.push_back(std::move(shape));
    }
  }
  return out;
}

}  // namespace recmod::config
