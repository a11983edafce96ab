#include "recmod/config/embedding_nodes.h"

#include <set>

#include "recmod/common/errors.h"
#include "recmod/modules/embedding_modules.h"

namespace recmod::config {

namespace {

const std::vector<std::string> kTableKeys = {"name", "num_embeddings", "embedding_dim", "feature_names",
                                             "weight_init_min", "weight_init_max"};

// Fields every table kind shares; `extra` are the kind's own keys.
void read_base(const ConfigNode& t, BaseEmbeddingConfig& c, std::vector<std::string> extra) {
  for (const auto& k : kTableKeys) extra.push_back(k);
  t.expect_map();
  t.allow_keys(extra);
  c.name = t["name"].as_string();
  if (c.name.empty() || c.name.find('.') != std::string::npos)
    t["name"].fail("a table name must be non-empty and contain no '.', got '" + c.name + "'");
  c.num_embeddings = t.positive_int("num_embeddings");
  c.embedding_dim = t.positive_int("embedding_dim");
  c.feature_names = t.has("feature_names") ? t["feature_names"].as_string_list() : std::vector<std::string>{c.name};
  if (c.feature_names.empty()) t["feature_names"].fail("expected at least one feature name");
  if (t.has("weight_init_min")) c.weight_init_min = t["weight_init_min"].as_double();
  if (t.has("weight_init_max")) c.weight_init_max = t["weight_init_max"].as_double();
}

template <typename Config>
void check_unique_names(const ConfigNode& tables, const std::vector<Config>& configs) {
  std::set<std::string> seen;
  for (size_t i = 0; i < configs.size(); ++i)
    if (!seen.insert(configs[i].name).second) tables.at(i)["name"].fail("duplicate table name '" + configs[i].name + "'");
}

// "3 tables: t_a 100x8, t_b 50x8, t_c 10x8" (the first few, then "...").
template <typename Config>
std::string tables_summary(const std::vector<Config>& tables) {
  constexpr size_t kShown = 3;
  std::string out = str_cat(tables.size(), tables.size() == 1 ? " table: " : " tables: ");
  for (size_t i = 0; i < tables.size() && i < kShown; ++i)
    out += str_cat(i ? ", " : "", tables[i].name, " ", tables[i].num_embeddings, "x", tables[i].embedding_dim);
  if (tables.size() > kShown) out += ", ...";
  return out;
}

}  // namespace

std::vector<EmbeddingBagConfig> read_embedding_bag_configs(const ConfigNode& tables,
                                                           const std::vector<std::string>& extra_keys) {
  std::vector<EmbeddingBagConfig> configs;
  if (tables.size() == 0) tables.fail("expected at least one table");
  for (const auto& t : tables.items()) {
    EmbeddingBagConfig c;
    std::vector<std::string> keys = {"pooling"};
    keys.insert(keys.end(), extra_keys.begin(), extra_keys.end());
    read_base(t, c, keys);
    if (t.has("pooling")) c.pooling = t["pooling"].one_of({"sum", "mean"}) == "sum" ? PoolingType::SUM : PoolingType::MEAN;
    configs.push_back(c);
  }
  check_unique_names(tables, configs);
  return configs;
}

BuiltNode build_embedding_bag_collection(const NodeSpec& spec, const std::vector<Port>& inputs) {
  spec.yaml.allow_keys({"type", "input", "inputs", "tables", "is_weighted"});
  expect_num_inputs(spec, inputs, 1);
  auto tables = read_embedding_bag_configs(spec.yaml["tables"]);
  expect_sparse_input(spec, inputs[0], features_of(tables), "EmbeddingBagCollection");
  EmbeddingBagCollection ebc(EmbeddingBagCollectionOptions(tables).is_weighted(spec.yaml.get_bool("is_weighted", false)));
  BuiltNode node;
  node.module = ebc.ptr();
  node.embedding = true;
  node.shape = ValueShape::pooled(ebc->embedding_names(), ebc->length_per_embedding());
  node.forward = [ebc](const std::vector<Value>& values) mutable { return Value::of_pooled(ebc->forward(values[0].sparse)); };
  node.summary = tables_summary(tables);
  return node;
}

BuiltNode build_embedding_collection(const NodeSpec& spec, const std::vector<Port>& inputs) {
  spec.yaml.allow_keys({"type", "input", "inputs", "tables"});
  expect_num_inputs(spec, inputs, 1);
  ConfigNode tables_yaml = spec.yaml["tables"];
  if (tables_yaml.size() == 0) tables_yaml.fail("expected at least one table");
  std::vector<EmbeddingConfig> tables;
  for (const auto& t : tables_yaml.items()) {
    EmbeddingConfig c;
    read_base(t, c, {});
    if (!tables.empty() && c.embedding_dim != tables[0].embedding_dim)
      t["embedding_dim"].fail(str_cat("EmbeddingCollection tables share one embedding_dim: table '", tables[0].name,
                                      "' has ", tables[0].embedding_dim, ", this one ", c.embedding_dim));
    tables.push_back(c);
  }
  check_unique_names(tables_yaml, tables);
  expect_sparse_input(spec, inputs[0], features_of(tables), "EmbeddingCollection");
  EmbeddingCollection ec{EmbeddingCollectionOptions(tables)};
  auto names = ec->embedding_names();
  BuiltNode node;
  node.module = ec.ptr();
  node.embedding = true;
  node.shape = ValueShape::sequence(names, std::vector<int64_t>(names.size(), ec->embedding_dim()));
  node.forward = [ec](const std::vector<Value>& values) mutable { return Value::of_sequence(ec->forward(values[0].sparse)); };
  node.summary = tables_summary(tables);
  return node;
}

}  // namespace recmod::config
