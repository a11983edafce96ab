// Golden-case builders for the dense module family.
#include "recmod/conformance/registry.h"

namespace recmod::conformance {

void add_dense_cases(CaseRegistry& /*registry*/) {}

}  // namespace recmod::conformance
