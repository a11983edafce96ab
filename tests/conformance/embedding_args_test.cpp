#include "recmod/conformance/embedding_args.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "recmod/common/errors.h"

namespace recmod::conformance {
namespace embedding_args_test {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using json = nlohmann::ordered_json;

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "<no InputError>";
}

TEST(EmbeddingArgs, SplitsTablesByPooling) {
  auto parsed = tables_from_json(json::parse(R"([
    {"name": "t1", "embedding_dim": 3, "num_embeddings": 9, "feature_names": ["f1", "f2"], "pooling": "MEAN"},
    {"name": "t2", "embedding_dim": 4, "num_embeddings": 5, "feature_names": ["f3"], "pooling": "NONE",
     "data_type": "FP16"},
    {"name": "t3", "embedding_dim": 2, "num_embeddings": 7}])"));
  ASSERT_EQ(parsed.bag_configs.size(), 2u);
  ASSERT_EQ(parsed.configs.size(), 1u);
  EXPECT_EQ(parsed.bag_configs[0].pooling, PoolingType::MEAN);
  EXPECT_THAT(parsed.bag_configs[0].feature_names, ElementsAre("f1", "f2"));
  EXPECT_EQ(parsed.bag_configs[1].pooling, PoolingType::SUM);  // the default
  EXPECT_THAT(parsed.bag_configs[1].feature_names, ElementsAre(parsed.bag_configs[1].name));  // [name], as the config
  EXPECT_EQ(parsed.configs[0].num_embeddings, 5);
  EXPECT_EQ(parsed.configs[0].data_type, DataType::FP16);
}

TEST(EmbeddingArgs, BuildsModulesAndReportsBadFields) {
  auto ebc = ebc_from_json(json::parse(
      R"({"tables": [{"name": "t", "embedding_dim": 2, "num_embeddings": 3, "pooling": "SUM"}], "is_weighted": true})"));
  EXPECT_TRUE(ebc->is_weighted());
  EXPECT_EQ(ebc->table_weight("t").sizes(), torch::IntArrayRef({3, 2}));
  EXPECT_THAT(error_of([] { tables_from_json(json::parse(R"([{"name": "t", "embedding_dim": 2}])")); }),
              HasSubstr("tables[0]: missing argument 'num_embeddings'"));
  EXPECT_THAT(error_of([] {
                bag_configs_from_json(
                    json::parse(R"([{"name": "t", "embedding_dim": 2, "num_embeddings": 3, "pooling": "NONE"}])"));
              }),
              HasSubstr("table 't' has pooling NONE"));
  EXPECT_THAT(error_of([] {
                ec_from_json(json::parse(
                    R"({"tables": [{"name": "t", "embedding_dim": 2, "num_embeddings": 3, "pooling": "MEAN"}]})"));
              }),
              HasSubstr("table 't' has pooling MEAN, but an EmbeddingCollection needs NONE"));
}

}  // namespace embedding_args_test
}  // namespace recmod::conformance
