#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/common/state_dict.h"
#include "recmod/conformance/registry.h"

namespace recmod::conformance {
namespace cases_dense_test {

using ::testing::HasSubstr;
using ::testing::IsSupersetOf;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no error";
}

std::unique_ptr<CaseModule> build(const std::string& module, const std::string& args) {
  return case_registry().at(module)(json::parse(args));
}

TEST(CasesDenseTest, RegistersEveryDenseModuleType) {
  EXPECT_THAT(supported_modules(),
              IsSupersetOf({"SwishLayerNorm", "Perceptron", "MLP", "CrossNet", "LowRankCrossNet", "VectorCrossNet",
                            "LowRankMixtureCrossNet", "FactorizationMachine", "DeepFM"}));
}

TEST(CasesDenseTest, BuildsFromTorchRecArgs) {
  auto mlp = build("MLP", R"({"in_size": 6, "layer_sizes": [8, 4], "bias": false, "activation": "swish_layernorm"})");
  const StateDict sd = state_dict(*mlp->module());
  ASSERT_NE(find_tensor(sd, "_mlp.1._activation_fn.norm.0.weight"), nullptr);
  EXPECT_EQ(find_tensor(sd, "_mlp.0._linear.bias"), nullptr);

  auto deepfm = build("DeepFM", R"({"dense_module": {"module": "torch.nn.Linear",
                                     "args": {"in_features": 5, "out_features": 2, "bias": true}}})");
  Inputs inputs;
  inputs.emplace_back("embeddings", Value::of_list({Value::of(torch::ones({3, 1, 5}))}));
  Value out = deepfm->call("forward", inputs);
  EXPECT_EQ(out.as_tensor("out").sizes(), (std::vector<int64_t>{3, 2}));

  auto swish = build("SwishLayerNorm", R"({"input_dims": [2, 3]})");
  EXPECT_EQ(find_tensor(state_dict(*swish->module()), "norm.0.weight")->sizes(), (std::vector<int64_t>{2, 3}));
}

TEST(CasesDenseTest, RejectsUnknownArgsAndMethods) {
  EXPECT_THAT(error_of([] { build("CrossNet", R"({"in_features": 4, "num_layers": 1, "low_rank": 2})"); }),
              HasSubstr("CrossNet: unknown argument 'low_rank'; expected one of [in_features, num_layers]"));
  EXPECT_THAT(error_of([] { build("Perceptron", R"({"in_size": 4, "out_size": 2, "activation": "tanh"})"); }),
              HasSubstr("Perceptron: argument 'activation': expected one of [relu, sigmoid, swish_layernorm], found 'tanh'"));
  EXPECT_THAT(error_of([] { build("DeepFM", R"({"dense_module": {"module": "torch.nn.Conv1d", "args": {}}})"); }),
              HasSubstr("DeepFM.dense_module: unsupported module 'torch.nn.Conv1d'"));
  auto net = build("VectorCrossNet", R"({"in_features": 4, "num_layers": 1})");
  EXPECT_THAT(error_of([&] { net->call("evict", {}); }), HasSubstr("VectorCrossNet: unsupported method 'evict'"));
}

}  // namespace cases_dense_test
}  // namespace recmod::conformance
