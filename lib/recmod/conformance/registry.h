#pragma once
// The one registry of golden-case builders, keyed by TorchRec class name
// ("CrossNet", "function:average_threshold_filter", ...). Its keys are the
// module types recmod declares supported; the list only grows.
#include <map>
#include <string>
#include <vector>

#include "recmod/conformance/case_module.h"

namespace recmod::conformance {

using CaseRegistry = std::map<std::string, CaseBuilder>;

const CaseRegistry& case_registry();
bool is_supported(const std::string& module);
std::vector<std::string> supported_modules();

// Each module family adds its builders here (one file per family:
// cases_dense.cpp, cases_embedding.cpp, cases_mc.cpp).
void add_dense_cases(CaseRegistry& registry);
void add_embedding_cases(CaseRegistry& registry);
void add_mc_cases(CaseRegistry& registry);

}  // namespace recmod::conformance
