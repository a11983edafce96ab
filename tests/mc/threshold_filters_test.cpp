#include "recmod/mc/threshold_filters.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "recmod/common/errors.h"

namespace recmod {
namespace threshold_filters_test {

using ::testing::HasSubstr;

TEST(AverageThresholdFilter, PassesCountsStrictlyAboveTheMean) {
  // mean of [1, 2, 3, 6] = 3: only 6 passes, 3 (== mean) does not.
  auto r = average_threshold_filter(torch::tensor({1, 2, 3, 6}, torch::kLong));
  EXPECT_EQ(r.threshold.scalar_type(), torch::kFloat);
  EXPECT_EQ(r.threshold.dim(), 0);
  EXPECT_FLOAT_EQ(r.threshold.item<float>(), 3.0f);
  EXPECT_TRUE(torch::equal(r.mask, torch::tensor({false, false, false, true})));
}

TEST(AverageThresholdFilter, EqualCountsAllFail) {
  auto r = average_threshold_filter(torch::tensor({2, 2, 2}, torch::kLong));
  EXPECT_FALSE(r.mask.any().item<bool>());
}

TEST(DynamicThresholdFilter, ThresholdIsMeanTimesMultiplier) {
  // sum 12, 4 ids -> mean 3; * 1.5 = 4.5: 5 and 6 pass.
  auto r = dynamic_threshold_filter(torch::tensor({1, 0, 5, 6}, torch::kLong), 1.5);
  EXPECT_EQ(r.threshold.scalar_type(), torch::kFloat);
  EXPECT_FLOAT_EQ(r.threshold.item<float>(), 4.5f);
  EXPECT_TRUE(torch::equal(r.mask, torch::tensor({false, false, true, true})));
}

TEST(DynamicThresholdFilter, DefaultMultiplierIsTen) {
  // sum 20, 2 ids -> 10 * 10 = 100: nothing passes.
  auto r = dynamic_threshold_filter(torch::tensor({19, 1}, torch::kLong));
  EXPECT_FLOAT_EQ(r.threshold.item<float>(), 100.0f);
  EXPECT_FALSE(r.mask.any().item<bool>());
}

TEST(DynamicThresholdFilter, RejectsEmptyCounts) {
  try {
    dynamic_threshold_filter(torch::empty({0}, torch::kLong));
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("expected at least one id count"));
  }
}

TEST(ThresholdFilterByName, SelectsAndPassesTheMultiplier) {
  const auto counts = torch::tensor({1, 0, 5, 6}, torch::kLong);
  EXPECT_FLOAT_EQ(threshold_filter_by_name("dynamic_threshold_filter", 1.5)(counts).threshold.item<float>(), 4.5f);
  EXPECT_FLOAT_EQ(threshold_filter_by_name("average_threshold_filter")(counts).threshold.item<float>(), 3.0f);
  try {
    threshold_filter_by_name("median");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("unknown threshold filter 'median'; expected one of [average_threshold_filter, "
                                    "dynamic_threshold_filter]"));
  }
}

}  // namespace threshold_filters_test
}  // namespace recmod
