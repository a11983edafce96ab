// `recmod profile --device cuda` reports the CUDA kernels per step and the
// GPU's busy and idle time per step (libtorch's Kineto profiler, CUDA
// activity). Skips where no CUDA device is present (Debian's libtorch is
// CPU-only); scripts/gpu-check runs it on a GPU machine.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <regex>

#include "cli/run_recmod.h"

namespace recmod {
namespace profile_cuda_test {

#define REQUIRE_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"

/// The figures of the "cuda: ..." line, checked against the JSON report.
void expect_kernel_launches_and_idle(const std::string& args, const std::string& dir, int64_t expected_steps) {
  using recmod::testing::run_recmod;
  const std::string json = dir + "/report.json";
  auto r = run_recmod("profile " + std::string(RECMOD_SOURCE_DIR) + "/configs/demo.yaml --synthetic --device cuda " +
                      args + " --trace '' --json " + json);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::regex line(R"(cuda: ([0-9.]+) kernel launches/step, GPU busy ([0-9.]+) ms/step, idle ([0-9.]+) ms/step \(([0-9.]+) %\) of ([0-9.]+) ms/step)");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.output, m, line)) << "no kernel launches/idle line in:\n" << r.output;
  const double launches = std::stod(m[1].str()), busy = std::stod(m[2].str()), idle = std::stod(m[3].str()), idle_pct = std::stod(m[4].str()),
               wall = std::stod(m[5].str());
  EXPECT_GT(launches, 0);
  EXPECT_GT(busy, 0);
  EXPECT_GE(idle, 0);
  EXPECT_GE(idle_pct, 0);
  EXPECT_LE(idle_pct, 100);
  EXPECT_GT(wall, 0);
  std::cout << "[ figures  ] " << m[0].str() << "\n";

  nlohmann::json report;
  std::ifstream(json) >> report;
  ASSERT_TRUE(report.contains("cuda")) << report.dump(2);
  const auto& cuda = report["cuda"];
  ASSERT_EQ(cuda["available"], true) << cuda.dump(2);
  EXPECT_EQ(cuda["steps"].get<int64_t>(), expected_steps);
  EXPECT_GT(cuda["kernels_per_step"].get<double>(), 0);
  const double j_busy = cuda["busy_ms_per_step"].get<double>(), j_idle = cuda["idle_ms_per_step"].get<double>(),
               j_wall = cuda["wall_ms_per_step"].get<double>(), j_pct = cuda["idle_percent"].get<double>();
  EXPECT_GE(j_pct, 0);
  EXPECT_LE(j_pct, 100);
  // idle = wall - busy (0 when the profiler's busy time comes out over the wall time).
  EXPECT_NEAR(j_idle, std::max(0.0, j_wall - j_busy), 1e-9);
  EXPECT_NEAR(j_pct, 100.0 * j_idle / j_wall, 1e-6);
}

TEST(CudaProfile, ReportsKernelLaunchesAndIdlePerStep) {
  REQUIRE_CUDA();
  const std::string dir = recmod::testing::fresh_dir("cuda_profile_train");
  expect_kernel_launches_and_idle("--batch-size 512 --steps 3 --warmup 2", dir, 3);
}

TEST(CudaProfile, InferenceProfileReportsKernelLaunchesAndIdlePerStep) {
  REQUIRE_CUDA();
  const std::string dir = recmod::testing::fresh_dir("cuda_profile_inference");
  expect_kernel_launches_and_idle("--inference --batch-size 512 --steps 2 --warmup 1", dir, 2);
}

}  // namespace profile_cuda_test
}  // namespace recmod
