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

// The table's rows: zch_size rows with an id of their own (the last one
// the overflow row) and, with mch_size, mch_size rows that the remaining ids
// are hashed into (TorchRec's residual hashing).
std::shared_ptr<ManagedCollisionModuleImpl> read_mc_module(const ConfigNode& table, const BaseEmbeddingConfig& config) {
  ConfigNode mc = table["managed_collision"];
  mc.allow_keys({"zch_size", "eviction", "eviction_interval", "decay_exponent", "threshold", "threshold_skew_multiplier",
                 "input_hash_size", "input_hash", "mch_size", "mch_hash_func", "output_global_offset"});
  const int64_t mch_size = mc.has("mch_size") ? mc.positive_int("mch_size") : 0;
  int64_t zch_size = mc.positive_int("zch_size", config.num_embeddings - mch_size);
  if (zch_size + mch_size != config.num_embeddings)
    mc["zch_size"].fail(mch_size ? str_cat("zch_size + mch_size must equal the table's num_embeddings ",
                                           config.num_embeddings, ", got ", zch_size, " + ", mch_size)
                                 : str_cat("must equal the table's num_embeddings ", config.num_embeddings, ", got ",
                                           zch_size, " (or add mch_size: the rows that other ids are hashed into)"));
  MCHManagedCollisionModuleOptions options(zch_size, read_policy(mc), mc.positive_int("eviction_interval", 1));
  options.name(config.name);
  if (mc.has("input_hash_size")) options.input_hash_size(static_cast<uint64_t>(mc.positive_int("input_hash_size")));
  if (mc.has("input_hash")) options.input_hash_func(hash_func_by_name(mc["input_hash"].one_of({"mod", "murmur3"})));
  if (mch_size) {
    options.mch_size(mch_size);
    options.mch_hash_func(hash_func_by_name(mc.has("mch_hash_func") ? mc["mch_hash_func"].one_of({"mod", "murmur3"}) : "mod"));
  } else if (mc.has("mch_hash_func")) {
    mc["mch_hash_func"].fail("only applies with mch_size");
  }
  if (mc.has("output_global_offset")) options.output_global_offset(mc["output_global_offset"].as_int());
  return std::make_shared<MCHManagedCollisionModuleImpl>(options);
}

template <typename Config>
ManagedCollisionCollection read_mc_collection(const ConfigNode& tables_yaml, const std::vector<Config>& tables) {
  ManagedCollisionModules modules;
  std::vector<ManagedTableConfig> managed;
  for (size_t i = 0; i < tables.size(); ++i) {
    modules.emplace_back(tables[i].name, read_mc_module(tables_yaml.at(i), tables[i]));
    managed.push_back({tables[i].name, tables[i].num_embeddings, tables[i].feature_names});
  }
  return ManagedCollisionCollection(modules, managed);
}

}  // namespace

BuiltNode build_mc_embedding_bag_collection(const NodeSpec& spec, const std::vector<Port>& inputs) {
  expect_num_inputs(spec, inputs, 1);
  ConfigNode tables_yaml = spec.yaml["tables"];
  auto tables = read_embedding_bag_configs(tables_yaml, {"managed_collision"}, /*allow_quantized=*/false);
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
  auto tables = read_embedding_configs(tables_yaml, {"managed_collision"}, /*allow_quantized=*/false);
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
