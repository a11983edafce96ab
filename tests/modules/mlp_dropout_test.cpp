// Dropout in MLP (issue 14): on in training mode only, reproducible under
// the seed, no new state_dict keys; the MLP and DeepFM nodes take `dropout:`.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/common/state_dict.h"
#include "recmod/config/graph.h"
#include "recmod/modules/mlp.h"
#include "support/test_util.h"

namespace recmod {
namespace mlp_dropout_test {

using ::testing::HasSubstr;

// Two MLPs with the same weights, one with dropout p.
std::pair<MLP, MLP> twins(double p) {
  torch::manual_seed(5);
  MLP plain(MLPOptions(6, {8, 4}));
  torch::manual_seed(5);
  MLP dropped(MLPOptions(6, {8, 4}).dropout(p));
  return {plain, dropped};
}

TEST(MLPDropoutTest, OffInEvalOnInTraining) {
  auto [plain, dropped] = twins(0.5);
  EXPECT_EQ(test::state_dict_keys(*plain), test::state_dict_keys(*dropped));  // no key added
  const torch::Tensor x = torch::randn({64, 6});
  plain->eval();
  dropped->eval();
  EXPECT_TRUE(torch::equal(plain->forward(x), dropped->forward(x)));
  plain->train();
  dropped->train();
  const torch::Tensor reference = plain->forward(x);
  const torch::Tensor y = dropped->forward(x);
  EXPECT_FALSE(torch::equal(reference, y));
  // Every output is 0 or the layer's value scaled by 1 / (1 - p) (here: the
  // last layer's mask on top of the first's, so check the last layer's
  // form: a zero where the reference may be anything is a dropped unit).
  const int64_t zeros_dropped = (y == 0).sum().item<int64_t>();
  const int64_t zeros_plain = (reference == 0).sum().item<int64_t>();
  EXPECT_GT(zeros_dropped, zeros_plain);
}

TEST(MLPDropoutTest, ScalesKeptUnitsAndIsReproducibleUnderTheSeed) {
  // One layer, identity-like: with p = 0.25 each output is 0 or the
  // layer's output / 0.75.
  torch::manual_seed(1);
  MLP one(MLPOptions(3, {5}).dropout(0.25));
  one->train();
  const torch::Tensor x = torch::randn({200, 3});
  torch::Tensor full;
  {
    one->eval();
    full = one->forward(x);
    one->train();
  }
  torch::manual_seed(42);
  const torch::Tensor a = one->forward(x);
  const torch::Tensor kept = a != 0;
  EXPECT_TRUE(torch::allclose(a.masked_select(kept), (full / 0.75).masked_select(kept)));
  // of the units the layer made nonzero (relu zeroes about half), about p are dropped
  const torch::Tensor active = full != 0;
  const double dropped_share =
      (active.logical_and(a == 0)).sum().item<double>() / active.sum().item<double>();
  EXPECT_GT(dropped_share, 0.15);
  EXPECT_LT(dropped_share, 0.35);
  torch::manual_seed(42);
  EXPECT_TRUE(torch::equal(one->forward(x), a));  // the same seed, the same mask
  EXPECT_FALSE(torch::equal(one->forward(x), a));  // the generator moved on
}

TEST(MLPDropoutTest, RejectsOutOfRange) {
  EXPECT_THAT(test::error_of([] { MLP(MLPOptions(3, {2}).dropout(1.0)); }), HasSubstr("dropout must be in [0, 1)"));
}

std::string config_with(const std::string& over_arch) {
  return "features: {dense: 4}\nnodes:\n  over: " + over_arch + "\n  logit: {type: Linear, input: over, out_features: 1}\noutput: logit\n";
}

TEST(MLPDropoutTest, ConfigNodeTakesDropout) {
  auto parse = [](const std::string& yaml) {
    return config::parse_model_config(config::ConfigNode::load_string(yaml, "d.yaml"));
  };
  torch::manual_seed(3);
  config::ModelGraph plain(parse(config_with("{type: MLP, input: features.dense, layer_sizes: [8, 8]}")));
  torch::manual_seed(3);
  config::ModelGraph dropped(parse(config_with("{type: MLP, input: features.dense, layer_sizes: [8, 8], dropout: 0.3}")));
  EXPECT_EQ(test::state_dict_keys(*plain), test::state_dict_keys(*dropped));
  EXPECT_THAT(dropped->describe(), HasSubstr("dropout 0.3"));
  data::Batch batch{torch::randn({16, 4}), KeyedJaggedTensor::empty(false, torch::kCPU, 16), torch::zeros({16, 1})};
  plain->eval();
  dropped->eval();
  EXPECT_TRUE(torch::equal(plain->forward(batch), dropped->forward(batch)));
  dropped->train();
  plain->train();
  EXPECT_FALSE(torch::equal(plain->forward(batch), dropped->forward(batch)));
  try {
    config::ModelGraph bad(parse(config_with("{type: MLP, input: features.dense, layer_sizes: [8], dropout: 1.5}")));
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_THAT(e.what(), HasSubstr("d.yaml:3:"));
    EXPECT_THAT(e.what(), HasSubstr("nodes.over.dropout: must be in [0, 1), got 1.5"));
  }
}

}  // namespace mlp_dropout_test
}  // namespace recmod
