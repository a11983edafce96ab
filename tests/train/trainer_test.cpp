#include "recmod/train/trainer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "recmod/common/state_dict.h"
#include "recmod/io/tensor_file.h"
#include "recmod/train/health.h"
#include "support/test_util.h"

namespace recmod::train {
namespace {

using ::testing::HasSubstr;
using io::load_tensors;

const char* kModel = R"(
features: {dense: 2, sparse: [a]}
nodes:
  sparse_arch:
    type: EmbeddingBagCollection
    input: features.sparse
    tables: [{name: t_a, num_embeddings: 10, embedding_dim: 2, feature_names: [a]}]
  x0: {type: Concat, inputs: [features.dense, sparse_arch]}
  logit: {type: Linear, input: x0, out_features: 1}
output: logit
training:
  dense_optimizer: {type: adam, lr: 0.05}
  embedding_optimizer: {type: rowwise_adagrad, lr: 0.1}
  batch_size: 8
  epochs: 3
  seed: 7
  log_interval: 0
)";

config::ModelConfig config_of_test() {
  return config::parse_model_config(config::ConfigNode::load_string(kModel, "t.yaml"));
}

config::ModelGraph make_model() {
  seed_everything(7);
  return config::ModelGraph(config_of_test());
}

const config::TrainingSpec kTraining = config_of_test().training;

// Deterministic batches: label = (dense[0] + planted[id] > 0); `epoch`
// permutes the batch order. Optionally poisons one batch with a NaN or asks
// for a stop after a number of batches.
class VectorSource : public data::BatchSource {
 public:
  VectorSource(int64_t epoch, int64_t nan_batch = -1, int64_t stop_after = -1) : stop_after_(stop_after) {
    schema_.num_dense = 2;
    schema_.sparse_features = {"a"};
    auto gen = at::detail::createCPUGenerator(100);
    for (int64_t i = 0; i < 6; ++i) {
      auto dense = torch::randn({8, 2}, gen);
      auto ids = torch::randint(0, 10, {8}, gen, torch::kLong);
      auto planted = (ids.remainder(2) * 2 - 1).to(torch::kFloat);
      auto labels = ((dense.select(1, 0) + planted) > 0).to(torch::kFloat).unsqueeze(1);
      if (i == nan_batch) dense[0][0] = std::nanf("");
      batches_.push_back({dense, KeyedJaggedTensor::from_lengths({"a"}, ids, torch::ones({8}, torch::kInt)), labels});
    }
    std::rotate(batches_.begin(), batches_.begin() + epoch % 6, batches_.end());
  }
  const data::DataSchema& schema() const override { return schema_; }
  std::optional<data::Batch> next() override {
    if (served_ >= static_cast<int64_t>(batches_.size())) return std::nullopt;
    if (++served_ == stop_after_) request_stop();  // as if Ctrl-C came during this batch's step
    return batches_[served_ - 1];
  }

 private:
  data::DataSchema schema_;
  std::vector<data::Batch> batches_;
  int64_t served_ = 0;
  int64_t stop_after_;
};

std::string run_dir(const std::string& name) {
  auto dir = std::filesystem::path(RECMOD_BINARY_DIR) / "trainer_test_tmp" / name;
  test::remove_tree(dir.string());
  return dir.string();
}

DataFactory source(int64_t nan_batch = -1, int64_t stop_after = -1) {
  return [=](int64_t epoch) { return std::make_unique<VectorSource>(epoch, nan_batch, epoch == 0 ? stop_after : -1); };
}

MetricsFn accuracy() {
  return [](const torch::Tensor& logits, const torch::Tensor& labels) {
    return nlohmann::json{{"accuracy", ((logits > 0).to(torch::kFloat) == labels).to(torch::kFloat).mean().item<double>()}};
  };
}

void expect_same_state(const StateDict& a, const StateDict& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << a[i].first;
  }
}

TEST(TrainerTest, LearnsThePlantedSignalAndWritesTheRun) {
  auto dir = run_dir("learns");
  Trainer trainer(make_model(), kTraining, RunDir(dir, false), {});
  auto result = trainer.fit(source(), source(), accuracy());
  EXPECT_EQ(result.steps, 18);  // 3 epochs x 6 batches
  EXPECT_GT(result.last_eval["accuracy"].get<double>(), 0.8);
  auto saved = load_tensors(dir + "/model.pt");
  EXPECT_NE(find_tensor(saved, "sparse_arch.embedding_bags.t_a.weight"), nullptr);
  auto state = load_tensors(dir + "/trainer_state.pt");
  EXPECT_EQ(find_tensor(state, "trainer.step")->item<int64_t>(), 18);
  EXPECT_EQ(find_tensor(state, "trainer.epoch")->item<int64_t>(), 3);
  EXPECT_TRUE(std::filesystem::exists(dir + "/metrics.jsonl"));
}

TEST(TrainerTest, InterruptedThenResumedEqualsUninterrupted) {
  auto whole_dir = run_dir("whole");
  auto model_whole = make_model();
  Trainer(model_whole, kTraining, RunDir(whole_dir, false), {}).fit(source(), {}, {});

  auto split_dir = run_dir("split");
  auto first = Trainer(make_model(), kTraining, RunDir(split_dir, false), {}).fit(source(-1, 4), {}, {});
  EXPECT_TRUE(first.interrupted);
  EXPECT_EQ(first.steps, 4);
  TrainerOptions resume;
  resume.resume = true;
  auto model_resumed = make_model();
  auto second = Trainer(model_resumed, kTraining, RunDir(split_dir, true), resume).fit(source(), {}, {});
  EXPECT_FALSE(second.interrupted);
  EXPECT_EQ(second.steps, 18);
  expect_same_state(state_dict(*model_whole), state_dict(*model_resumed));
  expect_same_state(load_tensors(whole_dir + "/trainer_state.pt"), load_tensors(split_dir + "/trainer_state.pt"));
}

TEST(TrainerTest, NanLossNamesTheStepAndKeepsTheLastCheckpoint) {
  auto dir = run_dir("nan");
  Trainer(make_model(), kTraining, RunDir(dir, false), {}).fit(source(-1, 2), {}, {});  // checkpoint at step 2
  TrainerOptions resume;
  resume.resume = true;
  try {
    Trainer(make_model(), kTraining, RunDir(dir, true), resume).fit(source(3), {}, {});
    FAIL() << "expected TrainingHealthError";
  } catch (const TrainingHealthError& e) {
    EXPECT_THAT(e.what(), HasSubstr("step 4"));
  }
  EXPECT_EQ(find_tensor(load_tensors(dir + "/trainer_state.pt"), "trainer.step")->item<int64_t>(), 2);
}

TEST(RunDirTest, RefusesToOverwriteOrToResumeNothing) {
  auto dir = run_dir("rundir");
  Trainer(make_model(), kTraining, RunDir(dir, false), {}).fit(source(-1, 1), {}, {});
  try {
    RunDir again(dir, false);
    FAIL();
  } catch (const UsageError& e) {
    EXPECT_THAT(e.what(), HasSubstr("already holds a checkpoint; pass --resume"));
  }
  try {
    RunDir empty(run_dir("rundir_empty"), true);
    FAIL();
  } catch (const UsageError& e) {
    EXPECT_THAT(e.what(), HasSubstr("holds no checkpoint"));
  }
}

}  // namespace
}  // namespace recmod::train
