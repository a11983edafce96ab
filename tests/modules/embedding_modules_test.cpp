#include "recmod/modules/embedding_modules.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/test_util.h"
#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/common/state_dict.h"

namespace recmod {
namespace embedding_modules_test {

template <typename F>
std::string error_of(F&& f) { return test::error_of<InputError>(f); }

using ::testing::ElementsAre;
using ::testing::HasSubstr;

/// Row r of a (n, d) table is [10r, 10r+1, ...]: sums are easy to check by hand.
void set_rows(torch::Tensor weight) {
  torch::NoGradGuard no_grad;
  const auto n = weight.size(0), d = weight.size(1);
  weight.copy_((torch::arange(n).unsqueeze(1) * 10 + torch::arange(d)).to(weight.dtype()));
}

KeyedJaggedTensor kjt(std::vector<std::string> keys, std::vector<int64_t> values, std::vector<int64_t> lengths,
                      std::optional<std::vector<float>> weights = std::nullopt) {
  std::optional<torch::Tensor> w;
  if (weights) w = torch::tensor(*weights);
  return KeyedJaggedTensor::from_lengths(std::move(keys), torch::tensor(values), torch::tensor(lengths), w);
}

std::vector<std::string> keys_of(const StateDict& sd) {
  std::vector<std::string> out;
  for (const auto& kv : sd) out.push_back(kv.first);
  return out;
}

TEST(EmbeddingBagCollection, SumAndMeanByHand) {
  EmbeddingBagCollection ebc({EmbeddingBagConfig(5, 2, "t_sum", {"a"}, PoolingType::SUM),
                              EmbeddingBagConfig(4, 3, "t_mean", {"b"}, PoolingType::MEAN)},
                             false);
  set_rows(ebc->table_weight("t_sum"));
  set_rows(ebc->table_weight("t_mean"));
  // B = 2. a: [1, 3], [4]; b: [0, 2], [] (an empty MEAN bag gives zeros).
  auto out = ebc->forward(kjt({"b", "a"}, {0, 2, 1, 3, 4}, {2, 0, 2, 1}));
  EXPECT_THAT(out.keys(), ElementsAre("a", "b"));  // table order, not input order
  EXPECT_THAT(out.length_per_key(), ElementsAre(2, 3));
  EXPECT_EQ(out.values().scalar_type(), torch::kFloat32);
  auto expected = torch::tensor({{40.0f, 42.0f, 10.0f, 11.0f, 12.0f},  // 10+30, 11+31; mean(0,20)
                                 {40.0f, 41.0f, 0.0f, 0.0f, 0.0f}});
  EXPECT_TRUE(torch::allclose(out.values(), expected)) << out.values();
}

TEST(EmbeddingBagCollection, EmptyBatchAndBatchOne) {
  EmbeddingBagCollection ebc({EmbeddingBagConfig(3, 2, "t", {"f"})}, false);
  set_rows(ebc->table_weight("t"));
  auto one = ebc->forward(kjt({"f"}, {2, 2}, {2}));
  EXPECT_TRUE(torch::allclose(one.values(), torch::tensor({{40.0f, 42.0f}})));
  auto empty = ebc->forward(kjt({"f"}, {}, {0, 0, 0}));
  EXPECT_EQ(empty.values().sizes(), torch::IntArrayRef({3, 2}));
  EXPECT_EQ(empty.values().abs().sum().item<float>(), 0.0f);
}

TEST(EmbeddingBagCollection, WeightedScalesEachId) {
  EmbeddingBagCollection ebc({EmbeddingBagConfig(3, 2, "t", {"f"})}, /*is_weighted=*/true);
  set_rows(ebc->table_weight("t"));
  auto out = ebc->forward(kjt({"f"}, {1, 2, 0}, {2, 1}, std::vector<float>{0.5f, 2.0f, 3.0f}));
  // 0.5 * [10, 11] + 2 * [20, 21] = [45, 47.5]; 3 * [0, 1]
  EXPECT_TRUE(torch::allclose(out.values(), torch::tensor({{45.0f, 47.5f}, {0.0f, 3.0f}})));
  EXPECT_THAT(error_of([&] { ebc->forward(kjt({"f"}, {1}, {1})); }), HasSubstr("has no weights"));
}

TEST(EmbeddingBagCollection, SharedFeatureNamesAndDefaultFeature) {
  EmbeddingBagCollection ebc({EmbeddingBagConfig(4, 1, "t1", {"x", "y"}), EmbeddingBagConfig(4, 2, "t2", {"y"}),
                              EmbeddingBagConfig(4, 1, "t3")},
                             false);
  EXPECT_THAT(ebc->embedding_names(), ElementsAre("x", "y@t1", "y@t2", "t3"));
  EXPECT_THAT(ebc->length_per_embedding(), ElementsAre(1, 1, 2, 1));
  EXPECT_EQ(ebc->output_dim(), 5);
  EXPECT_THAT(ebc->embedding_bag_configs()[2].feature_names, ElementsAre("t3"));
  for (const char* t : {"t1", "t2", "t3"}) set_rows(ebc->table_weight(t));
  // Input keys in another order, plus a key no table uses.
  auto out = ebc->forward(kjt({"t3", "unused", "y", "x"}, {3, 0, 2, 1}, {1, 1, 1, 1}));
  EXPECT_TRUE(torch::allclose(out.values(), torch::tensor({{10.0f, 20.0f, 20.0f, 21.0f, 30.0f}})));
  EXPECT_THAT(keys_of(state_dict(*ebc)),
              ElementsAre("embedding_bags.t1.weight", "embedding_bags.t2.weight", "embedding_bags.t3.weight"));
}

TEST(EmbeddingBagCollection, NonAdjacentFeaturesOfOneTable) {
  // t's features a and c are apart in the KJT: gathered into one lookup.
  EmbeddingBagCollection ebc({EmbeddingBagConfig(5, 1, "t", {"a", "c"})}, false);
  set_rows(ebc->table_weight("t"));
  auto out = ebc->forward(kjt({"a", "b", "c"}, {1, 2, 4, 3, 4, 0}, {1, 1, 1, 1, 1, 1}));
  EXPECT_TRUE(torch::allclose(out.values(), torch::tensor({{10.0f, 40.0f}, {20.0f, 0.0f}})));
}

TEST(EmbeddingBagCollection, Errors) {
  EXPECT_THAT(error_of([] { EmbeddingBagCollection({EmbeddingBagConfig(2, 2, "t"), EmbeddingBagConfig(3, 2, "t")}, false); }),
              HasSubstr("duplicate table name 't'"));
  EXPECT_THAT(error_of([] {
                EmbeddingBagCollection({EmbeddingBagConfig(2, 2, "t", {"f"}, PoolingType::MEAN)}, true);
              }),
              HasSubstr("per-sample weights are only supported with pooling SUM"));
  EXPECT_THAT(error_of([] { EmbeddingBagCollection({EmbeddingBagConfig(2, 2, "t", {"f"}, PoolingType::NONE)}, false); }),
              HasSubstr("pooling NONE"));
  EXPECT_THAT(error_of([] { EmbeddingBagCollection({EmbeddingBagConfig(0, 2, "t")}, false); }),
              HasSubstr("num_embeddings > 0, got 0"));
  EmbeddingBagCollection ebc({EmbeddingBagConfig(2, 2, "t", {"f", "g"})}, false);
  EXPECT_THAT(error_of([&] { ebc->forward(kjt({"f", "h"}, {0}, {1, 0})); }),
              HasSubstr("feature 'g' of table 't' is not in the input KeyedJaggedTensor, which has keys [f, h]"));
}

TEST(EmbeddingBagCollection, DefaultInitRangeAndCustomInit) {
  EmbeddingBagConfig big(400, 8, "t");
  EmbeddingBagConfig ranged(50, 8, "r");
  ranged.weight_init_min = 2.0;
  ranged.weight_init_max = 3.0;
  EmbeddingBagConfig custom(3, 2, "c");
  custom.init_fn = [](torch::Tensor& w) { w.fill_(7.0); };
  EmbeddingBagCollection ebc({big, ranged, custom}, false);
  const auto& w = ebc->table_weight("t");
  const double bound = std::sqrt(1.0 / 400);
  EXPECT_LE(w.max().item<double>(), bound);
  EXPECT_GE(w.min().item<double>(), -bound);
  EXPECT_GT(w.max().item<double>(), 0.8 * bound);  // it spans the range, not a constant
  EXPECT_GE(ebc->table_weight("r").min().item<double>(), 2.0);
  EXPECT_LE(ebc->table_weight("r").max().item<double>(), 3.0);
  EXPECT_TRUE(torch::all(ebc->table_weight("c") == 7.0).item<bool>());
  EXPECT_TRUE(ebc->table_weight("t").requires_grad());
}

TEST(EmbeddingBagCollection, Fp16StorageFp32Output) {
  EmbeddingBagConfig c(4, 2, "t", {"f"}, PoolingType::MEAN);
  c.data_type = DataType::FP16;
  EmbeddingBagCollection ebc({c}, false);
  EXPECT_EQ(ebc->table_weight("t").scalar_type(), torch::kFloat16);
  set_rows(ebc->table_weight("t"));
  auto out = ebc->forward(kjt({"f"}, {1, 2}, {2}));
  EXPECT_EQ(out.values().scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::allclose(out.values(), torch::tensor({{15.0f, 16.0f}})));
}

TEST(EmbeddingBagCollection, SparseAndDenseGradientsAgree) {
  auto input = kjt({"f"}, {1, 3, 1, 0}, {3, 1}, std::vector<float>{1.0f, 2.0f, 0.5f, -1.0f});
  std::vector<torch::Tensor> grads;
  for (bool sparse : {false, true}) {
    torch::manual_seed(0);
    EmbeddingBagCollection ebc(
        EmbeddingBagCollectionOptions({EmbeddingBagConfig(5, 3, "t", {"f"})}).is_weighted(true).sparse(sparse));
    auto out = ebc->forward(input);
    (out.values() * torch::arange(1.0, 4.0)).sum().backward();
    auto g = ebc->table_weight("t").grad();
    EXPECT_EQ(g.is_sparse(), sparse);
    grads.push_back(sparse ? g.to_dense() : g);
  }
  EXPECT_TRUE(torch::allclose(grads[0], grads[1]));
  // Row 1 is used twice in bag 0 with weights 1 and 0.5: grad = 1.5 * [1, 2, 3].
  EXPECT_TRUE(torch::allclose(grads[0][1], torch::tensor({1.5f, 3.0f, 4.5f})));
  EXPECT_TRUE(torch::allclose(grads[0][2], torch::zeros({3})));
}

TEST(EmbeddingBagCollection, ToDeviceMovesWeightsAndOutputs) {
  const torch::Device target = torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  EmbeddingBagCollection ebc({EmbeddingBagConfig(3, 2, "t", {"f"})}, false);
  set_rows(ebc->table_weight("t"));
  ebc->to(target);
  EXPECT_EQ(ebc->device(), target);
  EXPECT_EQ(ebc->table_weight("t").device(), target);
  auto out = ebc->forward(kjt({"f"}, {0, 2}, {1, 1}).to(target));
  EXPECT_EQ(out.values().device(), target);
  EXPECT_TRUE(torch::allclose(out.values().cpu(), torch::tensor({{0.0f, 1.0f}, {20.0f, 21.0f}})));
}

TEST(EmbeddingCollection, SequenceEmbeddingsByTable) {
  EmbeddingCollection ec({EmbeddingConfig(4, 2, "t1", {"a", "b"}), EmbeddingConfig(3, 2, "t2", {"b"})},
                         /*need_indices=*/true);
  set_rows(ec->table_weight("t1"));
  set_rows(ec->table_weight("t2"));
  auto out = ec->forward(kjt({"b", "a"}, {2, 1, 3}, {1, 0, 0, 2}));
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].first, "a");
  EXPECT_EQ(out[1].first, "b@t1");
  EXPECT_EQ(out[2].first, "b@t2");
  EXPECT_TRUE(torch::allclose(out[0].second.values(), torch::tensor({{10.0f, 11.0f}, {30.0f, 31.0f}})));
  EXPECT_TRUE(torch::equal(out[0].second.lengths(), torch::tensor({0, 2})));
  EXPECT_TRUE(torch::equal(out[0].second.weights(), torch::tensor({1, 3})));
  EXPECT_TRUE(torch::allclose(out[2].second.values(), torch::tensor({{20.0f, 21.0f}})));
  EXPECT_TRUE(torch::equal(out[2].second.lengths(), torch::tensor({1, 0})));
  EXPECT_THAT(keys_of(state_dict(*ec)), ElementsAre("embeddings.t1.weight", "embeddings.t2.weight"));
  EXPECT_EQ(ec->embedding_dim(), 2);
}

TEST(EmbeddingCollection, RejectsMixedDimensions) {
  EXPECT_THAT(error_of([] { EmbeddingCollection({EmbeddingConfig(4, 2, "t1"), EmbeddingConfig(4, 3, "t2")}, false); }),
              HasSubstr("table 't2' has embedding_dim 3 but the first table 't1' has 2"));
}

TEST(EmbeddingCollection, GradientsReachLookedUpRows) {
  EmbeddingCollection ec({EmbeddingConfig(4, 2, "t", {"f"})}, false);
  auto out = ec->forward(kjt({"f"}, {3, 3, 0}, {2, 1}));
  out[0].second.values().sum().backward();
  EXPECT_TRUE(torch::allclose(ec->table_weight("t").grad(),
                              torch::tensor({{1.0f, 1.0f}, {0.0f, 0.0f}, {0.0f, 0.0f}, {2.0f, 2.0f}})));
}

TEST(EmbeddingCollection, Fp16StorageAndSparseGradients) {
  EmbeddingConfig half(4, 2, "h", {"f"});
  half.data_type = DataType::FP16;
  EmbeddingConfig bf16(4, 2, "b", {"f"});
  bf16.data_type = DataType::BF16;  // real bfloat16 storage (FBGEMM's rule), not float16
  EXPECT_EQ(EmbeddingCollection({bf16}, false)->table_weight("b").scalar_type(), torch::kBFloat16);
  EmbeddingCollection ec({half}, false);
  EXPECT_EQ(ec->table_weight("h").scalar_type(), torch::kFloat16);
  set_rows(ec->table_weight("h"));
  auto out = ec->forward(kjt({"f"}, {3}, {1}));
  EXPECT_EQ(out[0].second.values().scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::allclose(out[0].second.values(), torch::tensor({{30.0f, 31.0f}})));

  std::vector<torch::Tensor> grads;
  for (bool sparse : {false, true}) {
    EmbeddingCollection m(EmbeddingCollectionOptions({EmbeddingConfig(4, 2, "t", {"f"})}).sparse(sparse));
    m->forward(kjt({"f"}, {2, 0, 2}, {1, 2}))[0].second.values().sum().backward();
    const auto& g = m->table_weight("t").grad();
    EXPECT_EQ(g.is_sparse(), sparse);
    grads.push_back(sparse ? g.to_dense() : g);
  }
  EXPECT_TRUE(torch::allclose(grads[0], grads[1]));
  EXPECT_TRUE(torch::allclose(grads[0][2], torch::tensor({2.0f, 2.0f})));
}

}  // namespace embedding_modules_test
}  // namespace recmod
