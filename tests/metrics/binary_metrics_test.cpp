#include "recmod/metrics/binary_metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "recmod/common/errors.h"

namespace recmod::metrics {
namespace {

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

}  // namespace
}  // namespace recmod::metrics
