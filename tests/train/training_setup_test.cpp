#include "recmod/train/training_setup.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/common/state_dict.h"
#include "recmod/modules/mlp.h"
#include "recmod/train/train_step.h"

namespace recmod::train {
namespace training_setup_test {

using ::testing::HasSubstr;

// A small DLRM: bottom MLP, tables, dot interaction, top MLP, a Linear logit.
std::string dlrm_yaml(const std::string& precision_line) {
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
  dense_optimizer: {type: adagrad, lr: 0.05}
  batch_size: 32
)" + precision_line;
}

config::ModelConfig parse(const std::string& text) {
  return config::parse_model_config(config::ConfigNode::load_string(text, "t.yaml"));
}

StateDict clone_state(const StateDict& s) {
  StateDict out;
  for (const auto& [k, v] : s) out.emplace_back(k, v.detach().clone());
  return out;
}

data::Batch batch_of(int64_t n) {
  auto ids = torch::randint(0, 20, {2 * n}, torch::kLong);
  return {torch::randn({n, 4}), KeyedJaggedTensor::from_lengths({"a", "b"}, ids, torch::ones({2 * n}, torch::kInt)),
          torch::randint(0, 2, {n, 1}).to(torch::kFloat)};
}

// training.dense_precision: bf16 sets every MLP layer's compute dtype; the
// parameters, the optimizer state and their keys stay fp32 and the same as
// fp32's; a few steps train to losses near fp32's (bf16's rounding, not a
// different model).
TEST(TrainingSetupTest, DensePrecisionBf16ComputesTheMlpsInBf16AndKeepsFp32State) {
  const auto c32 = parse(dlrm_yaml(""));
  const auto c16 = parse(dlrm_yaml("  dense_precision: bf16\n"));
  EXPECT_EQ(c32.training.dense_precision, "fp32");
  EXPECT_EQ(c16.training.dense_precision, "bf16");
  torch::manual_seed(5);
  config::ModelGraph m32(c32);
  config::ModelGraph m16(c16);
  load_state_dict(*m16, state_dict(*m32), "m32");
  TrainingSetup s32(m32, c32.training, torch::kCPU), s16(m16, c16.training, torch::kCPU);
  int64_t layers = 0;
  for (const auto& item : m16->named_modules())
    if (auto p = std::dynamic_pointer_cast<PerceptronImpl>(item.value())) {
      EXPECT_EQ(p->options.compute_dtype(), torch::kBFloat16) << item.key();
      ++layers;
    }
  EXPECT_EQ(layers, 3);
  torch::manual_seed(6);
  for (int step = 0; step < 5; ++step) {
    const data::Batch b = batch_of(32);
    const double l32 = train_step(m32, s32, b).item<double>();
    const double l16 = train_step(m16, s16, b).item<double>();
    EXPECT_NEAR(l16, l32, 0.02 * l32) << step;
  }
  const StateDict a = state_dict(*m32), b = state_dict(*m16);
  ASSERT_EQ(a.size(), b.size());
  bool any_different = false;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_EQ(b[i].second.scalar_type(), a[i].second.scalar_type()) << b[i].first;
    any_different = any_different || !torch::equal(a[i].second, b[i].second);
  }
  EXPECT_TRUE(any_different);  // bf16 products do change the trained values
  const StateDict oa = s32.state_dict(), ob = s16.state_dict();
  ASSERT_EQ(oa.size(), ob.size());
  for (size_t i = 0; i < oa.size(); ++i) {
    EXPECT_EQ(oa[i].first, ob[i].first);
    EXPECT_EQ(ob[i].second.scalar_type(), oa[i].second.scalar_type()) << ob[i].first;
  }
}

// Exact resume under bf16: two steps, the model and optimizer state loaded
// into a fresh model and setup, two more steps, give the bytes of four
// uninterrupted steps (bf16 products are deterministic; the state is fp32).
TEST(TrainingSetupTest, DensePrecisionBf16ResumesExactly) {
  const auto c16 = parse(dlrm_yaml("  dense_precision: bf16\n"));
  torch::manual_seed(8);
  std::vector<data::Batch> batches;
  for (int i = 0; i < 4; ++i) batches.push_back(batch_of(32));
  torch::manual_seed(9);
  config::ModelGraph whole(c16);
  const StateDict init = clone_state(state_dict(*whole));
  TrainingSetup whole_setup(whole, c16.training, torch::kCPU);
  for (const auto& b : batches) train_step(whole, whole_setup, b);

  config::ModelGraph first(c16);
  load_state_dict(*first, init, "init");
  TrainingSetup first_setup(first, c16.training, torch::kCPU);
  for (int i = 0; i < 2; ++i) train_step(first, first_setup, batches[i]);
  const StateDict model_state = clone_state(state_dict(*first));
  const StateDict optimizer_state = clone_state(first_setup.state_dict());
  config::ModelGraph resumed(c16);
  load_state_dict(*resumed, model_state, "checkpoint");
  TrainingSetup resumed_setup(resumed, c16.training, torch::kCPU);
  resumed_setup.load_state_dict(optimizer_state, "checkpoint");
  for (int i = 2; i < 4; ++i) train_step(resumed, resumed_setup, batches[i]);

  const StateDict a = state_dict(*whole), b = state_dict(*resumed);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << a[i].first;
  const StateDict oa = whole_setup.state_dict(), ob = resumed_setup.state_dict();
  ASSERT_EQ(oa.size(), ob.size());
  for (size_t i = 0; i < oa.size(); ++i) EXPECT_TRUE(torch::equal(oa[i].second, ob[i].second)) << oa[i].first;
}

TEST(TrainingSetupTest, DensePrecisionIsCheckedAtItsKey) {
  try {
    parse(dlrm_yaml("  dense_precision: fp16\n"));
    FAIL() << "no ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_THAT(e.what(), HasSubstr("t.yaml:17:20: training.dense_precision: expected one of"));
    EXPECT_THAT(e.what(), HasSubstr("found 'fp16'"));
  }
}

}  // namespace training_setup_test
}  // namespace recmod::train
