#include "recmod/optim/optimizer_options.h"

#include <algorithm>
#include <cmath>

#include "recmod/common/errors.h"

namespace recmod::optim {

const char* role_name(OptimizerRole role) { return role == OptimizerRole::dense ? "dense" : "embedding"; }

const std::vector<std::string>& optimizer_types(OptimizerRole role) {
  static const std::vector<std::string> dense{"sgd", "adagrad", "adam"};
  static const std::vector<std::string> embedding{"sgd", "adagrad", "rowwise_adagrad"};
  return role == OptimizerRole::dense ? dense : embedding;
}

const std::vector<std::string>& schedule_types() {
  static const std::vector<std::string> types{"constant", "step", "linear", "polynomial", "cosine"};
  return types;
}

std::vector<std::string> schedule_keys(const std::string& type) {
  if (type == "step") return {"step_size", "gamma"};
  if (type == "linear" || type == "cosine") return {"decay_steps", "end_lr"};
  if (type == "polynomial") return {"decay_steps", "end_lr", "power"};
  return {};
}

namespace {

std::optional<OptionProblem> find_schedule_problem(const LrScheduleOptions& s, double lr) {
  const auto& types = schedule_types();
  if (std::find(types.begin(), types.end(), s.type()) == types.end())
    return OptionProblem{"schedule.type",
                         str_cat("unknown schedule type '", s.type(), "'; valid types are ", join_names(types))};
  if (s.warmup_steps() < 0)
    return OptionProblem{"schedule.warmup_steps", str_cat("must be >= 0, got ", s.warmup_steps())};
  if (s.decay_start() && *s.decay_start() < 0)
    return OptionProblem{"schedule.decay_start", str_cat("must be >= 0, got ", *s.decay_start())};
  if (s.type() == "step") {
    if (s.step_size() <= 0) return OptionProblem{"schedule.step_size", str_cat("must be > 0, got ", s.step_size())};
    if (!(s.gamma() > 0 && s.gamma() <= 1))
      return OptionProblem{"schedule.gamma", str_cat("must be in (0, 1], got ", s.gamma())};
  }
  if (s.type() == "linear" || s.type() == "polynomial" || s.type() == "cosine") {
    if (s.decay_steps() <= 0)
      return OptionProblem{"schedule.decay_steps", str_cat("must be > 0, got ", s.decay_steps())};
    if (!(s.end_lr() >= 0 && s.end_lr() <= lr))
      return OptionProblem{"schedule.end_lr", str_cat("must be in [0, lr = ", lr, "], got ", s.end_lr())};
    if (!(s.power() > 0)) return OptionProblem{"schedule.power", str_cat("must be > 0, got ", s.power())};
  }
  return std::nullopt;
}

}  // namespace

double scheduled_lr(const OptimizerOptions& options, int64_t step) {
  const LrScheduleOptions& s = options.schedule();
  const double lr = options.lr();
  if (step < s.warmup_steps())
    return lr * static_cast<double>(step + 1) / static_cast<double>(s.warmup_steps());
  const int64_t e = step - s.decay_start().value_or(s.warmup_steps());
  if (e < 0 || s.type() == "constant") return lr;
  if (s.type() == "step") return lr * std::pow(s.gamma(), static_cast<double>(e / s.step_size()));
  const double t = static_cast<double>(std::min(e, s.decay_steps())) / static_cast<double>(s.decay_steps());
  double factor = 1 - t;                                              // linear
  if (s.type() == "polynomial") factor = std::pow(1 - t, s.power());
  if (s.type() == "cosine") factor = (1 + std::cos(M_PI * t)) / 2;
  return s.end_lr() + (lr - s.end_lr()) * factor;
}

std::optional<OptionProblem> find_problem(const OptimizerOptions& o, OptimizerRole role) {
  const auto& types = optimizer_types(role);
  if (std::find(types.begin(), types.end(), o.type()) == types.end())
    return OptionProblem{"type", str_cat("unknown type '", o.type(), "'; valid types are ", join_names(types))};
  // Each check is written so that NaN fails it.
  struct Rule {
    const char* field;
    double value;
    bool ok;
    const char* expected;
  };
  const Rule rules[] = {
      {"lr", o.lr(), o.lr() >= 0, ">= 0"},  // 0 freezes (as torch.optim allows)
      {"eps", o.eps(), o.eps() > 0, "> 0"},
      {"weight_decay", o.weight_decay(), o.weight_decay() >= 0, ">= 0"},
      {"initial_accumulator_value", o.initial_accumulator_value(), o.initial_accumulator_value() >= 0, ">= 0"},
      {"beta1", o.beta1(), o.beta1() >= 0 && o.beta1() < 1, "in [0, 1)"},
      {"beta2", o.beta2(), o.beta2() >= 0 && o.beta2() < 1, "in [0, 1)"},
  };
  for (const auto& rule : rules)
    if (!rule.ok) return OptionProblem{rule.field, str_cat("must be ", rule.expected, ", got ", rule.value)};
  return find_schedule_problem(o.schedule(), o.lr());
}

void validate(const OptimizerOptions& options, OptimizerRole role) {
  if (auto problem = find_problem(options, role)) {
    if (problem->field == "type") throw_input_error(role_name(role), " optimizer: ", problem->message);
    throw_input_error(role_name(role), " optimizer: ", problem->field, " ", problem->message);
  }
}

}  // namespace recmod::optim
