#include "recmod/conformance/golden_case.h"

#include <fstream>

#include "recmod/common/errors.h"

namespace recmod::conformance {

namespace {
StateDict state_dict_from_json(const json& j, const std::string& where) {
  if (!j.is_object()) throw_input_error(where, ": expected an object of tensors, got ", j.type_name());
  StateDict out;
  for (const auto& [k, v] : j.items()) out.emplace_back(k, tensor_from_json(v, where + "." + k));
  return out;
}

const json& field(const json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end()) throw_input_error(where, ": missing field '", key, "'");
  return *it;
}

GoldenCase parse(const json& j) {
  GoldenCase c;
  c.name = field(j, "name", "").get<std::string>();
  c.module = field(j, "module", "").get<std::string>();
  c.args = field(j, "args", "");
  c.state_dict = state_dict_from_json(field(j, "state_dict", ""), "state_dict");
  const auto& calls = field(j, "calls", "");
  for (size_t i = 0; i < calls.size(); ++i) {
    const std::string where = "calls[" + std::to_string(i) + "]";
    const auto& cj = calls[i];
    GoldenCall call;
    call.method = field(cj, "method", where).get<std::string>();
    call.train = field(cj, "train", where).get<bool>();
    for (const auto& [k, v] : field(cj, "inputs", where).items())
      call.inputs.emplace_back(k, value_from_json(v, where + ".inputs." + k));
    call.outputs = value_from_json(field(cj, "outputs", where), where + ".outputs");
    c.calls.push_back(std::move(call));
  }
  const auto& ts = j.value("train_step", json());
  if (!ts.is_null()) {
    GoldenTrainStep step;
    step.optimizer = field(ts, "optimizer", "train_step").get<std::string>();
    step.lr = field(ts, "lr", "train_step").get<double>();
    step.loss = field(ts, "loss", "train_step").get<std::string>();
    step.expected_grads = state_dict_from_json(field(ts, "expected_grads", "train_step"), "train_step.expected_grads");
    step.expected_state_dict =
        state_dict_from_json(field(ts, "expected_state_dict", "train_step"), "train_step.expected_state_dict");
    c.train_step = std::move(step);
  }
  const auto& tol = field(j, "tolerance", "");
  c.rtol = field(tol, "rtol", "tolerance").get<double>();
  c.atol = field(tol, "atol", "tolerance").get<double>();
  if (j.contains("state_dict_after")) c.state_dict_after = state_dict_from_json(j["state_dict_after"], "state_dict_after");
  return c;
}
}  // namespace

GoldenCase load_golden_case(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError(path + ": cannot open file");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    throw InputError(str_cat(path, ": not valid JSON: ", e.what()));
  }
  try {
    GoldenCase c = parse(j);
    c.path = path;
    return c;
  } catch (const InputError& e) {
    throw InputError(str_cat(path, ": ", e.what()));
  } catch (const json::exception& e) {
    throw InputError(str_cat(path, ": unexpected structure: ", e.what()));
  }
}

}  // namespace recmod::conformance
