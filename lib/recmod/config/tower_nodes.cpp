#include "recmod/config/tower_nodes.h"

#include <algorithm>

#include "recmod/common/errors.h"
#include "recmod/config/registry.h"
#include "recmod/modules/embedding_tower.h"

namespace recmod::config {

namespace {

const std::vector<std::string> kEmbeddingTypes = {"EmbeddingBagCollection", "EmbeddingCollection",
                                                  "FeatureProcessedEmbeddingBagCollection"};

/// A nested node map (`embedding:` / `interaction:` of a tower): its type
/// from the registry, its keys checked against it, built by its builder.
struct Nested {
  BuiltNode built;
  std::shared_ptr<torch::nn::Module> module;  // the built module, or an empty one for parameter-free nodes
};

Nested build_nested(const ConfigNode& yaml, const std::string& name, const std::vector<Port>& inputs,
                    const std::vector<std::string>* only_types) {
  yaml.expect_map();
  if (!yaml.has("type")) yaml.fail("expected a node map with a `type:` key");
  const ConfigNode type_node = yaml["type"];
  const std::string type = type_node.as_string();
  const NodeType* found = find_node_type(type);
  if (only_types && std::find(only_types->begin(), only_types->end(), type) == only_types->end())
    type_node.fail(str_cat("a tower's embedding module is one of ", join_names(*only_types), ", got '", type, "'"));
  if (!found) type_node.fail(str_cat("unknown node type '", type, "'; valid types: ", join_names(node_type_names())));
  if (!only_types && std::find(kEmbeddingTypes.begin(), kEmbeddingTypes.end(), type) != kEmbeddingTypes.end())
    type_node.fail(str_cat("a tower's interaction takes the embedding module's output; '", type,
                           "' takes sparse features"));
  std::vector<std::string> keys = {"type"};
  for (const auto& o : found->options) keys.push_back(o.key);
  yaml.allow_keys(keys);  // no input/inputs: the tower wires it
  NodeSpec spec{name, type, {}, yaml};
  Nested out;
  out.built = found->build(spec, inputs);
  out.module = out.built.module ? out.built.module : std::make_shared<torch::nn::Module>();
  return out;
}

struct BuiltTower {
  EmbeddingTower tower{nullptr};
  int64_t width = 0;
  std::string summary;
};

// `yaml` is an EmbeddingTower node (its keys checked by the graph) or an
// item of a collection's towers list (`item`: checked here).
BuiltTower build_tower(const ConfigNode& yaml, const std::string& name, const Port& sparse, bool item) {
  yaml.expect_map();
  if (item) yaml.allow_keys({"embedding", "interaction"});
  if (!yaml.has("embedding")) yaml.fail("expected an `embedding:` node map");
  if (!yaml.has("interaction")) yaml.fail("expected an `interaction:` node map");
  Nested embedding = build_nested(yaml["embedding"], name + ".embedding", {sparse}, &kEmbeddingTypes);
  const bool weighted = embedding.built.shape.kind == ValueKind::Pooled && yaml["embedding"].has("is_weighted") &&
                        yaml["embedding"]["is_weighted"].as_bool();
  Nested interaction = build_nested(yaml["interaction"], name + ".interaction",
                                    {Port{name + ".embedding", embedding.built.shape}}, nullptr);
  const ValueShape& out = interaction.built.shape;
  if (!out.is_dense_like())
    yaml["interaction"].fail(str_cat("a tower's interaction must give a (B, N) tensor, '",
                                     yaml["interaction"]["type"].as_string(), "' gives ", out.kind_name()));
  TowerEmbeddingModule tower_embedding{
      embedding.module,
      [forward = embedding.built.forward](const KeyedJaggedTensor& features) -> EmbeddingOutput {
        Value v = forward({Value::of_sparse(features)});
        if (v.kind == ValueKind::Pooled) return v.pooled;
        return v.sequence;
      },
      weighted};
  TowerInteractionModule tower_interaction{
      interaction.module, [forward = interaction.built.forward](const EmbeddingOutput& e) {
        Value in = std::holds_alternative<KeyedTensor>(e) ? Value::of_pooled(std::get<KeyedTensor>(e))
                                                          : Value::of_sequence(std::get<JaggedTensorDict>(e));
        return forward({in}).as_dense();
      }};
  BuiltTower t;
  t.tower = EmbeddingTower(tower_embedding, tower_interaction);
  t.width = out.width;
  t.summary = str_cat(yaml["embedding"]["type"].as_string(), " (", embedding.built.summary, ") -> ",
                      yaml["interaction"]["type"].as_string(), " (B, ", out.width, ")");
  return t;
}

}  // namespace

BuiltNode build_embedding_tower(const NodeSpec& spec, const std::vector<Port>& inputs) {
  expect_num_inputs(spec, inputs, 1);
  expect_sparse_input(spec, inputs[0], {}, spec.type);
  BuiltTower t = build_tower(spec.yaml, spec.name, inputs[0], /*item=*/false);
  BuiltNode node;
  node.module = t.tower.ptr();
  node.embedding = true;
  node.dense_submodules = {"interaction"};
  node.shape = ValueShape::dense(t.width);
  node.forward = [tower = t.tower](const std::vector<Value>& values) mutable {
    return Value::of_dense(tower->forward(values[0].sparse));
  };
  node.summary = t.summary;
  return node;
}

BuiltNode build_embedding_tower_collection(const NodeSpec& spec, const std::vector<Port>& inputs) {
  expect_num_inputs(spec, inputs, 1);
  expect_sparse_input(spec, inputs[0], {}, spec.type);
  const ConfigNode towers_yaml = spec.yaml["towers"];
  if (towers_yaml.size() == 0) towers_yaml.fail("expected at least one tower");
  std::vector<EmbeddingTower> towers;
  int64_t width = 0;
  BuiltNode node;
  for (size_t i = 0; i < towers_yaml.size(); ++i) {
    BuiltTower t = build_tower(towers_yaml.at(i), str_cat(spec.name, ".towers.", i), inputs[0], /*item=*/true);
    towers.push_back(t.tower);
    width += t.width;
    node.dense_submodules.push_back(str_cat("towers.", i, ".interaction"));
  }
  EmbeddingTowerCollection collection(towers);
  node.module = collection.ptr();
  node.embedding = true;
  node.shape = ValueShape::dense(width);
  // In a graph one KJT carries every feature, weights included: it is both
  // TorchRec's `features` and `weighted_features`.
  node.forward = [collection](const std::vector<Value>& values) mutable {
    return Value::of_dense(collection->forward(values[0].sparse, values[0].sparse));
  };
  node.summary = str_cat(towers.size(), towers.size() == 1 ? " tower" : " towers", ", (B, ", width, ")");
  return node;
}

}  // namespace recmod::config
