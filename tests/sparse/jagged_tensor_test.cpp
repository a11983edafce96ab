#include "recmod/sparse/jagged_tensor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/test_util.h"
#include <torch/torch.h>

#include "recmod/common/errors.h"

namespace recmod {
namespace jagged_tensor_test {

template <typename F>
std::string error_of(F&& f) { return test::error_of<InputError>(f); }

using ::testing::HasSubstr;

torch::Tensor longs(std::vector<int64_t> v) { return torch::tensor(v, torch::kLong); }

TEST(JaggedTensor, FromLengthsComputesOffsets) {
  auto jt = JaggedTensor::from_lengths(torch::arange(6.0), longs({2, 0, 3, 1}));
  EXPECT_TRUE(torch::equal(jt.offsets(), longs({0, 2, 2, 5, 6})));
  EXPECT_EQ(jt.num_rows(), 4);
  auto rows = jt.to_dense();
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_TRUE(torch::equal(rows[2], torch::tensor({2.0, 3.0, 4.0})));
  EXPECT_EQ(rows[1].numel(), 0);
}

TEST(JaggedTensor, FromOffsetsComputesLengths) {
  auto jt = JaggedTensor::from_offsets(longs({7, 8, 9}), longs({0, 1, 1, 3}));
  EXPECT_TRUE(torch::equal(jt.lengths(), longs({1, 0, 2})));
}

TEST(JaggedTensor, WeightsAreCarriedAndSplit) {
  auto jt = JaggedTensor::from_lengths(longs({1, 2, 3}), longs({1, 2}), torch::tensor({0.5f, 1.0f, 2.0f}));
  ASSERT_TRUE(jt.has_weights());
  auto w = jt.to_dense_weights();
  EXPECT_TRUE(torch::equal(w[1], torch::tensor({1.0f, 2.0f})));
}

TEST(JaggedTensor, MissingWeightsIsAnError) {
  auto jt = JaggedTensor::from_lengths(longs({1}), longs({1}));
  EXPECT_THAT(error_of([&] { jt.weights(); }), HasSubstr("has none"));
}

TEST(JaggedTensor, ZeroLengthValuesAndEmptyRows) {
  auto jt = JaggedTensor::from_lengths(torch::empty({0}, torch::kLong), longs({0, 0, 0}));
  EXPECT_TRUE(torch::equal(jt.offsets(), longs({0, 0, 0, 0})));
  auto padded = jt.to_padded_dense();
  EXPECT_EQ(padded.sizes(), torch::IntArrayRef({3, 0}));
}

TEST(JaggedTensor, NoRowsAtAll) {
  auto jt = JaggedTensor::from_lengths(torch::empty({0}), torch::empty({0}, torch::kLong));
  EXPECT_EQ(jt.num_rows(), 0);
  EXPECT_TRUE(torch::equal(jt.offsets(), longs({0})));
}

TEST(JaggedTensor, PaddedDense) {
  auto jt = JaggedTensor::from_lengths(longs({1, 2, 3}), longs({2, 0, 1}));
  auto p = jt.to_padded_dense(std::nullopt, -1);
  EXPECT_TRUE(torch::equal(p, longs({1, 2, -1, -1, 3, -1}).view({3, 2})));
  auto truncated = jt.to_padded_dense(1);
  EXPECT_TRUE(torch::equal(truncated, longs({1, 0, 3}).view({3, 1})));
}

TEST(JaggedTensor, FromDenseRoundTrip) {
  auto jt = JaggedTensor::from_dense({longs({1, 2}), longs({}), longs({3})});
  EXPECT_TRUE(torch::equal(jt.lengths(), longs({2, 0, 1})));
  EXPECT_TRUE(torch::equal(jt.values(), longs({1, 2, 3})));
}

TEST(JaggedTensor, RejectsNegativeLengths) {
  EXPECT_THAT(error_of([] { JaggedTensor::from_lengths(longs({1, 2}), longs({3, -1})); }),
              HasSubstr("lengths must be >= 0, got lengths[1] = -1"));
}

TEST(JaggedTensor, RejectsLengthsNotSummingToValues) {
  EXPECT_THAT(error_of([] { JaggedTensor::from_lengths(longs({1, 2, 3}), longs({1, 1})); }),
              HasSubstr("lengths sum to 2 but there are 3 values"));
}

TEST(JaggedTensor, RejectsOffsetsNotStartingAtZero) {
  EXPECT_THAT(error_of([] { JaggedTensor::from_offsets(longs({1, 2}), longs({1, 2})); }),
              HasSubstr("offsets must start at 0, got offsets[0] = 1"));
}

TEST(JaggedTensor, RejectsDecreasingOffsets) {
  EXPECT_THAT(error_of([] { JaggedTensor::from_offsets(longs({1, 2}), longs({0, 2, 1, 2})); }),
              HasSubstr("offsets must not decrease, got offsets[1] = 2 > offsets[2] = 1"));
}

TEST(JaggedTensor, RejectsLastOffsetNotNumValues) {
  EXPECT_THAT(error_of([] { JaggedTensor::from_offsets(longs({1, 2, 3}), longs({0, 2})); }),
              HasSubstr("last offset is 2 but there are 3 values"));
}

TEST(JaggedTensor, RejectsWeightsOfWrongSize) {
  EXPECT_THAT(error_of([] { JaggedTensor::from_lengths(longs({1, 2}), longs({2}), torch::ones({3})); }),
              HasSubstr("expected one weight per value (2), got weights of shape [3]"));
}

TEST(JaggedTensor, RejectsFloatLengths) {
  EXPECT_THAT(error_of([] { JaggedTensor::from_lengths(longs({1}), torch::ones({1})); }),
              HasSubstr("lengths must be a 1-D int32/int64 tensor"));
}

TEST(JaggedTensor, Int32LengthsWork) {
  auto jt = JaggedTensor::from_lengths(longs({4, 5}), torch::tensor({1, 1}, torch::kInt));
  EXPECT_EQ(jt.offsets().scalar_type(), torch::kInt);
  EXPECT_TRUE(torch::equal(jt.offsets(), torch::tensor({0, 1, 2}, torch::kInt)));
}

TEST(JaggedTensor, ToDeviceKeepsEverything) {
  auto jt = JaggedTensor::from_lengths(longs({1, 2}), longs({2}), torch::ones({2}));
  auto moved = jt.to(torch::kCPU);
  EXPECT_TRUE(torch::equal(moved.values(), jt.values()));
  EXPECT_TRUE(moved.has_weights());
  EXPECT_EQ(moved.device(), torch::Device(torch::kCPU));
}

}  // namespace jagged_tensor_test
}  // namespace recmod
