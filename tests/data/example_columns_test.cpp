#include "recmod/data/example_columns.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "recmod/common/errors.h"

namespace recmod::data {
namespace example_columns_test {

using ::testing::ElementsAre;

torch::Tensor longs(std::vector<int64_t> v) { return torch::tensor(v, torch::kLong); }

/// Rows: 0 -> a [1, 2], b [5]; 1 -> a [], b [6, 7]; 2 -> a [3], b [].
ExampleColumns three_rows() {
  ExampleColumns c(DataSchema{1, {"a", "b"}, 1, false});
  const std::vector<std::vector<int64_t>> a{{1, 2}, {}, {3}}, b{{5}, {6, 7}, {}};
  for (int r = 0; r < 3; ++r) {
    c.labels.push_back(static_cast<float>(r % 2));
    c.dense.push_back(10.0f * r);
    for (auto id : a[r]) c.sparse[0].ids.push_back(id);
    c.close_bag(0);
    for (auto id : b[r]) c.sparse[1].ids.push_back(id);
    c.close_bag(1);
    c.finish_row();
  }
  return c;
}

TEST(ExampleColumns, ToBatchIsKeyMajor) {
  const auto batch = three_rows().to_batch();
  EXPECT_EQ(batch.size(), 3);
  EXPECT_TRUE(torch::equal(batch.dense, torch::tensor({0.0f, 10.0f, 20.0f}).view({3, 1})));
  EXPECT_TRUE(torch::equal(batch.labels, torch::tensor({0.0f, 1.0f, 0.0f}).view({3, 1})));
  EXPECT_THAT(batch.sparse.keys(), ElementsAre("a", "b"));
  EXPECT_TRUE(torch::equal(batch.sparse.lengths(), longs({2, 0, 1, 1, 2, 0})));
  EXPECT_TRUE(torch::equal(batch.sparse.values(), longs({1, 2, 3, 5, 6, 7})));
  EXPECT_FALSE(batch.sparse.has_weights());
}

TEST(ExampleColumns, SliceTakeAppend) {
  const auto c = three_rows();
  const auto tail = c.slice(1, 3);
  EXPECT_EQ(tail.num_rows(), 2);
  EXPECT_THAT(tail.sparse[1].offsets, ElementsAre(0, 2, 2));
  EXPECT_THAT(tail.sparse[1].ids, ElementsAre(6, 7));

  const auto shuffled = c.take({2, 0, 0});
  EXPECT_THAT(shuffled.dense, ElementsAre(20, 0, 0));
  EXPECT_THAT(shuffled.sparse[0].ids, ElementsAre(3, 1, 2, 1, 2));
  EXPECT_THAT(shuffled.sparse[0].offsets, ElementsAre(0, 1, 3, 5));

  auto joined = c.slice(0, 1);
  joined.append(tail);
  EXPECT_EQ(joined.num_rows(), 3);
  EXPECT_EQ(joined.sparse[0].offsets, c.sparse[0].offsets);
  EXPECT_EQ(joined.sparse[1].ids, c.sparse[1].ids);
}

TEST(ExampleColumns, TruncateDropsAHalfWrittenRow) {
  auto c = three_rows();
  c.labels.push_back(1);  // a fourth row, abandoned after feature a
  c.dense.push_back(30);
  c.sparse[0].ids.push_back(99);
  c.close_bag(0);
  c.truncate(3);
  EXPECT_EQ(c.num_rows(), 3);
  EXPECT_EQ(c.labels.size(), 3u);
  EXPECT_THAT(c.sparse[0].offsets, ElementsAre(0, 2, 2, 3));
  EXPECT_THAT(c.sparse[0].ids, ElementsAre(1, 2, 3));
}

TEST(ExampleColumns, FromBatchInvertsToBatch) {
  const auto c = three_rows();
  const auto back = ExampleColumns::from_batch(c.to_batch(), c.schema());
  EXPECT_EQ(back.num_rows(), 3);
  EXPECT_EQ(back.labels, c.labels);
  EXPECT_EQ(back.dense, c.dense);
  EXPECT_EQ(back.sparse[0].offsets, c.sparse[0].offsets);
  EXPECT_EQ(back.sparse[1].ids, c.sparse[1].ids);
}

TEST(ExampleColumns, AppendRejectsOtherSchema) {
  auto c = three_rows();
  EXPECT_THROW(c.append(ExampleColumns(DataSchema{1, {"x"}, 1, false})), InputError);
}

}  // namespace example_columns_test
}  // namespace recmod::data
