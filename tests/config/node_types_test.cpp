// Node types built from YAML: Perceptron, SwishLayerNorm,
// ManagedCollisionEmbeddingCollection (and residual hashing),
// FeatureProcessedEmbeddingBagCollection. Each is built, run forward and
// backward, and its state_dict keys and parameter groups checked.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>

#include "recmod/common/errors.h"
#include "support/test_util.h"
#include "recmod/common/state_dict.h"
#include "recmod/config/graph.h"
#include "recmod/mc/mc_embedding_modules.h"
#include "recmod/modules/fp_embedding_modules.h"

namespace recmod::config {
namespace node_types_test {

using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

ModelGraph build(const std::string& yaml) {
  return ModelGraph(parse_model_config(ConfigNode::load_string(yaml, "n.yaml")));
}

std::string build_error(const std::string& yaml) {
  return test::error_of<ConfigError>([&] { build(yaml); });
}

std::vector<std::string> keys_of(const StateDict& sd) {
  std::vector<std::string> keys;
  for (const auto& [key, value] : sd) keys.push_back(key);
  return keys;
}

std::vector<std::string> names_of(const std::vector<std::pair<std::string, torch::Tensor>>& params) {
  std::vector<std::string> names;
  for (const auto& [name, p] : params) names.push_back(name);
  return names;
}

// Two examples: a = [[1, 4], [6]], b = [[0], [2, 3, 5]].
data::Batch two_examples(int64_t num_dense) {
  auto kjt = KeyedJaggedTensor::from_lengths({"a", "b"}, torch::tensor({1, 4, 6, 0, 2, 3, 5}, torch::kLong),
                                             torch::tensor({2, 1, 1, 3}, torch::kInt));
  return data::Batch{torch::randn({2, num_dense}), kjt, torch::zeros({2, 1})};
}

TEST(NodeTypesTest, PerceptronAndSwishLayerNormHaveTorchRecKeysAndShapes) {
  auto graph = build(R"(
features: {dense: 3, sparse: [a, b]}
nodes:
  p: {type: Perceptron, input: features.dense, out_size: 4, activation: swish_layernorm}
  n: {type: SwishLayerNorm, input: p}
  top: {type: Perceptron, input: n, out_size: 1, bias: false, activation: sigmoid}
output: top
)");
  EXPECT_THAT(keys_of(state_dict(*graph)),
              UnorderedElementsAre("p._linear.weight", "p._linear.bias", "p._activation_fn.norm.0.weight",
                                   "p._activation_fn.norm.0.bias", "n.norm.0.weight", "n.norm.0.bias",
                                   "top._linear.weight"));
  torch::manual_seed(0);
  auto batch = two_examples(3);
  auto out = graph->forward(batch);
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{2}));
  // top ends in a sigmoid: every output is in (0, 1).
  EXPECT_TRUE((out > 0).all().item<bool>() && (out < 1).all().item<bool>());
  out.sum().backward();
  for (const auto& [name, p] : graph->dense_parameters()) EXPECT_TRUE(p.grad().defined()) << name;
}

TEST(NodeTypesTest, PerceptronNeedsOutSize) {
  EXPECT_THAT(build_error("features: {dense: 2}\nnodes:\n  p: {type: Perceptron, input: features.dense}\noutput: p\n"),
              HasSubstr("nodes.p: missing required field 'out_size'"));
}

const char* kMcEcModel = R"(
features: {dense: 1, sparse: [a, b]}
nodes:
  seq:
    type: ManagedCollisionEmbeddingCollection
    input: features.sparse
    tables:
      - {name: t, num_embeddings: 10, embedding_dim: 4, feature_names: [a, b],
         managed_collision: {zch_size: 6, mch_size: 4, mch_hash_func: murmur3, eviction: lru}}
  pooled: {type: SequencePool, input: seq}
  cat: {type: Concat, inputs: [features.dense, pooled]}
  top: {type: MLP, input: cat, layer_sizes: [1]}
output: top
)";

TEST(NodeTypesTest, ManagedCollisionEmbeddingCollectionTrainsItsTableOnce) {
  auto graph = build(kMcEcModel);
  auto keys = keys_of(state_dict(*graph));
  // TorchRec's MC-EC registers the collection twice (same tensor).
  EXPECT_NE(std::find(keys.begin(), keys.end(), "seq._embedding_collection.embeddings.t.weight"), keys.end());
  EXPECT_NE(std::find(keys.begin(), keys.end(), "seq._embedding_module.embeddings.t.weight"), keys.end());
  // ... but an optimizer gets it once, and the remapper's buffers not at all.
  EXPECT_EQ(graph->embedding_parameters().size(), 1u) << ::testing::PrintToString(names_of(graph->embedding_parameters()));
  graph->train();
  auto out = graph->forward(two_examples(1));
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{2}));
  out.sum().backward();
  EXPECT_TRUE(graph->embedding_parameters()[0].second.grad().defined());
}

TEST(NodeTypesTest, ResidualHashingSizesMustAddUp) {
  std::string yaml = kMcEcModel;
  yaml.replace(yaml.find("zch_size: 6"), 11, "zch_size: 7");
  EXPECT_THAT(build_error(yaml), HasSubstr("zch_size + mch_size must equal the table's num_embeddings 10, got 7 + 4"));
  yaml = kMcEcModel;
  yaml.replace(yaml.find("zch_size: 6, mch_size: 4, "), 26, "");
  EXPECT_THAT(build_error(yaml), HasSubstr("managed_collision.mch_hash_func: only applies with mch_size"));
}

TEST(NodeTypesTest, ManagedCollisionEbcTakesIsWeighted) {
  auto graph = build(R"(
features: {dense: 1, sparse: [a]}
nodes:
  emb:
    type: ManagedCollisionEmbeddingBagCollection
    input: features.sparse
    is_weighted: true
    tables: [{name: t, num_embeddings: 8, embedding_dim: 2, feature_names: [a], managed_collision: {}}]
  cat: {type: Concat, inputs: [features.dense, emb]}
  top: {type: MLP, input: cat, layer_sizes: [1]}
output: top
)");
  auto batch = two_examples(1);
  // An unweighted KJT into a weighted collection is refused by the EBC.
  EXPECT_THROW(graph->forward(batch), InputError);
}

const char* kFpModel = R"(
features: {dense: 1, sparse: [a, b]}
nodes:
  emb:
    type: FeatureProcessedEmbeddingBagCollection
    input: features.sparse
    tables:
      - {name: t_a, num_embeddings: 8, embedding_dim: 2, feature_names: [a]}
      - {name: t_b, num_embeddings: 8, embedding_dim: 2, feature_names: [b]}
    feature_processors: {a: {max_feature_length: 3}}
  cat: {type: Concat, inputs: [features.dense, emb]}
  top: {type: MLP, input: cat, layer_sizes: [1]}
output: top
)";

TEST(NodeTypesTest, FeatureProcessedEbcWeightsByPositionAndSplitsParameters) {
  auto graph = build(kFpModel);
  EXPECT_THAT(names_of(graph->embedding_parameters()),
              UnorderedElementsAre("emb._embedding_bag_collection.embedding_bags.t_a.weight",
                                   "emb._embedding_bag_collection.embedding_bags.t_b.weight"));
  auto dense = names_of(graph->dense_parameters());
  EXPECT_NE(std::find(dense.begin(), dense.end(), "emb._feature_processors.a.position_weight"), dense.end());

  // With position weights p = [1, 2, 3], bag [1, 4] of a pools
  // 1 * row1 + 2 * row4; b's bags are unweighted sums.
  auto fp = std::dynamic_pointer_cast<FeatureProcessedEmbeddingBagCollectionImpl>(graph->node_module(0));
  ASSERT_TRUE(fp);
  torch::NoGradGuard no_grad;
  const auto sd = state_dict(*graph);
  const auto* pw = find_tensor(sd, "emb._feature_processors.a.position_weight");
  ASSERT_TRUE(pw);
  torch::Tensor(*pw).copy_(torch::tensor({1.f, 2.f, 3.f}));
  auto pooled = fp->forward(two_examples(1).sparse);
  const auto& w_a = fp->embedding_bag_collection()->table_weight("t_a");
  const auto& w_b = fp->embedding_bag_collection()->table_weight("t_b");
  EXPECT_TRUE(torch::allclose(pooled["a"][0], w_a[1] + 2 * w_a[4]));
  EXPECT_TRUE(torch::allclose(pooled["a"][1], w_a[6]));
  EXPECT_TRUE(torch::allclose(pooled["b"][1], w_b[2] + w_b[3] + w_b[5]));
}

TEST(NodeTypesTest, FeatureProcessedEbcRefusesUnknownFeatureAndTooLongBags) {
  std::string yaml = kFpModel;
  yaml.replace(yaml.find("{a: {max"), 8, "{c: {max");
  EXPECT_THAT(build_error(yaml), HasSubstr("feature 'c' is read by none of the node's tables; they read [a, b]"));
  yaml = kFpModel;
  yaml.replace(yaml.find("max_feature_length: 3"), 21, "max_feature_length: 1");
  auto graph = build(yaml);
  // a's first bag has 2 ids, more than max_feature_length 1.
  EXPECT_THROW(graph->forward(two_examples(1)), InputError);
}

}  // namespace node_types_test
}  // namespace recmod::config
