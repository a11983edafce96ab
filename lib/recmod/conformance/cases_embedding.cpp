// Golden-case builders for the embedding module family: the embedding
// collections, the position-weighted feature processors and the towers.
#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/conformance/embedding_args.h"
#include "recmod/conformance/registry.h"
#include "recmod/modules/embedding_modules.h"
#include "recmod/modules/embedding_tower.h"
#include "recmod/modules/feature_processor.h"
#include "recmod/modules/fp_embedding_modules.h"

namespace recmod::conformance {

namespace {

/// The golden harness's `harness.KeyedTensorLinear`: Linear(in, out, bias)
/// over keyed_tensor.values(); parameters linear.weight / linear.bias.
class KeyedTensorLinearImpl : public torch::nn::Module {
 public:
  KeyedTensorLinearImpl(int64_t in_features, int64_t out_features, bool bias)
      : linear(register_module("linear",
                               torch::nn::Linear(torch::nn::LinearOptions(in_features, out_features).bias(bias)))) {}
  torch::Tensor forward(const KeyedTensor& embeddings) { return linear->forward(embeddings.values()); }
  torch::nn::Linear linear;
};
TORCH_MODULE(KeyedTensorLinear);

const json& nested_field(const json& j, const char* key, const std::string& where) {
  if (!j.is_object() || !j.contains(key)) throw_input_error(where, ": missing field '", key, "'");
  return j.at(key);
}

std::string nested_module(const json& spec, const std::string& where) {
  return nested_field(spec, "module", where).get<std::string>();
}

FeatureLengths feature_lengths_from_json(const json& j, const std::string& where) {
  if (!j.is_object()) throw_input_error(where, ": expected {feature: max_length, ...}");
  FeatureLengths out;
  for (const auto& [feature, length] : j.items()) out.emplace_back(feature, length.get<int64_t>());
  return out;
}

const KeyedJaggedTensor& features_input(const Inputs& inputs, const char* name = "features") {
  return input(inputs, name).as_kjt(name);
}

std::optional<KeyedJaggedTensor> optional_features(const Inputs& inputs, const std::string& name) {
  for (const auto& [k, v] : inputs)
    if (k == name && !v.is_none()) return v.as_kjt(name);
  return std::nullopt;
}

template <typename Holder, typename Fn>
std::unique_ptr<CaseModule> forward_case(const char* module, Holder holder, Fn forward) {
  return std::make_unique<HolderCase<Holder>>(
      std::move(holder), [module, forward](Holder& h, const std::string& method, const Inputs& inputs) -> Value {
        if (method != "forward" && method != "__call__") unsupported_method(module, method);
        return forward(h, inputs);
      });
}

FeatureProcessedEmbeddingBagCollection fp_ebc_from_json(const json& args) {
  const json& ebc_spec = nested_field(args, "embedding_bag_collection", "args");
  if (nested_module(ebc_spec, "embedding_bag_collection") != "EmbeddingBagCollection")
    throw_input_error("embedding_bag_collection: expected an EmbeddingBagCollection");
  EmbeddingBagCollection ebc = ebc_from_json(nested_field(ebc_spec, "args", "embedding_bag_collection"));
  const json& fp = nested_field(args, "feature_processors", "args");
  if (fp.contains("module")) {
    if (nested_module(fp, "feature_processors") != "PositionWeightedModuleCollection")
      throw_input_error("feature_processors: unsupported module '", fp["module"].get<std::string>(), "'");
    const json& fp_args = nested_field(fp, "args", "feature_processors");
    return FeatureProcessedEmbeddingBagCollection(
        ebc, PositionWeightedModuleCollection(feature_lengths_from_json(
                 nested_field(fp_args, "max_feature_lengths", "feature_processors.args"), "max_feature_lengths")));
  }
  FeatureProcessorDict processors;
  for (const auto& [feature, spec] : nested_field(fp, "items", "feature_processors").items()) {
    const std::string where = "feature_processors." + feature;
    if (nested_module(spec, where) != "PositionWeightedModule")
      throw_input_error(where, ": unsupported module '", spec["module"].get<std::string>(), "'");
    processors.emplace_back(feature, PositionWeightedModule(nested_field(nested_field(spec, "args", where),
                                                                         "max_feature_length", where)
                                                                .get<int64_t>()));
  }
  return FeatureProcessedEmbeddingBagCollection(ebc, std::move(processors));
}

TowerEmbeddingModule tower_embedding_from_json(const json& spec) {
  const std::string module = nested_module(spec, "embedding_module");
  const json& args = nested_field(spec, "args", "embedding_module");
  if (module == "EmbeddingBagCollection") return tower_embedding(ebc_from_json(args));
  if (module == "EmbeddingCollection") return tower_embedding(ec_from_json(args));
  if (module == "FeatureProcessedEmbeddingBagCollection") return tower_embedding(fp_ebc_from_json(args));
  throw_input_error("embedding_module: unsupported module '", module, "'");
}

TowerInteractionModule tower_interaction_from_json(const json& spec) {
  const std::string module = nested_module(spec, "interaction_module");
  const json& args = nested_field(spec, "args", "interaction_module");
  if (module == "harness.KeyedTensorLinear")
    return tower_interaction(KeyedTensorLinear(args.at("in_features").get<int64_t>(),
                                               args.at("out_features").get<int64_t>(), args.value("bias", true)));
  throw_input_error("interaction_module: unsupported module '", module, "'");
}

EmbeddingTower tower_from_json(const json& args) {
  return EmbeddingTower(tower_embedding_from_json(nested_field(args, "embedding_module", "args")),
                        tower_interaction_from_json(nested_field(args, "interaction_module", "args")));
}

}  // namespace

void add_embedding_cases(CaseRegistry& registry) {
  registry["EmbeddingBagCollection"] = [](const json& args) {
    return forward_case("EmbeddingBagCollection", ebc_from_json(args),
                        [](EmbeddingBagCollection& m, const Inputs& in) { return Value::of(m->forward(features_input(in))); });
  };
  registry["EmbeddingCollection"] = [](const json& args) {
    return forward_case("EmbeddingCollection", ec_from_json(args),
                        [](EmbeddingCollection& m, const Inputs& in) { return Value::of(m->forward(features_input(in))); });
  };
  registry["PositionWeightedModule"] = [](const json& args) {
    return forward_case("PositionWeightedModule",
                        PositionWeightedModule(nested_field(args, "max_feature_length", "args").get<int64_t>()),
                        [](PositionWeightedModule& m, const Inputs& in) {
                          return Value::of(m->forward(input(in, "features").as_jt("features")));
                        });
  };
  registry["PositionWeightedProcessor"] = [](const json& args) {
    return forward_case(
        "PositionWeightedProcessor",
        PositionWeightedProcessor(
            feature_lengths_from_json(nested_field(args, "max_feature_lengths", "args"), "max_feature_lengths")),
        [](PositionWeightedProcessor& m, const Inputs& in) { return Value::of(m->forward(features_input(in))); });
  };
  registry["FeatureProcessedEmbeddingBagCollection"] = [](const json& args) {
    return forward_case("FeatureProcessedEmbeddingBagCollection", fp_ebc_from_json(args),
                        [](FeatureProcessedEmbeddingBagCollection& m, const Inputs& in) {
                          return Value::of(m->forward(features_input(in)));
                        });
  };
  registry["EmbeddingTower"] = [](const json& args) {
    return forward_case("EmbeddingTower", tower_from_json(args),
                        [](EmbeddingTower& m, const Inputs& in) { return Value::of(m->forward(features_input(in))); });
  };
  registry["EmbeddingTowerCollection"] = [](const json& args) {
    std::vector<EmbeddingTower> towers;
    for (const auto& spec : nested_field(args, "towers", "args")) {
      if (nested_module(spec, "towers[]") != "EmbeddingTower") throw_input_error("towers: expected EmbeddingTower");
      towers.push_back(tower_from_json(nested_field(spec, "args", "towers[]")));
    }
    return forward_case("EmbeddingTowerCollection", EmbeddingTowerCollection(std::move(towers)),
                        [](EmbeddingTowerCollection& m, const Inputs& in) {
                          return Value::of(
                              m->forward(optional_features(in, "features"), optional_features(in, "weighted_features")));
                        });
  };
}

}  // namespace recmod::conformance
