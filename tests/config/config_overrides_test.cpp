// Command-line overrides of config keys (--set KEY=VALUE): applied to the
// tree before anything reads it, errors naming the flag.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "recmod/common/errors.h"
#include "support/test_util.h"
#include "recmod/config/config_node.h"
#include "recmod/config/graph.h"
#include "recmod/config/model_config.h"

namespace recmod::config {
namespace config_overrides_test {

using ::testing::HasSubstr;

template <typename F>
std::string error_of(F&& f) {
  return test::error_of<ConfigError>(std::forward<F>(f));
}

const char* kModel = R"(features: {dense: 3}
nodes:
  top: {type: MLP, input: features.dense, layer_sizes: [8, 1]}
output: top
training:
  batch_size: 32
  dense_optimizer: {type: sgd, lr: 0.1}
)";

ModelConfig parse_with(const std::vector<std::string>& overrides) {
  return parse_model_config(ConfigNode::load_string(kModel, "m.yaml").with_overrides(overrides));
}

TEST(ConfigOverridesTest, SetsScalarsListsMapsAndNewKeys) {
  auto config = parse_with({"training.batch_size=4096", "nodes.top.layer_sizes=[16, 4, 1]",
                            "training.dense_optimizer={type: adam, lr: 0.01}", "training.epochs=3"});
  EXPECT_EQ(config.training.batch_size, 4096);
  EXPECT_EQ(config.training.epochs, 3);
  EXPECT_EQ(config.training.dense_optimizer.type(), "adam");
  EXPECT_DOUBLE_EQ(config.training.dense_optimizer.lr(), 0.01);
  ModelGraph graph(parse_with({"nodes.top.layer_sizes[0]=5"}));
  EXPECT_THAT(graph->describe(), HasSubstr("3 -> 5 -> 1"));
  // The last flag for a key wins.
  EXPECT_EQ(parse_with({"training.batch_size=1", "training.batch_size=2"}).training.batch_size, 2);
}

TEST(ConfigOverridesTest, ErrorsNameTheFlagNotTheFile) {
  EXPECT_EQ(error_of([] { parse_with({"training.batch_size=abc"}); }),
            "--set training.batch_size=abc: training.batch_size: expected an integer, found 'abc'");
  EXPECT_THAT(error_of([] { parse_with({"training.batch_sise=64"}); }),
              HasSubstr("--set training.batch_sise=64: training.batch_sise: unknown key 'batch_sise'"));
  // Keys the flag did not touch keep their file positions.
  EXPECT_THAT(error_of([] { ModelGraph graph(parse_with({"nodes.top.layer_sizes=[4, 0]"})); }),
              HasSubstr("--set nodes.top.layer_sizes=[4, 0]: nodes.top.layer_sizes[1]: must be > 0, got 0"));
}

TEST(ConfigOverridesTest, MalformedFlagsAreErrors) {
  EXPECT_THAT(error_of([] { parse_with({"training.batch_size"}); }), HasSubstr("expected KEY=VALUE"));
  EXPECT_THAT(error_of([] { parse_with({"nodes.top.layer_sizes[5]=3"}); }),
              HasSubstr("nodes.top.layer_sizes has 2 items; index 5 is past its end"));
  EXPECT_THAT(error_of([] { parse_with({"training.batch_size.x=3"}); }),
              HasSubstr("training.batch_size is not a map (it is '32')"));
  EXPECT_THAT(error_of([] { parse_with({"training.batch_size=[1"}); }), HasSubstr("the value is not valid YAML"));
  EXPECT_THAT(error_of([] { parse_with({"nodes.top.layer_sizes[x]=3"}); }), HasSubstr("expected a list index like [0]"));
}

TEST(ConfigOverridesTest, LoadKeepsTheEffectiveDocument) {
  const auto path = ::testing::TempDir() + "/overrides_model.yaml";
  {
    std::ofstream(path) << kModel;
  }
  auto config = load_model_config(path, {"training.batch_size=64"});
  EXPECT_EQ(config.overrides, (std::vector<std::string>{"training.batch_size=64"}));
  EXPECT_THAT(config.effective_yaml, HasSubstr("batch_size: 64"));
  // The effective document reads back as the same config.
  auto again = parse_model_config(ConfigNode::load_string(config.effective_yaml, "effective.yaml"));
  EXPECT_EQ(again.training.batch_size, 64);
  EXPECT_TRUE(load_model_config(path).effective_yaml.empty());
}

}  // namespace config_overrides_test
}  // namespace recmod::config
