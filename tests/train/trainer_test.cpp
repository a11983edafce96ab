#include "recmod/train/trainer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "recmod/common/errors.h"
#include "recmod/common/state_dict.h"
#include "recmod/io/tensor_file.h"
#include "recmod/io/file_backed_tensor.h"
#include "recmod/train/distributed.h"
#include "recmod/train/health.h"
#include "recmod/train/train_step.h"
#include "support/test_util.h"

namespace recmod::train {
namespace trainer_test {

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
  return [](const torch::Tensor& logits, const torch::Tensor& labels, const torch::Tensor&) {
    return nlohmann::json{
        {"accuracy", ((logits > 0).to(torch::kFloat) == labels.select(1, 0)).to(torch::kFloat).mean().item<double>()}};
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

// kModel with its table stored in 16 bits, rounded stochastically or to
// nearest: bf16 on the fused path, fp16 on the row-sparse optimizer
// (libtorch 1.13's CPU embedding_bag, which the unfused path runs, takes no bf16).
config::ModelConfig low_precision_config(bool stochastic, bool fused) {
  std::string text = kModel;
  const std::string table_end = "feature_names: [a]}";
  text.replace(text.find(table_end), table_end.size(),
               std::string("feature_names: [a], data_type: ") + (fused ? "bf16" : "fp16") +
                   (stochastic ? ", stochastic_rounding: true}" : "}"));
  if (!fused) text += "  fused_embeddings: false\n";
  return config::parse_model_config(config::ConfigNode::load_string(text, "t.yaml"));
}

// Stochastic rounding's seed and step are saved with the optimizer state
// (recmod's own keys), so an interrupted and resumed run draws the
// uninterrupted run's bits: the same bytes, on both embedding paths.
TEST(TrainerTest, StochasticRoundingResumesBitwiseOnBothEmbeddingPaths) {
  for (bool fused : {true, false}) {
    SCOPED_TRACE(fused ? "fused" : "row-sparse");
    const std::string tag = fused ? "fused" : "sparse";
    auto make = [&](bool stochastic) {
      seed_everything(7);
      return config::ModelGraph(low_precision_config(stochastic, fused));
    };
    const config::TrainingSpec training = low_precision_config(true, fused).training;
    auto whole_dir = run_dir("sr_whole_" + tag);
    auto model_whole = make(true);
    Trainer(model_whole, training, RunDir(whole_dir, false), {}).fit(source(), {}, {});

    auto split_dir = run_dir("sr_split_" + tag);
    EXPECT_TRUE(Trainer(make(true), training, RunDir(split_dir, false), {}).fit(source(-1, 4), {}, {}).interrupted);
    TrainerOptions resume;
    resume.resume = true;
    auto model_resumed = make(true);
    EXPECT_EQ(Trainer(model_resumed, training, RunDir(split_dir, true), resume).fit(source(), {}, {}).steps, 18);
    expect_same_state(state_dict(*model_whole), state_dict(*model_resumed));
    const StateDict trainer_state = load_tensors(whole_dir + "/trainer_state.pt");
    expect_same_state(trainer_state, load_tensors(split_dir + "/trainer_state.pt"));
    const torch::Tensor* rounding = find_tensor(
        trainer_state, fused ? "optimizer.stochastic_rounding.sparse_arch" : "optimizer.stochastic_rounding");
    ASSERT_NE(rounding, nullptr);
    EXPECT_EQ((*rounding)[1].item<int64_t>(), 18);  // one step of random bits per optimizer step

    // The rounding mattered: rounding to nearest ends with another table.
    auto model_nearest = make(false);
    Trainer(model_nearest, low_precision_config(false, fused).training, RunDir(run_dir("sr_nearest_" + tag), false), {})
        .fit(source(), {}, {});
    const char* table = "sparse_arch.embedding_bags.t_a.weight";
    EXPECT_EQ(find_tensor(state_dict(*model_whole), table)->scalar_type(), fused ? torch::kBFloat16 : torch::kHalf);
    EXPECT_FALSE(
        torch::equal(*find_tensor(state_dict(*model_whole), table), *find_tensor(state_dict(*model_nearest), table)));
  }
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

// kModel's training section with other optimizers (YAML flow maps).
config::TrainingSpec training_with(const std::string& dense, const std::string& embedding, bool fused = true) {
  std::string text = kModel;
  auto replace = [&](const std::string& key, const std::string& value) {
    const auto at = text.find("  " + key + ":");
    text.replace(at, text.find('\n', at) - at, "  " + key + ": " + value);
  };
  replace("dense_optimizer", dense);
  replace("embedding_optimizer", embedding);
  if (!fused) text += "  fused_embeddings: false\n";
  return config::parse_model_config(config::ConfigNode::load_string(text, "t.yaml")).training;
}

// A NaN loss at step 4 stops the run before that step changes the model, on
// both embedding paths: fused (its tables update inside backward, so the loss
// is checked before it) and row-sparse (the loss's flag is read with the
// gradients' after backward, before any optimizer step). The model then
// equals a 3-step run's, and the message is the loss's.
TEST(TrainerTest, NonFiniteLossStopsBeforeItsUpdateOnBothEmbeddingPaths) {
  for (bool fused : {true, false}) {
    SCOPED_TRACE(fused ? "fused" : "row-sparse");
    const config::TrainingSpec training =
        training_with("{type: adam, lr: 0.05}", "{type: rowwise_adagrad, lr: 0.1}", fused);
    auto stopped = make_model();
    try {
      Trainer(stopped, training, RunDir(run_dir(std::string("nan_stop_") + (fused ? "f" : "s")), false), {})
          .fit(source(3), {}, {});
      FAIL() << "expected TrainingHealthError";
    } catch (const TrainingHealthError& e) {
      EXPECT_STREQ(e.what(), "step 4: loss is nan");
    }
    auto three = make_model();
    TrainerOptions options;
    options.steps = 3;
    Trainer(three, training, RunDir(run_dir(std::string("nan_three_") + (fused ? "f" : "s")), false), options)
        .fit(source(), {}, {});
    expect_same_state(state_dict(*three), state_dict(*stopped));
  }
}

std::string exact(double v) {
  std::ostringstream os;
  os << std::setprecision(17) << v;
  return os.str();
}

// One step at scheduled step k changes the model exactly as a step at the
// hand-computed constant rate does: the schedule reaches the dense
// optimizer and the embedding one (fused and row-sparse paths).
TEST(TrainerTest, ScheduledStepUsesTheHandComputedRate) {
  for (bool fused : {true, false}) {
    // warmup 4 steps to 0.4: step 1 runs at 0.4 * 2 / 4 = 0.2.
    // cosine from 0.8 over 4 steps: step 1 runs at 0.8 * (1 + cos(pi / 4)) / 2.
    const double embedding_lr = 0.8 * (1 + std::cos(M_PI / 4)) / 2;
    const auto scheduled =
        training_with("{type: sgd, lr: 0.4, schedule: {warmup_steps: 4}}",
                      "{type: sgd, lr: 0.8, schedule: {type: cosine, decay_steps: 4}}", fused);
    const auto constant = training_with("{type: sgd, lr: 0.2}",
                                        "{type: sgd, lr: " + exact(embedding_lr) + "}", fused);
    ASSERT_EQ(constant.embedding_optimizer.lr(), embedding_lr);  // the YAML text is exact
    const data::Batch batch = *VectorSource(0).next();
    auto a = make_model();
    auto b = make_model();
    TrainingSetup setup_a(a, scheduled, torch::kCPU);
    TrainingSetup setup_b(b, constant, torch::kCPU);
    EXPECT_EQ(setup_a.fused().empty(), !fused);
    setup_a.schedule_lr(1);
    EXPECT_DOUBLE_EQ(setup_a.dense_lr(), 0.2);
    EXPECT_DOUBLE_EQ(setup_a.embedding_lr(), embedding_lr);
    train_step(a, setup_a, batch);
    train_step(b, setup_b, batch);
    expect_same_state(state_dict(*a), state_dict(*b));
    // and a step at another scheduled rate does not
    auto c = make_model();
    TrainingSetup setup_c(c, scheduled, torch::kCPU);
    setup_c.schedule_lr(0);
    train_step(c, setup_c, batch);
    EXPECT_FALSE(torch::equal(*find_tensor(state_dict(*c), "logit.weight"), *find_tensor(state_dict(*a), "logit.weight")));
    EXPECT_FALSE(torch::equal(*find_tensor(state_dict(*c), "sparse_arch.embedding_bags.t_a.weight"),
                              *find_tensor(state_dict(*a), "sparse_arch.embedding_bags.t_a.weight")));
  }
}

// The rate is a function of the step count in the trainer state: an
// interrupted and resumed run under warmup + decay schedules ends with the
// same bytes as an uninterrupted one (and the schedules did change it).
TEST(TrainerTest, InterruptedThenResumedEqualsUninterruptedUnderSchedules) {
  const auto scheduled = training_with(
      "{type: adam, lr: 0.05, schedule: {type: polynomial, warmup_steps: 3, decay_steps: 12, power: 2}}",
      "{type: rowwise_adagrad, lr: 0.1, schedule: {type: cosine, warmup_steps: 2, decay_start: 5, decay_steps: 8, "
      "end_lr: 0.01}}");
  auto whole_dir = run_dir("whole_scheduled");
  auto model_whole = make_model();
  Trainer(model_whole, scheduled, RunDir(whole_dir, false), {}).fit(source(), {}, {});

  auto split_dir = run_dir("split_scheduled");
  auto first = Trainer(make_model(), scheduled, RunDir(split_dir, false), {}).fit(source(-1, 5), {}, {});
  ASSERT_TRUE(first.interrupted);
  EXPECT_EQ(first.steps, 5);
  TrainerOptions resume;
  resume.resume = true;
  auto model_resumed = make_model();
  auto second = Trainer(model_resumed, scheduled, RunDir(split_dir, true), resume).fit(source(), {}, {});
  EXPECT_EQ(second.steps, 18);
  expect_same_state(state_dict(*model_whole), state_dict(*model_resumed));
  expect_same_state(load_tensors(whole_dir + "/model.pt"), load_tensors(split_dir + "/model.pt"));

  auto constant_dir = run_dir("constant_lr");
  auto model_constant = make_model();
  Trainer(model_constant, kTraining, RunDir(constant_dir, false), {}).fit(source(), {}, {});
  EXPECT_FALSE(torch::equal(*find_tensor(state_dict(*model_constant), "logit.weight"),
                            *find_tensor(state_dict(*model_whole), "logit.weight")));
}

// kModel with more training keys (appended to its training section).
config::TrainingSpec training_plus(const std::string& extra) {
  return config::parse_model_config(config::ConfigNode::load_string(std::string(kModel) + extra, "t.yaml")).training;
}

// A metric made to degrade: the k-th evaluation (counting from `first`)
// reports auc values[k]; the model's predictions are ignored.
MetricsFn scripted_auc(std::vector<double> values, int64_t first = 0) {
  auto calls = std::make_shared<int64_t>(first);
  return [values, calls](const torch::Tensor&, const torch::Tensor&, const torch::Tensor&) {
    const size_t k = static_cast<size_t>((*calls)++);
    return nlohmann::json{{"auc", k < values.size() ? values[k] : 0.0}};
  };
}

// auc per evaluation (every 2 steps): 0.6, 0.7 (best, step 4), 0.7005 (not
// better by more than min_delta), 0.69: patience 2 is exhausted at step 8.
const std::vector<double> kDegrading{0.6, 0.7, 0.7005, 0.69, 0.9, 0.9};
const char* kEarlyStopping = "  eval_interval: 2\n  early_stopping: {metric: auc, patience: 2, min_delta: 0.001}\n";

TEST(TrainerTest, EarlyStoppingKeepsTheBestModel) {
  const auto training = training_plus(kEarlyStopping);
  auto dir = run_dir("early_stop");
  auto result = Trainer(make_model(), training, RunDir(dir, false), {}).fit(source(), source(), scripted_auc(kDegrading));
  EXPECT_TRUE(result.stopped_early);
  EXPECT_EQ(result.steps, 8);
  EXPECT_EQ(result.best_step, 4);
  EXPECT_DOUBLE_EQ(result.best_value, 0.7);
  auto state = load_tensors(dir + "/trainer_state.pt");
  EXPECT_EQ(find_tensor(state, "trainer.step")->item<int64_t>(), 8);
  EXPECT_EQ(find_tensor(state, "trainer.best_step")->item<int64_t>(), 4);
  EXPECT_EQ(find_tensor(state, "trainer.stopped_early")->item<int64_t>(), 1);
  auto best = read_best_record(RunDir::attach(dir));
  ASSERT_TRUE(best);
  EXPECT_EQ(best->step, 4);
  EXPECT_EQ(best->metric, "auc");
  // best/model.pt is the model after 4 steps: what a 4-step run ends with
  auto four_dir = run_dir("four_steps");
  TrainerOptions four;
  four.steps = 4;
  Trainer(make_model(), kTraining, RunDir(four_dir, false), four).fit(source(), {}, {});
  expect_same_state(load_tensors(dir + "/best/model.pt"), load_tensors(four_dir + "/model.pt"));
  EXPECT_FALSE(torch::equal(*find_tensor(load_tensors(dir + "/best/model.pt"), "logit.weight"),
                            *find_tensor(load_tensors(dir + "/model.pt"), "logit.weight")));
  // a resumed run that had stopped early stays stopped
  TrainerOptions resume;
  resume.resume = true;
  auto again = Trainer(make_model(), training, RunDir(dir, true), resume).fit(source(), source(), scripted_auc({}));
  EXPECT_TRUE(again.stopped_early);
  EXPECT_EQ(again.steps, 8);
}

// Interrupted after the best evaluation and resumed: the same stop, the
// same best step and best model bytes as the uninterrupted run.
TEST(TrainerTest, EarlyStoppingResumesConsistently) {
  const auto training = training_plus(kEarlyStopping);
  auto whole_dir = run_dir("early_whole");
  Trainer(make_model(), training, RunDir(whole_dir, false), {}).fit(source(), source(), scripted_auc(kDegrading));
  auto split_dir = run_dir("early_split");
  auto first = Trainer(make_model(), training, RunDir(split_dir, false), {})
                   .fit(source(-1, 5), source(), scripted_auc(kDegrading));
  ASSERT_TRUE(first.interrupted);
  TrainerOptions resume;
  resume.resume = true;
  // evaluations at steps 2 and 4 happened before the interruption
  auto second = Trainer(make_model(), training, RunDir(split_dir, true), resume)
                    .fit(source(), source(), scripted_auc(kDegrading, 2));
  EXPECT_TRUE(second.stopped_early);
  EXPECT_EQ(second.steps, 8);
  EXPECT_EQ(second.best_step, 4);
  expect_same_state(load_tensors(whole_dir + "/best/model.pt"), load_tensors(split_dir + "/best/model.pt"));
  expect_same_state(load_tensors(whole_dir + "/model.pt"), load_tensors(split_dir + "/model.pt"));
  expect_same_state(load_tensors(whole_dir + "/trainer_state.pt"), load_tensors(split_dir + "/trainer_state.pt"));
}

TEST(TrainerTest, KeepBestWithoutEarlyStoppingRunsToTheEnd) {
  const auto training = training_plus("  eval_interval: 3\n  keep_best: ne\n");
  auto dir = run_dir("keep_best");
  // ne per evaluation (steps 3, 6, ..., 18): the smallest is the 3rd
  auto result = Trainer(make_model(), training, RunDir(dir, false), {})
                    .fit(source(), source(), [calls = std::make_shared<int>(0)](const torch::Tensor&, const torch::Tensor&, const torch::Tensor&) {
                      const double ne[] = {0.9, 0.8, 0.7, 0.75, 0.71, 0.72};
                      return nlohmann::json{{"ne", ne[(*calls)++ % 6]}};
                    });
  EXPECT_FALSE(result.stopped_early);
  EXPECT_EQ(result.steps, 18);
  EXPECT_EQ(result.best_step, 9);
  EXPECT_EQ(read_best_record(RunDir::attach(dir))->step, 9);
}

TEST(TrainerTest, EarlyStoppingConfigErrors) {
  auto error_of = [](const std::string& extra) {
    try {
      training_plus(extra);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("<no ConfigError>");
  };
  EXPECT_THAT(error_of("  early_stopping: {metric: auc, patience: 2}\n"),
              HasSubstr("training.early_stopping: needs training.eval_interval > 0"));
  EXPECT_THAT(error_of("  eval_interval: 2\n  early_stopping: {metric: calibration}\n"), HasSubstr("log_loss"));
  EXPECT_THAT(error_of("  eval_interval: 2\n  early_stopping: {patience: 0}\n"), HasSubstr("patience"));
  EXPECT_THAT(error_of("  eval_interval: 2\n  early_stopping: {min_delta: -1}\n"),
              HasSubstr("early_stopping.min_delta: must be >= 0"));
  EXPECT_THAT(error_of("  eval_interval: 2\n  early_stopping: {metric: auc, paitence: 3}\n"), HasSubstr("paitence"));
  EXPECT_THAT(error_of("  eval_interval: 2\n  early_stopping: {metric: auc}\n  keep_best: ne\n"),
              HasSubstr("early_stopping watches 'auc'"));
  // no evaluation data: refused before the first step
  auto dir = run_dir("early_no_eval");
  try {
    Trainer(make_model(), training_plus(kEarlyStopping), RunDir(dir, false), {}).fit(source(), {}, {});
    FAIL() << "expected UsageError";
  } catch (const UsageError& e) {
    EXPECT_THAT(e.what(), HasSubstr("training.early_stopping needs evaluation data"));
  }
}

std::vector<nlohmann::json> train_lines(const std::string& dir) {
  std::vector<nlohmann::json> out;
  std::ifstream in(dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j["split"] == "train") out.push_back(j);
  }
  return out;
}

// A train line of metrics.jsonl summarises its logging window: the mean of
// the window's step losses, and the metrics of the window's predictions
// (here: how many, and the mean label), as the console line does.
TEST(TrainerTest, TrainLinesSummariseTheLoggingWindow) {
  auto run = [](int64_t interval, const MetricsFn& metrics) {
    std::string text = kModel;
    text.replace(text.find("log_interval: 0"), 15, "log_interval: " + std::to_string(interval));
    const auto training = config::parse_model_config(config::ConfigNode::load_string(text, "t.yaml")).training;
    auto dir = run_dir("window_" + std::to_string(interval));
    TrainerOptions six;
    six.steps = 6;
    Trainer(make_model(), training, RunDir(dir, false), six).fit(source(), {}, metrics);
    return train_lines(dir);
  };
  const auto per_step = run(1, {});
  const auto windows = run(3, [](const torch::Tensor& logits, const torch::Tensor& labels, const torch::Tensor&) {
    return nlohmann::json{{"count", logits.numel()}, {"label_mean", labels.mean().item<double>()}};
  });
  ASSERT_EQ(per_step.size(), 6u);
  ASSERT_EQ(windows.size(), 2u);
  EXPECT_FALSE(per_step[0].contains("label_mean"));  // no metrics function: the loss only
  VectorSource batches(0);
  for (size_t w = 0; w < 2; ++w) {
    double loss = 0, labels = 0;
    for (size_t i = 3 * w; i < 3 * w + 3; ++i) {
      loss += per_step[i]["loss"].get<double>();
      labels += batches.next()->labels.sum().item<double>();
    }
    EXPECT_EQ(windows[w]["step"], 3 * (w + 1));
    EXPECT_EQ(windows[w]["steps"], 3);
    EXPECT_NEAR(windows[w]["loss"].get<double>(), loss / 3, 1e-12);
    EXPECT_EQ(windows[w]["count"], 24);
    EXPECT_NEAR(windows[w]["label_mean"].get<double>(), labels / 24, 1e-6);  // a float mean
  }
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

// --checkpoint-memory: a gathered table of at most the limit goes on the heap
// (undefined: the gather's own choice), a larger one into a file in the run
// directory.
TEST(TrainerTest, CheckpointAllocatorPutsTablesOverTheLimitInAFile) {
  const std::string dir = ::testing::TempDir();
  const auto allocate = checkpoint_tensor_allocator(dir, 4096);
  EXPECT_FALSE(allocate({32, 32}, torch::kFloat).defined());  // 4096 bytes
  const torch::Tensor large = allocate({32, 33}, torch::kFloat);
  ASSERT_TRUE(large.defined());
  EXPECT_TRUE(io::is_file_backed(large));
  EXPECT_EQ(large.sizes(), torch::IntArrayRef({32, 33}));
  EXPECT_FALSE(allocate({2048}, torch::kHalf).defined());
  EXPECT_TRUE(io::is_file_backed(checkpoint_tensor_allocator(dir, 0)({1}, torch::kHalf)));
  EXPECT_GT(default_checkpoint_memory(), 0);
}

}  // namespace trainer_test
}  // namespace recmod::train
