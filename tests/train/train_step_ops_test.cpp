// The number of ATen operations one training step of the README's demo
// model issues (configs/demo.yaml, batch 256, on the CPU), by region, as
// the trainer runs it (train_step with the trainer's finiteness checks).
// On a GPU each operation is a kernel launch or more: a small model's step
// is bound by their count (issues 17, 19). Op counts are deterministic for
// a given libtorch; the bound below is a regression guard, not a target.
// RECMOD_PRINT_STEP_OPS=1 prints the breakdown by region and operation.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <iostream>

#include "recmod/profile/profiler.h"
#include "recmod/train/health.h"
#include "recmod/train/open_model.h"
#include "recmod/train/train_step.h"
#include "recmod/train/training_setup.h"
#include "support/op_counter.h"

namespace recmod::train {
namespace train_step_ops_test {

struct DemoStep {
  OpenedModel opened = open_model(std::string(RECMOD_SOURCE_DIR) + "/configs/demo.yaml");
  TrainingSetup training{opened.model, opened.config.training, torch::kCPU};
  profile::SyntheticBatches batches{opened.model, opened.config.training.batch_size, 0};
  std::vector<std::pair<std::string, torch::Tensor>> parameters;
  int64_t step = 0;

  DemoStep() {
    opened.model->train();
    parameters = opened.model->dense_parameters();
    for (auto& p : opened.model->embedding_parameters()) parameters.push_back(p);
  }

  /// One step as Trainer::fit runs it; `counter` (when given) is told each region.
  torch::Tensor run(testing::OpCounter* counter) {
    const data::Batch batch = batches.next();
    auto region = [&](const char* name) {
      if (counter) counter->region(name);
    };
    StepHooks hooks;
    torch::Tensor step_loss;
    const bool fused = !training.fused().empty() || !training.fused_sequences().empty();
    hooks.after_forward = [&](const torch::Tensor&) { region("loss"); };
    hooks.before_backward = [&](const torch::Tensor& loss) {
      region("health");
      if (fused) {
        check_loss_finite(loss, step + 1);
      } else {
        step_loss = loss;
      }
      region("backward");
    };
    hooks.after_backward = [&] {
      region("health");
      if (step_loss.defined()) {
        check_step_finite(step_loss, parameters, step + 1);
      } else {
        check_gradients_finite(parameters, step + 1);
      }
      region("optimizer");
    };
    hooks.global_batch_size = batch.size();
    region("zero_grad+forward");
    torch::Tensor loss = train_step(opened.model, training, batch, hooks);
    region("");
    ++step;
    return loss;
  }
};

TEST(TrainStepOps, DemoStepIssuesAtMostN) {
  DemoStep demo;
  for (int i = 0; i < 2; ++i) demo.run(nullptr);  // optimizer state and caches exist from here on
  testing::OpCounter counter;
  const torch::Tensor loss = demo.run(&counter);
  ASSERT_TRUE(std::isfinite(loss.item<double>()));
  if (std::getenv("RECMOD_PRINT_STEP_OPS")) std::cout << "total " << counter.total() << "\n" << counter.report();
  // Every region issued something: the counter sees the whole step.
  for (const char* region : {"zero_grad+forward", "loss", "backward", "health"})
    EXPECT_GT(counter.in_region(region), 0) << region << "\n" << counter.report();
  // A regression guard: 135 measured with libtorch 1.13 on the CPU (801 before issue 19's cuts; BENCHMARKS.md,
  // "ops per training step"), plus a margin for another libtorch's decompositions. A per-key or per-parameter
  // loop of tensor operations (26 keys, 10 dense parameters here) goes over it.
  constexpr int64_t kMaxOps = 160;
  EXPECT_LE(counter.total(), kMaxOps) << counter.report();
  // The same step again issues the same operations: the count is deterministic.
  testing::OpCounter again;
  demo.run(&again);
  EXPECT_EQ(again.total(), counter.total()) << again.report();
}

}  // namespace train_step_ops_test
}  // namespace recmod::train
