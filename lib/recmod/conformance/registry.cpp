#include "recmod/conformance/registry.h"

#include "recmod/common/errors.h"

namespace recmod::conformance {

const CaseRegistry& case_registry() {
  static const CaseRegistry registry = [] {
    CaseRegistry r;
    add_dense_cases(r);
    add_embedding_cases(r);
    add_mc_cases(r);
    return r;
  }();
  return registry;
}

bool is_supported(const std::string& module) { return case_registry().count(module) > 0; }

std::vector<std::string> supported_modules() {
  std::vector<std::string> out;
  for (const auto& kv : case_registry()) out.push_back(kv.first);
  return out;
}

const Value& input(const Inputs& inputs, const std::string& name) {
  std::vector<std::string> present;
  for (const auto& [k, v] : inputs) {
    if (k == name) return v;
    present.push_back(k);
  }
  throw_input_error("missing input '", name, "'; the call has ", join_names(present));
}

void unsupported_method(const std::string& module, const std::string& method) {
  throw_input_error(module, ": unsupported method '", method, "'");
}

}  // namespace recmod::conformance
