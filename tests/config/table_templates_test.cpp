// for_each_feature tables expand to exactly the long form: the same tables
// in the same order, the same state_dict keys and the same initial values.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "support/test_util.h"
#include "recmod/common/state_dict.h"
#include "recmod/config/graph.h"

namespace recmod::config {
namespace table_templates_test {

using ::testing::HasSubstr;

std::string with_tables(const std::string& tables) {
  return "features:\n  dense: {count: 2}\n  sparse: [a, b, c]\n  hash: mod\n  range: 10\nnodes:\n"
         "  emb:\n    type: EmbeddingBagCollection\n    input: features.sparse\n    tables:\n" +
         tables +
         "  cat: {type: Concat, inputs: [features.dense, emb]}\n"
         "  top: {type: MLP, input: cat, layer_sizes: [1]}\noutput: top\n";
}

ModelGraph build(const std::string& yaml) {
  torch::manual_seed(7);
  return ModelGraph(parse_model_config(ConfigNode::load_string(yaml, "t.yaml")));
}

std::string build_error(const std::string& yaml) {
  return test::error_of<ConfigError>([&] { build(yaml); });
}

TEST(TableTemplatesTest, ExpandsToTheLongFormExactly) {
  auto compact = build(with_tables(
      "      - {name: first, num_embeddings: 10, embedding_dim: 2, feature_names: [a]}\n"
      "      - for_each_feature: [b, c]\n"
      "        embedding_dim: 3\n"
      "        num_embeddings: [20, 30]\n"
      "        overrides: {c: {pooling: mean, embedding_dim: 2}}\n"));
  auto long_form = build(with_tables(
      "      - {name: first, num_embeddings: 10, embedding_dim: 2, feature_names: [a]}\n"
      "      - {name: t_b, num_embeddings: 20, embedding_dim: 3, feature_names: [b]}\n"
      "      - {name: t_c, num_embeddings: 30, embedding_dim: 2, feature_names: [c], pooling: mean}\n"));
  const auto a = state_dict(*compact), b = state_dict(*long_form);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << a[i].first;
  }
  EXPECT_EQ(compact->describe(), long_form->describe());
}

TEST(TableTemplatesTest, AllMeansEverySparseFeatureAndTheNameIsATemplate) {
  auto graph = build(with_tables("      - {for_each_feature: all, name: \"emb_{feature}_t\", num_embeddings: 40, embedding_dim: 2}\n"));
  std::vector<std::string> keys;
  for (const auto& [key, value] : state_dict(*graph))
    if (key.rfind("emb.", 0) == 0) keys.push_back(key);
  EXPECT_EQ(keys, (std::vector<std::string>{"emb.embedding_bags.emb_a_t.weight", "emb.embedding_bags.emb_b_t.weight",
                                            "emb.embedding_bags.emb_c_t.weight"}));
}

TEST(TableTemplatesTest, MistakesAreErrorsAtTheTemplate) {
  EXPECT_THAT(build_error(with_tables("      - {for_each_feature: [a, b], name: same, num_embeddings: 40, embedding_dim: 2}\n")),
              HasSubstr("t.yaml:11:42: nodes.emb.tables[0].name: expected a name with {feature} in it"));
  EXPECT_THAT(build_error(with_tables("      - {for_each_feature: [a, b], num_embeddings: [40], embedding_dim: 2}\n")),
              HasSubstr("nodes.emb.tables[0].num_embeddings: expected one value per feature of for_each_feature (2), found 1"));
  EXPECT_THAT(build_error(with_tables("      - {for_each_feature: [a], num_embeddings: 40, embedding_dim: 2, overrides: {b: {embedding_dim: 4}}}\n")),
              HasSubstr("overrides.b: feature 'b' is not in for_each_feature [a]"));
  EXPECT_THAT(build_error(with_tables("      - {for_each_feature: [a], feature_names: [a], num_embeddings: 40, embedding_dim: 2}\n")),
              HasSubstr("feature_names: a table with for_each_feature reads its one feature"));
  EXPECT_THAT(build_error(with_tables("      - {for_each_feature: some, num_embeddings: 40, embedding_dim: 2}\n")),
              HasSubstr("for_each_feature: expected a list of feature names or 'all', found 'some'"));
  EXPECT_THAT(build_error(with_tables("      - {for_each_feature: [a, a], num_embeddings: 40, embedding_dim: 2}\n")),
              HasSubstr("feature 'a' is listed twice"));
  // Expanded tables are checked like written ones: a bad value points at the template's value.
  EXPECT_THAT(build_error(with_tables("      - {for_each_feature: [a, b], num_embeddings: [40, 0], embedding_dim: 2}\n")),
              HasSubstr("t.yaml:11:57: nodes.emb.tables[1].num_embeddings: must be > 0, got 0"));
}

}  // namespace table_templates_test
}  // namespace recmod::config
