// recmod validate and the config errors every command reports (exit 2,
// "recmod: file:line:col: path: what").
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "cli/run_recmod.h"

namespace recmod::testing {
namespace validate_cli_test {

using ::testing::HasSubstr;
using ::testing::StartsWith;

const char* kGoodModel = R"(features:
  dense: {count: 2}
  sparse: [a, b]
nodes:
  sparse_arch:
    type: EmbeddingBagCollection
    input: features.sparse
    tables:
      - {name: t_a, num_embeddings: 10, embedding_dim: 4, feature_names: [a]}
      - {name: t_b, num_embeddings: 20, embedding_dim: 4, feature_names: [b]}
  dense_arch: {type: Linear, input: features.dense, out_features: 4}
  inter: {type: DotInteraction, inputs: [dense_arch, sparse_arch]}
  logit: {type: Linear, input: inter, out_features: 1}
output: logit
)";

// kGoodModel with one substring replaced.
std::string variant(const std::string& from, const std::string& to) {
  std::string text = kGoodModel;
  auto at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return text.replace(at, from.size(), to);
}

RunResult validate_text(const std::string& name, const std::string& text) {
  auto path = write_file(fresh_dir(name) + "/model.yaml", text);
  return run_recmod("validate " + path);
}

TEST(ValidateCliTest, PrintsNodesShapesAndParameters) {
  auto r = validate_text("validate_good", kGoodModel);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("sparse_arch (EmbeddingBagCollection) <- [features.sparse] -> KeyedTensor [a: 4, b: 4] "
                                  "(B, 8), 120 parameters"));
  // D = 4, F = 2: 4 + 2*3/2 = 7 features after the interaction.
  EXPECT_THAT(r.output, HasSubstr("inter (DotInteraction) <- [dense_arch, sparse_arch] -> (B, 7), 0 parameters"));
  EXPECT_THAT(r.output, HasSubstr("logit (Linear) <- [inter] -> (B, 1), 8 parameters"));
  EXPECT_THAT(r.output, HasSubstr("parameters: 140 (dense 20, embedding 120)"));
}

TEST(ValidateCliTest, UnknownKeyListsValidKeys) {
  auto r = validate_text("validate_unknown_key", variant("out_features: 4}", "out_features: 4, activation: relu}"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, StartsWith("recmod: "));
  EXPECT_THAT(r.output, HasSubstr("model.yaml:11:70: nodes.dense_arch.activation: unknown key 'activation'; valid keys are "
                                  "[type, input, inputs, out_features, bias]"));
}

TEST(ValidateCliTest, WrongTypeSaysExpectedAndFound) {
  auto r = validate_text("validate_wrong_type", variant("embedding_dim: 4, feature_names: [a]", "embedding_dim: four, feature_names: [a]"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("model.yaml:9:56: nodes.sparse_arch.tables[0].embedding_dim: expected an integer, found 'four'"));
}

TEST(ValidateCliTest, MissingFieldNamesIt) {
  auto r = validate_text("validate_missing", variant("out_features: 1}", "}"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("model.yaml:13:10: nodes.logit: missing required field 'out_features'"));
}

TEST(ValidateCliTest, ShapeMismatchNamesBothNodes) {
  auto r = validate_text("validate_shape", variant("out_features: 4}", "out_features: 8}"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("model.yaml:12:41: nodes.inter.inputs: shape mismatch: DotInteraction needs every embedding "
                                  "dim to equal the dense width 8 (from 'dense_arch'), but 'sparse_arch' key 'a' has dim 4"));
}

TEST(ValidateCliTest, MissingConfigFileIsExit2) {
  auto r = run_recmod("validate /nonexistent/model.yaml");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("recmod: /nonexistent/model.yaml: cannot open the config file"));
}

TEST(ValidateCliTest, BadUsageIsExit2WithHint) {
  auto r = run_recmod("validate");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, StartsWith("recmod: "));
  EXPECT_THAT(r.output, HasSubstr("--help"));
}

TEST(ValidateCliTest, ExpandPrintsALongFormThatBuildsTheSameModel) {
  const auto dir = fresh_dir("validate_expand");
  const std::string compact = std::string(RECMOD_SOURCE_DIR) + "/configs/dlrm_criteo.yaml";
  auto expanded = run_command(std::string(RECMOD_BIN) + " validate --expand " + compact + " > " + dir + "/long.yaml");
  ASSERT_EQ(expanded.exit_code, 0) << expanded.output;
  std::ifstream in(dir + "/long.yaml");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_THAT(text, HasSubstr("name: t_C26"));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("for_each_feature")));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("*")));  // no YAML aliases
  auto a = run_recmod("validate " + compact), b = run_recmod("validate " + dir + "/long.yaml");
  ASSERT_EQ(b.exit_code, 0) << b.output;
  // The same graph, line for line, after the first (which names the file).
  EXPECT_EQ(a.output.substr(a.output.find('\n')), b.output.substr(b.output.find('\n')));
}

TEST(ValidateCliTest, DocsNodeTypeTableIsTheRegistrys) {
  auto r = run_command(std::string(RECMOD_BIN) + " validate --list-types --markdown");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("| `FeatureProcessedEmbeddingBagCollection` |"));
  std::ifstream in(std::string(RECMOD_SOURCE_DIR) + "/docs/config.md");
  const std::string docs((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto begin = docs.find('\n', docs.find("<!-- node-types:")) + 1;
  const auto end = docs.find("<!-- end node-types -->");
  ASSERT_NE(end, std::string::npos);
  EXPECT_EQ(docs.substr(begin, end - begin), r.output) << "docs/config.md is stale: run scripts/update-docs";
}

TEST(ValidateCliTest, DescribePrintsATypeAndListTypesNeedsNoConfig) {
  auto d = run_recmod("describe Perceptron");
  ASSERT_EQ(d.exit_code, 0) << d.output;
  EXPECT_THAT(d.output, HasSubstr("Perceptron (torchrec.modules.mlp.Perceptron)"));
  EXPECT_THAT(d.output, HasSubstr("out_size: (required)"));
  auto bad = run_recmod("describe Mlp");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.output, HasSubstr("recmod: unknown node type 'Mlp'; valid types are [EmbeddingBagCollection"));
  auto list = run_recmod("validate --list-types");
  EXPECT_EQ(list.exit_code, 0);
  EXPECT_THAT(list.output, HasSubstr("SwishLayerNorm"));
}

}  // namespace validate_cli_test
}  // namespace recmod::testing
