#include "recmod/optim/optimizer_options.h"

#include <algorithm>

#include "recmod/common/errors.h"

namespace recmod::optim {

const char* role_name(OptimizerRole role) { return role == OptimizerRole::dense ? "dense" : "embedding"; }

const std::vector<std::string>& optimizer_types(OptimizerRole role) {
  static const std::vector<std::string> dense{"sgd", "adagrad", "adam"};
  static const std::vector<std::string> embedding{"sgd", "adagrad", "rowwise_adagrad"};
  return role == OptimizerRole::dense ? dense : embedding;
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
  return std::nullopt;
}

void validate(const OptimizerOptions& options, OptimizerRole role) {
  if (auto problem = find_problem(options, role)) {
    if (problem->field == "type") throw_input_error(role_name(role), " optimizer: ", problem->message);
    throw_input_error(role_name(role), " optimizer: ", problem->field, " ", problem->message);
  }
}

}  // namespace recmod::optim
