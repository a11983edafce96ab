#include "recmod/data/device_prefetcher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "recmod/common/errors.h"

namespace recmod::data {
namespace device_prefetcher_test {

using ::testing::HasSubstr;

// Batch i: i + 2 rows, one sparse key "a" with per-id weights, sample weights.
Batch make_batch(int64_t i) {
  const int64_t b = i + 2;
  torch::Tensor lengths = torch::arange(b, torch::kInt).remainder(3);
  const int64_t n = lengths.sum().item<int64_t>();
  return Batch{
      torch::full({b, 2}, static_cast<float>(i)),
      KeyedJaggedTensor::from_lengths({"a"}, torch::arange(n, torch::kLong) + 100 * i, lengths, torch::rand({n})),
      torch::full({b, 1}, static_cast<float>(i % 2)), torch::rand({b})};
}

// `count` batches; throws InputError instead of batch `throw_at`; counts the calls.
class ListSource : public BatchSource {
 public:
  explicit ListSource(int64_t count, int64_t throw_at = -1) : throw_at_(throw_at) {
    for (int64_t i = 0; i < count; ++i) batches_.push_back(make_batch(i));
  }
  const DataSchema& schema() const override { return schema_; }
  std::optional<Batch> next() override {
    const int64_t i = calls_++;
    if (i == throw_at_) throw InputError("data.tsv:12: expected 4 fields");
    if (i >= static_cast<int64_t>(batches_.size())) return std::nullopt;
    return batches_[static_cast<size_t>(i)];
  }
  std::vector<Batch> batches_;
  int64_t calls_ = 0;

 private:
  DataSchema schema_;
  int64_t throw_at_;
};

// On the CPU the prefetcher hands out the source's batches themselves: same
// order, the same tensors (no copy, nothing pinned), nothing read ahead.
TEST(DevicePrefetcher, CpuPassThroughHandsOutTheSourcesBatchesInOrder) {
  ListSource source(4);
  DevicePrefetcher prefetcher(source, torch::kCPU);
  EXPECT_FALSE(prefetcher.asynchronous());
  EXPECT_EQ(source.calls_, 0);  // nothing read before next()
  for (int64_t i = 0; i < 4; ++i) {
    SCOPED_TRACE(i);
    auto batch = prefetcher.next();
    ASSERT_TRUE(batch.has_value());
    EXPECT_EQ(source.calls_, i + 1);  // not one ahead
    const Batch& expected = source.batches_[static_cast<size_t>(i)];
    EXPECT_EQ(batch->source_size, i + 2);
    EXPECT_TRUE(batch->rank_sizes.empty());
    for (const Batch* b : {&batch->host, &batch->device}) {
      EXPECT_EQ(b->dense.data_ptr(), expected.dense.data_ptr());
      EXPECT_EQ(b->labels.data_ptr(), expected.labels.data_ptr());
      EXPECT_EQ(b->weights.data_ptr(), expected.weights.data_ptr());
      EXPECT_EQ(b->sparse.values().data_ptr(), expected.sparse.values().data_ptr());
      EXPECT_EQ(b->sparse.weights().data_ptr(), expected.sparse.weights().data_ptr());
      EXPECT_EQ(b->sparse.lengths().data_ptr(), expected.sparse.lengths().data_ptr());
      EXPECT_EQ(b->sparse.offsets().data_ptr(), expected.sparse.offsets().data_ptr());
    }
  }
  EXPECT_FALSE(prefetcher.next().has_value());
  EXPECT_FALSE(prefetcher.next().has_value());
  EXPECT_EQ(source.calls_, 5);  // the end is not asked for twice
}

TEST(DevicePrefetcher, AnErrorOfTheSourceComesAfterTheBatchesBeforeIt) {
  ListSource source(5, 2);
  DevicePrefetcher prefetcher(source, torch::kCPU);
  ASSERT_TRUE(prefetcher.next().has_value());
  ASSERT_TRUE(prefetcher.next().has_value());
  try {
    prefetcher.next();
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("data.tsv:12: expected 4 fields"));
  }
}

TEST(DevicePrefetcher, PrepareRunsOnEachBatchAndSourceSizeIsTheSourcesRows) {
  ListSource source(3);
  DevicePrefetcher prefetcher(source, torch::kCPU, [](const Batch& b) {
    Batch first = b;
    first.dense = b.dense.slice(0, 0, 1);
    first.labels = b.labels.slice(0, 0, 1);
    first.weights = b.weights.slice(0, 0, 1);
    return first;
  });
  for (int64_t i = 0; i < 3; ++i) {
    auto batch = prefetcher.next();
    ASSERT_TRUE(batch.has_value());
    EXPECT_EQ(batch->source_size, i + 2);
    EXPECT_EQ(batch->host.size(), 1);
    EXPECT_EQ(batch->device.size(), 1);
    EXPECT_EQ(batch->device.dense[0][0].item<float>(), static_cast<float>(i));
  }
  EXPECT_FALSE(prefetcher.next().has_value());
}

// map_tensors reaches every tensor (the KJT's weights and inverse indices
// included) and keeps the KJT's host-side metadata; tensors() lists them.
TEST(DevicePrefetcher, BatchMapTensorsCoversEveryTensorAndKeepsTheMetadata) {
  Batch b = make_batch(3);
  b.sparse = KeyedJaggedTensor::from_lengths_variable_stride({"a", "b"}, torch::arange(6, torch::kLong),
                                                             torch::tensor({1, 2, 0, 3}, torch::kInt), torch::rand({6}),
                                                             {{1, 1}, {2}})
                 .with_inverse_indices({{"a", "b"}, torch::tensor({{0, 1}, {1, 0}}, torch::kLong)});
  EXPECT_EQ(b.tensors().size(), 8u);  // dense, labels, values, lengths, offsets, weights, id weights, inverse indices
  int64_t calls = 0;
  const Batch doubled = b.map_tensors([&](const torch::Tensor& t) {
    ++calls;
    return t * 2;
  });
  EXPECT_EQ(calls, 8);
  EXPECT_TRUE(torch::equal(doubled.sparse.weights(), b.sparse.weights() * 2));
  EXPECT_TRUE(torch::equal(doubled.sparse.inverse_indices().indices, b.sparse.inverse_indices().indices * 2));
  EXPECT_TRUE(torch::equal(doubled.weights, b.weights * 2));
  EXPECT_EQ(doubled.sparse.keys(), b.sparse.keys());
  EXPECT_EQ(doubled.sparse.length_per_key(), b.sparse.length_per_key());
  EXPECT_EQ(doubled.sparse.offset_per_key(), b.sparse.offset_per_key());
  EXPECT_EQ(doubled.sparse.stride_per_key_per_rank(), b.sparse.stride_per_key_per_rank());
  Batch unweighted = make_batch(1);
  unweighted.weights = torch::Tensor();
  EXPECT_FALSE(unweighted.map_tensors([](const torch::Tensor& t) { return t.clone(); }).weights.defined());
  EXPECT_EQ(unweighted.tensors().size(), 6u);
}

}  // namespace device_prefetcher_test
}  // namespace recmod::data
