#include "recmod/config/embedding_tables.h"

#include <algorithm>
#include <set>

#include "recmod/common/errors.h"

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
      dist::TableShape shape;
      shape.module = node.name;
      shape.name = t["name"].as_name("a table name");
      if (!seen.insert(shape.name).second) t["name"].fail("duplicate table name '" + shape.name + "'");
      shape.num_embeddings = t.positive_int("num_embeddings");
      shape.embedding_dim = t.positive_int("embedding_dim");
      shape.feature_names =
          t.has("feature_names") ? t["feature_names"].as_string_list() : std::vector<std::string>{shape.name};
      // fp16 / bf16 tables train in 2 bytes; the others (int types too) in float32.
      std::string type = t.has("data_type") ? t["data_type"].as_string() : "fp32";
      for (auto& ch : type) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      shape.bytes_per_element = type == "fp16" || type == "bf16" ? 2 : 4;
      out.push_back(std::move(shape));
    }
  }
  return out;
}

}  // namespace recmod::config
