#include "recmod/config/graph.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/common/hash.h"
#include "recmod/common/state_dict.h"
#include "recmod/config/feature_hashing.h"
#include "recmod/config/basic_nodes.h"
#include "support/test_util.h"

namespace recmod::config {
namespace graph_test {

using ::testing::HasSubstr;

ModelConfig parse(const std::string& yaml) { return parse_model_config(ConfigNode::load_string(yaml, "g.yaml")); }

std::string build_error(const std::string& yaml) {
  return test::error_of<ConfigError>([&] { ModelGraph graph(parse(yaml)); });
}

TEST(FeatureHashingTest, MurmurMatchesReferenceFmix64) {
  // Reference values from MurmurHash3's fmix64 over uint64 (Python big ints).
  auto h = recmod::murmur3_fmix64(torch::tensor({1, 12345, -7}, torch::kLong));
  EXPECT_EQ(h[0].item<int64_t>(), -5451962507482445012LL);
  EXPECT_EQ(h[1].item<int64_t>(), 1716623506685013753LL);
  EXPECT_EQ(h[2].item<int64_t>(), 4818444927845109502LL);
  // hash: murmur is fmix64's unsigned value mod range (Python:
  // fmix64(x % 2**64) % r; docs/data.md): 12994781566227106604 % 1000 = 604
  // for id 1, not the signed remainder 988.
  auto r = hash_ids(torch::tensor(std::vector<int64_t>{1, 12345, -7, 0, 42, INT64_MAX}, torch::kLong), "murmur", 1000);
  EXPECT_TRUE(torch::equal(r, torch::tensor({604, 753, 502, 0, 340, 930}, torch::kLong))) << r;
  auto big = hash_ids(torch::tensor(std::vector<int64_t>{1, 42, INT64_MAX}, torch::kLong), "murmur", 100000);
  EXPECT_TRUE(torch::equal(big, torch::tensor({6604, 23340, 49930}, torch::kLong))) << big;
  // A range above 2^62 (the top-bit fold must not overflow): 2^63 - 1.
  auto huge = hash_ids(torch::tensor(std::vector<int64_t>{1}, torch::kLong), "murmur", INT64_MAX);
  EXPECT_EQ(huge[0].item<int64_t>(), static_cast<int64_t>(UINT64_C(12994781566227106604) % INT64_MAX));
}

TEST(FeatureHashingTest, ModIsNonNegativeAndOnlyHashesNamedKeys) {
  auto kjt = KeyedJaggedTensor::from_lengths({"a", "b"}, torch::tensor({-3, 14, 25, 7}, torch::kLong),
                                             torch::tensor({1, 1, 1, 1}, torch::kInt));
  auto out = hash_features(kjt, {{"a", "mod", 10}, {"b", "none", 0}});
  EXPECT_TRUE(torch::equal(out.values(), torch::tensor({7, 4, 25, 7}, torch::kLong)));
  EXPECT_EQ(out.keys(), kjt.keys());
}

// Keys hashed alike are hashed as one slice (issue 19: one set of tensor
// operations per run of keys); the result is each key hashed by its own spec.
TEST(FeatureHashingTest, RunsOfKeysGiveEachKeysOwnHash) {
  const std::vector<std::string> keys = {"a", "b", "c", "d", "e", "f"};
  auto kjt = KeyedJaggedTensor::from_lengths(keys, torch::tensor({-3, 14, 25, 7, 99, 123456, -1, 8, 31}, torch::kLong),
                                             torch::tensor({2, 1, 2, 1, 0, 3}, torch::kInt));
  const std::vector<SparseFeatureSpec> specs = {{"a", "murmur", 50}, {"b", "murmur", 50}, {"c", "mod", 10},
                                                {"d", "murmur", 50}, {"e", "murmur", 50}, {"f", "murmur", 7}};
  auto out = hash_features(kjt, specs);
  const auto& opk = kjt.offset_per_key();
  for (size_t k = 0; k < keys.size(); ++k) {
    const auto raw = kjt.values().slice(0, opk[k], opk[k + 1]);
    EXPECT_TRUE(torch::equal(out.values().slice(0, opk[k], opk[k + 1]), hash_ids(raw, specs[k].hash, specs[k].range)))
        << keys[k];
  }
  // A key without a spec passes through between hashed ones.
  auto partial = hash_features(kjt, {{"a", "mod", 10}, {"c", "mod", 10}});
  EXPECT_TRUE(torch::equal(partial.values(), torch::tensor({7, 4, 25, 7, 9, 123456, -1, 8, 31}, torch::kLong)))
      << partial.values();
}

const char* kConcatModel = R"(
features:
  dense: {count: 2}
  sparse: [a]
nodes:
  both: {type: Concat, inputs: [features.dense, features.dense]}
  inter: {type: DotInteraction, inputs: [features.dense, both]}
output: both
)";

TEST(ModelGraphTest, UnknownTypeListsTheValidOnes) {
  auto err = build_error(R"(
features: {dense: 2}
nodes:
  top: {type: Mlp, input: features.dense}
output: top
)");
  EXPECT_THAT(err, HasSubstr("g.yaml:4:15: nodes.top.type: unknown node type 'Mlp'; valid types are ["));
  EXPECT_THAT(err, HasSubstr("Concat"));
}

TEST(ModelGraphTest, UnknownInputIsAnError) {
  EXPECT_THAT(build_error("features: {dense: 2}\nnodes:\n  top: {type: Concat, input: dense_arch}\noutput: top\n"),
              HasSubstr("g.yaml:3:30: nodes.top.input: unknown input 'dense_arch'; known inputs are [features.dense, "
                        "features.sparse, top]"));
}

TEST(ModelGraphTest, CycleIsAnError) {
  EXPECT_THAT(build_error("features: {dense: 2}\nnodes:\n  a: {type: Concat, input: b}\n  b: {type: Concat, input: a}\n"
                          "output: a\n"),
              HasSubstr("the graph has a cycle"));
}

TEST(ModelGraphTest, UnusedNodeIsAnError) {
  EXPECT_THAT(build_error(kConcatModel), HasSubstr("node 'inter' is not used by the output 'both'"));
}

TEST(ModelGraphTest, OutputMustBeALogit) {
  EXPECT_THAT(build_error("features: {dense: 2}\nnodes:\n  a: {type: Concat, input: features.dense}\noutput: a\n"),
              HasSubstr("g.yaml:4:9: output: the output must be a logit of shape (B, 1), but 'a' gives a dense (B, 2)"));
}

TEST(ModelGraphTest, DotInteractionShapeMismatchNamesBothSides) {
  // A raw KJT is not pooled embeddings.
  auto err = build_error(R"(
features: {dense: 2, sparse: [a]}
nodes:
  inter: {type: DotInteraction, inputs: [features.dense, features.sparse]}
output: inter
)");
  EXPECT_THAT(err, HasSubstr("nodes.inter.inputs: DotInteraction expects pooled embeddings after the dense input, but "
                             "'features.sparse' gives sparse features KJT [a]"));
}

TEST(ModelGraphTest, OneWideConcatRunsAndPrints) {
  ModelGraph graph(parse("features: {dense: 1}\nnodes:\n  a: {type: Concat, input: features.dense}\noutput: a\n"));
  data::Batch batch{torch::tensor({{0.5f}, {-2.f}}), KeyedJaggedTensor::empty(false, torch::kCPU, 2),
                    torch::zeros({2, 1})};
  EXPECT_TRUE(torch::equal(graph->forward(batch), torch::tensor({0.5f, -2.f})));
  EXPECT_THAT(graph->describe(), HasSubstr("a (Concat) <- [features.dense] -> (B, 1), 0 parameters"));
}

TEST(ModelGraphTest, LinearNodeKeysAndDenseParameters) {
  ModelGraph graph(parse(R"(
features: {dense: 3}
nodes:
  both: {type: Concat, inputs: [features.dense, features.dense]}
  logit: {type: Linear, input: both, out_features: 1}
output: logit
)"));
  auto dict = state_dict(*graph);
  ASSERT_EQ(dict.size(), 2u);
  EXPECT_EQ(dict[0].first, "logit.weight");
  EXPECT_EQ(dict[0].second.sizes(), (std::vector<int64_t>{1, 6}));  // in_features inferred from Concat: 3 + 3
  EXPECT_EQ(dict[1].first, "logit.bias");
  EXPECT_EQ(graph->dense_parameters().size(), 2u);
  EXPECT_TRUE(graph->embedding_parameters().empty());
  EXPECT_THAT(graph->describe(), HasSubstr("parameters: 7 (dense 7, embedding 0)"));
}

TEST(ModelGraphTest, LinearRejectsSparseInput) {
  EXPECT_THAT(build_error("features: {sparse: [a]}\nnodes:\n  l: {type: Linear, input: features.sparse, out_features: 1}\n"
                          "output: l\n"),
              HasSubstr("g.yaml:3:28: nodes.l.input: Linear expects a dense (B, N) input, but 'features.sparse' gives "
                        "sparse features KJT [a]"));
}

TEST(ModelGraphTest, DlrmKeysAreTorchRecsUnderNodeNames) {
  ModelGraph graph(parse(R"(
features: {dense: 3, sparse: [a, b]}
nodes:
  sparse_arch:
    type: EmbeddingBagCollection
    input: features.sparse
    tables:
      - {name: t_a, num_embeddings: 5, embedding_dim: 4, feature_names: [a]}
      - {name: t_b, num_embeddings: 7, embedding_dim: 4, feature_names: [b]}
  dense_arch: {type: MLP, input: features.dense, layer_sizes: [6, 4]}
  inter: {type: DotInteraction, inputs: [dense_arch, sparse_arch]}
  over_arch: {type: MLP, input: inter, layer_sizes: [1]}
output: over_arch
)"));
  std::vector<std::string> keys;
  for (const auto& [key, value] : state_dict(*graph)) keys.push_back(key);
  EXPECT_THAT(keys, ::testing::UnorderedElementsAre(
                        "sparse_arch.embedding_bags.t_a.weight", "sparse_arch.embedding_bags.t_b.weight",
                        "dense_arch._mlp.0._linear.weight", "dense_arch._mlp.0._linear.bias",
                        "dense_arch._mlp.1._linear.weight", "dense_arch._mlp.1._linear.bias",
                        "over_arch._mlp.0._linear.weight", "over_arch._mlp.0._linear.bias"));
  // over_arch's in_size is inferred: D + F(F+1)/2 = 4 + 3 = 7.
  EXPECT_EQ(find_tensor(state_dict(*graph), "over_arch._mlp.0._linear.weight")->sizes(), (std::vector<int64_t>{1, 7}));
  EXPECT_EQ(graph->embedding_parameters().size(), 2u);
  EXPECT_EQ(graph->dense_parameters().size(), 6u);

  auto kjt = KeyedJaggedTensor::from_lengths({"a", "b"}, torch::tensor({1, 4, 6, 0, 2}, torch::kLong),
                                             torch::tensor({1, 1, 2, 1}, torch::kInt));
  data::Batch batch{torch::randn({2, 3}), kjt, torch::zeros({2, 1})};
  auto logits = graph->forward(batch);
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{2}));
  logits.sum().backward();
  EXPECT_TRUE(graph->embedding_parameters()[0].second.grad().defined());
}

// The ids a table looks up are checked all at once (issue 19); a key no
// table of the node looks up may hold any id; the error names the first
// table's feature that is out of range, and the id.
TEST(ModelGraphTest, IdsOutsideATableNameTheFeatureWhateverTheOtherKeysHold) {
  ModelGraph graph(parse(R"(
features: {dense: 2, sparse: [a, b, c]}
nodes:
  emb:
    type: EmbeddingBagCollection
    input: features.sparse
    tables:
      - {name: t_a, num_embeddings: 10, embedding_dim: 2, feature_names: [a]}
      - {name: t_c, num_embeddings: 5, embedding_dim: 2, feature_names: [c]}
  x: {type: Concat, inputs: [features.dense, emb]}
  logit: {type: Linear, input: x, out_features: 1}
output: logit
)"));
  auto batch_with = [](std::vector<int64_t> ids) {
    // Two rows; lengths per key: a [1, 1], b [2, 0], c [1, 1].
    auto kjt = KeyedJaggedTensor::from_lengths({"a", "b", "c"}, torch::tensor(ids, torch::kLong),
                                               torch::tensor({1, 1, 2, 0, 1, 1}, torch::kInt));
    return data::Batch{torch::zeros({2, 2}), kjt, torch::zeros({2, 1})};
  };
  EXPECT_NO_THROW(graph->forward(batch_with({9, 0, -7, 1000, 4, 0})));  // b: no table of emb looks it up
  auto error_of = [&](std::vector<int64_t> ids) {
    return test::error_of<InputError>([&] { graph->forward(batch_with(std::move(ids))); });
  };
  EXPECT_THAT(error_of({9, 0, -7, 1000, 5, 0}), HasSubstr("nodes.emb: feature 'c' has id 5, outside table 't_c'"));
  EXPECT_THAT(error_of({9, -1, 3, 3, 4, 0}), HasSubstr("nodes.emb: feature 'a' has id -1, outside table 't_a'"));
  EXPECT_THAT(error_of({10, 0, 3, 3, 4, 9}), HasSubstr("nodes.emb: feature 'a' has id 10, outside table 't_a'"));
}

TEST(ModelGraphTest, MlpRejectsBadLayerSize) {
  EXPECT_THAT(build_error("features: {dense: 2}\nnodes:\n  m: {type: MLP, input: features.dense, layer_sizes: [4, 0]}\n"
                          "output: m\n"),
              HasSubstr("g.yaml:3:58: nodes.m.layer_sizes[1]: must be > 0, got 0"));
}

}  // namespace graph_test
}  // namespace recmod::config
