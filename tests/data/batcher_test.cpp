#include "recmod/data/batcher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <iterator>
#include <numeric>

#include "recmod/common/errors.h"
#include "recmod/data/criteo_tsv.h"
#include "recmod/data/open_reader.h"

namespace recmod::data {
namespace batcher_test {

using ::testing::HasSubstr;

/// Rows 0..n-1: label = row % 2, dense = [row], feature "id" = [row] and
/// feature "bag" = row % 3 copies of row. Optionally throws after `fail_after`
/// rows, and counts how many rows it handed out.
class CountingReader : public ExampleReader {
 public:
  CountingReader(int64_t n, int64_t fail_after = -1, std::atomic<int64_t>* served = nullptr)
      : n_(n), fail_after_(fail_after), served_(served), schema_{1, {"id", "bag"}, 1, false} {}
  const DataSchema& schema() const override { return schema_; }
  std::optional<ExampleColumns> read(int64_t max_rows) override {
    // Like a file reader: the rows asked for, or fewer only at the end.
    if (fail_after_ >= 0 && row_ + max_rows > fail_after_) throw InputError("rows.tsv:" + std::to_string(row_ + 1) + ": expected 40 tab-separated fields, found 12");
    if (row_ >= n_) return std::nullopt;
    ExampleColumns out(schema_);
    const int64_t end = std::min(n_, row_ + max_rows);
    for (; row_ < end; ++row_) {
      out.labels.push_back(static_cast<float>(row_ % 2));
      out.dense.push_back(static_cast<float>(row_));
      out.sparse[0].ids.push_back(row_);
      out.close_bag(0);
      for (int64_t i = 0; i < row_ % 3; ++i) out.sparse[1].ids.push_back(row_);
      out.close_bag(1);
      out.finish_row();
    }
    if (served_) *served_ += out.num_rows();
    return out;
  }
  ReadReport report() const override {
    ReadReport r;
    r.rows_read = row_;
    return r;
  }

 private:
  int64_t n_, fail_after_, row_ = 0;
  std::atomic<int64_t>* served_;
  DataSchema schema_;
};

/// Consumes every batch; returns the row numbers in arrival order and checks
/// that each batch's features belong to its rows.
std::vector<int64_t> drain(Batcher& batcher, std::vector<int64_t>* sizes = nullptr) {
  std::vector<int64_t> rows;
  while (auto batch = batcher.next()) {
    if (sizes) sizes->push_back(batch->size());
    const auto dense = batch->dense.view(-1);
    const auto ids = batch->sparse["id"].values();
    const auto bag = batch->sparse["bag"];
    EXPECT_TRUE(torch::equal(dense.to(torch::kLong), ids));
    EXPECT_TRUE(torch::equal(bag.lengths(), ids.remainder(3)));
    EXPECT_TRUE(torch::equal(batch->labels.view(-1), ids.remainder(2).to(torch::kFloat)));
    for (int64_t i = 0; i < ids.numel(); ++i) rows.push_back(ids[i].item<int64_t>());
  }
  return rows;
}

std::vector<int64_t> range(int64_t n) {
  std::vector<int64_t> v(n);
  std::iota(v.begin(), v.end(), 0);
  return v;
}

TEST(Batcher, InOrderEveryRowOnceWithShortLastBatch) {
  BatcherOptions o;
  o.batch_size = 32;
  o.read_rows = 7;
  Batcher batcher(std::make_unique<CountingReader>(1000), o);
  std::vector<int64_t> sizes;
  EXPECT_EQ(drain(batcher, &sizes), range(1000));
  EXPECT_EQ(sizes.size(), 32u);  // 31 full batches and one of 8
  EXPECT_EQ(sizes.back(), 8);
  EXPECT_FALSE(batcher.next().has_value());
  EXPECT_EQ(batcher.report().rows_read, 1000);
}

TEST(Batcher, DropLastDropsOnlyTheShortTail) {
  BatcherOptions o;
  o.batch_size = 32;
  o.drop_last = true;
  Batcher batcher(std::make_unique<CountingReader>(1000), o);
  std::vector<int64_t> sizes;
  EXPECT_EQ(drain(batcher, &sizes), range(992));
  EXPECT_EQ(sizes, std::vector<int64_t>(31, 32));
}

TEST(Batcher, ShuffleYieldsEveryRowOnceInASeededOrder) {
  BatcherOptions o;
  o.batch_size = 50;
  o.shuffle_buffer = 300;
  o.read_rows = 64;
  o.seed = 11;
  Batcher a(std::make_unique<CountingReader>(1000), o), b(std::make_unique<CountingReader>(1000), o);
  o.seed = 12;
  Batcher c(std::make_unique<CountingReader>(1000), o);
  const auto order_a = drain(a), order_b = drain(b), order_c = drain(c);
  EXPECT_NE(order_a, range(1000));
  EXPECT_EQ(order_a, order_b);
  EXPECT_NE(order_a, order_c);
  auto sorted = order_a;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, range(1000));
}

TEST(Batcher, ReaderErrorIsRethrownAfterEarlierBatches) {
  for (const int64_t shuffle_buffer : {0, 20}) {
    BatcherOptions o;
    o.batch_size = 10;
    o.read_rows = 10;
    o.shuffle_buffer = shuffle_buffer;
    Batcher batcher(std::make_unique<CountingReader>(1000, 25), o);
    int64_t rows = 0;
    try {
      while (auto batch = batcher.next()) rows += batch->size();
      ADD_FAILURE() << "no error with shuffle_buffer " << shuffle_buffer;
    } catch (const InputError& e) {
      EXPECT_STREQ(e.what(), "rows.tsv:21: expected 40 tab-separated fields, found 12");
    }
    EXPECT_EQ(rows, 20);  // the full batches before the error arrive first
    EXPECT_FALSE(batcher.next().has_value());  // thrown once, then the end
  }
}

TEST(Batcher, RealCriteoBadRecordReachesConsumer) {
  // The real sample with a broken line appended.
  std::string text;
  std::ifstream in(RECMOD_SOURCE_DIR "/../shared/data/criteo_kaggle_head1000/train.txt");
  text.assign(std::istreambuf_iterator<char>(in), {});
  text += "\n1\t2\n";
  BatcherOptions o;
  o.batch_size = 128;
  Batcher batcher(std::make_unique<CriteoTsvReader>("train.txt", text), o);
  try {
    while (batcher.next()) {
    }
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("train.txt:1001: expected 40 tab-separated fields"));
  }
}

TEST(Batcher, AbandonedEarlyStopsWithoutReadingEverything) {
  std::atomic<int64_t> served{0};
  {
    BatcherOptions o;
    o.batch_size = 10;
    o.read_rows = 10;
    o.prefetch = 2;
    Batcher batcher(std::make_unique<CountingReader>(1000000, -1, &served), o);
    ASSERT_TRUE(batcher.next().has_value());
    // Destroyed here with the queue full and the thread blocked on it.
  }
  // Bounded read-ahead: only a few batches' worth of the million rows were read.
  EXPECT_LT(served.load(), 100);
}

TEST(Batcher, StopThenNextReturnsEnd) {
  BatcherOptions o;
  o.batch_size = 4;
  Batcher batcher(std::make_unique<CountingReader>(100), o);
  ASSERT_TRUE(batcher.next().has_value());
  batcher.stop();
  EXPECT_FALSE(batcher.next().has_value());
}

TEST(Batcher, RejectsBadOptions) {
  BatcherOptions o;
  o.batch_size = 0;
  try {
    Batcher batcher(std::make_unique<CountingReader>(10), o);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_STREQ(e.what(), "Batcher: batch_size must be > 0, got 0");
  }
}

TEST(Batcher, OpenBatchesReshufflesPerEpochOverTheRealSample) {
  BatcherOptions o;
  o.batch_size = 100;
  o.shuffle_buffer = 1000;
  o.seed = 3;
  const std::string path = RECMOD_SOURCE_DIR "/../shared/data/criteo_kaggle_head1000/train.txt";
  auto first_ids = [&](int64_t epoch) {
    auto source = open_batches(path, o, epoch);
    std::vector<int64_t> c1;
    double positives = 0;
    int64_t rows = 0;
    while (auto batch = source->next()) {
      rows += batch->size();
      positives += batch->labels.sum().item<double>();
      const auto ids = batch->sparse["C1"].values();
      for (int64_t i = 0; i < ids.numel(); ++i) c1.push_back(ids[i].item<int64_t>());
    }
    EXPECT_EQ(rows, 1000);
    EXPECT_EQ(positives, 205);
    return c1;
  };
  const auto epoch0 = first_ids(0), again0 = first_ids(0), epoch1 = first_ids(1);
  EXPECT_EQ(epoch0, again0);
  EXPECT_NE(epoch0, epoch1);
  auto a = epoch0, b = epoch1;
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  EXPECT_EQ(a, b);  // the same examples, in another order
}

}  // namespace batcher_test
}  // namespace recmod::data
