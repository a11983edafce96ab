// EmbeddingTower / EmbeddingTowerCollection nodes from YAML (issue 15),
// against outputs computed by hand from set weights.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/common/state_dict.h"
#include "recmod/config/graph.h"
#include "recmod/config/model_config.h"
#include "recmod/train/train_step.h"
#include "recmod/train/training_setup.h"
#include "support/test_util.h"

namespace recmod::config {
namespace tower_nodes_test {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

ModelConfig parse(const std::string& yaml) { return parse_model_config(ConfigNode::load_string(yaml, "tw.yaml")); }

std::string build_error(const std::string& yaml) {
  return test::error_of<ConfigError>([&] { ModelGraph graph(parse(yaml)); });
}

const char* kTowers = R"(features:
  dense: {count: 1}
  sparse: [a, b, c]
nodes:
  towers:
    type: EmbeddingTowerCollection
    input: features.sparse
    towers:
      - embedding:
          type: EmbeddingBagCollection
          tables:
            - {name: ta, num_embeddings: 4, embedding_dim: 2, feature_names: [a]}
            - {name: tb, num_embeddings: 4, embedding_dim: 2, feature_names: [b], pooling: mean}
        interaction: {type: Linear, out_features: 1}
      - embedding:
          type: EmbeddingCollection
          tables: [{name: sc, num_embeddings: 3, embedding_dim: 2, feature_names: [c]}]
        interaction: {type: SequencePool, mode: sum}
  logit: {type: Linear, inputs: [towers], out_features: 1}
output: logit
training:
  dense_optimizer: {type: sgd, lr: 0.1}
  embedding_optimizer: {type: sgd, lr: 0.1}
  batch_size: 2
)";

void set(ModelGraph& graph, const std::string& key, const torch::Tensor& value) {
  torch::NoGradGuard no_grad;
  for (auto& p : graph->named_parameters())
    if (p.key() == key) {
      p.value().copy_(value);
      return;
    }
  FAIL() << "no parameter " << key;
}

// B = 2: a = [[0, 1], [3]], b = [[2], []], c = [[0, 2], [1]].
data::Batch batch() {
  data::Batch b;
  b.dense = torch::zeros({2, 1});
  b.sparse = KeyedJaggedTensor::from_lengths({"a", "b", "c"}, torch::tensor({0, 1, 3, 2, 0, 2, 1}, torch::kLong),
                                             torch::tensor({2, 1, 1, 0, 2, 1}, torch::kLong));
  b.labels = torch::tensor({{1.0f}, {0.0f}});
  return b;
}

TEST(TowerNodes, TowerCollectionOutputsTheTowersConcatenatedAsComputedByHand) {
  ModelGraph graph(parse(kTowers));
  std::vector<std::string> keys;
  for (const auto& [k, v] : state_dict(*graph)) keys.push_back(k);
  EXPECT_THAT(keys, ElementsAre("towers.towers.0.embedding.embedding_bags.ta.weight",
                                "towers.towers.0.embedding.embedding_bags.tb.weight",
                                "towers.towers.0.interaction.weight", "towers.towers.0.interaction.bias",
                                "towers.towers.1.embedding.embeddings.sc.weight", "logit.weight", "logit.bias"));
  // Row r of ta is (r, 10 r); of tb (100 r, 1); of sc (r + 1, -(r + 1)).
  const torch::Tensor r4 = torch::arange(4, torch::kFloat);
  set(graph, "towers.towers.0.embedding.embedding_bags.ta.weight", torch::stack({r4, 10 * r4}, 1));
  set(graph, "towers.towers.0.embedding.embedding_bags.tb.weight", torch::stack({100 * r4, torch::ones(4)}, 1));
  const torch::Tensor r3 = torch::arange(1, 4, torch::kFloat);
  set(graph, "towers.towers.1.embedding.embeddings.sc.weight", torch::stack({r3, -r3}, 1));
  set(graph, "towers.towers.0.interaction.weight", torch::tensor({{1.0f, 2.0f, 3.0f, 4.0f}}));
  set(graph, "towers.towers.0.interaction.bias", torch::tensor({0.5f}));
  set(graph, "logit.weight", torch::tensor({{1.0f, 10.0f, 100.0f}}));
  set(graph, "logit.bias", torch::tensor({0.0f}));

  // Tower 0, sample 0: ta sum of rows 0, 1 = (1, 10); tb mean of row 2 = (200, 1)
  //   -> 1*1 + 2*10 + 3*200 + 4*1 + 0.5 = 625.5
  // sample 1: ta row 3 = (3, 30); tb empty bag = (0, 0) -> 3 + 60 + 0.5 = 63.5
  // Tower 1 (sum of sc rows): sample 0 rows 0, 2 = (1 + 3, -1 - 3) = (4, -4); sample 1 row 1 = (2, -2).
  // logit = t0 + 10 * s_0 + 100 * s_1: 625.5 + 40 - 400 = 265.5; 63.5 + 20 - 200 = -116.5
  graph->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor out = graph->forward(batch());
  EXPECT_TRUE(torch::allclose(out.reshape({-1}), torch::tensor({265.5f, -116.5f}))) << out;
  EXPECT_THAT(graph->describe(), HasSubstr("2 towers, (B, 3)"));
}

TEST(TowerNodes, TablesGoToTheEmbeddingOptimizerInteractionsToTheDenseOneAndTheyTrain) {
  const ModelConfig config = parse(kTowers);
  ModelGraph graph(static_cast<const ModelSpec&>(config));
  std::vector<std::string> embedding, dense;
  for (const auto& [k, v] : graph->embedding_parameters()) embedding.push_back(k);
  for (const auto& [k, v] : graph->dense_parameters()) dense.push_back(k);
  EXPECT_THAT(embedding, ElementsAre("towers.towers.0.embedding.embedding_bags.ta.weight",
                                     "towers.towers.0.embedding.embedding_bags.tb.weight",
                                     "towers.towers.1.embedding.embeddings.sc.weight"));
  EXPECT_THAT(dense, ElementsAre("towers.towers.0.interaction.weight", "towers.towers.0.interaction.bias",
                                 "logit.weight", "logit.bias"));
  // recmod validate's totals split the same way: tables 8 + 8 + 6, the
  // interaction 4 + 1 and the logit 3 + 1.
  EXPECT_THAT(graph->describe(), HasSubstr("parameters: 31 (dense 9, embedding 22)"));
  const StateDict before = state_dict(*graph);
  std::vector<torch::Tensor> copies;
  for (const auto& [k, v] : before) copies.push_back(v.clone());
  train::TrainingSetup setup(graph, config.training, torch::kCPU);
  graph->train();
  train::train_step(graph, setup, batch());
  const StateDict after = state_dict(*graph);
  for (size_t i = 0; i < after.size(); ++i)
    EXPECT_FALSE(torch::equal(after[i].second, copies[i])) << after[i].first << " was not updated";
}

TEST(TowerNodes, AnEmbeddingTowerWithAnMlpInteraction) {
  const std::string yaml = R"(features:
  dense: {count: 1}
  sparse: [a, b]
nodes:
  tower:
    type: EmbeddingTower
    input: features.sparse
    embedding: {type: EmbeddingBagCollection, tables: [{name: t, num_embeddings: 5, embedding_dim: 4, feature_names: [a, b]}]}
    interaction: {type: MLP, layer_sizes: [6, 3]}
  logit: {type: Linear, input: tower, out_features: 1}
output: logit
)";
  ModelGraph graph(parse(yaml));
  std::vector<std::string> keys;
  for (const auto& [k, v] : state_dict(*graph)) keys.push_back(k);
  EXPECT_THAT(keys, ElementsAre("tower.embedding.embedding_bags.t.weight", "tower.interaction._mlp.0._linear.weight",
                                "tower.interaction._mlp.0._linear.bias", "tower.interaction._mlp.1._linear.weight",
                                "tower.interaction._mlp.1._linear.bias", "logit.weight", "logit.bias"));
  data::Batch b;
  b.dense = torch::zeros({3, 1});
  b.sparse = KeyedJaggedTensor::from_lengths({"a", "b"}, torch::tensor({0, 4, 2, 1}, torch::kLong),
                                             torch::tensor({1, 1, 0, 1, 0, 1}, torch::kLong));
  b.labels = torch::zeros({3, 1});
  graph->eval();
  torch::NoGradGuard no_grad;
  // The MLP over the pooled (B, 8) embeddings, by hand: relu(W2 relu(W1 x + b1) + b2).
  const StateDict s = state_dict(*graph);
  const torch::Tensor w = s[0].second;
  const torch::Tensor x = torch::stack({torch::cat({w[0], w[2]}), torch::cat({w[4], torch::zeros(4)}),
                                        torch::cat({torch::zeros(4), w[1]})});
  const torch::Tensor h = torch::relu(torch::relu(x.matmul(s[1].second.t()) + s[2].second).matmul(s[3].second.t()) +
                                      s[4].second);
  const torch::Tensor want = h.matmul(s[5].second.t()) + s[6].second;
  const torch::Tensor got = graph->forward(b);
  EXPECT_TRUE(torch::allclose(got.reshape({-1}), want.reshape({-1}), 1e-5, 1e-6)) << got << want;
}

TEST(TowerNodes, NestedNodeErrorsPointAtTheNestedMap) {
  std::string yaml = kTowers;
  const std::string interaction = "interaction: {type: Linear, out_features: 1}";
  std::string bad = yaml;
  bad.replace(bad.find(interaction), interaction.size(), "interaction: {type: EmbeddingBagCollection, tables: []}");
  EXPECT_THAT(build_error(bad), HasSubstr("a tower's interaction takes the embedding module's output; "
                                          "'EmbeddingBagCollection' takes sparse features"));
  bad = yaml;
  bad.replace(bad.find(interaction), interaction.size(), "interaction: {type: Linear, out_features: 1, width: 3}");
  EXPECT_THAT(build_error(bad), HasSubstr("width"));
  bad = yaml;
  bad.replace(bad.find(interaction), interaction.size(), "interaction: {type: Linear, out_features: 1, input: x}");
  EXPECT_THAT(build_error(bad), HasSubstr("input"));
  bad = yaml;
  bad.replace(bad.find("type: EmbeddingCollection"), 25, "type: MLP");
  EXPECT_THAT(build_error(bad), HasSubstr("a tower's embedding module is one of [EmbeddingBagCollection, "
                                          "EmbeddingCollection, FeatureProcessedEmbeddingBagCollection], got 'MLP'"));
  bad = yaml;
  bad.replace(bad.find(interaction), interaction.size(), "");
  EXPECT_THAT(build_error(bad), HasSubstr("expected an `interaction:` node map"));
}

}  // namespace tower_nodes_test
}  // namespace recmod::config
