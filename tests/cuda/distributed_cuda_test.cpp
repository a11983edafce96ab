// Distributed runs on a CUDA device: the NCCL backend (a one-rank group's
// collectives on CPU and GPU tensors, `recmod train --dist-backend nccl`
// against one process) and two Gloo ranks sharing one GPU against one
// process with the doubled batch, and two Gloo ranks evaluating and
// profiling on one GPU. Each test skips without CUDA (Debian's
// libtorch) and the NCCL ones without NCCL in the build; every command is
// bounded (timeout, --dist-timeout) and runs on 127.0.0.1.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cstdlib>
#include <string>

#include "cli/distributed_support.h"
#include "cli/run_recmod.h"
#include "recmod/dist/communicator.h"

namespace recmod::testing {
namespace distributed_cuda_test {

using ::testing::HasSubstr;

#define REQUIRE_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"
#define REQUIRE_NCCL() \
  if (!dist::nccl_built()) GTEST_SKIP() << "this build has no NCCL backend"

// Every command of these tests ends within 60 s, whatever happens. NCCL's
// bootstrap (even for one rank) listens on a network interface: the
// loopback, unless the machine says otherwise.
RunResult bounded(const std::string& args) {
  return run_command("NCCL_SOCKET_IFNAME=${NCCL_SOCKET_IFNAME:-lo} timeout -k 5 60 " + std::string(RECMOD_BIN) + " " +
                     args + " 2>&1");
}

// Four tables, one per sharding type (as tests/cli/distributed_cli_test.cpp).
std::string sharded_yaml(int64_t batch_size) {
  return R"(features:
  dense: {count: 3}
  sparse: [C1, C2, C3, C4]
  hash: mod
  range: 40
nodes:
  sparse_arch:
    type: EmbeddingBagCollection
    input: features.sparse
    tables:
      - {name: t_a, num_embeddings: 40, embedding_dim: 4, feature_names: [C1, C2]}
      - {name: t_b, num_embeddings: 40, embedding_dim: 4, feature_names: [C2], pooling: mean}
      - {name: t_c, num_embeddings: 40, embedding_dim: 4, feature_names: [C3]}
      - {name: t_d, num_embeddings: 40, embedding_dim: 4, feature_names: [C4]}
  dense_arch: {type: MLP, input: features.dense, layer_sizes: [4]}
  inter: {type: DotInteraction, inputs: [dense_arch, sparse_arch]}
  logit: {type: Linear, input: inter, out_features: 1}
output: logit
training:
  dense_optimizer: {type: adam, lr: 0.01}
  embedding_optimizer: {type: sgd, lr: 0.1}
  batch_size: )" + std::to_string(batch_size) + R"(
  epochs: 1
  seed: 5
sharding:
  t_a: table_wise
  t_b: row_wise
  t_c: column_wise
  t_d: data_parallel
)";
}

/// The one-rank NCCL group: every collective runs through ProcessGroupNCCL
/// on the GPU and gives the identity's results, for tensors on the GPU and
/// on the CPU (copied to the GPU and back).
TEST(CudaDistributed, NcclGroupOfOneRunsEveryCollective) {
  REQUIRE_CUDA();
  REQUIRE_NCCL();
  setenv("NCCL_SOCKET_IFNAME", "lo", /*overwrite=*/0);
  dist::LaunchEnv env;
  dist::CommunicatorOptions options;
  options.backend = "nccl";
  options.group_of_one = true;
  options.device_index = 0;
  options.timeout = std::chrono::seconds(60);
  auto comm = dist::connect(env, options);
  ASSERT_EQ(comm->world_size(), 1);
  for (const torch::Device device : {torch::Device(torch::kCUDA, 0), torch::Device(torch::kCPU)}) {
    std::vector<torch::Tensor> tensors{torch::arange(6, torch::kFloat).view({2, 3}).to(device)};
    comm->all_reduce_sum(tensors);
    EXPECT_EQ(tensors[0].device(), device);
    EXPECT_TRUE(tensors[0].cpu().equal(torch::arange(6, torch::kFloat).view({2, 3})));
    const torch::Tensor rows = torch::arange(8, torch::kLong).view({4, 2}).to(device);
    const torch::Tensor got = comm->all_to_all(rows, {4}, {4});
    EXPECT_EQ(got.device(), device);
    EXPECT_TRUE(got.cpu().equal(rows.cpu()));
    torch::Tensor b = torch::full({3}, 2.5, torch::TensorOptions().device(device));
    comm->broadcast(b, 0);
    EXPECT_TRUE(b.cpu().equal(torch::full({3}, 2.5)));
  }
  EXPECT_EQ(comm->all_gather(42), std::vector<int64_t>{42});
  comm->barrier();
  EXPECT_EQ(comm->traffic().collectives, 8);
}

/// recmod train --dist-backend nccl (a one-rank NCCL group) gives the
/// model of the plain one-process CUDA run.
TEST(CudaDistributed, NcclWorldSizeOneMatchesOneProcess) {
  REQUIRE_CUDA();
  REQUIRE_NCCL();
  const GeneratedData d = generate_data("cuda_nccl_one", 160, 4);
  const auto cfg = write_file(d.dir + "/m.yaml", sharded_yaml(16));
  auto r = bounded("train " + cfg + " --data " + d.train + " --out " + d.dir + "/plain --device cuda");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = bounded("train " + cfg + " --data " + d.train + " --out " + d.dir + "/nccl --device cuda --nproc 1 "
              "--dist-backend nccl --dist-timeout 30");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // The same arithmetic on the same device; 1e-5 allows for the GPU's
  // atomic (unordered) gradient sums.
  expect_same_tensors(d.dir + "/plain/model.pt", d.dir + "/nccl/model.pt", 1e-5);
}

/// Two Gloo ranks on one GPU (--nproc 2 --device cuda --dist-backend gloo)
/// against one process with the doubled batch, every sharding type.
TEST(CudaDistributed, GlooTwoRanksOnOneGpuMatchOneProcess) {
  REQUIRE_CUDA();
  const GeneratedData d = generate_data("cuda_gloo_two", 160, 4);
  const auto one = write_file(d.dir + "/one.yaml", sharded_yaml(16));
  const auto many = write_file(d.dir + "/many.yaml", sharded_yaml(8));
  auto r = bounded("train " + one + " --data " + d.train + " --out " + d.dir + "/one --device cuda");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = bounded("train " + many + " --data " + d.train + " --out " + d.dir + "/many --device cuda --nproc 2 "
              "--dist-backend gloo --dist-timeout 30");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("2 ranks"));
  // Sums in another order on another device: the CPU tests allow 1e-5 over
  // 2 epochs; 1 epoch here, GPU atomics: 1e-4.
  expect_same_tensors(d.dir + "/one/model.pt", d.dir + "/many/model.pt", 1e-4);
}

/// `recmod eval` and `recmod profile` with two Gloo ranks on one GPU: the
/// sharded model evaluates the one-process checkpoint to the one-process
/// CUDA metrics (every sharding type), and a sharded training step profiles.
TEST(CudaDistributed, GlooTwoRanksOnOneGpuEvaluateAndProfile) {
  REQUIRE_CUDA();
  const GeneratedData d = generate_data("cuda_gloo_eval", 160, 4);
  const auto one = write_file(d.dir + "/one.yaml", sharded_yaml(16));
  const auto many = write_file(d.dir + "/many.yaml", sharded_yaml(8));
  auto r = bounded("train " + one + " --data " + d.train + " --out " + d.dir + "/one --device cuda");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto metrics_of = [&](const std::string& cfg, const std::string& extra) {
    const auto e = bounded("eval " + cfg + " --checkpoint " + d.dir + "/one/model.pt --data " + d.eval +
                           " --json --device cuda" + extra);
    EXPECT_EQ(e.exit_code, 0) << e.output;
    return nlohmann::json::parse(e.output.substr(e.output.rfind('{')));
  };
  const auto single = metrics_of(one, "");
  const auto ranks = metrics_of(many, " --nproc 2 --dist-backend gloo --dist-timeout 30");
  EXPECT_EQ(ranks["count"], single["count"]);
  for (const std::string key : {"auc", "log_loss", "ne"})
    EXPECT_NEAR(ranks[key].get<double>(), single[key].get<double>(), 1e-5) << key;
  r = bounded("profile " + many + " --synthetic --steps 3 --warmup 1 --device cuda --nproc 2 --dist-backend gloo "
              "--dist-timeout 30");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("rank 0 of 2 ranks"));
}

/// NCCL cannot put two ranks on one GPU: one UsageError, no rank started.
TEST(CudaDistributed, NcclWithMoreRanksThanGpusIsRefused) {
  REQUIRE_CUDA();
  REQUIRE_NCCL();
  const int64_t gpus = static_cast<int64_t>(torch::cuda::device_count());
  const GeneratedData d = generate_data("cuda_nccl_refused", 20, 4);
  const auto cfg = write_file(d.dir + "/m.yaml", sharded_yaml(8));
  const auto r = bounded("train " + cfg + " --data " + d.train + " --out " + d.dir + "/run --device cuda --nproc " +
                         std::to_string(gpus + 1) + " --dist-backend nccl");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("NCCL needs one GPU per rank"));
  EXPECT_THAT(r.output, ::testing::Not(HasSubstr("[rank")));
}

}  // namespace distributed_cuda_test
}  // namespace recmod::testing
