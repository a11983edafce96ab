// Golden-case builders for the embedding module family.
#include "recmod/conformance/registry.h"

namespace recmod::conformance {

void add_embedding_cases(CaseRegistry& /*registry*/) {}

}  // namespace recmod::conformance
