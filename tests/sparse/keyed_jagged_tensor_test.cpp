#include "recmod/sparse/keyed_jagged_tensor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/test_util.h"
#include <torch/torch.h>

#include "recmod/common/errors.h"

namespace recmod {
namespace keyed_jagged_tensor_test {

template <typename F>
std::string error_of(F&& f) { return test::error_of<InputError>(f); }

using ::testing::ElementsAre;
using ::testing::HasSubstr;

torch::Tensor longs(std::vector<int64_t> v) { return torch::tensor(v, torch::kLong); }

// TorchRec's docstring example:
//   keys f1, f2; B = 3; f1 = [[V0, V1], [], [V2]], f2 = [[V3], [V4], [V5, V6, V7]]
KeyedJaggedTensor docstring_kjt() {
  return KeyedJaggedTensor::from_lengths({"f1", "f2"}, torch::arange(8, torch::kLong), longs({2, 0, 1, 1, 1, 3}));
}

TEST(KeyedJaggedTensor, DocstringExample) {
  auto kjt = docstring_kjt();
  EXPECT_EQ(kjt.stride(), 3);
  EXPECT_TRUE(torch::equal(kjt.offsets(), longs({0, 2, 2, 3, 4, 5, 8})));
  EXPECT_THAT(kjt.length_per_key(), ElementsAre(3, 5));
  EXPECT_THAT(kjt.offset_per_key(), ElementsAre(0, 3, 8));
  EXPECT_EQ(kjt.index_per_key().at("f2"), 1);
}

TEST(KeyedJaggedTensor, FromOffsetsEqualsFromLengths) {
  auto a = docstring_kjt();
  auto b = KeyedJaggedTensor::from_offsets({"f1", "f2"}, torch::arange(8, torch::kLong), longs({0, 2, 2, 3, 4, 5, 8}));
  EXPECT_TRUE(torch::equal(a.lengths(), b.lengths()));
  EXPECT_EQ(a.length_per_key(), b.length_per_key());
}

TEST(KeyedJaggedTensor, AccessByKey) {
  auto f2 = docstring_kjt()["f2"];
  EXPECT_TRUE(torch::equal(f2.values(), longs({3, 4, 5, 6, 7})));
  EXPECT_TRUE(torch::equal(f2.lengths(), longs({1, 1, 3})));
  EXPECT_TRUE(torch::equal(f2.offsets(), longs({0, 1, 2, 5})));
}

TEST(KeyedJaggedTensor, UnknownKeyNamesAvailableKeys) {
  EXPECT_THAT(error_of([] { docstring_kjt()["f9"]; }), HasSubstr("no key 'f9'; keys are [f1, f2]"));
}

TEST(KeyedJaggedTensor, ToDictKeepsOrder) {
  auto d = docstring_kjt().to_dict();
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[0].first, "f1");
  EXPECT_TRUE(torch::equal(d[0].second.values(), longs({0, 1, 2})));
}

TEST(KeyedJaggedTensor, WeightsFollowValues) {
  auto kjt = KeyedJaggedTensor::from_lengths({"a", "b"}, longs({1, 2, 3}), longs({1, 0, 2, 0}),
                                             torch::tensor({0.1f, 0.2f, 0.3f}));
  auto b = kjt["b"];
  EXPECT_TRUE(torch::allclose(b.weights(), torch::tensor({0.2f, 0.3f})));
}

TEST(KeyedJaggedTensor, SplitBySegments) {
  auto kjt = KeyedJaggedTensor::from_lengths({"a", "b", "c"}, longs({1, 2, 3, 4}), longs({1, 0, 2, 0, 0, 1}));
  auto parts = kjt.split({1, 0, 2});
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_THAT(parts[0].keys(), ElementsAre("a"));
  EXPECT_TRUE(torch::equal(parts[0].values(), longs({1})));
  EXPECT_TRUE(parts[1].keys().empty());
  EXPECT_EQ(parts[1].values().numel(), 0);
  EXPECT_EQ(parts[1].stride(), 2);
  EXPECT_THAT(parts[2].keys(), ElementsAre("b", "c"));
  EXPECT_TRUE(torch::equal(parts[2].values(), longs({2, 3, 4})));
  EXPECT_TRUE(torch::equal(parts[2].lengths(), longs({2, 0, 0, 1})));
  EXPECT_THAT(error_of([&] { kjt.split({1, 1}); }), HasSubstr("segments sum to 2 but there are 3 keys"));
}

TEST(KeyedJaggedTensor, PermuteReordersAndRepeats) {
  auto kjt = docstring_kjt();
  auto p = kjt.permute({1, 0, 1});
  EXPECT_THAT(p.keys(), ElementsAre("f2", "f1", "f2"));
  EXPECT_TRUE(torch::equal(p.lengths(), longs({1, 1, 3, 2, 0, 1, 1, 1, 3})));
  EXPECT_TRUE(torch::equal(p.values(), longs({3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7})));
  EXPECT_THAT(error_of([&] { kjt.permute({2}); }), HasSubstr("index 2 out of range for 2 keys"));
}

TEST(KeyedJaggedTensor, ConcatAppendsKeys) {
  auto a = KeyedJaggedTensor::from_lengths({"a"}, longs({1, 2}), longs({2, 0}));
  auto b = KeyedJaggedTensor::from_lengths({"b"}, longs({3}), longs({0, 1}));
  auto c = KeyedJaggedTensor::concat({a, b});
  EXPECT_THAT(c.keys(), ElementsAre("a", "b"));
  EXPECT_TRUE(torch::equal(c.lengths(), longs({2, 0, 0, 1})));
  EXPECT_THAT(c.length_per_key(), ElementsAre(2, 1));
  auto other_stride = KeyedJaggedTensor::from_lengths({"x"}, longs({3}), longs({1}));
  EXPECT_THAT(error_of([&] { KeyedJaggedTensor::concat({a, other_stride}); }), HasSubstr("has stride 1, expected 2"));
}

TEST(KeyedJaggedTensor, EmptyKeys) {
  auto e = KeyedJaggedTensor::empty(false, torch::kCPU, 4);
  EXPECT_TRUE(e.keys().empty());
  EXPECT_EQ(e.stride(), 4);
  EXPECT_TRUE(torch::equal(e.offsets(), longs({0})));
  auto also = KeyedJaggedTensor::from_lengths({}, torch::empty({0}, torch::kLong), torch::empty({0}, torch::kLong));
  EXPECT_EQ(also.stride(), 0);
}

TEST(KeyedJaggedTensor, BatchSizeOneAndEmptyBags) {
  auto kjt = KeyedJaggedTensor::from_lengths({"a", "b"}, longs({5}), longs({0, 1}));
  EXPECT_EQ(kjt.stride(), 1);
  EXPECT_EQ(kjt["a"].values().numel(), 0);
  EXPECT_TRUE(torch::equal(kjt["b"].values(), longs({5})));
}

TEST(KeyedJaggedTensor, ZeroLengthValues) {
  auto kjt = KeyedJaggedTensor::from_lengths({"a"}, torch::empty({0}, torch::kLong), longs({0, 0, 0}));
  EXPECT_EQ(kjt.stride(), 3);
  EXPECT_THAT(kjt.length_per_key(), ElementsAre(0));
}

TEST(KeyedJaggedTensor, RejectsKeyCountNotDividingLengths) {
  EXPECT_THAT(error_of([] { KeyedJaggedTensor::from_lengths({"a", "b"}, longs({1, 2, 3}), longs({1, 1, 1})); }),
              HasSubstr("3 lengths cannot be split evenly over 2 keys [a, b]"));
}

TEST(KeyedJaggedTensor, RejectsMalformedInput) {
  EXPECT_THAT(error_of([] { KeyedJaggedTensor::from_lengths({"a"}, longs({1, 2}), longs({3, -1})); }),
              HasSubstr("lengths must be >= 0"));
  EXPECT_THAT(error_of([] { KeyedJaggedTensor::from_lengths({"a"}, longs({1, 2}), longs({1, 2})); }),
              HasSubstr("lengths sum to 3 but there are 2 values"));
  EXPECT_THAT(error_of([] { KeyedJaggedTensor::from_offsets({"a"}, longs({1, 2}), longs({1, 2})); }),
              HasSubstr("offsets must start at 0"));
  EXPECT_THAT(error_of([] { KeyedJaggedTensor::from_offsets({"a"}, longs({1, 2}), longs({0, 2, 1, 2})); }),
              HasSubstr("offsets must not decrease"));
  EXPECT_THAT(error_of([] { KeyedJaggedTensor::from_lengths({"a"}, longs({1, 2}), longs({2}), torch::ones({1})); }),
              HasSubstr("expected one weight per value (2)"));
  EXPECT_THAT(error_of([] { KeyedJaggedTensor::from_lengths({"a", "a"}, longs({1, 2}), longs({1, 1})); }),
              HasSubstr("duplicate key 'a'"));
}

TEST(KeyedJaggedTensor, FromJtDict) {
  auto a = JaggedTensor::from_lengths(longs({1, 2}), longs({2, 0}));
  auto b = JaggedTensor::from_lengths(longs({3}), longs({0, 1}));
  auto kjt = KeyedJaggedTensor::from_jt_dict({{"a", a}, {"b", b}});
  EXPECT_TRUE(torch::equal(kjt.lengths(), longs({2, 0, 0, 1})));
  auto c = JaggedTensor::from_lengths(longs({3}), longs({1}));
  EXPECT_THAT(error_of([&] { KeyedJaggedTensor::from_jt_dict({{"a", a}, {"c", c}}); }),
              HasSubstr("key 'c' has 1 rows, expected 2"));
}

TEST(KeyedJaggedTensor, SelectByKeys) {
  auto s = docstring_kjt().select({"f2"});
  EXPECT_THAT(s.keys(), ElementsAre("f2"));
  EXPECT_THAT(s.length_per_key(), ElementsAre(5));
}

}  // namespace keyed_jagged_tensor_test
}  // namespace recmod
