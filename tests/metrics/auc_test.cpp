#include "recmod/metrics/auc.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <future>
#include <limits>
#include <string>
#include <vector>

#include "recmod/common/errors.h"

namespace recmod::metrics {
namespace auc_test {

TEST(Auc, PerfectAndInvertedRankings) {
  EXPECT_DOUBLE_EQ(auc({0.1f, 0.2f, 0.8f, 0.9f}, {0, 0, 1, 1}), 1.0);
  EXPECT_DOUBLE_EQ(auc({0.9f, 0.8f, 0.2f, 0.1f}, {0, 0, 1, 1}), 0.0);
}

TEST(Auc, HandComputedPairs) {
  // Positives 0.35, 0.8; negatives 0.1, 0.4. Pairs (pos > neg): 0.35>0.1,
  // 0.8>0.1, 0.8>0.4 -> 3 of 4.
  EXPECT_DOUBLE_EQ(auc({0.1f, 0.4f, 0.35f, 0.8f}, {0, 0, 1, 1}), 0.75);
}

TEST(Auc, TiesCountHalf) {
  // Positive 0.5 ties negative 0.5 (1/2), beats 0.2 (1); positive 0.7 beats both (2).
  // Average ranks: 0.2 -> 1, 0.5 & 0.5 -> 2.5, 0.7 -> 4; (2.5 + 4 - 3) / (2 * 2) = 0.875.
  EXPECT_DOUBLE_EQ(auc({0.2f, 0.5f, 0.5f, 0.7f}, {0, 0, 1, 1}), 0.875);
  // All predictions equal: 0.5 whatever the labels.
  EXPECT_DOUBLE_EQ(auc({0.3f, 0.3f, 0.3f}, {1, 0, 1}), 0.5);
}

TEST(Auc, SingleClassIsHalf) { EXPECT_DOUBLE_EQ(auc({0.1f, 0.9f}, {1, 1}), 0.5); }

TEST(Auc, LengthMismatchMessage) {
  try {
    auc({0.1f}, {1, 0});
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_STREQ(e.what(), "auc: expected as many labels as predictions, got 2 and 1");
  }
}

// Issue 18: NaN made the tie loop spin forever (NaN == NaN is false) and the
// sort undefined. Non-finite predictions are refused before sorting.
TEST(Auc, NonFinitePredictionsAreAnInputErrorNotAHang) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  std::vector<float> p(1000, 0.5f), y(1000, 0.0f);
  y[1] = 1;
  p[7] = nan;
  p[500] = inf;
  // Bounded: a regression that loops again fails the test (and ends the
  // process) after 60 s instead of hanging the suite.
  auto result = std::async(std::launch::async, [&]() -> std::string {
    try {
      auc(p, y);
    } catch (const InputError& e) {
      return e.what();
    }
    return "(no InputError)";
  });
  if (result.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
    ADD_FAILURE() << "auc did not return within 60 s on NaN input";
    std::_Exit(1);
  }
  EXPECT_THAT(result.get(), ::testing::HasSubstr("auc: 2 of 1000 predictions are not finite (the first is row 7: nan)"));
  EXPECT_THROW(auc({nan, nan}, {0, 1}), InputError);
  EXPECT_THROW(auc({-inf}, {1}), InputError);
  // Ties still share their average rank.
  EXPECT_DOUBLE_EQ(auc({0.5f, 0.5f, 0.5f, 0.5f}, {0, 1, 0, 1}), 0.5);
}

}  // namespace auc_test
}  // namespace recmod::metrics
