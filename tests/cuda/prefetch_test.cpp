// The input pipeline on a GPU: DevicePrefetcher's pinned, side-stream
// copies arrive intact and in order, and a training run through it (the
// Trainer) ends where the same steps on direct .to(cuda) copies end. Each
// test skips where no CUDA device is present.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "recmod/common/errors.h"
#include "recmod/common/state_dict.h"
#include "recmod/data/device_prefetcher.h"
#include "recmod/train/train_step.h"
#include "recmod/train/trainer.h"
#include "recmod/train/training_setup.h"
#include "support/test_util.h"

namespace recmod {
namespace prefetch_test {

using ::testing::HasSubstr;

#define REQUIRE_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"

const torch::Device kCuda(torch::kCUDA);

// Batch i: b rows, keys "a" and "b" with per-id weights, sample weights;
// `ids` ids per row on average (large batches make long copies).
data::Batch make_batch(int64_t i, int64_t b, int64_t ids = 3) {
  torch::manual_seed(1234 + i);
  torch::Tensor lengths = torch::randint(0, 2 * ids, {2 * b}, torch::kInt);
  const int64_t n = lengths.sum().item<int64_t>();
  return data::Batch{
      torch::randn({b, 3}),
      KeyedJaggedTensor::from_lengths({"a", "b"}, torch::randint(0, 10, {n}, torch::kLong), lengths, torch::rand({n})),
      (torch::rand({b, 1}) > 0.5).to(torch::kFloat), torch::rand({b}) + 0.5};
}

class ListSource : public data::BatchSource {
 public:
  ListSource(std::vector<data::Batch> batches, int64_t throw_at = -1)
      : batches_(std::move(batches)), throw_at_(throw_at) {
    schema_.num_dense = 3;
    schema_.sparse_features = {"a", "b"};
    schema_.weighted = true;
    schema_.sample_weights = true;
  }
  const data::DataSchema& schema() const override { return schema_; }
  std::optional<data::Batch> next() override {
    const int64_t i = served_++;
    if (i == throw_at_) throw InputError("data.tsv:7: bad record");
    if (i >= static_cast<int64_t>(batches_.size())) return std::nullopt;
    return batches_[static_cast<size_t>(i)];
  }

 private:
  data::DataSchema schema_;
  std::vector<data::Batch> batches_;
  int64_t served_ = 0;
  int64_t throw_at_;
};

void expect_same_on_device(const data::Batch& got, const data::Batch& host, int64_t i) {
  SCOPED_TRACE(i);
  const data::Batch direct = host.to(kCuda);  // what the trainer copied before
  ASSERT_EQ(got.tensors().size(), direct.tensors().size());
  const auto g = got.tensors(), d = direct.tensors();
  for (size_t k = 0; k < g.size(); ++k) {
    EXPECT_TRUE(g[k].is_cuda()) << k;
    EXPECT_EQ(g[k].scalar_type(), d[k].scalar_type()) << k;
    EXPECT_TRUE(torch::equal(g[k], d[k])) << k;
  }
  EXPECT_EQ(got.sparse.keys(), host.sparse.keys());
  EXPECT_EQ(got.sparse.length_per_key(), host.sparse.length_per_key());
  EXPECT_EQ(got.sparse.offset_per_key(), host.sparse.offset_per_key());
}

TEST(CudaPrefetch, BatchesArriveIntactAndInOrder) {
  REQUIRE_CUDA();
  std::vector<data::Batch> batches;
  for (int64_t i = 0; i < 6; ++i) batches.push_back(make_batch(i, 16 + 8 * i));
  ListSource source(batches);
  data::DevicePrefetcher prefetcher(source, kCuda);
  ASSERT_TRUE(prefetcher.asynchronous());
  for (int64_t i = 0; i < 6; ++i) {
    auto batch = prefetcher.next();
    ASSERT_TRUE(batch.has_value()) << i;
    EXPECT_EQ(batch->source_size, batches[static_cast<size_t>(i)].size());
    EXPECT_TRUE(batch->host.dense.is_pinned()) << i;
    EXPECT_TRUE(batch->host.sparse.values().is_pinned()) << i;
    EXPECT_TRUE(torch::equal(batch->host.sparse.weights(), batches[static_cast<size_t>(i)].sparse.weights())) << i;
    expect_same_on_device(batch->device, batches[static_cast<size_t>(i)], i);
  }
  EXPECT_FALSE(prefetcher.next().has_value());
  EXPECT_FALSE(prefetcher.next().has_value());
}

// The consumer's stream uses each batch at once, without the host waiting
// (sums of large id tensors queued behind a slow matmul), while the next
// batch's copy runs; the sums read at the end must be the host's. A missing
// wait on the copy, or memory reused under a running kernel, shows here.
TEST(CudaPrefetch, TheConsumersStreamWaitsForEachCopy) {
  REQUIRE_CUDA();
  std::vector<data::Batch> batches;
  for (int64_t i = 0; i < 8; ++i) batches.push_back(make_batch(i, 4096, 64));
  ListSource source(batches);
  data::DevicePrefetcher prefetcher(source, kCuda);
  const torch::Tensor busy = torch::randn({4096, 4096}, torch::TensorOptions().device(kCuda));
  std::vector<torch::Tensor> sums;
  torch::Tensor sink = torch::zeros({}, torch::TensorOptions().device(kCuda));
  while (auto batch = prefetcher.next()) {
    sink = sink + busy.matmul(busy).sum() * 0;  // keeps the stream busy ahead of the use
    sums.push_back(torch::stack({batch->device.sparse.values().to(torch::kDouble).sum(),
                                 batch->device.sparse.weights().to(torch::kDouble).sum(),
                                 batch->device.dense.to(torch::kDouble).sum()}));
  }
  ASSERT_EQ(sums.size(), batches.size());
  for (size_t i = 0; i < sums.size(); ++i) {
    const torch::Tensor expected =
        torch::stack({batches[i].sparse.values().to(torch::kDouble).sum(),
                      batches[i].sparse.weights().to(torch::kDouble).sum(), batches[i].dense.to(torch::kDouble).sum()});
    EXPECT_TRUE(torch::allclose(sums[i].cpu(), expected, 1e-9, 1e-6))
        << i << ": " << sums[i].cpu() << " vs " << expected;
  }
  EXPECT_EQ(sink.item<double>(), 0.0);
}

TEST(CudaPrefetch, AnErrorOfTheSourceComesAfterTheBatchesBeforeIt) {
  REQUIRE_CUDA();
  ListSource source({make_batch(0, 8), make_batch(1, 8), make_batch(2, 8)}, 2);
  data::DevicePrefetcher prefetcher(source, kCuda);
  ASSERT_TRUE(prefetcher.next().has_value());
  auto second = prefetcher.next();  // the error is already known here, and held back
  ASSERT_TRUE(second.has_value());
  expect_same_on_device(second->device, make_batch(1, 8), 1);
  try {
    prefetcher.next();
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("data.tsv:7: bad record"));
  }
}

const char* kModel = R"(
features: {dense: 3, sparse: [a, b]}
nodes:
  sparse_arch:
    type: EmbeddingBagCollection
    input: features.sparse
    is_weighted: true
    tables:
      - {name: t_a, num_embeddings: 10, embedding_dim: 4, feature_names: [a]}
      - {name: t_b, num_embeddings: 10, embedding_dim: 4, feature_names: [b]}
  x0: {type: Concat, inputs: [features.dense, sparse_arch]}
  logit: {type: Linear, input: x0, out_features: 1}
output: logit
training:
  dense_optimizer: {type: adam, lr: 0.05}
  embedding_optimizer: {type: rowwise_adagrad, lr: 0.1}
  batch_size: 32
  epochs: 1
  seed: 7
  log_interval: 2
)";

config::ModelConfig model_config(bool fused) {
  std::string text = kModel;
  if (!fused) text += "  fused_embeddings: false\n";
  return config::parse_model_config(config::ConfigNode::load_string(text, "t.yaml"));
}

// The Trainer (prefetched batches, the health checks folded or not) against
// the plain loop on direct copies: the same losses and the same model.
void expect_trainer_matches_direct_copies(const torch::Device& device) {
  std::vector<data::Batch> batches;
  for (int64_t i = 0; i < 6; ++i) batches.push_back(make_batch(i, 32));
  for (bool fused : {true, false}) {
    SCOPED_TRACE(fused ? "fused" : "row-sparse");
    const config::ModelConfig cfg = model_config(fused);
    train::seed_everything(7);
    config::ModelGraph direct(cfg);
    direct->to(device);
    direct->train();
    train::TrainingSetup setup(direct, cfg.training, device);
    torch::Tensor loss;
    for (size_t i = 0; i < batches.size(); ++i) {
      setup.schedule_lr(static_cast<int64_t>(i));
      loss = train::train_step(direct, setup, batches[i].to(device));
    }

    train::seed_everything(7);
    config::ModelGraph through(cfg);
    const auto dir = std::filesystem::path(RECMOD_BINARY_DIR) / "prefetch_test_tmp" /
                     (device.str() + (fused ? "_fused" : "_sparse"));
    test::remove_tree(dir.string());
    train::TrainerOptions options;
    options.device = device;
    const train::TrainResult result = train::Trainer(through, cfg.training, train::RunDir(dir.string(), false), options)
                                          .fit([&](int64_t) { return std::make_unique<ListSource>(batches); }, {}, {});
    EXPECT_EQ(result.steps, 6);
    EXPECT_EQ(setup.fused().empty(), !fused);
    EXPECT_NEAR(result.last_loss, loss.item<double>(), 1e-5);
    const StateDict a = state_dict(*direct), b = state_dict(*through);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].first, b[i].first);
      EXPECT_TRUE(torch::allclose(a[i].second.cpu(), b[i].second.cpu(), 1e-5, 1e-6)) << a[i].first;
    }
  }
}

TEST(CudaPrefetch, TrainingThroughThePrefetcherMatchesDirectCopies) {
  REQUIRE_CUDA();
  expect_trainer_matches_direct_copies(kCuda);
}

// The same on the CPU (the pass-through; here the test itself is checked
// where there is no GPU).
TEST(PrefetchTraining, TrainerMatchesDirectBatchesOnTheCpu) {
  expect_trainer_matches_direct_copies(torch::kCPU);
}

}  // namespace prefetch_test
}  // namespace recmod
