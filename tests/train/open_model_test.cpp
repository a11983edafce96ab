// Checkpoint tables adopted as the model's storage (issue 18: eval held the
// model twice while loading).
#include "recmod/train/open_model.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/config/config_node.h"
#include "recmod/modules/embedding_modules.h"
#include "support/test_util.h"

namespace recmod::train {
namespace {

using ::testing::HasSubstr;

const char* kYaml = R"(features:
  dense: {count: 2}
  sparse: [C1, C2]
nodes:
  sparse_arch:
    type: EmbeddingBagCollection
    input: features.sparse
    tables:
      - {name: t1, num_embeddings: 40, embedding_dim: 4, feature_names: [C1]}
      - {name: t2, num_embeddings: 30, embedding_dim: 4, feature_names: [C2]}
  x: {type: Concat, inputs: [features.dense, sparse_arch]}
  logit: {type: Linear, input: x, out_features: 1}
output: logit
)";

config::ModelConfig spec() {
  return config::parse_model_config(config::ConfigNode::load_string(kYaml, "a.yaml"));
}

/// Built as open_model does for a checkpoint: tables deferred, then
/// allocated unwritten.
config::ModelGraph unwritten() {
  config::ModelGraph graph{nullptr};
  {
    DeferTableAllocation defer(/*whole=*/true);
    graph = config::ModelGraph(static_cast<const config::ModelSpec&>(spec()));
  }
  materialize_deferred_tables(*graph, /*draw=*/false);
  return graph;
}

data::Batch batch() {
  data::Batch b;
  b.dense = torch::ones({2, 2});
  b.sparse = KeyedJaggedTensor::from_lengths({"C1", "C2"}, torch::tensor({3, 7, 29, 1}, torch::kLong),
                                             torch::tensor({1, 1, 1, 1}, torch::kLong));
  b.labels = torch::zeros({2, 1});
  return b;
}

StateDict saved_state(config::ModelGraph& source) {
  StateDict saved;
  for (const auto& [k, v] : state_dict(*source)) saved.emplace_back(k, v.clone());
  return saved;
}

TEST(AdoptCheckpointTables, TablesBecomeTheLoadedTensorsAndTheModelMatchesTheSource) {
  torch::manual_seed(0);
  config::ModelGraph source(static_cast<const config::ModelSpec&>(spec()));
  const StateDict saved = saved_state(source);
  auto graph = unwritten();
  EXPECT_EQ(adopt_checkpoint_tables(*graph, saved), 2);
  for (const auto& [k, v] : state_dict(*graph))
    if (k.find("embedding_bags") != std::string::npos) {
      EXPECT_EQ(v.data_ptr(), find_tensor(saved, k)->data_ptr()) << k << " was copied, not adopted";
    }
  recmod::load_state_dict(*graph, saved, "a.pt");  // the tables: same buffer, nothing to copy
  for (auto* g : {&graph, &source}) (*g)->eval();
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(graph->forward(batch()), source->forward(batch())));
}

TEST(AdoptCheckpointTables, AMismatchIsLeftForLoadStateDictToReport) {
  torch::manual_seed(0);
  config::ModelGraph source(static_cast<const config::ModelSpec&>(spec()));
  StateDict saved = saved_state(source);
  for (auto& [k, v] : saved)
    if (k == "sparse_arch.embedding_bags.t2.weight") v = torch::zeros({31, 4});
  auto graph = unwritten();
  EXPECT_EQ(adopt_checkpoint_tables(*graph, saved), 1);
  EXPECT_THAT(test::error_of<CheckpointError>([&] { recmod::load_state_dict(*graph, saved, "b.pt"); }),
              HasSubstr("[31, 4]"));
}

}  // namespace
}  // namespace recmod::train
