// training.cuda_graphs on a GPU (train/graph_step.h): the dense part of the
// step captured once and replayed trains exactly as the eager step, and a
// short last batch runs uncaptured. Skips without a CUDA device or without
// CUDA graphs in the build (the CPU build); the split step's math is also
// checked on the CPU (tests/train/graph_step_test.cpp).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "recmod/common/state_dict.h"
#include "recmod/cuda/cuda_graph.h"
#include "recmod/train/graph_step.h"
#include "recmod/train/train_step.h"
#include "recmod/train/training_setup.h"

namespace recmod::train {
namespace cuda_graph_step_test {

using ::testing::HasSubstr;

#define REQUIRE_CUDA_GRAPHS()                                                   \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";           \
  if (!cuda::cuda_graphs_available()) GTEST_SKIP() << "built without CUDA graphs"

const torch::Device kCuda(torch::kCUDA);

config::ModelConfig dlrm(const std::string& mode) {
  return config::parse_model_config(config::ConfigNode::load_string(R"(features: {dense: 4, sparse: [a, b, c]}
nodes:
  dense_arch: {type: MLP, input: features.dense, layer_sizes: [32, 8]}
  sparse_arch:
    type: EmbeddingBagCollection
    input: features.sparse
    tables:
      - {name: t_a, num_embeddings: 50, embedding_dim: 8, feature_names: [a]}
      - {name: t_b, num_embeddings: 40, embedding_dim: 8, feature_names: [b, c]}
  inter: {type: DotInteraction, inputs: [dense_arch, sparse_arch]}
  over: {type: MLP, input: inter, layer_sizes: [32, 16]}
  logit: {type: Linear, input: over, out_features: 1}
output: logit
training:
  dense_optimizer: {type: adam, lr: 0.01}
  embedding_optimizer: {type: rowwise_adagrad, lr: 0.05}
  cuda_graphs: )" + mode + "\n",
                                                                    "g.yaml"));
}

data::Batch batch_of(int64_t n) {
  // 1-3 ids per feature and example: jagged, so the sparse part's launch
  // parameters change from batch to batch while the dense part's shapes do not.
  const torch::Tensor lengths = torch::randint(1, 4, {3 * n}, torch::kInt);
  const torch::Tensor ids = torch::randint(0, 40, {lengths.sum().item<int64_t>()}, torch::kLong);
  return data::Batch{torch::randn({n, 4}), KeyedJaggedTensor::from_lengths({"a", "b", "c"}, ids, lengths),
                     torch::randint(0, 2, {n, 1}).to(torch::kFloat)};
}

void expect_states_close(const StateDict& a, const StateDict& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    const torch::Tensor x = a[i].second.to(torch::kCPU, torch::kDouble), y = b[i].second.to(torch::kCPU, torch::kDouble);
    EXPECT_TRUE(torch::allclose(x, y, 1e-4, 1e-5)) << a[i].first << ": max difference "
                                                   << (x - y).abs().max().item<double>();
  }
}

// 3 warm-up steps (uncaptured), the capture at step 4, then replays; the
// last batch is short (5 rows) and runs uncaptured. Losses, parameters and
// optimizer state match the eager step on the same device and data.
TEST(CudaGraphStep, MatchesEagerTrainingOverSteps) {
  REQUIRE_CUDA_GRAPHS();
  const auto off = dlrm("off"), on = dlrm("auto");
  torch::manual_seed(11);
  config::ModelGraph eager(off), graphed(on);
  load_state_dict(*graphed, state_dict(*eager), "eager");
  eager->to(kCuda);
  graphed->to(kCuda);
  TrainingSetup se(eager, off.training, kCuda), sg(graphed, on.training, kCuda);
  EXPECT_EQ(se.graph_step(), nullptr);
  ASSERT_NE(sg.graph_step(), nullptr) << sg.cuda_graphs_status();
  torch::manual_seed(12);
  const int steps = 10;
  std::vector<double> eager_losses, graph_losses;
  for (int step = 0; step < steps; ++step) {
    const data::Batch b = batch_of(step == steps - 1 ? 5 : 64).to(kCuda);
    eager_losses.push_back(train_step(eager, se, b).item<double>());
    graph_losses.push_back(train_step(graphed, sg, b).item<double>());
  }
  const std::string status = sg.cuda_graphs_status();
  EXPECT_TRUE(sg.graph_step()->captured()) << status;
  EXPECT_THAT(status, HasSubstr("captured (dense part: 4 of 5 nodes"));
  EXPECT_EQ(sg.graph_step()->replays(), steps - 1 - 3) << status;
  EXPECT_EQ(sg.graph_step()->uncaptured_steps(), 3 + 1) << status;
  const std::string notes = sg.take_cuda_graphs_notes();
  EXPECT_THAT(notes, HasSubstr("captured the dense part"));
  EXPECT_THAT(notes, HasSubstr("eager step for a batch of 5 rows (the graph's has 64)"));
  EXPECT_EQ(sg.take_cuda_graphs_notes(), "");  // each once
  for (int step = 0; step < steps; ++step)
    EXPECT_NEAR(graph_losses[step], eager_losses[step], 1e-5 * std::max(1.0, std::abs(eager_losses[step])))
        << "step " << step;
  // The losses moved (the replays trained, not replayed stale inputs).
  EXPECT_NE(graph_losses[5], graph_losses[6]);
  expect_states_close(state_dict(*eager), state_dict(*graphed));
  expect_states_close(se.state_dict(), sg.state_dict());
}

// A loss returned by a replayed step is the step's own: the next replay
// does not overwrite it.
TEST(CudaGraphStep, ReturnedLossesOutliveTheNextReplay) {
  REQUIRE_CUDA_GRAPHS();
  const auto on = dlrm("auto");
  torch::manual_seed(13);
  config::ModelGraph m(on);
  m->to(kCuda);
  TrainingSetup s(m, on.training, kCuda);
  ASSERT_NE(s.graph_step(), nullptr) << s.cuda_graphs_status();
  std::vector<torch::Tensor> losses;
  std::vector<double> values;
  for (int step = 0; step < 7; ++step) {
    losses.push_back(train_step(m, s, batch_of(32).to(kCuda)));
    values.push_back(losses.back().item<double>());
  }
  ASSERT_TRUE(s.graph_step()->captured()) << s.cuda_graphs_status();
  for (size_t i = 0; i < losses.size(); ++i) EXPECT_EQ(losses[i].item<double>(), values[i]) << i;
}

}  // namespace cuda_graph_step_test
}  // namespace recmod::train
