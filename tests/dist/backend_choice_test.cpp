// The rules of --dist-backend with --device (dist::choose_backend), the
// one-rank process group of connect() (group_of_one). (The CLI's message for
// a backend the run cannot use: tests/cli/input_cli_test.cpp.)
#include "recmod/dist/backend_choice.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

#include "recmod/common/errors.h"
#include "recmod/dist/communicator.h"

namespace recmod::dist {
namespace backend_choice_test {

using ::testing::HasSubstr;
using ::testing::Not;

BackendRequest cuda_ranks(int64_t local_world_size, int64_t gpus, bool nccl = true) {
  BackendRequest r;
  r.cuda = true;
  r.distributed = local_world_size > 1;
  r.local_world_size = local_world_size;
  r.visible_gpus = gpus;
  r.nccl_built = nccl;
  return r;
}

std::string usage_error_of(const BackendRequest& r) {
  try {
    choose_backend(r);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(BackendChoice, DefaultIsNcclOnCudaWhereBuiltElseGloo) {
  BackendRequest cpu;
  cpu.nccl_built = true;
  EXPECT_EQ(choose_backend(cpu).backend, "gloo");
  EXPECT_EQ(choose_backend(cpu).device_index, -1);
  EXPECT_EQ(choose_backend(cuda_ranks(1, 1)).backend, "nccl");
  EXPECT_EQ(choose_backend(cuda_ranks(2, 2)).backend, "nccl");
  EXPECT_EQ(choose_backend(cuda_ranks(2, 2, /*nccl=*/false)).backend, "gloo");
  // More local ranks than GPUs: NCCL cannot run, the default is gloo.
  EXPECT_EQ(choose_backend(cuda_ranks(2, 1)).backend, "gloo");
  BackendRequest one_gpu = cuda_ranks(2, 4);
  one_gpu.device_index = 1;  // --device cuda:1 for both ranks
  EXPECT_EQ(choose_backend(one_gpu).backend, "gloo");
}

TEST(BackendChoice, LocalRanksSpreadOverTheGpusUnlessOneIsNamed) {
  BackendRequest r = cuda_ranks(4, 2);
  r.requested = "gloo";
  for (int64_t rank = 0; rank < 4; ++rank) {
    r.local_rank = rank;
    EXPECT_EQ(choose_backend(r).device_index, rank % 2);
  }
  r.requested = "nccl";
  r.local_world_size = 2;
  r.local_rank = 1;
  EXPECT_EQ(choose_backend(r).device_index, 1);
  r.requested = "gloo";
  r.device_index = 1;
  r.local_rank = 0;
  EXPECT_EQ(choose_backend(r).device_index, 1);
  // One process keeps the device it names (or GPU 0).
  BackendRequest one = cuda_ranks(1, 2);
  EXPECT_EQ(choose_backend(one).device_index, 0);
  one.device_index = 1;
  EXPECT_EQ(choose_backend(one).device_index, 1);
}

TEST(BackendChoice, ImpossibleRequestsAreUsageErrorsSayingWhatToChange) {
  BackendRequest cpu;
  cpu.requested = "nccl";
  cpu.nccl_built = true;
  EXPECT_THAT(usage_error_of(cpu), HasSubstr("needs a CUDA device (--device cuda)"));
  BackendRequest unbuilt = cuda_ranks(1, 1, /*nccl=*/false);
  unbuilt.requested = "nccl";
  EXPECT_THAT(usage_error_of(unbuilt), HasSubstr("this build of recmod has no NCCL"));
  BackendRequest shared = cuda_ranks(2, 1);
  shared.requested = "nccl";
  EXPECT_THAT(usage_error_of(shared), HasSubstr("2 local ranks but 1 visible GPU(s); NCCL needs one GPU per rank"));
  shared.visible_gpus = 2;
  shared.device_index = 0;
  EXPECT_THAT(usage_error_of(shared), HasSubstr("cannot all run on cuda:0"));
  BackendRequest unknown;
  unknown.requested = "mpi";
  EXPECT_THAT(usage_error_of(unknown), HasSubstr("unknown backend; valid: gloo, nccl"));
  // Gloo lets ranks share a GPU.
  BackendRequest gloo = cuda_ranks(3, 1);
  gloo.requested = "gloo";
  EXPECT_THAT(usage_error_of(gloo), Not(HasSubstr("GPU")));
}

// connect() with group_of_one gives a real Gloo group of one rank (over an
// in-memory store): every collective runs through c10d and gives the
// identity's results, as the one-rank NCCL group does on a GPU
// (tests/cuda/distributed_cuda_test.cpp).
TEST(BackendChoice, GroupOfOneRunsTheBackendsCollectives) {
  LaunchEnv env;  // rank 0 of 1
  CommunicatorOptions options;
  options.backend = "gloo";
  options.group_of_one = true;
  options.timeout = std::chrono::seconds(20);
  auto comm = connect(env, options);
  EXPECT_EQ(comm->world_size(), 1);
  std::vector<torch::Tensor> tensors{torch::arange(6, torch::kFloat).view({2, 3}).t()};  // not contiguous
  const torch::Tensor before = tensors[0].clone();
  comm->all_reduce_sum(tensors);
  EXPECT_TRUE(tensors[0].equal(before));
  const torch::Tensor rows = torch::arange(8, torch::kLong).view({4, 2});
  EXPECT_TRUE(comm->all_to_all(rows, {4}, {4}).equal(rows));
  EXPECT_EQ(comm->all_gather(42), std::vector<int64_t>{42});
  torch::Tensor b = torch::ones({3});
  comm->broadcast(b, 0);
  EXPECT_TRUE(b.equal(torch::ones({3})));
  comm->barrier();
  EXPECT_EQ(comm->traffic().collectives, 5);
  // The identity of single_process() counts nothing: this was a real group.
  EXPECT_EQ(single_process()->traffic().collectives, 0);
}

}  // namespace backend_choice_test
}  // namespace recmod::dist
