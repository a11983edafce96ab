#pragma once
// What an optimizer is, described once: its settings (OptimizerOptions), the
// valid types per role, and the one validation that the config parser (with
// YAML positions) and every optimizer constructor share.
#include <torch/arg.h>

#include <optional>
#include <string>
#include <vector>

namespace recmod::optim {

/// Which parameters an optimizer updates: dense parameters (torch.optim's
/// algorithms) or embedding tables (FBGEMM's row-sparse ones).
enum class OptimizerRole { dense, embedding };

/// "dense" | "embedding": how messages and configs name a role.
const char* role_name(OptimizerRole role);

/// A learning-rate schedule: the lr of optimizer step k (k = 0, 1, ...: the
/// steps done before it, the trainer state's step) from the optimizer's lr.
/// With W = warmup_steps, S = decay_start (default W), e = k - S:
///   k < W (warmup):  lr * (k + 1) / W           (linear, reaches lr at k = W - 1)
///   else e < 0:      lr                          (between warmup and decay)
///   constant:        lr
///   step:            lr * gamma^floor(e / step_size)
///   linear:          end_lr + (lr - end_lr) * (1 - t / decay_steps),  t = min(e, decay_steps)
///   polynomial:      end_lr + (lr - end_lr) * (1 - t / decay_steps)^power
///   cosine:          end_lr + (lr - end_lr) * (1 + cos(pi t / decay_steps)) / 2
/// The DLRM reference (MLPerf) uses warmup + polynomial with power 2.
struct LrScheduleOptions {
  TORCH_ARG(std::string, type) = "constant";  // constant | step | linear | polynomial | cosine
  TORCH_ARG(int64_t, warmup_steps) = 0;       // >= 0
  TORCH_ARG(std::optional<int64_t>, decay_start);  // >= 0; default warmup_steps
  TORCH_ARG(int64_t, decay_steps) = 0;        // > 0 for linear, polynomial, cosine
  TORCH_ARG(double, end_lr) = 0.0;            // >= 0 (linear, polynomial, cosine)
  TORCH_ARG(double, power) = 1.0;             // > 0 (polynomial)
  TORCH_ARG(int64_t, step_size) = 0;          // > 0 (step)
  TORCH_ARG(double, gamma) = 0.1;             // in (0, 1] (step)
};

/// The valid schedule `type`s, and the keys each type reads besides type,
/// warmup_steps and decay_start (for validation and messages).
const std::vector<std::string>& schedule_types();
std::vector<std::string> schedule_keys(const std::string& type);

/// One optimizer's settings, as a config names them.
///   dense:      sgd | adagrad | adam              (torch.optim's SGD, Adagrad, Adam)
///   embedding:  sgd | adagrad | rowwise_adagrad   (FBGEMM's SGD, EXACT_ADAGRAD, EXACT_ROWWISE_ADAGRAD)
/// eps, beta1/beta2 and initial_accumulator_value apply where the algorithm
/// has them. Example: OptimizerOptions("adagrad").lr(0.05).weight_decay(1e-6)
struct OptimizerOptions {
  explicit OptimizerOptions(std::string type = "sgd", double lr = 0.01) : type_(std::move(type)), lr_(lr) {}
  TORCH_ARG(std::string, type);
  TORCH_ARG(double, lr);                               // >= 0 (0 freezes the parameters)
  TORCH_ARG(double, eps) = 1e-8;                       // > 0
  TORCH_ARG(double, beta1) = 0.9;                      // [0, 1), adam
  TORCH_ARG(double, beta2) = 0.999;                    // [0, 1), adam
  TORCH_ARG(double, weight_decay) = 0.0;               // >= 0; L2: g += weight_decay * w (embeddings: touched rows only)
  TORCH_ARG(double, initial_accumulator_value) = 0.0;  // >= 0, adagrad / rowwise_adagrad
  TORCH_ARG(LrScheduleOptions, schedule);              // default: constant lr
};

/// The learning rate of optimizer step `step` (0-based: the steps done
/// before it) under `options.schedule()`; see LrScheduleOptions.
double scheduled_lr(const OptimizerOptions& options, int64_t step);

/// The valid `type`s of a role, for validation and messages.
const std::vector<std::string>& optimizer_types(OptimizerRole role);

/// The first invalid setting of `options`: the field's name as a config
/// writes it ("type", "lr", ...) and what is wrong with it ("must be > 0,
/// got -1"); nullopt when all are valid. A schedule's fields are named
/// "schedule.<field>". NaN fails every numeric check.
struct OptionProblem {
  std::string field;
  std::string message;
};
std::optional<OptionProblem> find_problem(const OptimizerOptions& options, OptimizerRole role);

/// Throws InputError ("dense optimizer: lr must be > 0, got -1") for the
/// first problem find_problem() reports.
void validate(const OptimizerOptions& options, OptimizerRole role);

}  // namespace recmod::optim
