#include "recmod/config/embedding_nodes.h"

#include <algorithm>
#include <cctype>
#include <limits>
#include <set>

#include "recmod/common/errors.h"
#include "recmod/common/memory.h"
#include "recmod/config/yaml_args.h"
#include "recmod/modules/embedding_modules.h"
#include "recmod/modules/module_args.h"

namespace recmod::config {

namespace {

const std::vector<std::string> kTableKeys = {"name",          "num_embeddings", "embedding_dim", "feature_names",
                                             "weight_init_min", "weight_init_max", "data_type",
                                             "stochastic_rounding"};

// Fields every table kind shares (modules/module_args.h reads them, for
// golden cases too); `extra` are the kind's own keys.
void read_base(const ConfigNode& t, BaseEmbeddingConfig& c, std::vector<std::string> extra, bool allow_quantized) {
  for (const auto& k : kTableKeys) extra.push_back(k);
  t.expect_map();
  t.allow_keys(extra);
  read_table_args(YamlArgs(t), c, allow_quantized);
}

template <typename Config>
void check_unique_names(const ConfigNode& tables, const std::vector<Config>& configs) {
  std::set<std::string> seen;
  for (size_t i = 0; i < configs.size(); ++i)
    if (!seen.insert(configs[i].name).second) tables.at(i)["name"].fail("duplicate table name '" + configs[i].name + "'");
}

/// Refuses tables that could not be allocated: float32 weights of all the
/// node's tables against MemAvailable, before anything is allocated (the OOM
/// killer would otherwise end the process without a word).
template <typename Config>
void check_tables_fit(const ConfigNode& tables, const std::vector<Config>& configs) {
  // Deferred tables are not allocated here: each rank of a distributed run
  // draws its shards only, and the planner checks those against memory.
  if (DeferTableAllocation::sharded()) return;
  const auto available = available_memory_bytes();
  if (!available) return;
  double total = 0;  // double: num_embeddings * dim may overflow int64
  for (const auto& c : configs)
    total += static_cast<double>(c.num_embeddings) * static_cast<double>(c.embedding_dim) *
             static_cast<double>(torch::elementSize(weight_storage_dtype(c.data_type)));
  if (total <= static_cast<double>(*available)) return;
  std::string sizes;
  for (size_t i = 0; i < configs.size() && i < 3; ++i)
    sizes += str_cat(i ? ", " : "", configs[i].name, " ", configs[i].num_embeddings, "x", configs[i].embedding_dim);
  tables.fail(str_cat("the tables need ", format_bytes(total), " of weights (", sizes,
                      configs.size() > 3 ? ", ..." : "", ") but only ", format_bytes(static_cast<double>(*available)),
                      " of memory is available (MemAvailable in /proc/meminfo); make num_embeddings or "
                      "embedding_dim smaller"));
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

/// Every id a table looks up must be a row of it: torch's lookups would
/// otherwise fail deep inside ATen (or, on some devices, read out of bounds).
/// Ids reach here after the config's hashing, so only `hash: none` features
/// can be out of range; the message says which feature, table and id.
template <typename Config>
void check_ids_in_range(const std::string& node, const std::vector<Config>& tables, const KeyedJaggedTensor& kjt) {
  const auto& keys = kjt.keys();
  const auto& opk = kjt.offset_per_key();
  // First all ids at once, each against its key's bounds: [0, the smallest
  // table's num_embeddings) for a key a table looks up, any value for
  // another (a few tensor operations and one read, whatever the number of
  // keys); only a batch that fails is looked at key by key, for the message.
  const auto n_keys = static_cast<int64_t>(keys.size());
  std::vector<int64_t> bounds_and_lengths(3 * keys.size());  // (lower, upper) per key, then lengths
  bool checked = false;
  for (size_t k = 0; k < keys.size(); ++k) {
    int64_t upper = std::numeric_limits<int64_t>::max();
    for (const auto& t : tables)
      if (std::find(t.feature_names.begin(), t.feature_names.end(), keys[k]) != t.feature_names.end())
        upper = std::min(upper, t.num_embeddings);
    const bool looked_up = upper != std::numeric_limits<int64_t>::max();
    checked = checked || (looked_up && opk[k + 1] > opk[k]);
    bounds_and_lengths[2 * k] = looked_up ? 0 : std::numeric_limits<int64_t>::min();
    bounds_and_lengths[2 * k + 1] = upper;
    bounds_and_lengths[2 * keys.size() + k] = opk[k + 1] - opk[k];
  }
  if (!checked) return;
  const torch::Tensor ids = kjt.values().slice(0, 0, opk.back());
  const torch::Tensor per_key =
      torch::from_blob(bounds_and_lengths.data(), {3 * n_keys}, torch::kLong).to(ids.device());
  const torch::Tensor bounds = torch::repeat_interleave(per_key.slice(0, 0, 2 * n_keys).view({n_keys, 2}),
                                                        per_key.slice(0, 2 * n_keys), 0, opk.back());
  // An id equal to int64's max of a key no table looks up also fails here; the loop below lets it pass.
  if (!torch::logical_or(ids.lt(bounds.select(1, 0)), ids.ge(bounds.select(1, 1))).any().item<bool>()) return;
  for (const auto& t : tables)
    for (const auto& f : t.feature_names) {
      const auto it = std::find(keys.begin(), keys.end(), f);
      if (it == keys.end()) continue;  // the module names the missing feature
      const auto k = static_cast<size_t>(it - keys.begin());
      if (opk[k + 1] == opk[k]) continue;
      const auto key_ids = kjt.values().slice(0, opk[k], opk[k + 1]);
      const auto [lo, hi] = torch::aminmax(key_ids);
      const int64_t min = lo.item<int64_t>(), max = hi.item<int64_t>();
      if (min >= 0 && max < t.num_embeddings) continue;
      const int64_t bad = min < 0 ? min : max;
      throw_input_error("nodes.", node, ": feature '", f, "' has id ", bad, ", outside table '", t.name,
                        "' (num_embeddings ", t.num_embeddings, ", ids must be in [0, ", t.num_embeddings,
                        ")); hash the feature into range with `hash: mod` or `hash: murmur` in features.sparse");
    }
}

}  // namespace

std::vector<EmbeddingBagConfig> read_embedding_bag_configs(const ConfigNode& tables,
                                                           const std::vector<std::string>& extra_keys,
                                                           bool allow_quantized) {
  std::vector<EmbeddingBagConfig> configs;
  if (tables.size() == 0) tables.fail("expected at least one table");
  for (const auto& t : tables.items()) {
    EmbeddingBagConfig c;
    std::vector<std::string> keys = {"pooling"};
    keys.insert(keys.end(), extra_keys.begin(), extra_keys.end());
    read_base(t, c, keys, allow_quantized);
    c.pooling = read_pooling(YamlArgs(t), /*allow_none=*/false);
    configs.push_back(c);
  }
  check_unique_names(tables, configs);
  check_tables_fit(tables, configs);
  return configs;
}

std::vector<EmbeddingConfig> read_embedding_configs(const ConfigNode& tables_yaml,
                                                   const std::vector<std::string>& extra_keys, bool allow_quantized) {
  if (tables_yaml.size() == 0) tables_yaml.fail("expected at least one table");
  std::vector<EmbeddingConfig> tables;
  for (const auto& t : tables_yaml.items()) {
    EmbeddingConfig c;
    read_base(t, c, extra_keys, allow_quantized);
    if (!tables.empty() && c.embedding_dim != tables[0].embedding_dim)
      t["embedding_dim"].fail(str_cat("EmbeddingCollection tables share one embedding_dim: table '", tables[0].name,
                                      "' has ", tables[0].embedding_dim, ", this one ", c.embedding_dim));
    tables.push_back(c);
  }
  check_unique_names(tables_yaml, tables);
  check_tables_fit(tables_yaml, tables);
  return tables;
}

ValueShape embedding_output_shape(const EmbeddingBagCollectionInterface& module) {
  const auto& tables = module.embedding_bag_configs();
  const auto names = get_embedding_names_by_table(tables);
  std::vector<std::string> keys;
  std::vector<int64_t> dims;
  for (size_t t = 0; t < tables.size(); ++t)
    for (const auto& name : names[t]) {
      keys.push_back(name);
      dims.push_back(tables[t].embedding_dim);
    }
  return ValueShape::pooled(keys, dims);
}

ValueShape embedding_output_shape(const EmbeddingCollectionInterface& module) {
  std::vector<std::string> keys;
  for (const auto& names : module.embedding_names_by_table()) keys.insert(keys.end(), names.begin(), names.end());
  return ValueShape::sequence(keys, std::vector<int64_t>(keys.size(), module.embedding_dim()));
}

BuiltNode embedding_bag_collection_node(std::shared_ptr<EmbeddingBagCollectionInterface> module,
                                        const std::string& node_name) {
  if (!module) throw_input_error("nodes.", node_name, ": no embedding module given");
  BuiltNode node;
  node.module = module;
  node.embedding = true;
  node.shape = embedding_output_shape(*module);
  // The built-in module gives these keys by construction; another one is checked.
  const bool check_output = dynamic_cast<EmbeddingBagCollectionImpl*>(module.get()) == nullptr;
  node.forward = [module, tables = module->embedding_bag_configs(), name = node_name, shape = node.shape,
                  check_output](const std::vector<Value>& values) {
    check_ids_in_range(name, tables, values[0].sparse);
    KeyedTensor out = module->forward(values[0].sparse);
    if (check_output && (out.keys() != shape.keys || out.length_per_key() != shape.dims))
      throw_input_error("nodes.", name, ": the embedding module (", module->name(), ") gave ",
                        ValueShape::pooled(out.keys(), out.length_per_key()).str(),
                        ", but its embedding_bag_configs() promise ", shape.str());
    return Value::of_pooled(std::move(out));
  };
  node.summary = tables_summary(module->embedding_bag_configs());
  return node;
}

BuiltNode embedding_collection_node(std::shared_ptr<EmbeddingCollectionInterface> module,
                                    const std::string& node_name) {
  if (!module) throw_input_error("nodes.", node_name, ": no embedding module given");
  BuiltNode node;
  node.module = module;
  node.embedding = true;
  node.shape = embedding_output_shape(*module);
  const bool check_output = dynamic_cast<EmbeddingCollectionImpl*>(module.get()) == nullptr;
  node.forward = [module, tables = module->embedding_configs(), name = node_name, shape = node.shape,
                  check_output](const std::vector<Value>& values) {
    check_ids_in_range(name, tables, values[0].sparse);
    JaggedTensorDict out = module->forward(values[0].sparse);
    if (check_output) {
      std::vector<std::string> keys;
      std::vector<int64_t> dims;
      for (const auto& [key, jt] : out) {
        keys.push_back(key);
        dims.push_back(jt.values().dim() == 2 ? jt.values().size(1) : -1);
      }
      if (keys != shape.keys || dims != shape.dims)
        throw_input_error("nodes.", name, ": the embedding module (", module->name(), ") gave ",
                          ValueShape::sequence(keys, dims).str(), ", but its embedding configs promise ",
                          shape.str());
    }
    return Value::of_sequence(std::move(out));
  };
  node.summary = tables_summary(module->embedding_configs());
  return node;
}

BuiltNode build_embedding_bag_collection(const NodeSpec& spec, const std::vector<Port>& inputs) {
  expect_num_inputs(spec, inputs, 1);
  auto tables = read_embedding_bag_configs(spec.yaml["tables"]);
  expect_sparse_input(spec, inputs[0], features_of(tables), "EmbeddingBagCollection");
  EmbeddingBagCollection ebc(EmbeddingBagCollectionOptions(tables).is_weighted(spec.yaml.get_bool("is_weighted", false)));
  return embedding_bag_collection_node(ebc.ptr(), spec.name);
}

BuiltNode build_embedding_collection(const NodeSpec& spec, const std::vector<Port>& inputs) {
  expect_num_inputs(spec, inputs, 1);
  auto tables = read_embedding_configs(spec.yaml["tables"]);
  expect_sparse_input(spec, inputs[0], features_of(tables), "EmbeddingCollection");
  EmbeddingCollection ec{EmbeddingCollectionOptions(tables)};
  return embedding_collection_node(ec.ptr(), spec.name);
}

}  // namespace recmod::config
