#include "recmod/config/config_node.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "recmod/common/errors.h"
#include "recmod/config/graph.h"
#include "recmod/config/model_config.h"

namespace recmod::config {
namespace config_node_test {

using ::testing::HasSubstr;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no ConfigError)";
}

TEST(ConfigNodeTest, ReadsScalarsAndLists) {
  auto root = ConfigNode::load_string("a: 3\nb: 0.5\nc: [1, 2]\nd: {e: hi}\nf: true\n", "t.yaml");
  EXPECT_EQ(root["a"].as_int(), 3);
  EXPECT_DOUBLE_EQ(root["b"].as_double(), 0.5);
  EXPECT_EQ(root["c"].as_int_list(), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(root["d"]["e"].as_string(), "hi");
  EXPECT_TRUE(root["f"].as_bool());
  EXPECT_EQ(root["d"]["e"].path(), "d.e");
  EXPECT_EQ(root["c"].at(1).path(), "c[1]");
  EXPECT_EQ(root.keys(), (std::vector<std::string>{"a", "b", "c", "d", "f"}));
}

TEST(ConfigNodeTest, WrongTypeNamesPositionPathAndValue) {
  auto root = ConfigNode::load_string("top:\n  dim: abc\n", "m.yaml");
  EXPECT_EQ(error_of([&] { root["top"]["dim"].as_int(); }), "m.yaml:2:8: top.dim: expected an integer, found 'abc'");
  EXPECT_EQ(error_of([&] { root["top"].as_int(); }), "m.yaml:2:3: top: expected an integer, found a map");
}

TEST(ConfigNodeTest, MissingFieldPointsAtTheParent) {
  auto root = ConfigNode::load_string("x: 1\nnode:\n  type: MLP\n", "m.yaml");
  EXPECT_EQ(error_of([&] { root["node"]["layer_sizes"]; }), "m.yaml:3:3: node: missing required field 'layer_sizes'");
}

TEST(ConfigNodeTest, UnknownKeyListsTheValidOnes) {
  auto root = ConfigNode::load_string("node:\n  type: MLP\n  layers: [1]\n", "m.yaml");
  EXPECT_EQ(error_of([&] { root["node"].allow_keys({"type", "layer_sizes"}); }),
            "m.yaml:3:3: node.layers: unknown key 'layers'; valid keys are [type, layer_sizes]");
}

TEST(ConfigNodeTest, PositiveIntAndChoices) {
  auto root = ConfigNode::load_string("dim: -8\nmode: max\n", "m.yaml");
  EXPECT_EQ(error_of([&] { root.positive_int("dim"); }), "m.yaml:1:6: dim: must be > 0, got -8");
  EXPECT_EQ(error_of([&] { root["mode"].one_of({"sum", "mean"}); }),
            "m.yaml:2:7: mode: expected one of [sum, mean], found 'max'");
}

TEST(ConfigNodeTest, YamlSyntaxErrorHasPosition) {
  EXPECT_THAT(error_of([] { ConfigNode::load_string("a: [1, 2\nb: 3\n", "bad.yaml"); }), HasSubstr("bad.yaml:"));
  EXPECT_THAT(error_of([] { ConfigNode::load_string("a: [1, 2\nb: 3\n", "bad.yaml"); }), HasSubstr("invalid YAML"));
}

TEST(ConfigNodeTest, MissingFileSaysSo) {
  EXPECT_THAT(error_of([] { ConfigNode::load_file("/nonexistent/x.yaml"); }), HasSubstr("cannot open the config file"));
}

TEST(ModelConfigTest, ParsesFeaturesTrainingAndNodes) {
  auto root = ConfigNode::load_string(R"(
features:
  dense: {count: 3}
  sparse: [a, {name: b, hash: mod, range: 10}]
nodes:
  top: {type: Concat, inputs: [features.dense]}
output: top
training:
  dense_optimizer: {type: sgd, lr: 0.5}
  embedding_optimizer: adagrad
  batch_size: 4
  steps: 7
  seed: 3
)", "m.yaml");
  ModelConfig c = parse_model_config(root);
  EXPECT_EQ(c.features.num_dense, 3);
  ASSERT_EQ(c.features.sparse.size(), 2u);
  EXPECT_EQ(c.features.sparse[0].hash, "none");
  EXPECT_EQ(c.features.sparse[1].hash, "mod");
  EXPECT_EQ(c.features.sparse[1].range, 10);
  ASSERT_EQ(c.nodes.size(), 1u);
  EXPECT_EQ(c.nodes[0].inputs, (std::vector<std::string>{"features.dense"}));
  EXPECT_EQ(c.training.dense_optimizer.type(), "sgd");
  EXPECT_DOUBLE_EQ(c.training.dense_optimizer.lr(), 0.5);
  EXPECT_EQ(c.training.embedding_optimizer.type(), "adagrad");
  EXPECT_EQ(c.training.batch_size, 4);
  EXPECT_EQ(c.training.steps, 7);
  EXPECT_EQ(c.training.seed, 3u);
}

TEST(ModelConfigTest, HashWithoutRangeIsAnError) {
  auto root = ConfigNode::load_string("features:\n  sparse: [{name: a, hash: murmur}]\nnodes: {}\noutput: x\n", "m.yaml");
  EXPECT_EQ(error_of([&] { parse_model_config(root); }),
            "m.yaml:2:12: features.sparse[0]: hash 'murmur' needs a range > 0 (add 'range: N')");
}

TEST(ModelConfigTest, UnknownOptimizerIsAnError) {
  auto root = ConfigNode::load_string(
      "features: {dense: 1}\nnodes:\n  a: {type: Concat, input: features.dense}\noutput: a\ntraining:\n  dense_optimizer: rmsprop\n",
      "m.yaml");
  EXPECT_EQ(error_of([&] { parse_model_config(root); }),
            "m.yaml:6:20: training.dense_optimizer: expected one of [sgd, adagrad, adam], found 'rmsprop'");
}

// The optimizer's own validation runs at parse time, so `recmod validate`
// reports every bad optimizer setting at its YAML position.
TEST(ModelConfigTest, InvalidOptimizerSettingsFailAtTheirKey) {
  const std::string head = "features: {dense: 1}\nnodes:\n  a: {type: Concat, input: features.dense}\noutput: a\ntraining:\n";
  auto error_for = [&](const std::string& training) {
    return error_of([&] { parse_model_config(ConfigNode::load_string(head + training, "m.yaml")); });
  };
  EXPECT_EQ(error_for("  dense_optimizer: {type: adam, beta1: 1.5}\n"),
            "m.yaml:6:40: training.dense_optimizer.beta1: must be in [0, 1), got 1.5");
  EXPECT_EQ(error_for("  embedding_optimizer: {type: adagrad, eps: 0}\n"),
            "m.yaml:6:45: training.embedding_optimizer.eps: must be > 0, got 0");
  EXPECT_EQ(error_for("  dense_optimizer: {lr: -1}\n"), "m.yaml:6:25: training.dense_optimizer.lr: must be >= 0, got -1");
  EXPECT_EQ(error_for("  dense_optimizer: {weight_decay: -0.5}\n"),
            "m.yaml:6:35: training.dense_optimizer.weight_decay: must be >= 0, got -0.5");
  EXPECT_EQ(error_for("  embedding_optimizer: {type: adam}\n"),
            "m.yaml:6:31: training.embedding_optimizer.type: expected one of [sgd, adagrad, rowwise_adagrad], found 'adam'");
}

// Issue 18: yaml-cpp kept both keys and lookups found the first.
TEST(ConfigNodeTest, DuplicateKeysNameBothPositions) {
  EXPECT_EQ(error_of([] { ConfigNode::load_string("a: 1\nb:\n  c: 2\n  d: 3\n  c: 4\n", "d.yaml"); }),
            "d.yaml:5:3: duplicate key 'c' (first at d.yaml:3:3); each key may appear once in a map");
  EXPECT_EQ(error_of([] { ConfigNode::load_string("x: {k: 1, k: 2}\n", "d.yaml"); }),
            "d.yaml:1:11: duplicate key 'k' (first at d.yaml:1:5); each key may appear once in a map");
  EXPECT_THAT(error_of([] { ConfigNode::load_string("l:\n  - {a: 1}\n  - {a: 2, a: 3}\n", "d.yaml"); }),
              HasSubstr("d.yaml:3:12: duplicate key 'a' (first at d.yaml:3:6)"));
  // The same key in different maps, and an alias used twice, are fine.
  EXPECT_NO_THROW(ConfigNode::load_string("a: {k: 1}\nb: {k: 1}\nc: &x {k: 1}\nd: *x\ne: *x\n", "d.yaml"));
}

// Issue 18: a table name with invalid UTF-8 trained and wrote a model.pt
// that torch.load refused. Names that reach state_dict keys are identifiers.
TEST(ModelConfigTest, NamesMustBeIdentifiers) {
  auto config = [](const std::string& node, const std::string& table, const std::string& feature) {
    return "features:\n  dense: 2\n  sparse: [" + feature + "]\nnodes:\n  " + node +
           ":\n    type: EmbeddingBagCollection\n    input: features.sparse\n    tables: [{name: " + table +
           ", num_embeddings: 4, embedding_dim: 2, feature_names: [" + feature + "]}]\n  logit: {type: Linear, input: " +
           node + ", out_features: 1}\noutput: logit\n";
  };
  auto build = [&](const std::string& yaml) { return ModelGraph(parse_model_config(ConfigNode::load_string(yaml, "n.yaml"))); };
  EXPECT_NO_THROW(build(config("sparse_arch", "t_C1-2", "C1")));
  EXPECT_EQ(error_of([&] { build(config("s", "\"t\xff\xfe\"", "C1")); }),
            "n.yaml:8:21: nodes.s.tables[0].name: 't\\xff\\xfe' is not valid as a table name: byte 1 is not printable "
            "ASCII (names use letters, digits, '_' and '-', not first)");
  EXPECT_THAT(error_of([&] { build(config("s", "t.x", "C1")); }),
              HasSubstr("n.yaml:8:21: nodes.s.tables[0].name: 't.x' is not valid as a table name: character 1 is '.'"));
  EXPECT_THAT(error_of([&] { build(config("s\xc3\x28", "t", "C1")); }),
              HasSubstr("n.yaml:5:3: nodes.s\\xc3(: 's\\xc3(' is not valid as a node name: byte 1"));
  EXPECT_THAT(error_of([&] { build(config("s", "t", "\"C 1\"")); }),
              HasSubstr("n.yaml:3:12: features.sparse[0]: 'C 1' is not valid as a feature name: character 1 is ' '"));
  EXPECT_THAT(error_of([&] { build(config("s", "-t", "C1")); }), HasSubstr("character 0 is '-'"));
  EXPECT_THAT(error_of([&] { build(config("s", "\"\"", "C1")); }), HasSubstr("is not valid as a table name: it is empty"));
  EXPECT_THAT(error_of([&] { build(config("s", std::string(65, 'x'), "C1")); }), HasSubstr("it is 65 bytes long (at most 64)"));
}

}  // namespace config_node_test
}  // namespace recmod::config
