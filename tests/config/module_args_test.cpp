// One reader of module arguments (modules/module_args.h) over both front
// ends: a config's YAML (config::YamlArgs) and a golden case's recorded JSON
// (conformance::JsonArgs) give the same options and the same checks, each
// with its own kind of position.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "recmod/config/config_node.h"
#include "recmod/config/yaml_args.h"
#include "recmod/conformance/json_args.h"
#include "recmod/mc/eviction_policies.h"
#include "recmod/mc/mc_args.h"
#include "recmod/modules/module_args.h"
#include "support/test_util.h"

namespace recmod {
namespace module_args_test {

using config::ConfigNode;
using config::YamlArgs;
using conformance::JsonArgs;
using json = nlohmann::ordered_json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ModuleArgs, MlpOptionsAreTheSameFromYamlAndJson) {
  const auto yaml = ConfigNode::load_string("layer_sizes: [8, 4]\nbias: false\nactivation: sigmoid\ndropout: 0.25\n", "m.yaml");
  const json raw = json::parse(R"({"layer_sizes": [8, 4], "bias": false, "activation": "sigmoid", "dropout": 0.25})");
  const MLPOptions a = mlp_options_from(YamlArgs(yaml), 6);
  const MLPOptions b = mlp_options_from(JsonArgs(raw, "MLP"), 6);
  for (const MLPOptions* o : {&a, &b}) {
    EXPECT_EQ(o->in_size(), 6);
    EXPECT_EQ(o->layer_sizes(), (std::vector<int64_t>{8, 4}));
    EXPECT_FALSE(o->bias());
    EXPECT_DOUBLE_EQ(o->dropout(), 0.25);
    EXPECT_EQ(o->activation()(8).name(), "sigmoid");
  }
  // The defaults are one set too: TorchRec's (bias on, relu, no dropout).
  const MLPOptions d = mlp_options_from(JsonArgs(json::parse(R"({"layer_sizes": [3]})"), "MLP"), 2);
  EXPECT_TRUE(d.bias());
  EXPECT_DOUBLE_EQ(d.dropout(), 0.0);
  EXPECT_EQ(d.activation()(3).name(), "relu");
}

TEST(ModuleArgs, ChecksAreTheSameWithEachFrontEndsPosition) {
  const auto yaml = ConfigNode::load_string("layer_sizes: [8, 0]\n", "m.yaml");
  EXPECT_EQ(test::error_of([&] { mlp_options_from(YamlArgs(yaml), 6); }), "m.yaml:1:18: layer_sizes[1]: must be > 0, got 0");
  EXPECT_EQ(test::error_of([] { mlp_options_from(JsonArgs(json::parse(R"({"layer_sizes": [8, 0]})"), "MLP"), 6); }),
            "MLP: argument 'layer_sizes'[1]: must be > 0, got 0");

  const auto bad_rank = ConfigNode::load_string("num_layers: 2\nlow_rank: -1\n", "c.yaml");
  EXPECT_EQ(test::error_of([&] { low_rank_crossnet_options_from(YamlArgs(bad_rank), 4); }),
            "c.yaml:2:11: low_rank: must be > 0, got -1");
  EXPECT_EQ(test::error_of([] {
              low_rank_crossnet_options_from(JsonArgs(json::parse(R"({"num_layers": 2, "low_rank": -1})"),
                                                      "LowRankCrossNet"),
                                             4);
            }),
            "LowRankCrossNet: argument 'low_rank': must be > 0, got -1");

  EXPECT_THAT(test::error_of([] { perceptron_options_from(JsonArgs(json::parse(R"({"out_size": 2, "activation": "tanh"})"), "Perceptron"), 4); }),
              HasSubstr("Perceptron: argument 'activation': expected one of [relu, sigmoid, swish_layernorm], found 'tanh'"));
  EXPECT_EQ(test::error_of([] { crossnet_options_from(JsonArgs(json::parse(R"({})"), "CrossNet"), 4); }),
            "CrossNet: missing argument 'num_layers'");
  EXPECT_EQ(test::error_of([] { crossnet_options_from(JsonArgs(json::parse(R"({"num_layers": "3"})"), "CrossNet"), 4); }),
            "CrossNet: argument 'num_layers': wrong type: \"3\"");
}

TEST(ModuleArgs, TablesReadAlikeAndOnlyTheConfigHoldsNamesToItsRule) {
  const auto yaml = ConfigNode::load_string(
      "name: t1\nnum_embeddings: 10\nembedding_dim: 4\npooling: mean\ndata_type: FP16\n", "t.yaml");
  const json raw = json::parse(
      R"({"name": "t1", "num_embeddings": 10, "embedding_dim": 4, "pooling": "MEAN", "data_type": "FP16"})");
  EmbeddingBagConfig a, b;
  read_table_args(YamlArgs(yaml), a, /*allow_quantized=*/true);
  a.pooling = read_pooling(YamlArgs(yaml), /*allow_none=*/false);
  read_table_args(JsonArgs(raw, "tables[0]"), b, /*allow_quantized=*/true);
  b.pooling = read_pooling(JsonArgs(raw, "tables[0]"), /*allow_none=*/true);
  for (const EmbeddingBagConfig* c : {&a, &b}) {
    EXPECT_EQ(c->name, "t1");
    EXPECT_EQ(c->num_embeddings, 10);
    EXPECT_EQ(c->embedding_dim, 4);
    EXPECT_EQ(c->pooling, PoolingType::MEAN);
    EXPECT_EQ(c->data_type, DataType::FP16);
    EXPECT_THAT(c->feature_names, ElementsAre("t1"));  // [name] when absent
  }
  // A config may not declare an unpooled table in a bag collection.
  const auto none = ConfigNode::load_string("pooling: none\n", "p.yaml");
  EXPECT_EQ(test::error_of([&] { read_pooling(YamlArgs(none), /*allow_none=*/false); }),
            "p.yaml:1:10: pooling: expected one of [sum, mean], found 'none'");
  // The identifier rule is the config's: recorded TorchRec names pass as they are.
  const auto dotted = ConfigNode::load_string("name: a.b\nnum_embeddings: 2\nembedding_dim: 2\n", "d.yaml");
  EmbeddingConfig e;
  EXPECT_THAT(test::error_of([&] { read_table_args(YamlArgs(dotted), e, true); }),
              HasSubstr("d.yaml:1:7: name: 'a.b' is not valid as a table name"));
  read_table_args(JsonArgs(json::parse(R"({"name": "a.b", "num_embeddings": 2, "embedding_dim": 2})"), "tables[0]"), e,
                  true);
  EXPECT_EQ(e.name, "a.b");
  // Quantized types only where the caller allows them, with the same words.
  const json int8 = json::parse(R"({"name": "q", "num_embeddings": 2, "embedding_dim": 4, "data_type": "int8"})");
  EXPECT_THAT(test::error_of([&] { read_table_args(JsonArgs(int8, "tables[0]"), e, false); }),
              HasSubstr("tables[0]: argument 'data_type': data_type int8 (row-wise quantized) is for"));
}

TEST(ModuleArgs, MchNumbersReadAlikeAndTheTableSizeIsChecked) {
  auto functions = [] {
    return MchFunctions{make_eviction_policy("LFU_EvictionPolicy", 1.0, std::nullopt), std::nullopt,
                        hash_func_by_name("mod")};
  };
  const auto yaml = ConfigNode::load_string("mch_size: 4\neviction_interval: 3\ninput_hash_size: 97\n", "mc.yaml");
  const json raw = json::parse(R"({"zch_size": 6, "mch_size": 4, "eviction_interval": 3, "input_hash_size": 97})");
  const auto a = mch_options_from(YamlArgs(yaml), functions(), /*num_embeddings=*/10);  // zch_size = 10 - 4
  const auto b = mch_options_from(JsonArgs(raw, "MCHManagedCollisionModule"), functions());
  for (const auto* o : {&a, &b}) {
    EXPECT_EQ(o->zch_size(), 6);
    EXPECT_EQ(o->mch_size(), std::optional<int64_t>(4));
    EXPECT_EQ(o->eviction_interval(), 3);
    EXPECT_EQ(o->input_hash_size(), 97u);
  }
  const auto too_big = ConfigNode::load_string("zch_size: 8\nmch_size: 4\n", "mc.yaml");
  EXPECT_EQ(test::error_of([&] { mch_options_from(YamlArgs(too_big), functions(), 10); }),
            "mc.yaml:1:11: zch_size: zch_size + mch_size must equal the table's num_embeddings 10, got 8 + 4");
  EXPECT_EQ(test::error_of([] {
              mch_options_from(JsonArgs(json::parse(R"({"zch_size": 4, "output_global_offset": -1})"), "MCH"),
                               MchFunctions{make_eviction_policy("LFU_EvictionPolicy", 1.0, std::nullopt), std::nullopt, std::nullopt});
            }),
            "MCH: argument 'output_global_offset': must be >= 0, got -1");
  EXPECT_EQ(test::error_of([] {
              mch_options_from(JsonArgs(json::parse(R"({"zch_size": 4, "mch_size": 2})"), "MCH"),
                               MchFunctions{make_eviction_policy("LFU_EvictionPolicy", 1.0, std::nullopt), std::nullopt, std::nullopt});
            }),
            "MCH: argument 'mch_size': needs mch_hash_func (the residual rows' hash)");
}

}  // namespace module_args_test
}  // namespace recmod
