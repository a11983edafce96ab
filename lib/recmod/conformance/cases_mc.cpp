// Golden-case builders for the mc module family.
#include "recmod/conformance/registry.h"

namespace recmod::conformance {

void add_mc_cases(CaseRegistry& /*registry*/) {}

}  // namespace recmod::conformance
