#include "recmod/config/mc_nodes.h"

#include "recmod/common/errors.h"
#include "recmod/config/embedding_nodes.h"
#include "recmod/config/yaml_args.h"
#include "recmod/mc/mc_args.h"
#include "recmod/mc/eviction_policies.h"
#include "recmod/mc/mc_collection.h"
#include "recmod/mc/mc_modules.h"
#include "recmod/mc/threshold_filters.h"

namespace recmod::config {

namespace {

std::optional<ThresholdFilter> read_threshold(const ConfigNode& mc) {
  std::string kind = mc.has("threshold") ? mc["threshold"].one_of({"none", "average", "dynamic"}) : "none";
  if (kind == "average") return threshold_filter_by_name("average_threshold_filter");
  if (kind == "dynamic")
    return threshold_filter_by_name("dynamic_threshold_filter", mc.get_double("threshold_skew_multiplier", 10.0));
  if (mc.has("threshold_skew_multiplier")) mc["threshold_skew_multiplier"].fail("only applies with threshold: dynamic");
  return std::nullopt;
}

// `eviction: lfu | lru | distance_lfu`: TorchRec's policy classes by short name.
std::shared_ptr<MCHEvictionPolicy> read_policy(const ConfigNode& mc) {
  std::string kind = mc.has("eviction") ? mc["eviction"].one_of({"lfu", "lru", "distance_lfu"}) : "lfu";
  if (kind == "lfu" && mc.has("decay_exponent")) mc["decay_exponent"].fail("only applies to eviction lru and distance_lfu");
  const std::string type = kind == "lfu" ? "LFU_EvictionPolicy" : kind == "lru" ? "LRU_EvictionPolicy" : "DistanceLFU_EvictionPolicy";
  return make_eviction_policy(type, mc.get_double("decay_exponent", 1.0), read_threshold(mc));
}

std::optional<HashFunc> read_hash(const ConfigNode& mc, const std::string& key) {
  if (!mc.has(key)) return std::nullopt;
  return hash_func_by_name(mc[key].one_of({"mod", "murmur3"}));
}

std::shared_ptr<ManagedCollisionModuleImpl> read_mc_module(const ConfigNode& table, const BaseEmbeddingConfig& config) {
  ConfigNode mc = table["managed_collision"];
  mc.allow_keys({"zch_size", "eviction", "eviction_interval", "decay_exponent", "threshold", "threshold_skew_multiplier",
                 "input_hash_size", "input_hash", "mch_size", "mch_hash_func", "output_global_offset"});
  MchFunctions functions{read_policy(mc), read_hash(mc, "input_hash"), read_hash(mc, "mch_hash_func")};
  // The residual rows' hash is mod unless the config names one.
  if (mc.has("mch_size") && !functions.mch_hash_func) functions.mch_hash_func = hash_func_by_name("mod");
  MCHManagedCollisionModuleOptions options = mch_options_from(YamlArgs(mc), std::move(functions), config.num_embeddings);
  options.name(config.name);
  return std::make_shared<MCHManagedCollisionModuleImpl>(options);
}

template <typename Config>
ManagedCollisionCollection read_mc_collection(const ConfigNode& tables_yaml, const std::vector<Config>& tables) {
  ManagedCollisionModules modules;
  for (size_t i = 0; i < tables.size(); ++i)
    modules.emplace_back(tables[i].name, read_mc_module(tables_yaml.at(i), tables[i]));
  return ManagedCollisionCollection(modules, tables);
}

}  // namespace

BuiltNode build_mc_embedding_bag_collection(const NodeSpec& spec, const std::vector<Port>& inputs) {
  expect_num_inputs(spec, inputs, 1);
  ConfigNode tables_yaml = spec.yaml["tables"];
  auto tables = read_embedding_bag_configs(tables_yaml, {"managed_collision"}, /*allow_quantized=*/true);
  expect_sparse_input(spec, inputs[0], features_of(tables), spec.type);
  const bool reset = spec.yaml.get_bool("reset_evicted_rows", true);
  EmbeddingBagCollection ebc{
      EmbeddingBagCollectionOptions(tables).is_weighted(spec.yaml.get_bool("is_weighted", false))};
  ManagedCollisionEmbeddingBagCollection mc_ebc(ebc, read_mc_collection(tables_yaml, tables),
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

BuiltNode build_mc_embedding_collection(const NodeSpec& spec, const std::vector<Port>& inputs) {
  expect_num_inputs(spec, inputs, 1);
  ConfigNode tables_yaml = spec.yaml["tables"];
  auto tables = read_embedding_configs(tables_yaml, {"managed_collision"}, /*allow_quantized=*/true);
  expect_sparse_input(spec, inputs[0], features_of(tables), spec.type);
  const bool reset = spec.yaml.get_bool("reset_evicted_rows", true);
  EmbeddingCollection ec{EmbeddingCollectionOptions(tables)};
  ManagedCollisionEmbeddingCollection mc_ec(ec, read_mc_collection(tables_yaml, tables),
                                            /*return_remapped_features=*/false, reset);
  auto names = ec->embedding_names();
  BuiltNode node;
  node.module = mc_ec.ptr();
  node.embedding = true;
  node.shape = ValueShape::sequence(names, std::vector<int64_t>(names.size(), ec->embedding_dim()));
  node.forward = [mc_ec](const std::vector<Value>& values) mutable {
    return Value::of_sequence(mc_ec->forward(values[0].sparse).first);
  };
  node.summary = str_cat(tables.size(), " managed tables, reset_evicted_rows ", reset ? "on" : "off");
  return node;
}

}  // namespace recmod::config
