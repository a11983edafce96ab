#include "recmod/config/mc_nodes.h"

#include "recmod/common/errors.h"
#include "recmod/config/embedding_nodes.h"
#include "recmod/mc/eviction_policies.h"
#include "recmod/mc/mc_collection.h"
#include "recmod/mc/mc_modules.h"
#include "recmod/mc/threshold_filters.h"

namespace recmod::config {

namespace {

std::optional<ThresholdFilter> read_threshold(const ConfigNode& mc) {
  std::string kind = mc.has("threshold") ? mc["threshold"].one_of({"none", "average", "dynamic"}) : "none";
  if (kind == "average") return ThresholdFilter(average_threshold_filter);
  if (kind == "dynamic") {
    double skew = mc.get_double("threshold_skew_multiplier", 10.0);
    return ThresholdFilter([skew](const torch::Tensor& counts) { return dynamic_threshold_filter(counts, skew); });
  }
  if (mc.has("threshold_skew_multiplier")) mc["threshold_skew_multiplier"].fail("only applies with threshold: dynamic");
  return std::nullopt;
}

std::shared_ptr<MCHEvictionPolicy> read_policy(const ConfigNode& mc) {
  std::string kind = mc.has("eviction") ? mc["eviction"].one_of({"lfu", "lru", "distance_lfu"}) : "lfu";
  auto threshold = read_threshold(mc);
  if (kind == "lfu") {
    if (mc.has("decay_exponent")) mc["decay_exponent"].fail("only applies to eviction lru and distance_lfu");
    return std::make_shared<LFU_EvictionPolicy>(threshold);
  }
  double decay = mc.get_double("decay_exponent", 1.0);
  if (kind == "lru") return std::make_shared<LRU_EvictionPolicy>(decay, threshold);
  return std::make_shared<DistanceLFU_EvictionPolicy>(decay, threshold);
}

std::shared_ptr<ManagedCollisionModuleImpl> read_mc_module(const ConfigNode& table, const EmbeddingBagConfig& config) {
  ConfigNode mc = table["managed_collision"];
  mc.allow_keys({"zch_size", "eviction", "eviction_interval", "decay_exponent", "threshold", "threshold_skew_multiplier",
                 "input_hash_size", "input_hash"});
  int64_t zch_size = mc.positive_int("zch_size", config.num_embeddings);
  if (zch_size != config.num_embeddings)
    mc["zch_size"].fail(str_cat("must equal the table's num_embeddings ", config.num_embeddings, ", got ", zch_size));
  MCHManagedCollisionModuleOptions options(zch_size, read_policy(mc), mc.positive_int("eviction_interval", 1));
  options.name(config.name);
  if (mc.has("input_hash_size")) options.input_hash_size(static_cast<uint64_t>(mc.positive_int("input_hash_size")));
  if (mc.has("input_hash")) options.input_hash_func(hash_func_by_name(mc["input_hash"].one_of({"mod", "murmur3"})));
  return std::make_shared<MCHManagedCollisionModuleImpl>(options);
}

}  // namespace

BuiltNode build_mc_embedding_bag_collection(const NodeSpec& spec, const std::vector<Port>& inputs) {
  spec.yaml.allow_keys({"type", "input", "inputs", "tables", "reset_evicted_rows"});
  expect_num_inputs(spec, inputs, 1);
  ConfigNode tables_yaml = spec.yaml["tables"];
  auto tables = read_embedding_bag_configs(tables_yaml, {"managed_collision"});
  expect_sparse_input(spec, inputs[0], features_of(tables), spec.type);
  ManagedCollisionModules modules;
  std::vector<ManagedTableConfig> managed;
  for (size_t i = 0; i < tables.size(); ++i) {
    modules.emplace_back(tables[i].name, read_mc_module(tables_yaml.at(i), tables[i]));
    managed.push_back({tables[i].name, tables[i].num_embeddings, tables[i].feature_names});
  }
  const bool reset = spec.yaml.get_bool("reset_evicted_rows", true);
  EmbeddingBagCollection ebc{EmbeddingBagCollectionOptions(tables)};
  ManagedCollisionEmbeddingBagCollection mc_ebc(ebc, ManagedCollisionCollection(modules, managed),
                                                /*return_remapped_features=*/true, reset);
  BuiltNode node;
  node.module = mc_ebc.ptr();
  node.embedding = true;
  node.shape = ValueShape::pooled(ebc->embedding_names(), ebc->length_per_embedding());
  node.forward = [mc_ebc](const std::vector<Value>& values) mutable {
    return Value::of_pooled(mc_ebc->forward(values[0].sparse).first);
  };
  node.summary = str_cat(tables.size(), " managed tables, reset_evicted_rows ", reset ? "on" : "off");
  return node;
}

}  // namespace recmod::config
