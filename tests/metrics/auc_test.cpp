#include "recmod/metrics/auc.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "recmod/common/errors.h"

namespace recmod::metrics {
namespace {

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

}  // namespace
}  // namespace recmod::metrics
