#include "recmod/conformance/value.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "recmod/common/errors.h"

namespace recmod::conformance {
namespace value_test {

using ::testing::HasSubstr;

using json = nlohmann::ordered_json;
json parse(const std::string& s) { return json::parse(s); }

TEST(GoldenValue, ParsesTensorsOfEveryDtype) {
  auto f = tensor_from_json(parse(R"({"dtype":"float32","shape":[2,2],"data":[1,2,3,4.5]})"), "t");
  EXPECT_EQ(f.scalar_type(), torch::kFloat);
  EXPECT_FLOAT_EQ(f[1][1].item<float>(), 4.5f);
  auto big = tensor_from_json(parse(R"({"dtype":"int64","shape":[1],"data":[9223372036854775807]})"), "t");
  EXPECT_EQ(big.item<int64_t>(), std::numeric_limits<int64_t>::max());
  auto scalar = tensor_from_json(parse(R"({"dtype":"int32","shape":[],"data":[7]})"), "t");
  EXPECT_EQ(scalar.dim(), 0);
  EXPECT_EQ(scalar.item<int32_t>(), 7);
  auto b = tensor_from_json(parse(R"({"dtype":"bool","shape":[2],"data":[true,false]})"), "t");
  EXPECT_TRUE(b[0].item<bool>());
}

TEST(GoldenValue, TensorErrorsNameThePath) {
  try {
    tensor_from_json(parse(R"({"dtype":"float32","shape":[3],"data":[1,2]})"), "calls[0].inputs.x");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("calls[0].inputs.x.data: shape [3] needs 3 values, got 2"));
  }
  try {
    tensor_from_json(parse(R"({"dtype":"complex","shape":[],"data":[1]})"), "x");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("unknown dtype 'complex'"));
  }
}

TEST(GoldenValue, ParsesSparseTypesAndContainersInOrder) {
  auto v = value_from_json(parse(R"({"type":"Dict","items":{
      "z": {"type":"JaggedTensor","values":{"dtype":"int64","shape":[2],"data":[4,5]},
            "lengths":{"dtype":"int64","shape":[2],"data":[2,0]},"weights":null},
      "a": {"type":"KeyedJaggedTensor","keys":["f"],"values":{"dtype":"int64","shape":[1],"data":[1]},
            "lengths":{"dtype":"int64","shape":[1],"data":[1]},"weights":null},
      "k": {"type":"KeyedTensor","keys":["x","y"],"length_per_key":[1,2],"key_dim":1,
            "values":{"dtype":"float32","shape":[1,3],"data":[1,2,3]}},
      "t": {"type":"Tuple","items":[null]}}})"),
                           "out");
  ASSERT_EQ(v.kind, Value::Kind::Dict);
  ASSERT_EQ(v.dict.size(), 4u);
  EXPECT_EQ(v.dict[0].first, "z");  // file order, not sorted
  EXPECT_EQ(v.dict[1].second.kjt.stride(), 1);
  EXPECT_TRUE(torch::equal(v.dict[2].second.kt["y"], torch::tensor({{2.0f, 3.0f}})));
  EXPECT_TRUE(v.dict[3].second.items[0].is_none());
}

TEST(GoldenValue, MalformedJaggedInputIsAnErrorWithPath) {
  try {
    value_from_json(parse(R"({"type":"JaggedTensor","values":{"dtype":"int64","shape":[2],"data":[4,5]},
                              "lengths":{"dtype":"int64","shape":[1],"data":[1]},"weights":null})"),
                    "calls[2].outputs");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("calls[2].outputs: JaggedTensor: lengths sum to 1 but there are 2 values"));
  }
}

TEST(GoldenCompare, FloatTolerance) {
  auto e = torch::tensor({1.0f, 100.0f});
  EXPECT_FALSE(compare_tensors(e, torch::tensor({1.000001f, 100.001f}), 1e-5, 1e-6, "x"));
  auto m = compare_tensors(e, torch::tensor({1.0f, 100.1f}), 1e-5, 1e-6, "x");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->where, "x");
  EXPECT_THAT(m->detail, HasSubstr("index 1: expected 100, got 100.1"));
}

TEST(GoldenCompare, IntegersDtypesAndShapesAreExact) {
  auto e = torch::tensor({1, 2, 3}, torch::kLong);
  EXPECT_THAT(compare_tensors(e, torch::tensor({1, 2, 4}, torch::kLong), 1, 1, "v")->detail,
              HasSubstr("index 2: expected 3, got 4"));
  EXPECT_THAT(compare_tensors(e, torch::tensor({1, 2, 3}, torch::kInt), 0, 0, "v")->detail,
              HasSubstr("dtype: expected Long, got Int"));
  EXPECT_THAT(compare_tensors(e, e.view({3, 1}), 0, 0, "v")->detail, HasSubstr("shape: expected [3], got [3, 1]"));
}

TEST(GoldenCompare, DictOrderKindsAndNoneMatter) {
  auto t = Value::of(torch::ones({1}));
  auto ab = Value::of_dict({{"a", t}, {"b", t}});
  auto ba = Value::of_dict({{"b", t}, {"a", t}});
  EXPECT_FALSE(compare_values(ab, ab, 0, 0, "o"));
  auto m = compare_values(ab, ba, 0, 0, "o");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->where, "o.keys()");
  EXPECT_THAT(compare_values(Value::none(), t, 0, 0, "o")->detail, HasSubstr("expected None, got Tensor"));
  auto kjt1 = KeyedJaggedTensor::from_lengths({"f"}, torch::tensor({1}, torch::kLong), torch::tensor({1}, torch::kLong));
  auto kjt2 = KeyedJaggedTensor::from_lengths({"f"}, torch::tensor({1}, torch::kLong), torch::tensor({1}, torch::kLong),
                                              torch::ones({1}));
  EXPECT_THAT(compare_values(Value::of(kjt1), Value::of(kjt2), 0, 0, "o")->where, "o.weights");
}

TEST(GoldenLoss, SumsEveryFloatTensor) {
  auto jt = JaggedTensor::from_lengths(torch::tensor({1, 2}, torch::kLong), torch::tensor({2}, torch::kLong),
                                       torch::tensor({0.5f, 0.25f}));
  auto kt = KeyedTensor({"a"}, {2}, torch::full({1, 2}, 2.0f));
  auto v = Value::of_tuple({Value::of(jt), Value::of(kt), Value::none(), Value::of(torch::tensor({7}, torch::kLong))});
  EXPECT_FLOAT_EQ(sum_of_float_outputs(v).item<float>(), 0.75f + 4.0f);
  EXPECT_FALSE(sum_of_float_outputs(Value::of(torch::tensor({1}, torch::kLong))).defined());
}

}  // namespace value_test
}  // namespace recmod::conformance
