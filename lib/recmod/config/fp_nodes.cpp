#include "recmod/config/fp_nodes.h"

#include <algorithm>

#include "recmod/common/errors.h"
#include "recmod/config/embedding_nodes.h"
#include "recmod/modules/fp_embedding_modules.h"

namespace recmod::config {

namespace {

FeatureProcessorDict read_feature_processors(const ConfigNode& processors, const std::vector<std::string>& features) {
  if (!processors.is_map() || processors.keys().empty())
    processors.fail("expected a map of feature: {max_feature_length: N} with at least one feature");
  FeatureProcessorDict out;
  for (const auto& feature : processors.keys()) {
    ConfigNode p = processors[feature];
    if (std::find(features.begin(), features.end(), feature) == features.end())
      p.fail(str_cat("feature '", feature, "' is read by none of the node's tables; they read ", join_names(features)));
    p.expect_map();
    p.allow_keys({"max_feature_length"});
    out.emplace_back(feature, PositionWeightedModule(p.positive_int("max_feature_length")));
  }
  return out;
}

}  // namespace

BuiltNode build_feature_processed_embedding_bag_collection(const NodeSpec& spec, const std::vector<Port>& inputs) {
  expect_num_inputs(spec, inputs, 1);
  ConfigNode tables_yaml = spec.yaml["tables"];
  auto tables = read_embedding_bag_configs(tables_yaml, {}, /*allow_quantized=*/true);
  for (size_t i = 0; i < tables.size(); ++i)
    if (tables[i].pooling != PoolingType::SUM)
      tables_yaml.at(i)["pooling"].fail("a feature-processed collection weights its ids, which needs pooling: sum");
  const auto features = features_of(tables);
  expect_sparse_input(spec, inputs[0], features, spec.type);
  auto processors = read_feature_processors(spec.yaml["feature_processors"], features);
  const size_t num_processors = processors.size();
  EmbeddingBagCollection ebc(EmbeddingBagCollectionOptions(tables).is_weighted(true));
  FeatureProcessedEmbeddingBagCollection fp_ebc(ebc, std::move(processors));
  BuiltNode node;
  node.module = fp_ebc.ptr();
  node.embedding = true;
  node.dense_submodules = {"_feature_processors"};
  node.shape = ValueShape::pooled(ebc->embedding_names(), ebc->length_per_embedding());
  node.forward = [fp_ebc](const std::vector<Value>& values) mutable { return Value::of_pooled(fp_ebc->forward(values[0].sparse)); };
  node.summary = str_cat(tables.size(), tables.size() == 1 ? " table, " : " tables, ", num_processors,
                         " position-weighted feature", num_processors == 1 ? "" : "s");
  return node;
}

}  // namespace recmod::config
