// The `sharding:` section of a config and embedding_tables_of.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "recmod/common/errors.h"
#include "recmod/config/embedding_tables.h"
#include "recmod/config/model_config.h"
#include "support/test_util.h"

namespace recmod::config {
namespace sharding_config_test {

using recmod::test::error_of;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Two embedding nodes that share a table name ("t_shared"); the sharding
// section is appended at line 20.
const char* kModel = R"(features:
  dense: {count: 2}
  sparse: [a, b, c]
nodes:
  user_arch:
    type: EmbeddingBagCollection
    input: features.sparse
    tables:
      - {name: t_a, num_embeddings: 10, embedding_dim: 4, feature_names: [a]}
      - {name: t_shared, num_embeddings: 20, embedding_dim: 4, feature_names: [b]}
  item_arch:
    type: EmbeddingCollection
    input: features.sparse
    tables:
      - {name: t_shared, num_embeddings: 30, embedding_dim: 4, feature_names: [c]}
      - {name: t_c, num_embeddings: 40000000000, embedding_dim: 4}
  dense_arch: {type: Linear, input: features.dense, out_features: 4}
  inter: {type: DotInteraction, inputs: [dense_arch, user_arch]}
  logit: {type: Linear, input: inter, out_features: 1}
)";

ModelConfig parse(const std::string& sharding) {
  return parse_model_config(ConfigNode::load_string(std::string(kModel) + sharding + "output: logit\n", "m.yaml"));
}

std::string error(const std::string& sharding) {
  return error_of<ConfigError>([&] { parse(sharding); });
}

TEST(ShardingConfigTest, TablesAreReadWithoutBuilding) {
  // t_c has 40G rows x 4 (640 GB): reading the shapes allocates nothing.
  const auto config = parse("");
  const auto tables = embedding_tables_of(config);
  ASSERT_EQ(tables.size(), 4u);
  EXPECT_EQ(tables[0].module, "user_arch");
  EXPECT_EQ(tables[0].name, "t_a");
  EXPECT_THAT(tables[0].feature_names, ElementsAre("a"));
  EXPECT_EQ(tables[2].module, "item_arch");
  EXPECT_EQ(tables[2].num_embeddings, 30);
  EXPECT_EQ(tables[3].name, "t_c");
  EXPECT_EQ(tables[3].num_embeddings, 40000000000LL);
  EXPECT_THAT(tables[3].feature_names, ElementsAre("t_c"));  // the default: the table's name
  EXPECT_EQ(tables[3].bytes_per_element, 4);
  EXPECT_TRUE(config.sharding.tables.empty());
}

TEST(ShardingConfigTest, AutoAndPerTableRequests) {
  EXPECT_TRUE(parse("sharding: auto\n").sharding.tables.empty());
  const auto config = parse(R"(sharding:
  t_a: row_wise
  user_arch.t_shared: {type: table_wise, ranks: [1]}
  item_arch.t_shared: {type: column_wise, ranks: [3, 0]}
  t_c: auto
)");
  const auto& req = config.sharding.tables;
  ASSERT_EQ(req.size(), 4u);
  EXPECT_EQ(req.at("t_a").type, dist::ShardingType::row_wise);
  EXPECT_TRUE(req.at("t_a").ranks.empty());
  EXPECT_EQ(req.at("user_arch.t_shared").type, dist::ShardingType::table_wise);
  EXPECT_THAT(req.at("user_arch.t_shared").ranks, ElementsAre(1));
  EXPECT_THAT(req.at("item_arch.t_shared").ranks, ElementsAre(3, 0));
  EXPECT_FALSE(req.at("t_c").type.has_value());
}

TEST(ShardingConfigTest, ErrorsAreAtTheirKeys) {
  // Line 20 is `sharding:`, its entries from line 21, values at column 9 for `  t_a: `.
  EXPECT_THAT(error("sharding: manual\n"),
              HasSubstr("m.yaml:20:11: sharding: expected 'auto' or a map of table: sharding type, found 'manual'"));
  EXPECT_THAT(error("sharding: [t_a]\n"), HasSubstr("m.yaml:20:11: sharding: expected 'auto' or a map"));

  auto err = error("sharding:\n  t_x: row_wise\n");
  EXPECT_THAT(err, HasSubstr("m.yaml:21:8: sharding.t_x: no embedding table 't_x'; the tables are "
                             "[user_arch.t_a, user_arch.t_shared, item_arch.t_shared, item_arch.t_c]"));

  err = error("sharding:\n  t_a: row_wise\n  t_shared: table_wise\n");
  EXPECT_THAT(err,
              HasSubstr("m.yaml:22:13: sharding.t_shared: table 't_shared' is in nodes 'user_arch' and 'item_arch'"));

  EXPECT_THAT(error("sharding:\n  t_a: rowwise\n"),
              HasSubstr("m.yaml:21:8: sharding.t_a: expected one of [data_parallel, table_wise, row_wise, column_wise, "
                        "auto], found 'rowwise'"));
  EXPECT_THAT(error("sharding:\n  t_a: {type: grid, ranks: [0]}\n"),
              HasSubstr("m.yaml:21:15: sharding.t_a.type: expected one of [data_parallel, table_wise, row_wise"));
  EXPECT_THAT(error("sharding:\n  t_a: {ranks: [0]}\n"),
              HasSubstr("m.yaml:21:8: sharding.t_a: missing required field 'type'"));
  EXPECT_THAT(error("sharding:\n  t_a: {type: table_wise, rank: 0}\n"),
              HasSubstr("m.yaml:21:27: sharding.t_a.rank: unknown key 'rank'; valid keys are [type, ranks]"));

  // Ranks: negative, repeated, the wrong number, on a type that uses every rank.
  EXPECT_THAT(error("sharding:\n  t_a: {type: column_wise, ranks: [0, -2]}\n"),
              HasSubstr("m.yaml:21:39: sharding.t_a.ranks[1]: a rank must be >= 0, got -2"));
  EXPECT_THAT(error("sharding:\n  t_a: {type: column_wise, ranks: [1, 2, 1]}\n"),
              HasSubstr("m.yaml:21:42: sharding.t_a.ranks[2]: rank 1 is listed twice"));
  EXPECT_THAT(error("sharding:\n  t_a: {type: table_wise, ranks: [0, 1]}\n"),
              HasSubstr("m.yaml:21:34: sharding.t_a.ranks: table_wise takes exactly one rank, got 2"));
  EXPECT_THAT(error("sharding:\n  t_a: {type: column_wise, ranks: [0, 1, 2, 3, 4]}\n"),
              HasSubstr("sharding.t_a.ranks: column_wise over 5 ranks needs as many columns, but table 't_a' has "
                        "embedding_dim 4"));
  EXPECT_THAT(error("sharding:\n  t_a: {type: row_wise, ranks: [0]}\n"),
              HasSubstr("m.yaml:21:32: sharding.t_a.ranks: ranks apply to table_wise and column_wise only"));
  EXPECT_THAT(error("sharding:\n  t_a: {type: table_wise, ranks: x}\n"),
              HasSubstr("sharding.t_a.ranks: expected a list of integers, found 'x'"));

  // The same table twice, bare and qualified.
  EXPECT_THAT(error("sharding:\n  t_a: row_wise\n  user_arch.t_a: table_wise\n"),
              HasSubstr("m.yaml:22:18: sharding.user_arch.t_a: table 'user_arch.t_a' is already given as 't_a'"));
}

TEST(ShardingConfigTest, UnknownTopLevelKeysStillListSharding) {
  auto err = error("shard: auto\n");
  EXPECT_THAT(err, HasSubstr("unknown key 'shard'"));
  EXPECT_THAT(err, HasSubstr("sharding"));
}

}  // namespace sharding_config_test
}  // namespace recmod::config
