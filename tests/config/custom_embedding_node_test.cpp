// The graph hook for custom embedding modules: ModelGraphImpl::replace_embedding_module.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/common/state_dict.h"
#include "recmod/config/embedding_nodes.h"
#include "recmod/config/graph.h"
#include "support/custom_embedding_modules.h"
#include "support/test_util.h"

namespace recmod::config {
namespace custom_embedding_node_test {

using ::testing::HasSubstr;

ModelGraph build(const std::string& yaml) {
  return ModelGraph(parse_model_config(ConfigNode::load_string(yaml, "g.yaml")));
}

const char* const kModel = R"(
features: {dense: 3, sparse: [a, b]}
nodes:
  sparse_arch:
    type: EmbeddingBagCollection
    input: features.sparse
    tables:
      - {name: t_a, num_embeddings: 5, embedding_dim: 4, feature_names: [a]}
      - {name: t_b, num_embeddings: 7, embedding_dim: 4, feature_names: [b]}
  seq:
    type: EmbeddingCollection
    input: features.sparse
    tables: [{name: s, num_embeddings: 7, embedding_dim: 2, feature_names: [b]}]
  pooled: {type: SequencePool, input: seq}
  dense_arch: {type: MLP, input: features.dense, layer_sizes: [6, 4]}
  inter: {type: DotInteraction, inputs: [dense_arch, sparse_arch]}
  cat: {type: Concat, inputs: [inter, pooled]}
  over_arch: {type: MLP, input: cat, layer_sizes: [1]}
output: over_arch
)";

data::Batch batch() {
  auto kjt = KeyedJaggedTensor::from_lengths({"a", "b"}, torch::tensor({1, 4, 6, 0, 2}, torch::kLong),
                                             torch::tensor({1, 1, 2, 1}, torch::kInt));
  torch::manual_seed(3);
  return data::Batch{torch::randn({2, 3}), kjt, torch::zeros({2, 1})};
}

/// Keeps each node's output.
struct Outputs : NodeObserver {
  std::vector<Value> values = std::vector<Value>(16);
  void after_node(size_t index, const Value& output) override { values.at(index) = output; }
};

size_t index_of(const ModelGraph& graph, const std::string& name) {
  for (size_t i = 0; i < graph->nodes().size(); ++i)
    if (graph->nodes()[i].name == name) return i;
  throw std::runtime_error("no node " + name);
}

TEST(CustomEmbeddingNode, ReplacesEmbeddingNodesWithAnyImplementationOfTheInterfaces) {
  auto graph = build(kModel);
  const size_t bags = index_of(graph, "sparse_arch"), seq = index_of(graph, "seq");
  Outputs before;
  graph->forward(batch(), &before);

  auto ebc = std::dynamic_pointer_cast<EmbeddingBagCollectionImpl>(graph->node_module(bags));
  auto ec = std::dynamic_pointer_cast<EmbeddingCollectionImpl>(graph->node_module(seq));
  ASSERT_TRUE(ebc && ec);
  auto scaled = std::make_shared<test::ScaledEmbeddingBagCollectionImpl>(EmbeddingBagCollection(ebc), 2.0);
  auto negated = std::make_shared<test::ScaledEmbeddingCollectionImpl>(EmbeddingCollection(ec), -1.0);
  graph->replace_embedding_module("sparse_arch", scaled);
  graph->replace_embedding_module("seq", negated);
  EXPECT_EQ(graph->node_module(bags).get(), static_cast<torch::nn::Module*>(scaled.get()));

  Outputs after;
  const torch::Tensor logits_after = graph->forward(batch(), &after);
  EXPECT_TRUE(torch::allclose(after.values[bags].pooled.values(), 2 * before.values[bags].pooled.values()));
  EXPECT_EQ(after.values[bags].pooled.keys(), before.values[bags].pooled.keys());
  ASSERT_EQ(after.values[seq].sequence.size(), 1u);
  EXPECT_TRUE(torch::equal(after.values[seq].sequence[0].second.values(),
                           -before.values[seq].sequence[0].second.values()));
  // What the head reads changes (the logits themselves may be 0 before and after:
  // the last MLP layer ends in a ReLU, and the tables are drawn unseeded).
  const size_t cat = index_of(graph, "cat");
  EXPECT_FALSE(torch::allclose(after.values[cat].as_dense(), before.values[cat].as_dense()));

  // The modules' keys under the node names; their tables go to the embedding optimizer.
  const auto keys = test::state_dict_keys(*graph);
  EXPECT_THAT(keys, ::testing::Contains("sparse_arch.ebc.embedding_bags.t_a.weight"));
  EXPECT_THAT(keys, ::testing::Contains("seq.ec.embeddings.s.weight"));
  std::vector<std::string> embedding;
  for (const auto& [key, _] : graph->embedding_parameters()) embedding.push_back(key);
  EXPECT_THAT(embedding, ::testing::UnorderedElementsAre("sparse_arch.ebc.embedding_bags.t_a.weight",
                                                         "sparse_arch.ebc.embedding_bags.t_b.weight",
                                                         "seq.ec.embeddings.s.weight"));
  logits_after.sum().backward();
  EXPECT_TRUE(ebc->table_weight("t_a").grad().defined());
  EXPECT_THAT(graph->describe(), HasSubstr("2 tables: t_a 5x4, t_b 7x4"));
}

TEST(CustomEmbeddingNode, RefusesAModuleThatDoesNotFitTheNode) {
  auto graph = build(kModel);
  auto other_dim = std::make_shared<test::MaxPooledEmbeddingBagCollectionImpl>(std::vector<EmbeddingBagConfig>{
      EmbeddingBagConfig(5, 3, "t_a", {"a"}), EmbeddingBagConfig(7, 4, "t_b", {"b"})});
  EXPECT_THAT(test::error_of<InputError>([&] { graph->replace_embedding_module("sparse_arch", other_dim); }),
              HasSubstr("node 'sparse_arch' gives KeyedTensor [a: 4, b: 4] (B, 8), the module gives KeyedTensor "
                        "[a: 3, b: 4] (B, 7)"));
  EXPECT_THAT(test::error_of<InputError>([&] { graph->replace_embedding_module("nope", other_dim); }),
              HasSubstr("no node 'nope'; the nodes are"));
  EXPECT_THAT(test::error_of<InputError>([&] { graph->replace_embedding_module("dense_arch", other_dim); }),
              HasSubstr("replaces a node with one sparse input and the same kind of output"));
  EmbeddingCollection ec(std::vector<EmbeddingConfig>{EmbeddingConfig(5, 4, "t_a", {"a"})}, false);
  EXPECT_THAT(test::error_of<InputError>([&] { graph->replace_embedding_module("sparse_arch", ec.ptr()); }),
              HasSubstr("replaces a node with one sparse input and the same kind of output"));
  // A module of the same shape fits.
  auto max = std::make_shared<test::MaxPooledEmbeddingBagCollectionImpl>(std::vector<EmbeddingBagConfig>{
      EmbeddingBagConfig(5, 4, "t_a", {"a"}), EmbeddingBagConfig(7, 4, "t_b", {"b"})});
  graph->replace_embedding_module("sparse_arch", max);
  EXPECT_EQ(graph->forward(batch()).sizes(), (std::vector<int64_t>{2}));
  EXPECT_EQ(graph->nodes()[index_of(graph, "sparse_arch")].num_parameters, 5 * 4 + 7 * 4);
}

/// Promises its configs' keys but names them otherwise.
class RenamingImpl : public test::ScaledEmbeddingBagCollectionImpl {
 public:
  using ScaledEmbeddingBagCollectionImpl::ScaledEmbeddingBagCollectionImpl;
  KeyedTensor forward(const KeyedJaggedTensor& features) override {
    KeyedTensor kt = ScaledEmbeddingBagCollectionImpl::forward(features);
    std::vector<std::string> keys = kt.keys();
    keys.front() = "renamed";
    return KeyedTensor(keys, kt.length_per_key(), kt.values());
  }
};

TEST(CustomEmbeddingNode, AModuleBreakingItsPromiseIsCaughtAtForward) {
  auto graph = build(kModel);
  auto ebc = std::dynamic_pointer_cast<EmbeddingBagCollectionImpl>(graph->node_module(index_of(graph, "sparse_arch")));
  graph->replace_embedding_module("sparse_arch", std::make_shared<RenamingImpl>(EmbeddingBagCollection(ebc), 1.0));
  EXPECT_THAT(test::error_of<InputError>([&] { graph->forward(batch()); }),
              ::testing::AllOf(HasSubstr("nodes.sparse_arch: the embedding module ("),
                               HasSubstr("RenamingImpl) gave KeyedTensor [renamed: 4, b: 4] (B, 8), but its "
                                         "embedding_bag_configs() promise KeyedTensor [a: 4, b: 4] (B, 8)")));
}

TEST(CustomEmbeddingNode, BuiltInNodesShapeIsTheInterfacesPromise) {
  EmbeddingBagCollection ebc({EmbeddingBagConfig(5, 3, "t_a", {"a", "b"}), EmbeddingBagConfig(4, 2, "t_b", {"b"})},
                             false);
  const ValueShape shape = embedding_output_shape(*ebc);
  EXPECT_EQ(shape.keys, ebc->embedding_names());
  EXPECT_EQ(shape.dims, ebc->length_per_embedding());
  EmbeddingCollection ec({EmbeddingConfig(5, 3, "t_a", {"a", "b"}), EmbeddingConfig(4, 3, "t_b", {"b"})}, false);
  EXPECT_EQ(embedding_output_shape(*ec).keys, ec->embedding_names());
  EXPECT_EQ(embedding_output_shape(*ec).dims, (std::vector<int64_t>{3, 3, 3}));
}

}  // namespace custom_embedding_node_test
}  // namespace recmod::config
