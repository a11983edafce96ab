#pragma once
// A golden case file (../shared/golden/FORMAT.md), parsed.
#include <optional>
#include <string>
#include <vector>

#include "recmod/common/state_dict.h"
#include "recmod/conformance/case_module.h"

namespace recmod::conformance {

struct GoldenCall {
  std::string method;
  bool train = false;
  Inputs inputs;
  Value outputs;
};

struct GoldenTrainStep {
  std::string optimizer;  // "sgd"
  double lr = 0.0;
  std::string loss;  // "sum_of_outputs"
  StateDict expected_grads;
  StateDict expected_state_dict;
};

struct GoldenCase {
  std::string path;
  std::string name;
  std::string module;
  json args;
  StateDict state_dict;
  std::vector<GoldenCall> calls;
  std::optional<GoldenTrainStep> train_step;
  double rtol = 0.0;
  double atol = 0.0;
  std::optional<StateDict> state_dict_after;
};

/// Reads and parses one case file; throws InputError naming the file and
/// the JSON path of what is wrong.
GoldenCase load_golden_case(const std::string& path);

}  // namespace recmod::conformance
