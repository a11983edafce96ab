// Learning-rate schedules (optim::scheduled_lr) against hand-computed values,
// their validation at the config's keys, and their effect on a training step.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/config/model_config.h"
#include "recmod/optim/optimizer_options.h"

namespace recmod::optim {
namespace lr_schedule_test {

using ::testing::HasSubstr;

OptimizerOptions with_schedule(double lr, LrScheduleOptions schedule) {
  OptimizerOptions o("sgd", lr);
  o.schedule(std::move(schedule));
  return o;
}

TEST(LrScheduleTest, ConstantIsTheConfiguredRate) {
  const OptimizerOptions o("adam", 0.01);
  for (int64_t k : {0, 1, 1000}) EXPECT_DOUBLE_EQ(scheduled_lr(o, k), 0.01);
}

TEST(LrScheduleTest, LinearWarmupThenConstant) {
  const auto o = with_schedule(0.8, LrScheduleOptions().warmup_steps(4));
  // k < 4: 0.8 * (k + 1) / 4
  EXPECT_DOUBLE_EQ(scheduled_lr(o, 0), 0.2);
  EXPECT_DOUBLE_EQ(scheduled_lr(o, 1), 0.4);
  EXPECT_DOUBLE_EQ(scheduled_lr(o, 2), 0.6);
  EXPECT_DOUBLE_EQ(scheduled_lr(o, 3), 0.8);
  EXPECT_DOUBLE_EQ(scheduled_lr(o, 4), 0.8);
  EXPECT_DOUBLE_EQ(scheduled_lr(o, 50), 0.8);
}

TEST(LrScheduleTest, StepDecaysByGammaEveryStepSize) {
  const auto o = with_schedule(1.0, LrScheduleOptions().type("step").step_size(3).gamma(0.5));
  const double expected[] = {1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125};
  for (int64_t k = 0; k < 10; ++k) EXPECT_DOUBLE_EQ(scheduled_lr(o, k), expected[k]) << "step " << k;
}

TEST(LrScheduleTest, WarmupThenPolynomialDecayAsTheDlrmReference) {
  // lr 2, warmup 2, decay_start 4 (constant at steps 2 and 3), decay over 4
  // steps with power 2 to end_lr 0: 2 * (1 - e/4)^2 for e = k - 4.
  const auto o = with_schedule(
      2.0, LrScheduleOptions().type("polynomial").warmup_steps(2).decay_start(4).decay_steps(4).power(2));
  const double expected[] = {1.0, 2.0, 2.0, 2.0, 2.0, 2.0 * 0.5625, 2.0 * 0.25, 2.0 * 0.0625, 0.0, 0.0};
  for (int64_t k = 0; k < 10; ++k) EXPECT_DOUBLE_EQ(scheduled_lr(o, k), expected[k]) << "step " << k;
}

TEST(LrScheduleTest, LinearDecayToEndLr) {
  // lr 1 -> end_lr 0.2 over 4 steps, starting right away (no warmup).
  const auto o = with_schedule(1.0, LrScheduleOptions().type("linear").decay_steps(4).end_lr(0.2));
  const double expected[] = {1.0, 0.8, 0.6, 0.4, 0.2, 0.2};
  for (int64_t k = 0; k < 6; ++k) EXPECT_NEAR(scheduled_lr(o, k), expected[k], 1e-15) << "step " << k;
}

TEST(LrScheduleTest, CosineAfterWarmup) {
  // warmup 1 step, then lr 1 -> 0 over 4 steps: (1 + cos(pi e / 4)) / 2.
  const auto o = with_schedule(1.0, LrScheduleOptions().type("cosine").warmup_steps(1).decay_steps(4));
  const double r = std::sqrt(0.5);
  const double expected[] = {1.0, 1.0, (1 + r) / 2, 0.5, (1 - r) / 2, 0.0, 0.0};
  for (int64_t k = 0; k < 7; ++k) EXPECT_NEAR(scheduled_lr(o, k), expected[k], 1e-15) << "step " << k;
}

TEST(LrScheduleTest, FindProblemNamesTheScheduleField) {
  auto problem = find_problem(with_schedule(0.1, LrScheduleOptions().type("cosine")), OptimizerRole::dense);
  ASSERT_TRUE(problem);
  EXPECT_EQ(problem->field, "schedule.decay_steps");
  problem = find_problem(with_schedule(0.1, LrScheduleOptions().type("linear").decay_steps(5).end_lr(0.5)),
                         OptimizerRole::embedding);
  ASSERT_TRUE(problem);
  EXPECT_EQ(problem->field, "schedule.end_lr");
  EXPECT_THAT(problem->message, HasSubstr("must be in [0, lr = 0.1], got 0.5"));
  EXPECT_FALSE(find_problem(with_schedule(0.1, LrScheduleOptions().type("step").step_size(2)), OptimizerRole::dense));
}

std::string config_error(const std::string& optimizer) {
  const std::string text = "features: {dense: 1}\n"
                           "nodes:\n"
                           "  logit: {type: Linear, input: features.dense, out_features: 1}\n"
                           "output: logit\n"
                           "training:\n"
                           "  dense_optimizer: " + optimizer + "\n";
  try {
    config::parse_model_config(config::ConfigNode::load_string(text, "s.yaml"));
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "<no ConfigError>";
}

TEST(LrScheduleTest, ConfigErrorsCarryTheKeyAndPosition) {
  EXPECT_THAT(config_error("{type: sgd, lr: 0.1, schedule: {type: cosine, decay_steps: 0}}"),
              HasSubstr("s.yaml:6:"));
  EXPECT_THAT(config_error("{type: sgd, lr: 0.1, schedule: {type: cosine, decay_steps: 0}}"),
              HasSubstr("training.dense_optimizer.schedule.decay_steps: must be > 0, got 0"));
  // a key the type does not read lists the type's keys
  EXPECT_THAT(config_error("{type: sgd, lr: 0.1, schedule: {type: step, step_size: 2, power: 2}}"),
              HasSubstr("power"));
  EXPECT_THAT(config_error("{type: sgd, lr: 0.1, schedule: {type: step, step_size: 2, power: 2}}"),
              HasSubstr("gamma"));
  // a required key that is missing is reported at the schedule
  EXPECT_THAT(config_error("{type: sgd, lr: 0.1, schedule: polynomial}"),
              HasSubstr("decay_steps must be > 0, got 0"));
  EXPECT_THAT(config_error("{type: sgd, lr: 0.1, schedule: exponential}"), HasSubstr("cosine"));
  // a valid one parses
  EXPECT_EQ(config_error("{type: sgd, lr: 0.1, schedule: {type: polynomial, warmup_steps: 10, decay_steps: 100, "
                         "power: 2, end_lr: 0.001}}"),
            "<no ConfigError>");
}

}  // namespace lr_schedule_test
}  // namespace recmod::optim
