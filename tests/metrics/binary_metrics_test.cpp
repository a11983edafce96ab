#include "recmod/metrics/binary_metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "recmod/common/errors.h"
#include "recmod/metrics/auc.h"

namespace recmod::metrics {
namespace binary_metrics_test {

TEST(BinaryMetrics, HandComputedValues) {
  // p = [0.9, 0.2, 0.6, 0.3], y = [1, 0, 0, 1].
  BinaryMetrics m;
  m.update(std::vector<float>{0.9f, 0.2f}, std::vector<float>{1, 0});
  m.update(torch::tensor({0.6f, 0.3f}).view({2, 1}), torch::tensor({0.0f, 1.0f}).view({2, 1}));
  const auto v = m.compute();
  const double p[] = {0.9f, 0.2f, 0.6f, 0.3f};  // as floats, like the inputs
  const double ce = -(std::log(p[0]) + std::log(1 - p[1]) + std::log(1 - p[2]) + std::log(p[3]));
  EXPECT_EQ(v.count, 4);
  EXPECT_NEAR(v.log_loss, ce / 4, 1e-12);
  // Base rate q = 1/2: baseline entropy 4 log 2, so NE = ce / (4 log 2).
  EXPECT_NEAR(v.ne, ce / (4 * std::log(2.0)), 1e-12);
  EXPECT_DOUBLE_EQ(v.accuracy, 0.5);  // 0.9 -> 1 right, 0.2 -> 0 right, 0.6 -> 1 wrong, 0.3 -> 0 wrong
  EXPECT_NEAR(v.calibration, (p[0] + p[1] + p[2] + p[3]) / 2, 1e-12);
  // Pairs (pos, neg): (0.9, 0.2) (0.9, 0.6) (0.3, 0.2) win, (0.3, 0.6) loses -> 3/4.
  EXPECT_DOUBLE_EQ(v.auc, 0.75);
}

TEST(BinaryMetrics, PredictingTheBaseRateGivesNeOne) {
  BinaryMetrics m;
  m.update(std::vector<float>{0.25f, 0.25f, 0.25f, 0.25f}, std::vector<float>{1, 0, 0, 0});
  const auto v = m.compute();
  EXPECT_NEAR(v.ne, 1.0, 1e-7);
  EXPECT_NEAR(v.calibration, 1.0, 1e-7);
}

TEST(BinaryMetrics, ClampsCertainWrongPredictions) {
  BinaryMetrics m;
  m.update(std::vector<float>{0.0f, 1.0f}, std::vector<float>{1, 1});
  const auto v = m.compute();
  EXPECT_TRUE(std::isfinite(v.log_loss));
  EXPECT_NEAR(v.log_loss, -std::log(1e-12) / 2, 1e-6);  // p = 0 for a positive clamps to eta
}

TEST(BinaryMetrics, ResetAndToString) {
  BinaryMetrics m;
  m.update(std::vector<float>{0.9f, 0.1f}, std::vector<float>{1, 0});
  EXPECT_EQ(m.compute().to_string().substr(0, 11), "auc 1.0000 ");
  m.reset();
  EXPECT_EQ(m.compute().count, 0);
}

TEST(BinaryMetrics, NonFinitePredictionIsRefusedWithItsRow) {
  BinaryMetrics m;
  m.update(std::vector<float>{0.1f, 0.9f}, std::vector<float>{0, 1});
  try {
    m.update(torch::tensor({0.2f, std::nanf(""), 0.3f}), torch::tensor({0.0f, 1.0f, 0.0f}));
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    // Rows count across updates: the NaN is the fourth prediction.
    EXPECT_THAT(e.what(), ::testing::HasSubstr("1 of 3 predictions are not finite (the first is row 3: nan)"));
  }
  const auto v = m.compute();  // the refused batch added nothing
  EXPECT_EQ(v.count, 2);
  EXPECT_DOUBLE_EQ(v.auc, 1.0);
  const auto logits = torch::tensor({1.0f, std::numeric_limits<float>::infinity() * -1.0f, 0.0f});
  EXPECT_NO_THROW(metrics_of_logits(logits, torch::tensor({1.0f, 0.0f, 0.0f})));  // sigmoid(-inf) = 0 is finite
  EXPECT_THROW(metrics_of_logits(torch::tensor({std::nanf("")}), torch::tensor({1.0f})), InputError);
}

// Sample weights (TorchRec's RecMetrics with `weights`): integer weights give
// exactly the metrics of the data with each row repeated that many times.
TEST(BinaryMetrics, IntegerWeightsEqualRepeatedRows) {
  const std::vector<float> p{0.9f, 0.2f, 0.6f, 0.4f, 0.6f, 0.1f};
  const std::vector<float> y{1, 0, 1, 0, 0, 1};
  const std::vector<float> w{2, 1, 3, 0, 1, 2};
  std::vector<float> rp, ry;
  for (size_t i = 0; i < p.size(); ++i)
    for (int k = 0; k < static_cast<int>(w[i]); ++k) {
      rp.push_back(p[i]);
      ry.push_back(y[i]);
    }
  BinaryMetrics weighted, repeated;
  weighted.update(p, y, w);
  repeated.update(rp, ry);
  const MetricValues a = weighted.compute(), b = repeated.compute();
  EXPECT_NEAR(a.auc, b.auc, 1e-12);
  EXPECT_NEAR(a.ne, b.ne, 1e-9);
  EXPECT_NEAR(a.log_loss, b.log_loss, 1e-9);
  EXPECT_NEAR(a.accuracy, b.accuracy, 1e-12);
  EXPECT_NEAR(a.calibration, b.calibration, 1e-9);
  EXPECT_EQ(a.count, 6);  // examples, not their weight
  EXPECT_EQ(b.count, 9);
}

TEST(WeightedAuc, HandComputedPairsAndTies) {
  // positives: 0.8 (w 2), 0.5 (w 1); negatives: 0.5 (w 3), 0.3 (w 1).
  // pairs: 0.8 beats both negatives: 2*(3+1) = 8; 0.5 ties 0.5: 1*3/2 = 1.5,
  // beats 0.3: 1*1 = 1. Sum 10.5 over W_pos W_neg = 3 * 4 = 12.
  EXPECT_DOUBLE_EQ(weighted_auc({0.8f, 0.5f, 0.5f, 0.3f}, {1, 1, 0, 0}, {2, 1, 3, 1}), 10.5 / 12.0);
  EXPECT_DOUBLE_EQ(weighted_auc({0.8f, 0.3f}, {1, 0}, {0, 5}), 0.5);  // no positive weight
  EXPECT_DOUBLE_EQ(weighted_auc({0.1f, 0.7f, 0.4f}, {0, 1, 1}, {1, 1, 1}), auc({0.1f, 0.7f, 0.4f}, {0, 1, 1}));
  EXPECT_THROW(weighted_auc({0.1f}, {1}, {-1}), InputError);
}

TEST(BinaryMetrics, RefusesANegativeWeightNamingTheRow) {
  BinaryMetrics m;
  try {
    m.update({0.5f, 0.5f}, {1, 0}, {1, -2});
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("the weight of row 1 is -2"));
  }
  EXPECT_EQ(m.compute().count, 0);  // nothing accumulated
}

TEST(RegressionMetrics, WeightedMeanSquaredError) {
  // errors 1, -2, 0.5 with weights 1, 2, 4: (1 + 8 + 1) / 7.
  const auto m = regression_metrics(torch::tensor({2.0f, 1.0f, 3.5f}), torch::tensor({1.0f, 3.0f, 3.0f}),
                                    torch::tensor({1.0f, 2.0f, 4.0f}));
  EXPECT_DOUBLE_EQ(m["mse"].get<double>(), 10.0 / 7.0);
  EXPECT_DOUBLE_EQ(m["rmse"].get<double>(), std::sqrt(10.0 / 7.0));
  EXPECT_EQ(m["count"].get<int64_t>(), 3);
  EXPECT_DOUBLE_EQ(regression_metrics(torch::tensor({2.0f, 1.0f}), torch::tensor({1.0f, 3.0f}))["mse"].get<double>(), 2.5);
}

}  // namespace binary_metrics_test
}  // namespace recmod::metrics
