// The CUDA activity figures of `recmod profile --device cuda`: the busy-time
// arithmetic (union of intervals), the per-step summary, the profiler
// starting and stopping cleanly where it records no CUDA activity, and a
// CPU profile reporting no CUDA figures at all.
#include "recmod/profile/gpu_activity.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <stdexcept>

#include "recmod/config/model_config.h"
#include "recmod/profile/profiler.h"

namespace recmod::profile {
namespace gpu_activity_test {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(GpuActivityUnion, DisjointIntervalsAddUp) {
  EXPECT_EQ(union_length_ns({{0, 10}, {20, 25}, {100, 101}}), 10 + 5 + 1);
}

TEST(GpuActivityUnion, OverlappingIntervalsCountOnce) {
  // [0, 10) and [5, 15) cover [0, 15); [15, 20) touches it: [0, 20).
  EXPECT_EQ(union_length_ns({{5, 15}, {0, 10}, {15, 20}}), 20);
}

TEST(GpuActivityUnion, NestedIntervalsAddNothing) {
  // [2, 4) and [3, 8) lie inside [0, 10); [30, 40) is apart.
  EXPECT_EQ(union_length_ns({{0, 10}, {2, 4}, {30, 40}, {3, 8}}), 10 + 10);
  // A long interval that starts first swallows later ones that end before it.
  EXPECT_EQ(union_length_ns({{0, 100}, {10, 20}, {50, 60}, {90, 120}}), 120);
}

TEST(GpuActivityUnion, EmptyAndDegenerateIntervalsCountZero) {
  EXPECT_EQ(union_length_ns({}), 0);
  EXPECT_EQ(union_length_ns({{5, 5}, {9, 3}}), 0);
  EXPECT_EQ(union_length_ns({{5, 5}, {0, 2}}), 2);
}

TEST(GpuActivitySummary, CountsPerStepAndIdleIsWallLessBusy) {
  // 2 steps of 10 ms: kernels busy 0-4 ms and 3-6 ms (6 ms), a memset at
  // 12-13 ms (1 ms), a copy of 2 ms overlapping a kernel (not busy).
  const int64_t ms = 1000000;
  const std::vector<GpuEvent> events{{GpuEventKind::Kernel, 0, 4 * ms},
                                     {GpuEventKind::Kernel, 3 * ms, 6 * ms},
                                     {GpuEventKind::Kernel, 14 * ms, 15 * ms},
                                     {GpuEventKind::Memset, 12 * ms, 13 * ms},
                                     {GpuEventKind::Memcpy, 5 * ms, 7 * ms}};
  const GpuActivity a = summarise_gpu_activity(events, 2, 20.0);
  ASSERT_TRUE(a.available);
  EXPECT_EQ(a.steps, 2);
  EXPECT_DOUBLE_EQ(a.kernels_per_step, 1.5);
  EXPECT_DOUBLE_EQ(a.memsets_per_step, 0.5);
  EXPECT_DOUBLE_EQ(a.memcpys_per_step, 0.5);
  EXPECT_DOUBLE_EQ(a.wall_ms_per_step, 10.0);
  EXPECT_DOUBLE_EQ(a.busy_ms_per_step, 4.0);  // (6 + 1 + 1) / 2
  EXPECT_DOUBLE_EQ(a.memcpy_ms_per_step, 1.0);
  EXPECT_DOUBLE_EQ(a.idle_ms_per_step, 6.0);
  EXPECT_DOUBLE_EQ(a.idle_percent, 60.0);
  EXPECT_THAT(a.to_line(), HasSubstr("cuda: 1.5 kernel launches/step, GPU busy 4.000 ms/step, idle 6.000 ms/step (60.0 %)"));
  const auto j = a.to_json();
  EXPECT_EQ(j["available"], true);
  EXPECT_DOUBLE_EQ(j["idle_percent"].get<double>(), 60.0);
  EXPECT_DOUBLE_EQ(j["kernels_per_step"].get<double>(), 1.5);
}

TEST(GpuActivitySummary, BusyOverWallGivesZeroIdleNotNegative) {
  const GpuActivity a = summarise_gpu_activity({{GpuEventKind::Kernel, 0, 12000000}}, 1, 10.0);
  ASSERT_TRUE(a.available);
  EXPECT_DOUBLE_EQ(a.idle_ms_per_step, 0.0);
  EXPECT_DOUBLE_EQ(a.idle_percent, 0.0);
}

TEST(GpuActivitySummary, NoEventsIsUnavailableWithAReason) {
  const GpuActivity a = summarise_gpu_activity({}, 3, 30.0);
  EXPECT_FALSE(a.available);
  EXPECT_THAT(a.unavailable_reason, HasSubstr("no CUDA activity"));
  EXPECT_THAT(a.to_line(), HasSubstr("cuda: kernel launches and GPU idle time unavailable: "));
  EXPECT_THAT(a.to_line(), Not(HasSubstr("kernel launches/step")));
  EXPECT_EQ(a.to_json()["available"], false);
}

// Work on the CPU only: the profiler starts and stops, records no CUDA
// activity, and says so; it is stopped afterwards (a second run starts).
TEST(GpuActivityProfiler, CpuWorkRecordsNoCudaActivityAndStopsCleanly) {
  for (int run = 0; run < 2; ++run) {
    int calls = 0;
    const GpuActivity a = measure_gpu_activity(3, [&]() -> std::optional<double> {
      ++calls;
      auto x = torch::randn({64, 64});
      (void)x.mm(x).sum().item<float>();
      return 1.0;
    });
    EXPECT_EQ(calls, 3);
    EXPECT_FALSE(a.available);
    EXPECT_THAT(a.unavailable_reason, HasSubstr("no CUDA activity"));
  }
}

TEST(GpuActivityProfiler, StopsWhenTheBatchesRunOut) {
  int calls = 0;
  const GpuActivity a = measure_gpu_activity(5, [&]() -> std::optional<double> {
    if (++calls > 2) return std::nullopt;
    return 1.0;
  });
  EXPECT_EQ(calls, 3);
  EXPECT_FALSE(a.available);
  EXPECT_EQ(a.steps, 2);
  const GpuActivity none = measure_gpu_activity(5, []() -> std::optional<double> { return std::nullopt; });
  EXPECT_FALSE(none.available);
  EXPECT_THAT(none.unavailable_reason, HasSubstr("no batch was left"));
}

TEST(GpuActivityProfiler, AStepErrorPropagatesAndTheProfilerIsStopped) {
  EXPECT_THROW(measure_gpu_activity(2, []() -> std::optional<double> { throw std::runtime_error("step failed"); }),
               std::runtime_error);
  // Still stopped: it starts again.
  const GpuActivity a = measure_gpu_activity(1, []() -> std::optional<double> { return 1.0; });
  EXPECT_THAT(a.unavailable_reason, Not(HasSubstr("did not start")));
}

const char* kTiny = R"(
features: {dense: 2, sparse: [a]}
nodes:
  sparse_arch:
    type: EmbeddingBagCollection
    input: features.sparse
    tables:
      - {name: t_a, num_embeddings: 10, embedding_dim: 2, feature_names: [a]}
  x0: {type: Concat, inputs: [features.dense, sparse_arch]}
  logit: {type: Linear, input: x0, out_features: 1}
output: logit
training: {batch_size: 4}
)";

TEST(GpuActivityProfile, CpuProfileReportsNoCudaFigures) {
  const auto spec = config::parse_model_config(config::ConfigNode::load_string(kTiny, "tiny.yaml"));
  config::ModelGraph model(spec);
  SyntheticBatches batches(model, 4, 1);
  const ProfileReport report = profile_model(
      model, spec.training, [&] { return std::optional<data::Batch>(batches.next()); }, 2, 0, torch::kCPU, "");
  EXPECT_EQ(report.steps, 2);
  EXPECT_FALSE(report.gpu.has_value());
  EXPECT_THAT(report.to_table(), Not(HasSubstr("cuda")));
  EXPECT_FALSE(report.to_json().contains("cuda"));
}

// Which kernels make up a step's count (the "cuda kernels/step:" line).
TEST(GpuActivityKernels, ShortNamesDropTheReturnTypeAndParameters) {
  EXPECT_EQ(short_kernel_name("void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>, "
                              "std::array<char*, 1ul> >(int, at::native::FillFunctor<float>, std::array<char*, 1ul>)"),
            "at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>, std::array<char*, 1ul> >");
  EXPECT_EQ(short_kernel_name("ampere_sgemm_128x64_nn"), "ampere_sgemm_128x64_nn");
  const std::string long_name = "k<" + std::string(200, 'a') + ">(int)";
  EXPECT_EQ(short_kernel_name(long_name), long_name.substr(0, 120) + "...");
}

TEST(GpuActivityKernels, MostRunKernelsCountPerStepMostFirst) {
  const std::vector<std::string> names{"void b(int)", "void a(int)", "void b(float)", "void c()", "void b(int)",
                                       "void a(int)"};
  const auto top = most_run_kernels(names, 2, 2);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[0].name, "b");
  EXPECT_DOUBLE_EQ(top[0].per_step, 1.5);
  EXPECT_EQ(top[1].name, "a");
  EXPECT_DOUBLE_EQ(top[1].per_step, 1.0);
  EXPECT_TRUE(most_run_kernels(names, 0, 2).empty());

  GpuActivity a = summarise_gpu_activity({{GpuEventKind::Kernel, 0, 1000000}}, 1, 2.0);
  a.top_kernels = top;
  EXPECT_THAT(a.to_line(), HasSubstr("\ncuda kernels/step: 1.5 b; 1.0 a\n"));
  EXPECT_EQ(a.to_json()["top_kernels"][0]["name"], "b");
}

}  // namespace gpu_activity_test
}  // namespace recmod::profile
