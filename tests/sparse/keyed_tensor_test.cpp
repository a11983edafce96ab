#include "recmod/sparse/keyed_tensor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/test_util.h"
#include <torch/torch.h>

#include "recmod/common/errors.h"

namespace recmod {
namespace keyed_tensor_test {

template <typename F>
std::string error_of(F&& f) { return test::error_of<InputError>(f); }

using ::testing::ElementsAre;
using ::testing::HasSubstr;

KeyedTensor two_keys() {
  // B = 2; a has 2 columns, b has 3.
  return KeyedTensor({"a", "b"}, {2, 3}, torch::arange(10.0).view({2, 5}));
}

TEST(KeyedTensor, AccessAndOffsets) {
  auto kt = two_keys();
  EXPECT_THAT(kt.offset_per_key(), ElementsAre(0, 2, 5));
  EXPECT_TRUE(torch::equal(kt["b"], torch::tensor({{2.0, 3.0, 4.0}, {7.0, 8.0, 9.0}})));
  auto d = kt.to_dict();
  EXPECT_EQ(d[0].first, "a");
  EXPECT_TRUE(torch::equal(d[0].second, torch::tensor({{0.0, 1.0}, {5.0, 6.0}})));
}

TEST(KeyedTensor, FromTensorList) {
  auto kt = KeyedTensor::from_tensor_list({"x", "y"}, {torch::ones({3, 1}), torch::zeros({3, 2})});
  EXPECT_THAT(kt.length_per_key(), ElementsAre(1, 2));
  EXPECT_EQ(kt.values().sizes(), torch::IntArrayRef({3, 3}));
}

TEST(KeyedTensor, RegroupAcrossInputs) {
  auto kt1 = two_keys();
  auto kt2 = KeyedTensor({"c"}, {1}, torch::tensor({{-1.0}, {-2.0}}));
  auto groups = KeyedTensor::regroup({kt1, kt2}, {{"c", "a"}, {"b"}});
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_TRUE(torch::equal(groups[0], torch::tensor({{-1.0, 0.0, 1.0}, {-2.0, 5.0, 6.0}})));
  EXPECT_TRUE(torch::equal(groups[1], kt1["b"]));
  EXPECT_THAT(error_of([&] { KeyedTensor::regroup({kt1}, {{"zz"}}); }), HasSubstr("key 'zz' is in no input"));
}

TEST(KeyedTensor, RejectsInconsistentLengths) {
  EXPECT_THAT(error_of([] { KeyedTensor({"a"}, {4}, torch::zeros({2, 5})); }),
              HasSubstr("length_per_key sums to 4 but values have 5 columns"));
  EXPECT_THAT(error_of([] { KeyedTensor({"a", "b"}, {4}, torch::zeros({2, 4})); }),
              HasSubstr("2 keys but 1 entries"));
  EXPECT_THAT(error_of([] { two_keys()["q"]; }), HasSubstr("no key 'q'; keys are [a, b]"));
}

TEST(KeyedTensor, GradientsFlowThroughBlocks) {
  auto values = torch::ones({2, 5}, torch::requires_grad());
  KeyedTensor kt({"a", "b"}, {2, 3}, values);
  (kt["b"] * 2).sum().backward();
  EXPECT_TRUE(torch::equal(values.grad(), torch::tensor({{0.0, 0.0, 2.0, 2.0, 2.0}, {0.0, 0.0, 2.0, 2.0, 2.0}})));
}

}  // namespace keyed_tensor_test
}  // namespace recmod
