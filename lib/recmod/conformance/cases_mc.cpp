// Golden-case builders for the mc module family (args conventions in
// ../shared/golden/FORMAT.md).
#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/conformance/embedding_args.h"
#include "recmod/conformance/json_args.h"
#include "recmod/conformance/registry.h"
#include "recmod/mc/mc_args.h"
#include "recmod/mc/mc_collection.h"
#include "recmod/mc/mc_embedding_modules.h"
#include "recmod/mc/mc_modules.h"
#include "recmod/mc/threshold_filters.h"

namespace recmod::conformance {

namespace {

const json& arg(const json& args, const std::string& key, const std::string& where) {
  if (!args.contains(key)) throw_input_error(where, ": missing argument '", key, "'");
  return args.at(key);
}

bool has_arg(const json& args, const std::string& key) {
  return args.contains(key) && !args.at(key).is_null();
}

std::shared_ptr<MCHEvictionPolicy> eviction_policy_from_json(const json& j, const std::string& where) {
  const json args = j.value("args", json::object());
  std::optional<ThresholdFilter> filter;
  if (has_arg(args, "threshold_filtering_func")) {
    const json& f = args.at("threshold_filtering_func");
    filter = threshold_filter_by_name(arg(f, "type", where + ".threshold_filtering_func").get<std::string>(),
                                      f.value("threshold_skew_multiplier", 10.0));
  }
  return make_eviction_policy(arg(j, "type", where).get<std::string>(), args.value("decay_exponent", 1.0), filter);
}

std::optional<HashFunc> hash_func_from_json(const json& args, const std::string& key) {
  if (!has_arg(args, key)) return std::nullopt;
  return hash_func_by_name(args.at(key).at("type").get<std::string>());
}

MCHManagedCollisionModule mch_from_json(const json& raw) {
  const std::string where = "MCHManagedCollisionModule";
  const JsonArgs args(raw, where);
  MchFunctions functions{eviction_policy_from_json(arg(raw, "eviction_policy", where), where),
                         hash_func_from_json(raw, "input_hash_func"), hash_func_from_json(raw, "mch_hash_func")};
  MCHManagedCollisionModuleOptions o = mch_options_from(args, std::move(functions));
  if (args.has("device")) o.device(torch::Device(args.get_string("device")));
  if (args.has("name")) o.name(args.get_string("name"));
  return MCHManagedCollisionModule(o);
}

std::vector<ManagedTableConfig> managed_tables_from_json(const json& tables) {
  std::vector<ManagedTableConfig> out;
  for (const auto& t : tables)
    out.push_back({t.at("name").get<std::string>(), t.at("num_embeddings").get<int64_t>(),
                   t.at("feature_names").get<std::vector<std::string>>()});
  return out;
}

ManagedCollisionCollection mcc_from_json(const json& args) {
  const std::string where = "ManagedCollisionCollection";
  ManagedCollisionModules modules;
  for (const auto& [table, spec] : arg(args, "managed_collision_modules", where).items()) {
    const std::string type = spec.at("module").get<std::string>();
    if (type != "MCHManagedCollisionModule")
      throw_input_error(where, ": unsupported managed collision module '", type, "' for table '", table, "'");
    modules.emplace_back(table, mch_from_json(spec.at("args")).ptr());
  }
  return ManagedCollisionCollection(modules, managed_tables_from_json(arg(args, "embedding_configs", where)));
}

Value evictions_value(const TableEvictions& evictions) {
  ValueDict items;
  for (const auto& [table, slots] : evictions) items.emplace_back(table, slots ? Value::of(*slots) : Value::none());
  return Value::of_dict(std::move(items));
}

/// The "args" of a nested {"module": expected, "args": {...}}.
const json& nested_args(const json& args, const std::string& key, const std::string& expected,
                        const std::string& where) {
  const json& spec = arg(args, key, where);
  const std::string type = arg(spec, "module", where + "." + key).get<std::string>();
  if (type != expected) throw_input_error(where, ".", key, ": expected module ", expected, ", got ", type);
  return arg(spec, "args", where + "." + key);
}

Value remapped_value(const std::optional<KeyedJaggedTensor>& remapped) {
  return remapped ? Value::of(*remapped) : Value::none();
}

Value threshold_value(const ThresholdFilterResult& r) {
  return Value::of_tuple({Value::of(r.mask), Value::of(r.threshold)});
}

}  // namespace

void add_mc_cases(CaseRegistry& registry) {
  registry["MCHManagedCollisionModule"] = [](const json& args) -> std::unique_ptr<CaseModule> {
    return std::make_unique<HolderCase<MCHManagedCollisionModule>>(
        mch_from_json(args), [](MCHManagedCollisionModule& m, const std::string& method, const Inputs& in) {
          if (method == "forward") return Value::of(m->forward(input(in, "features").as_jt_dict("features")));
          if (method == "preprocess") return Value::of(m->preprocess(input(in, "features").as_jt_dict("features")));
          if (method == "evict") {
            auto slots = m->evict();
            return slots ? Value::of(*slots) : Value::none();
          }
          unsupported_method("MCHManagedCollisionModule", method);
        });
  };
  registry["ManagedCollisionCollection"] = [](const json& args) -> std::unique_ptr<CaseModule> {
    return std::make_unique<HolderCase<ManagedCollisionCollection>>(
        mcc_from_json(args), [](ManagedCollisionCollection& m, const std::string& method, const Inputs& in) {
          if (method == "forward") return Value::of(m->forward(input(in, "features").as_kjt("features")));
          if (method == "evict") return evictions_value(m->evict());
          unsupported_method("ManagedCollisionCollection", method);
        });
  };
  registry["ManagedCollisionEmbeddingBagCollection"] = [](const json& args) -> std::unique_ptr<CaseModule> {
    const std::string where = "ManagedCollisionEmbeddingBagCollection";
    ManagedCollisionEmbeddingBagCollection m(
        ebc_from_json(nested_args(args, "embedding_bag_collection", "EmbeddingBagCollection", where)),
        mcc_from_json(nested_args(args, "managed_collision_collection", "ManagedCollisionCollection", where)),
        args.value("return_remapped_features", false));
    return std::make_unique<HolderCase<ManagedCollisionEmbeddingBagCollection>>(
        m, [](ManagedCollisionEmbeddingBagCollection& m, const std::string& method, const Inputs& in) {
          if (method != "forward") unsupported_method("ManagedCollisionEmbeddingBagCollection", method);
          auto [pooled, remapped] = m->forward(input(in, "features").as_kjt("features"));
          return Value::of_tuple({Value::of(pooled), remapped_value(remapped)});
        });
  };
  registry["ManagedCollisionEmbeddingCollection"] = [](const json& args) -> std::unique_ptr<CaseModule> {
    const std::string where = "ManagedCollisionEmbeddingCollection";
    ManagedCollisionEmbeddingCollection m(
        ec_from_json(nested_args(args, "embedding_collection", "EmbeddingCollection", where)),
        mcc_from_json(nested_args(args, "managed_collision_collection", "ManagedCollisionCollection", where)),
        args.value("return_remapped_features", false));
    return std::make_unique<HolderCase<ManagedCollisionEmbeddingCollection>>(
        m, [](ManagedCollisionEmbeddingCollection& m, const std::string& method, const Inputs& in) {
          if (method != "forward") unsupported_method("ManagedCollisionEmbeddingCollection", method);
          auto [embeddings, remapped] = m->forward(input(in, "features").as_kjt("features"));
          return Value::of_tuple({Value::of(embeddings), remapped_value(remapped)});
        });
  };
  registry["function:average_threshold_filter"] = [](const json&) -> std::unique_ptr<CaseModule> {
    return std::make_unique<FunctionCase>([](const std::string& method, const Inputs& in) {
      if (method != "__call__") unsupported_method("function:average_threshold_filter", method);
      return threshold_value(average_threshold_filter(input(in, "id_counts").as_tensor("id_counts")));
    });
  };
  registry["function:dynamic_threshold_filter"] = [](const json& args) -> std::unique_ptr<CaseModule> {
    const double m = args.value("threshold_skew_multiplier", 10.0);
    return std::make_unique<FunctionCase>([m](const std::string& method, const Inputs& in) {
      if (method != "__call__") unsupported_method("function:dynamic_threshold_filter", method);
      return threshold_value(dynamic_threshold_filter(input(in, "id_counts").as_tensor("id_counts"), m));
    });
  };
}

}  // namespace recmod::conformance
