// Sample weights and multi-task training (issue 14): the `tasks:` section
// (outputs, labels by name, losses, weights), the graph's (B, T) output, the
// loss against hand-computed values, per-task weighted metrics, and the
// readers' sample weights and several labels (delimited text, JSON lines).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cmath>
#include <fstream>

#include "recmod/common/errors.h"
#include "recmod/config/graph.h"
#include "recmod/config/model_config.h"
#include "recmod/train/open_model.h"
#include "recmod/train/train_step.h"
#include "recmod/train/trainer.h"
#include "support/test_util.h"

namespace recmod::train {
namespace multi_task_test {

using ::testing::HasSubstr;
using test::error_of;

// Two heads on one shared bottom: click (BCE) and rating (MSE).
const char kModel[] = R"(features:
  dense: {count: 1}
  sparse: [f]
nodes:
  ebc:
    type: EmbeddingBagCollection
    input: features.sparse
    tables: [{name: t_f, num_embeddings: 10, embedding_dim: 4, feature_names: [f]}]
  both: {type: Concat, inputs: [ebc, features.dense]}
  click_head: {type: Linear, input: both, out_features: 1}
  rating_head: {type: Linear, input: both, out_features: 1}
)";

const char kTasks[] = R"(tasks:
  click: {output: click_head, label: click, loss: bce, weight: 1.0}
  rating: {output: rating_head, label: rating, loss: mse, weight: 0.5}
)";

const char kJsonlData[] = "data:\n  labels: [click, rating]\n  sample_weights: true\n";

config::ModelConfig parse(const std::string& yaml) {
  return config::parse_model_config(config::ConfigNode::load_string(yaml, "mt.yaml"));
}

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "recmod_multitask_" + std::to_string(::getpid()) + "_" + name;
}

std::string write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

TEST(MultiTaskConfig, TasksNameOutputsLabelsLossesAndWeights) {
  const auto c = parse(std::string(kModel) + kTasks + kJsonlData);
  ASSERT_EQ(c.training.tasks.size(), 2u);
  EXPECT_EQ(c.training.tasks[0].name, "click");
  EXPECT_EQ(c.training.tasks[0].label, 0);
  EXPECT_EQ(c.training.tasks[1].label, 1);
  EXPECT_EQ(c.training.tasks[1].loss, "mse");
  EXPECT_DOUBLE_EQ(c.training.tasks[1].weight, 0.5);
  EXPECT_EQ(c.outputs, (std::vector<std::string>{"click_head", "rating_head"}));
  EXPECT_TRUE(c.data.sample_weights);
}

TEST(MultiTaskConfig, ErrorsSayWhatIsExpectedAtTheKey) {
  const std::string base = std::string(kModel) + kTasks;
  EXPECT_THAT(error_of<ConfigError>([&] { parse(base + "data:\n  labels: [click]\n"); }),
              HasSubstr("no label 'rating'; the data's labels are [click]"));
  EXPECT_THAT(error_of<ConfigError>([&] { parse(base + kJsonlData + "output: click_head\n"); }),
              HasSubstr("give either 'output' (one task) or 'tasks' (several), not both"));
  EXPECT_THAT(error_of<ConfigError>([&] {
                parse(std::string(kModel) + "tasks:\n  click: {output: click_head, loss: hinge}\n");
              }),
              HasSubstr("hinge"));
  // A multi-task run watches one task's metric, named "<task>.<metric>".
  EXPECT_THAT(error_of<ConfigError>([&] {
                parse(base + kJsonlData + "training: {eval_interval: 5, early_stopping: {metric: auc}}\n");
              }),
              HasSubstr("click.auc"));
  const auto ok = parse(base + kJsonlData + "training: {eval_interval: 5, early_stopping: {metric: rating.rmse}}\n");
  EXPECT_EQ(ok.training.keep_best, "rating.rmse");
  EXPECT_FALSE(config::higher_is_better("rating.rmse"));
  EXPECT_TRUE(config::higher_is_better("click.auc"));
}

data::Batch batch_of(const torch::Tensor& labels, const torch::Tensor& weights) {
  const int64_t n = labels.size(0);
  auto kjt = KeyedJaggedTensor::from_lengths({"f"}, torch::arange(n, torch::kLong), torch::ones({n}, torch::kLong));
  return data::Batch{torch::ones({n, 1}), kjt, labels, weights};
}

TEST(MultiTaskLoss, WeightedSumOfPerTaskWeightedMeansByHand) {
  const auto tasks = parse(std::string(kModel) + kTasks + kJsonlData).training.tasks;
  // Two rows; logits (B, T): click logits 0 and ln 3, rating predictions 2 and 4.
  const torch::Tensor logits = torch::tensor({0.0, std::log(3.0), 2.0, 4.0}, torch::kDouble).reshape({2, 2}).t().contiguous();
  const torch::Tensor labels = torch::tensor({1.0, 3.0, 0.0, 5.0}, torch::kDouble).reshape({2, 2});
  const torch::Tensor weights = torch::tensor({1.0, 3.0}, torch::kDouble);
  // click: row 0 -log sigmoid(0) = ln 2 (w 1), row 1 -log(1 - 3/4) = ln 4 (w 3):
  //   (ln 2 + 3 ln 4) / 2. rating: (2 - 3)^2 * 1, (4 - 5)^2 * 3: (1 + 3) / 2 = 2.
  const double click = (std::log(2.0) + 3 * std::log(4.0)) / 2, rating = 2.0;
  const double loss = loss_of(logits, batch_of(labels, weights), tasks).item<double>();
  EXPECT_NEAR(loss, 1.0 * click + 0.5 * rating, 1e-12);
  // Without sample weights: plain means.
  const double plain = loss_of(logits, batch_of(labels, torch::Tensor()), tasks).item<double>();
  EXPECT_NEAR(plain, (std::log(2.0) + std::log(4.0)) / 2 + 0.5 * (1.0 + 1.0) / 2, 1e-12);
  // One task (no tasks section): BCE on label 0, weighted mean.
  const double single = loss_of(logits.select(1, 0), batch_of(labels, weights)).item<double>();
  EXPECT_NEAR(single, click, 1e-12);
  // A task whose label column the batch does not have.
  EXPECT_THAT(error_of<InputError>([&] { loss_of(logits, batch_of(labels.narrow(1, 0, 1), weights), tasks); }),
              HasSubstr("task 'rating' learns label column 1 ('rating'), but the data has 1 label column(s)"));
}

TEST(MultiTaskGraph, ForwardGivesOneColumnPerTaskAndTrains) {
  const auto c = parse(std::string(kModel) + kTasks + kJsonlData);
  torch::manual_seed(0);
  config::ModelGraph model(c);
  const auto batch = batch_of(torch::tensor({1.0f, 4.0f, 0.0f, 2.0f}).reshape({2, 2}), torch::tensor({1.0f, 2.0f}));
  const torch::Tensor out = model->forward(batch);
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{2, 2}));
  TrainingSetup setup(model, c.training, torch::kCPU);
  const double first = train_step(model, setup, batch).item<double>();
  double last = first;
  for (int i = 0; i < 30; ++i) last = train_step(model, setup, batch).item<double>();
  EXPECT_LT(last, first);  // both heads learn through the one loss
  EXPECT_THAT(model->describe(), HasSubstr("output: [click_head, rating_head] (one per task)"));
}

TEST(MultiTaskMetrics, PerTaskKeysWeightedByTheSampleWeights) {
  const auto tasks = parse(std::string(kModel) + kTasks + kJsonlData).training.tasks;
  const torch::Tensor logits = torch::tensor({2.0f, -1.0f, 0.5f, 3.0f, 1.0f, 2.0f}).reshape({3, 2});
  const torch::Tensor labels = torch::tensor({1.0f, 2.0f, 0.0f, 1.0f, 1.0f, 4.0f}).reshape({3, 2});
  const torch::Tensor weights = torch::tensor({1.0f, 0.0f, 2.0f});
  const auto m = metrics_of_tasks(tasks)(logits, labels, weights);
  // rating: errors (-1 - 2) w 1, (3 - 1) w 0, (2 - 4) w 2: (9 + 8) / 3.
  EXPECT_NEAR(m["rating.mse"].get<double>(), 17.0 / 3.0, 1e-9);
  // click: the zero-weight row (logit 0.5, label 0) drops out: both
  // remaining rows are positives, so AUC is undefined (0.5).
  EXPECT_DOUBLE_EQ(m["click.auc"].get<double>(), 0.5);
  EXPECT_NEAR(m["click.log_loss"].get<double>(),
              (std::log1p(std::exp(-2.0)) + 2 * std::log1p(std::exp(-1.0))) / 3.0, 1e-6);
  EXPECT_EQ(m["count"].get<int64_t>(), 3);
  EXPECT_FALSE(m.contains("auc"));
  // No tasks: the flat keys of one BCE task on label 0.
  const auto flat = metrics_of_tasks({})(logits.select(1, 0), labels, torch::Tensor());
  EXPECT_TRUE(flat.contains("auc"));
  EXPECT_EQ(flat["count"].get<int64_t>(), 3);
}

// The readers: delimited text with a sample_weight column and a rating read
// twice (a 0/1 label by threshold and a regression target), JSON lines with
// "weight" and a list of labels.
TEST(MultiTaskData, DelimitedSampleWeightsAndTwoLabelsFromOneColumn) {
  const std::string config = write(temp_path("delimited.yaml"), std::string(kModel) + R"(tasks:
  click: {output: click_head, label: liked}
  rating: {output: rating_head, label: rating, loss: mse}
data:
  columns:
    - {name: f, role: sparse, ids: int}
    - {name: x, role: dense}
    - {name: liked, role: label, threshold: 4}
    - {name: w, role: sample_weight}
    - {name: rating, role: label, source: liked}
)");
  const std::string good = write(temp_path("good.csv"), "1,0.5,5,2.0\n2,1.5,3,0.25\n");
  const OpenedModel opened = open_model(config);
  EXPECT_EQ(opened.config.data.labels, (std::vector<std::string>{"liked", "rating"}));
  auto source = open_batches(opened, good, DataOptions{});
  const auto b = source->next();
  ASSERT_TRUE(b);
  EXPECT_TRUE(torch::equal(b->labels, torch::tensor({1.0f, 5.0f, 0.0f, 3.0f}).reshape({2, 2})));
  EXPECT_TRUE(torch::equal(b->weights, torch::tensor({2.0f, 0.25f})));
  const std::string negative = write(temp_path("negative.csv"), "1,0.5,5,2.0\n2,1.5,3,-1\n");
  EXPECT_THAT(error_of<InputError>([&] { open_batches(opened, negative, DataOptions{})->next(); }),
              HasSubstr("negative.csv:2: column 'w': expected a sample weight (a finite number >= 0), found '-1'"));
}

TEST(MultiTaskData, JsonLinesWeightAndLabelsCheckedPerTaskLoss) {
  const std::string config = write(temp_path("jsonl.yaml"), std::string(kModel) + kTasks + kJsonlData);
  const OpenedModel opened = open_model(config);
  const std::string good = write(temp_path("good.jsonl"),
                                 "{\"label\": [1, 4.5], \"dense\": [0.5], \"sparse\": {\"f\": [1]}, \"weight\": 3}\n"
                                 "{\"label\": [0, 2], \"dense\": [1.5], \"sparse\": {\"f\": [2]}}\n");
  auto source = open_batches(opened, good, DataOptions{});
  const auto b = source->next();
  ASSERT_TRUE(b);
  EXPECT_TRUE(torch::equal(b->labels, torch::tensor({1.0f, 4.5f, 0.0f, 2.0f}).reshape({2, 2})));
  EXPECT_TRUE(torch::equal(b->weights, torch::tensor({3.0f, 1.0f})));  // left out: 1
  // The click label feeds binary cross-entropy: 0 or 1, with file:line.
  const std::string bad = write(temp_path("bad.jsonl"), "{\"label\": [2, 4.5], \"dense\": [0.5], \"sparse\": {}}\n");
  EXPECT_THAT(error_of<InputError>([&] { open_batches(opened, bad, DataOptions{})->next(); }),
              HasSubstr("bad.jsonl:1: expected \"label\"[0] 0 or 1 (the loss is binary cross-entropy), found [2,4.5]"));
  const std::string weight = write(temp_path("weight.jsonl"), "{\"label\": [1, 1], \"dense\": [0.5], \"weight\": -2}\n");
  EXPECT_THAT(error_of<InputError>([&] { open_batches(opened, weight, DataOptions{})->next(); }),
              HasSubstr("weight.jsonl:1: expected \"weight\" to be a finite number >= 0"));
}

}  // namespace multi_task_test
}  // namespace recmod::train
