#include "recmod/dist/planner.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <set>

#include "recmod/common/errors.h"
#include "support/test_util.h"

namespace recmod::dist {
namespace planner_test {

using recmod::test::error_of;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TableShape table(const std::string& name, int64_t rows, int64_t dim, const std::string& module = "sparse_arch",
                 int64_t features = 1) {
  TableShape t;
  t.module = module;
  t.name = name;
  t.num_embeddings = rows;
  t.embedding_dim = dim;
  for (int64_t f = 0; f < features; ++f) t.feature_names.push_back(features == 1 ? name : name + std::to_string(f));
  return t;
}

PlannerOptions on(int64_t world) {
  PlannerOptions o;
  o.world_size = world;
  return o;
}

// The Criteo Kaggle (Display Advertising Challenge) cardinalities, as
// TorchRec's DLRM example uses them, 16 dims each.
std::vector<TableShape> kaggle_tables() {
  const std::vector<int64_t> rows = {1460,  583,  10131227, 2202608, 305, 24,     12517,   633,   3,
                                     93145, 5683, 8351593,  3194,    27,  14992,  5461306, 10,    5652,
                                     2173,  4,    7046547,  18,      15,  286181, 105,     142572};
  std::vector<TableShape> out;
  for (size_t i = 0; i < rows.size(); ++i) out.push_back(table("t_C" + std::to_string(i + 1), rows[i], 16));
  return out;
}

int64_t total_bytes(const std::vector<TableShape>& tables, const PlannerOptions& o) {
  int64_t sum = 0;
  for (const auto& t : tables)
    sum += t.num_embeddings * t.embedding_dim * t.bytes_per_element +
           optimizer_state_bytes(o.optimizer, t.num_embeddings, t.embedding_dim);
  return sum;
}

// Every shard inside its table, shards of a table on distinct ranks, and
// together covering every (row, column) exactly once (data_parallel: once per rank).
void expect_well_formed(const ShardingPlan& plan, const std::vector<TableShape>& tables) {
  ASSERT_EQ(plan.tables.size(), tables.size());
  for (size_t i = 0; i < tables.size(); ++i) {
    const auto& t = tables[i];
    const auto& tp = plan.tables[i];
    EXPECT_EQ(tp.module, t.module);
    EXPECT_EQ(tp.table, t.name);
    std::set<int64_t> ranks;
    int64_t covered = 0;
    for (const auto& s : tp.shards) {
      EXPECT_TRUE(ranks.insert(s.rank).second) << t.name << ": rank " << s.rank << " twice";
      EXPECT_GE(s.rank, 0);
      EXPECT_LT(s.rank, plan.world_size);
      EXPECT_GE(s.row_offset, 0);
      EXPECT_LE(s.row_offset + s.rows, t.num_embeddings);
      EXPECT_LE(s.col_offset + s.cols, t.embedding_dim);
      covered += s.rows * s.cols;
    }
    const int64_t copies = tp.type == ShardingType::data_parallel ? plan.world_size : 1;
    EXPECT_EQ(covered, copies * t.num_embeddings * t.embedding_dim) << t.name;
  }
}

TEST(ShardingPlanTest, TypeNamesRoundTrip) {
  EXPECT_THAT(sharding_type_names(), ElementsAre("data_parallel", "table_wise", "row_wise", "column_wise"));
  for (const auto& name : sharding_type_names()) {
    auto type = sharding_type_from(name);
    ASSERT_TRUE(type.has_value()) << name;
    EXPECT_EQ(name_of(*type), name);
  }
  EXPECT_FALSE(sharding_type_from("rowwise").has_value());
  EXPECT_FALSE(sharding_type_from("").has_value());
  ShardingPlan plan;
  plan.tables.push_back(TablePlan{"a", "t", ShardingType::row_wise, {}});
  plan.tables.push_back(TablePlan{"b", "t", ShardingType::table_wise, {}});
  ASSERT_NE(plan.find("b", "t"), nullptr);
  EXPECT_EQ(plan.find("b", "t")->type, ShardingType::table_wise);
  EXPECT_EQ(plan.find("c", "t"), nullptr);
}

TEST(PlannerTest, RowWiseShardsFollowTheCeilSplitAndSumToN) {
  for (int64_t n : {1, 3, 7, 10, 100, 1000003}) {
    for (int64_t world : {1, 2, 3, 8, 64}) {
      const auto shards = row_wise_shards(n, 4, world);
      ASSERT_EQ(static_cast<int64_t>(shards.size()), world);
      const int64_t block = (n + world - 1) / world;
      int64_t sum = 0, next = 0;
      for (int64_t r = 0; r < world; ++r) {
        const auto& s = shards[static_cast<size_t>(r)];
        EXPECT_EQ(s.rank, r);
        EXPECT_EQ(s.row_offset, std::min(next, n));
        EXPECT_LE(s.rows, block);
        // Full blocks first, then at most one partial block, then empty ones.
        if (next + block <= n) {
          EXPECT_EQ(s.rows, block) << n << " rows over " << world;
        }
        EXPECT_EQ(s.cols, 4);
        EXPECT_EQ(s.col_offset, 0);
        sum += s.rows;
        next += s.rows;
      }
      EXPECT_EQ(sum, n) << n << " rows over " << world;
    }
  }
  // 3 rows over 8 ranks: ranks 3..7 hold nothing.
  const auto small = row_wise_shards(3, 2, 8);
  EXPECT_EQ(small[2].rows, 1);
  EXPECT_EQ(small[3].rows, 0);
  EXPECT_EQ(small[7].rows, 0);
  // 10 over 4: 3, 3, 3, 1.
  const auto ten = row_wise_shards(10, 2, 4);
  EXPECT_EQ(ten[3].rows, 1);
  EXPECT_EQ(ten[3].row_offset, 9);
}

TEST(PlannerTest, ColumnBlocksCoverTheDimInRankListOrder) {
  for (int64_t dim : {1, 5, 16, 128, 129}) {
    for (size_t k = 1; k <= 7 && static_cast<int64_t>(k) <= dim; ++k) {
      std::vector<int64_t> ranks;
      for (size_t i = 0; i < k; ++i) ranks.push_back(static_cast<int64_t>(6 - i));  // descending on purpose
      const auto shards = column_wise_shards(11, dim, ranks);
      ASSERT_EQ(shards.size(), k);
      int64_t next = 0, widest = 0, narrowest = dim;
      for (size_t i = 0; i < k; ++i) {
        EXPECT_EQ(shards[i].rank, ranks[i]);
        EXPECT_EQ(shards[i].col_offset, next);
        EXPECT_EQ(shards[i].rows, 11);
        next += shards[i].cols;
        widest = std::max(widest, shards[i].cols);
        narrowest = std::min(narrowest, shards[i].cols);
      }
      EXPECT_EQ(next, dim);
      EXPECT_LE(widest - narrowest, 1) << dim << " over " << k;
    }
  }
}

TEST(PlannerTest, RequestedPlacementsAreHonoured) {
  std::vector<TableShape> tables = {table("a", 1000, 8), table("b", 10, 8), table("c", 50, 6), table("d", 7, 4),
                                    table("e", 3000, 8)};
  ShardingRequest request;
  request.tables["a"] = TableRequest{ShardingType::table_wise, {2}};
  request.tables["sparse_arch.b"] = TableRequest{ShardingType::row_wise, {}};
  request.tables["c"] = TableRequest{ShardingType::column_wise, {3, 1, 0}};
  request.tables["d"] = TableRequest{ShardingType::data_parallel, {}};
  const auto plan = plan_sharding(tables, request, on(4));
  expect_well_formed(plan, tables);
  EXPECT_EQ(plan.world_size, 4);

  const auto* a = plan.find("sparse_arch", "a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->type, ShardingType::table_wise);
  ASSERT_EQ(a->shards.size(), 1u);
  EXPECT_EQ(a->shards[0].rank, 2);

  const auto* b = plan.find("sparse_arch", "b");
  EXPECT_EQ(b->type, ShardingType::row_wise);
  ASSERT_EQ(b->shards.size(), 4u);
  EXPECT_EQ(b->shards[0].rows, 3);
  EXPECT_EQ(b->shards[3].rows, 1);

  const auto* c = plan.find("sparse_arch", "c");
  EXPECT_EQ(c->type, ShardingType::column_wise);
  ASSERT_EQ(c->shards.size(), 3u);
  EXPECT_EQ(c->shards[0].rank, 3);
  EXPECT_EQ(c->shards[1].rank, 1);
  EXPECT_EQ(c->shards[2].rank, 0);
  EXPECT_EQ(c->shards[0].cols + c->shards[1].cols + c->shards[2].cols, 6);

  const auto* d = plan.find("sparse_arch", "d");
  EXPECT_EQ(d->type, ShardingType::data_parallel);
  EXPECT_EQ(d->shards.size(), 4u);

  EXPECT_NE(plan.find("sparse_arch", "e"), nullptr);
}

TEST(PlannerTest, TypeWithoutRanksLetsThePlannerChooseThem) {
  std::vector<TableShape> tables = {table("big", 100000, 8), table("cw", 100, 5), table("tw", 100000, 8)};
  ShardingRequest request;
  request.tables["big"] = TableRequest{ShardingType::table_wise, {0}};
  request.tables["cw"] = TableRequest{ShardingType::column_wise, {}};
  request.tables["tw"] = TableRequest{ShardingType::table_wise, {}};
  const auto plan = plan_sharding(tables, request, on(3));
  expect_well_formed(plan, tables);
  const auto* cw = plan.find("sparse_arch", "cw");
  EXPECT_EQ(cw->type, ShardingType::column_wise);
  EXPECT_EQ(cw->shards.size(), 3u);  // min(world, dim)
  const auto* tw = plan.find("sparse_arch", "tw");
  EXPECT_EQ(tw->type, ShardingType::table_wise);
  EXPECT_NE(tw->shards.at(0).rank, 0) << "rank 0 already holds 'big'";
}

TEST(PlannerTest, UnknownAndAmbiguousNamesAreRejected) {
  std::vector<TableShape> tables = {table("t", 10, 4, "user_arch"), table("t", 20, 4, "item_arch"),
                                    table("u", 30, 4, "item_arch")};
  ShardingRequest unknown;
  unknown.tables["v"] = TableRequest{ShardingType::row_wise, {}};
  auto err = error_of<InputError>([&] { plan_sharding(tables, unknown, on(2)); });
  EXPECT_THAT(err, HasSubstr("no table 'v'"));
  EXPECT_THAT(err, HasSubstr("[user_arch.t, item_arch.t, item_arch.u]"));

  ShardingRequest ambiguous;
  ambiguous.tables["t"] = TableRequest{ShardingType::row_wise, {}};
  err = error_of<InputError>([&] { plan_sharding(tables, ambiguous, on(2)); });
  EXPECT_THAT(err, HasSubstr("'t' is ambiguous"));
  EXPECT_THAT(err, HasSubstr("'user_arch'"));
  EXPECT_THAT(err, HasSubstr("'item_arch'"));

  ShardingRequest qualified;  // the module path resolves it
  qualified.tables["item_arch.t"] = TableRequest{ShardingType::table_wise, {1}};
  qualified.tables["u"] = TableRequest{ShardingType::table_wise, {0}};  // unique: a bare name is fine
  const auto plan = plan_sharding(tables, qualified, on(2));
  EXPECT_EQ(plan.find("item_arch", "t")->shards.at(0).rank, 1);
  EXPECT_EQ(plan.find("item_arch", "u")->shards.at(0).rank, 0);

  ShardingRequest twice;
  twice.tables["u"] = TableRequest{ShardingType::row_wise, {}};
  twice.tables["item_arch.u"] = TableRequest{ShardingType::row_wise, {}};
  EXPECT_THAT(error_of<InputError>([&] { plan_sharding(tables, twice, on(2)); }), HasSubstr("requested twice"));

  ShardingRequest wrong_module;
  wrong_module.tables["user_arch.u"] = TableRequest{ShardingType::row_wise, {}};
  EXPECT_THAT(error_of<InputError>([&] { plan_sharding(tables, wrong_module, on(2)); }),
              HasSubstr("no table 'user_arch.u'"));
}

TEST(PlannerTest, BadRanksAreRejected) {
  std::vector<TableShape> tables = {table("t", 10, 3)};
  auto err_for = [&](TableRequest req, int64_t world) {
    ShardingRequest r;
    r.tables["t"] = req;
    return error_of<InputError>([&] { plan_sharding(tables, r, on(world)); });
  };
  EXPECT_THAT(err_for({ShardingType::table_wise, {4}}, 4), HasSubstr("rank 4 is outside [0, 4)"));
  EXPECT_THAT(err_for({ShardingType::table_wise, {-1}}, 4), HasSubstr("rank -1 is outside [0, 4)"));
  EXPECT_THAT(err_for({ShardingType::table_wise, {0, 1}}, 4),
              HasSubstr("table_wise takes exactly one rank, got [0, 1]"));
  EXPECT_THAT(err_for({ShardingType::column_wise, {1, 2, 1}}, 4), HasSubstr("rank 1 repeats"));
  EXPECT_THAT(err_for({ShardingType::column_wise, {0, 1, 2, 3}}, 4), HasSubstr("embedding_dim is 3"));
  EXPECT_THAT(err_for({ShardingType::row_wise, {0}}, 4), HasSubstr("row_wise uses every rank"));
  EXPECT_THAT(err_for({ShardingType::data_parallel, {1}}, 4), HasSubstr("data_parallel uses every rank"));
  EXPECT_THAT(err_for({std::nullopt, {1}}, 4), HasSubstr("need a type"));
  EXPECT_THAT(error_of<InputError>([&] { plan_sharding(tables, {}, on(0)); }), HasSubstr("world size must be >= 1"));
}

TEST(PlannerTest, WorldSizeOnePutsEverythingTableWiseOnRankZero) {
  const auto tables = kaggle_tables();
  const auto plan = plan_sharding(tables, {}, on(1));
  expect_well_formed(plan, tables);
  for (const auto& tp : plan.tables) {
    EXPECT_EQ(tp.type, ShardingType::table_wise) << tp.table;
    EXPECT_EQ(tp.shards.at(0).rank, 0);
  }
  const auto stats = plan_stats(plan, tables, on(1));
  ASSERT_EQ(stats.ranks.size(), 1u);
  EXPECT_EQ(stats.ranks[0].total_bytes(), total_bytes(tables, on(1)));
  EXPECT_EQ(stats.ranks[0].comm_bytes_per_step, 0) << "one process talks to no one";
  EXPECT_DOUBLE_EQ(stats.balance, 1.0);
}

// The auto plan's guarantee (planner.h): a table_wise placement never takes a
// rank above (1 + slack) x the mean, and row_wise shards add at most one row
// per table over the mean share. So the balance is at most 1 + slack plus the
// ceil-split's excess, which is tiny next to these tables.
TEST(PlannerTest, AutoPlanOfKaggleTablesIsBalanced) {
  const auto tables = kaggle_tables();
  for (int64_t world : {2, 3, 8}) {
    const auto o = on(world);
    const auto plan = plan_sharding(tables, {}, o);
    expect_well_formed(plan, tables);
    const auto stats = plan_stats(plan, tables, o);
    EXPECT_LE(stats.balance, 1 + o.balance_slack + 0.001) << world << " ranks";
    EXPECT_GE(stats.balance, 1.0);
    int64_t sum = 0;
    for (const auto& r : stats.ranks) sum += r.total_bytes();
    EXPECT_EQ(sum, total_bytes(tables, o)) << "every byte on exactly one rank";
    // Column-wise and data-parallel only when asked for.
    for (const auto& tp : plan.tables) {
      EXPECT_NE(tp.type, ShardingType::column_wise);
      EXPECT_NE(tp.type, ShardingType::data_parallel);
    }
    // A table larger than the fair share cannot be whole on one rank.
    const double share = static_cast<double>(total_bytes(tables, o)) / static_cast<double>(world);
    for (size_t i = 0; i < tables.size(); ++i) {
      const double bytes = static_cast<double>(total_bytes({tables[i]}, o));
      if (bytes > share * (1 + o.balance_slack)) {
        EXPECT_EQ(plan.tables[i].type, ShardingType::row_wise) << tables[i].name;
      }
    }
  }
  // 26 equal tables over 8 ranks: 3 whole tables each would leave two over;
  // the plan stays within the bound anyway.
  std::vector<TableShape> equal;
  for (int i = 0; i < 26; ++i) equal.push_back(table("e" + std::to_string(i), 100000, 16));
  const auto stats = plan_stats(plan_sharding(equal, {}, on(8)), equal, on(8));
  EXPECT_LE(stats.balance, 1.101);
}

TEST(PlannerTest, SmallTablesStayWholeAndSpreadLookups) {
  // 8 equal small tables on 4 ranks: whole tables, two per rank.
  std::vector<TableShape> tables;
  for (int i = 0; i < 8; ++i) tables.push_back(table("s" + std::to_string(i), 1000, 8));
  const auto plan = plan_sharding(tables, {}, on(4));
  std::vector<int> per_rank(4, 0);
  for (const auto& tp : plan.tables) {
    ASSERT_EQ(tp.type, ShardingType::table_wise);
    ++per_rank[static_cast<size_t>(tp.shards[0].rank)];
  }
  EXPECT_THAT(per_rank, ElementsAre(2, 2, 2, 2));
  const auto stats = plan_stats(plan, tables, on(4));
  for (const auto& r : stats.ranks) EXPECT_DOUBLE_EQ(r.lookups_per_step, stats.ranks[0].lookups_per_step);
}

TEST(PlannerTest, OptimizerStateFollowsTheOptimizer) {
  PlannerOptions o;
  o.optimizer.type("sgd");
  EXPECT_EQ(optimizer_state_bytes(o.optimizer, 100, 16), 0);
  o.optimizer.type("adagrad");
  EXPECT_EQ(optimizer_state_bytes(o.optimizer, 100, 16), 100 * 16 * 4);
  o.optimizer.type("rowwise_adagrad");
  EXPECT_EQ(optimizer_state_bytes(o.optimizer, 100, 16), 100 * 4);
  o.optimizer.type("adam");
  EXPECT_THAT(error_of<InputError>([&] { optimizer_state_bytes(o.optimizer, 1, 1); }),
              HasSubstr("unknown type 'adam'"));
}

TEST(PlannerTest, MemoryRefusalNamesRankAndNumbers) {
  std::vector<TableShape> tables = {table("big", 1 << 20, 64)};  // 256 MiB of weights, 4 MiB of row-wise state
  PlannerOptions o = on(2);
  o.memory_per_rank = 64.0 * (1 << 20);
  const auto err = error_of<InputError>([&] { plan_sharding(tables, {}, o); });
  EXPECT_THAT(err, HasSubstr("does not fit memory_per_rank"));
  EXPECT_THAT(err, HasSubstr("rank 0 needs 130.0 MiB (136314880 bytes"));  // half the rows, row_wise
  EXPECT_THAT(err, HasSubstr("but 64.0 MiB (67108864 bytes) is available"));
  EXPECT_THAT(err, HasSubstr("at least 5 ranks"));

  // Enough ranks: the same table fits, row_wise.
  o.world_size = 5;
  const auto plan = plan_sharding(tables, {}, o);
  EXPECT_EQ(plan.tables[0].type, ShardingType::row_wise);
  for (const auto& r : plan_stats(plan, tables, o).ranks)
    EXPECT_LE(static_cast<double>(r.total_bytes()), *o.memory_per_rank);

  // A table_wise request that does not fit is refused, not moved.
  ShardingRequest pinned;
  pinned.tables["big"] = TableRequest{ShardingType::table_wise, {3}};
  EXPECT_THAT(error_of<InputError>([&] { plan_sharding(tables, pinned, o); }), HasSubstr("rank 3 needs"));
}

TEST(PlannerTest, MemoryLimitTurnsTablesRowWiseWhenTheyWouldNotFitWhole) {
  // Three tables of 40, 30 and 30 MiB (rowwise state is small) on 2 ranks of 60 MiB.
  // (64 x 4 bytes of weights + 4 of state per row).
  std::vector<TableShape> tables = {table("a", 40 << 12, 64), table("b", 30 << 12, 64), table("c", 30 << 12, 64)};
  PlannerOptions o = on(2);
  o.memory_per_rank = 60.0 * (1 << 20);
  const auto plan = plan_sharding(tables, {}, o);
  expect_well_formed(plan, tables);
  for (const auto& r : plan_stats(plan, tables, o).ranks)
    EXPECT_LE(static_cast<double>(r.total_bytes()), *o.memory_per_rank);
  // Whole tables cannot fit (40 + 30 + 30 on two ranks of 60), so one is split.
  EXPECT_TRUE(std::any_of(plan.tables.begin(), plan.tables.end(),
                          [](const TablePlan& tp) { return tp.type == ShardingType::row_wise; }));
}

TEST(PlannerTest, EstimatesFollowTheDocumentedFormulas) {
  // One table_wise table of 2 features on rank 1 of 3; b = 4, p = 2, D = 8.
  std::vector<TableShape> tables = {table("t", 100, 8, "m", 2)};
  PlannerOptions o = on(3);
  o.batch_size_per_rank = 4;
  o.pooling_factor = 2;
  ShardingRequest r;
  r.tables["t"] = TableRequest{ShardingType::table_wise, {1}};
  const auto stats = plan_stats(plan_sharding(tables, r, o), tables, o);
  const double b = 4, f = 2, p = 2, c = 8, world = 3;
  const double x = b * f * (8 * p + 4 + 8 * c);
  EXPECT_DOUBLE_EQ(stats.ranks[1].lookups_per_step, world * b * f * p);
  EXPECT_DOUBLE_EQ(stats.ranks[0].lookups_per_step, 0);
  EXPECT_DOUBLE_EQ(stats.ranks[1].comm_bytes_per_step, (world - 1) * x);
  EXPECT_DOUBLE_EQ(stats.ranks[0].comm_bytes_per_step, x);
  EXPECT_DOUBLE_EQ(stats.ranks[2].comm_bytes_per_step, x);
  EXPECT_EQ(stats.ranks[1].parameter_bytes, 100 * 8 * 4);
  EXPECT_EQ(stats.ranks[1].optimizer_bytes, 100 * 4);  // rowwise_adagrad: one float per row

  // Row-wise: lookups in proportion to the rows, summing to the global count.
  r.tables["t"] = TableRequest{ShardingType::row_wise, {}};
  const auto rw = plan_stats(plan_sharding(tables, r, o), tables, o);
  double lookups = 0;
  for (const auto& s : rw.ranks) lookups += s.lookups_per_step;
  EXPECT_DOUBLE_EQ(lookups, world * b * f * p);
  EXPECT_DOUBLE_EQ(rw.ranks[0].lookups_per_step, world * b * f * p * 34 / 100);  // ceil(100 / 3) rows

  // Data-parallel: only the local batch, a full copy everywhere, the all-gather.
  r.tables["t"] = TableRequest{ShardingType::data_parallel, {}};
  const auto dp = plan_stats(plan_sharding(tables, r, o), tables, o);
  for (const auto& s : dp.ranks) {
    EXPECT_DOUBLE_EQ(s.lookups_per_step, b * f * p);
    EXPECT_EQ(s.parameter_bytes, 100 * 8 * 4);
    EXPECT_DOUBLE_EQ(s.comm_bytes_per_step, 2 * (world - 1) * b * f * (8 * p + 4 + 4 * c));
  }
}

TEST(PlannerTest, FormatPlanShowsTablesRanksAndBalance) {
  std::vector<TableShape> tables = {table("t_big", 4000000, 16), table("t_small", 100, 16)};
  ShardingRequest r;
  r.tables["t_small"] = TableRequest{ShardingType::table_wise, {2}};
  PlannerOptions o = on(4);
  const auto plan = plan_sharding(tables, r, o);
  const auto text = format_plan(plan, tables, o);
  EXPECT_THAT(text, HasSubstr("2 tables on 4 ranks"));
  EXPECT_THAT(text, HasSubstr("sparse_arch.t_big"));
  EXPECT_THAT(text, HasSubstr("row_wise"));
  EXPECT_THAT(text, HasSubstr("0-3"));
  EXPECT_THAT(text, HasSubstr("4000000 x 16"));
  EXPECT_THAT(text, HasSubstr("244.1 MiB"));  // 4M x 16 x 4 bytes
  EXPECT_THAT(text, HasSubstr("lookups/step"));
  EXPECT_THAT(text, HasSubstr("balance (max/mean of per-rank bytes): "));
  for (int rank = 0; rank < 4; ++rank) EXPECT_THAT(text, HasSubstr("\n" + std::to_string(rank) + " "));

  const auto json = plan_to_json(plan, tables, o);
  EXPECT_EQ(json["world_size"], 4);
  EXPECT_EQ(json["tables"].size(), 2u);
  EXPECT_EQ(json["tables"][1]["type"], "table_wise");
  EXPECT_EQ(json["tables"][1]["shards"][0]["rank"], 2);
  EXPECT_EQ(json["ranks"].size(), 4u);
  EXPECT_GE(json["balance"].get<double>(), 1.0);
}

TEST(PlannerTest, RankListsAndByteSizes) {
  EXPECT_EQ(format_ranks({3, 0, 1, 2, 5, 7, 8}), "0-3,5,7-8");
  EXPECT_EQ(format_ranks({4}), "4");
  EXPECT_EQ(parse_byte_size("64G"), 64.0 * (1LL << 30));
  EXPECT_EQ(parse_byte_size("512M"), 512.0 * (1 << 20));
  EXPECT_EQ(parse_byte_size("1.5t"), 1.5 * (1LL << 40));
  EXPECT_EQ(parse_byte_size("2GiB"), 2.0 * (1LL << 30));
  EXPECT_EQ(parse_byte_size("100K"), 102400.0);
  EXPECT_EQ(parse_byte_size("1073741824"), 1073741824.0);
  EXPECT_FALSE(parse_byte_size("12Q"));
  EXPECT_FALSE(parse_byte_size("G"));
  EXPECT_FALSE(parse_byte_size("-1G"));
  EXPECT_FALSE(parse_byte_size("inf"));
  EXPECT_FALSE(parse_byte_size(""));
}

}  // namespace planner_test
}  // namespace recmod::dist
