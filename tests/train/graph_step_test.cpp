// training.cuda_graphs (train/graph_step.h): the config key, how a model
// splits into the eager sparse part and the captured dense part, when a run
// or a batch falls back, and that the split step (uncaptured, on the CPU)
// trains exactly as train_step_eager. The captured step itself is checked on
// a GPU by tests/cuda/graph_step_test.cpp (CudaGraphStep.*).
#include "recmod/train/graph_step.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/common/state_dict.h"
#include "recmod/profile/profiler.h"
#include "recmod/train/train_step.h"
#include "recmod/train/training_setup.h"

namespace recmod::train {
namespace graph_step_test {

using ::testing::HasSubstr;
using ::testing::Not;

std::string dlrm_yaml(const std::string& training_lines = "") {
  return R"(features: {dense: 4, sparse: [a, b]}
nodes:
  dense_arch: {type: MLP, input: features.dense, layer_sizes: [16, 8]}
  sparse_arch:
    type: EmbeddingBagCollection
    input: features.sparse
    tables:
      - {name: t_a, num_embeddings: 20, embedding_dim: 8, feature_names: [a]}
      - {name: t_b, num_embeddings: 20, embedding_dim: 8, feature_names: [b]}
  inter: {type: DotInteraction, inputs: [dense_arch, sparse_arch]}
  over: {type: MLP, input: inter, layer_sizes: [16]}
  logit: {type: Linear, input: over, out_features: 1}
output: logit
training:
  batch_size: 32
)" + training_lines;
}

config::ModelConfig parse(const std::string& text) {
  return config::parse_model_config(config::ConfigNode::load_string(text, "t.yaml"));
}

std::vector<std::string> names_of(const config::ModelGraphImpl& m, const std::vector<size_t>& ids) {
  std::vector<std::string> out;
  for (size_t i : ids) out.push_back(m.nodes()[i].name);
  return out;
}

data::Batch batch_of(int64_t n, bool weights = false) {
  auto ids = torch::randint(0, 20, {2 * n}, torch::kLong);
  data::Batch b{torch::randn({n, 4}),
                KeyedJaggedTensor::from_lengths({"a", "b"}, ids, torch::ones({2 * n}, torch::kInt)),
                torch::randint(0, 2, {n, 1}).to(torch::kFloat)};
  if (weights) b.weights = torch::rand({n});
  return b;
}

TEST(GraphStepConfig, TakesOffOrAutoAndDefaultsToAuto) {
  EXPECT_EQ(parse(dlrm_yaml()).training.cuda_graphs, "auto");
  EXPECT_EQ(parse(dlrm_yaml("  cuda_graphs: auto\n")).training.cuda_graphs, "auto");
  EXPECT_EQ(parse(dlrm_yaml("  cuda_graphs: off\n")).training.cuda_graphs, "off");
  try {
    parse(dlrm_yaml("  cuda_graphs: always\n"));
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_THAT(e.what(), HasSubstr("t.yaml:16:16: training.cuda_graphs: expected one of [off, auto]"));
    EXPECT_THAT(e.what(), HasSubstr("cuda_graphs"));
    EXPECT_THAT(e.what(), HasSubstr("auto"));
  }
}

TEST(GraphPlan, SplitsADlrmAtTheEmbeddingOutputs) {
  config::ModelGraph m(parse(dlrm_yaml()));
  const GraphPlan plan = plan_graph_split(*m);
  ASSERT_TRUE(plan.ok()) << plan.reason;
  EXPECT_EQ(names_of(*m, plan.eager), std::vector<std::string>{"sparse_arch"});
  EXPECT_EQ(names_of(*m, plan.boundary), std::vector<std::string>{"sparse_arch"});
  std::vector<std::string> captured = names_of(*m, plan.captured);
  std::sort(captured.begin(), captured.end());
  EXPECT_EQ(captured, (std::vector<std::string>{"dense_arch", "inter", "logit", "over"}));
}

// An EmbeddingCollection's jagged sequences stay in the eager part with the
// node that pools them; the pooled output crosses.
TEST(GraphPlan, KeepsSequencesAndTheirPoolingInTheEagerPart) {
  config::ModelGraph m(parse(R"(features: {dense: 2, sparse: [a, b]}
nodes:
  bags:
    type: EmbeddingBagCollection
    input: features.sparse
    tables: [{name: t_a, num_embeddings: 9, embedding_dim: 4, feature_names: [a]}]
  seq:
    type: EmbeddingCollection
    input: features.sparse
    tables: [{name: s, num_embeddings: 7, embedding_dim: 4, feature_names: [b]}]
  pooled: {type: SequencePool, input: seq}
  x: {type: Concat, inputs: [features.dense, bags, pooled]}
  logit: {type: Linear, input: x, out_features: 1}
output: logit
)"));
  const GraphPlan plan = plan_graph_split(*m);
  ASSERT_TRUE(plan.ok()) << plan.reason;
  std::vector<std::string> eager = names_of(*m, plan.eager), boundary = names_of(*m, plan.boundary);
  std::sort(eager.begin(), eager.end());
  std::sort(boundary.begin(), boundary.end());
  EXPECT_EQ(eager, (std::vector<std::string>{"bags", "pooled", "seq"}));
  EXPECT_EQ(boundary, (std::vector<std::string>{"bags", "pooled"}));
  EXPECT_EQ(names_of(*m, plan.captured), (std::vector<std::string>{"x", "logit"}));
}

// Feature processors are dense parameters inside an embedding node: their
// gradients come from the eager backward, after the graph, so no split.
TEST(GraphPlan, RefusesDenseParametersInsideTheSparsePart) {
  config::ModelGraph m(parse(R"(features: {dense: 2, sparse: [a, b]}
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
)"));
  const GraphPlan plan = plan_graph_split(*m);
  EXPECT_FALSE(plan.ok());
  EXPECT_THAT(plan.reason, HasSubstr("node 'emb' (FeatureProcessedEmbeddingBagCollection)"));
  EXPECT_THAT(plan.reason, HasSubstr("dense parameters"));
}

TEST(GraphPlan, RefusalsComeInOrderOfModeDeviceBuildRunAndModel) {
  GraphPlan ok;
  GraphPlan bad;
  bad.reason = "node 'x' ...";
  const torch::Device cuda(torch::kCUDA, 0);
  EXPECT_EQ(graph_step_refusal("off", cuda, true, false, ok), "training.cuda_graphs is off");
  EXPECT_THAT(graph_step_refusal("auto", torch::kCPU, true, false, ok), HasSubstr("the device is the CPU"));
  EXPECT_THAT(graph_step_refusal("auto", cuda, false, false, ok), HasSubstr("built without CUDA"));
  EXPECT_THAT(graph_step_refusal("auto", cuda, true, true, ok), HasSubstr("distributed"));
  EXPECT_EQ(graph_step_refusal("auto", cuda, true, false, bad), "node 'x' ...");
  EXPECT_EQ(graph_step_refusal("auto", cuda, true, false, ok), "");
}

TEST(GraphPlan, ABatchOfOtherShapesIsNamed) {
  torch::manual_seed(1);
  const data::Batch full = batch_of(8);
  EXPECT_EQ(batch_shape_mismatch(full, batch_of(8)), "");
  EXPECT_EQ(batch_shape_mismatch(full, batch_of(5)), "a batch of 5 rows (the graph's has 8)");
  EXPECT_THAT(batch_shape_mismatch(full, batch_of(8, /*weights=*/true)), HasSubstr("sample weights"));
  data::Batch wide = batch_of(8);
  wide.labels = torch::zeros({8, 2});
  EXPECT_THAT(batch_shape_mismatch(full, wide), HasSubstr("labels are (8, 2) Float (the graph's (8, 1) Float)"));
}

// On the CPU the key is accepted and ignored, without a word in the log.
TEST(GraphPlan, AutoOnTheCpuTrainsEagerly) {
  const auto c = parse(dlrm_yaml("  cuda_graphs: auto\n"));
  config::ModelGraph m(c);
  TrainingSetup s(m, c.training, torch::kCPU);
  EXPECT_EQ(s.graph_step(), nullptr);
  EXPECT_THAT(s.cuda_graphs_status(), HasSubstr("eager: the device is the CPU"));
  EXPECT_EQ(s.take_cuda_graphs_notes(), "");
}

// recmod profile's report says what training.cuda_graphs did, on its second
// line (a report cut short still shows it) and in the JSON; nothing on the CPU.
TEST(GraphStepConfig, ProfileReportsTheOutcome) {
  profile::ProfileReport r;
  r.batch_size = 8;
  EXPECT_THAT(r.to_table(), Not(HasSubstr("cuda graphs")));
  EXPECT_FALSE(r.to_json().contains("cuda_graphs"));
  r.cuda_graphs = "captured (dense part: 4 of 5 nodes; sparse part eager; 9 replays, 4 uncaptured steps)";
  const std::string table = r.to_table();
  const auto second_line = table.substr(table.find('\n') + 1);
  EXPECT_EQ(second_line.rfind("cuda graphs: captured (dense part: 4 of 5 nodes;", 0), 0u) << table;
  EXPECT_EQ(r.to_json()["cuda_graphs"], r.cuda_graphs);
}

// The split step (sparse part eager, dense part through static buffers and
// autograd::grad, then the sparse backward from the leaves' gradients)
// trains as the one-piece step: same losses and parameters, adam on the
// dense part and the fused row-wise Adagrad on the tables, sample weights,
// an lr schedule, and a short last batch (run on its own tensors).
TEST(GraphStepSplit, TrainsAsTheEagerStepOverSteps) {
  const auto c = parse(dlrm_yaml(R"(  dense_optimizer: {type: adam, lr: 0.01, schedule: {type: linear, decay_steps: 6, end_lr: 0.001}}
)"));
  torch::manual_seed(3);
  config::ModelGraph eager(c), split(c);
  load_state_dict(*split, state_dict(*eager), "eager");
  TrainingSetup se(eager, c.training, torch::kCPU), ss(split, c.training, torch::kCPU);
  ss.use_uncaptured_split_step(split);
  ASSERT_NE(ss.graph_step(), nullptr);
  torch::manual_seed(4);
  for (int step = 0; step < 7; ++step) {
    const data::Batch b = batch_of(step == 6 ? 5 : 16, /*weights=*/true);
    se.schedule_lr(step);
    ss.schedule_lr(step);
    const double le = train_step(eager, se, b).item<double>();
    const double ls = train_step(split, ss, b).item<double>();
    EXPECT_NEAR(ls, le, 1e-6 * std::max(1.0, std::abs(le))) << "step " << step;
  }
  EXPECT_EQ(ss.graph_step()->uncaptured_steps(), 7);
  EXPECT_THAT(ss.graph_step()->status(), HasSubstr("dense part: 4 of 5 nodes"));
  const StateDict a = state_dict(*eager), b = state_dict(*split);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(torch::allclose(a[i].second, b[i].second, 1e-5, 1e-6)) << a[i].first;
  }
  const StateDict oa = se.state_dict(), ob = ss.state_dict();
  ASSERT_EQ(oa.size(), ob.size());
  for (size_t i = 0; i < oa.size(); ++i)
    EXPECT_TRUE(torch::allclose(oa[i].second.to(torch::kDouble), ob[i].second.to(torch::kDouble), 1e-5, 1e-6))
        << oa[i].first;
}

}  // namespace graph_step_test
}  // namespace recmod::train
