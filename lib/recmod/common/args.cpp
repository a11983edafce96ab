#include "recmod/common/args.h"

#include <algorithm>

#include "recmod/common/errors.h"

namespace recmod {

int64_t ModuleArgs::positive_int(const std::string& key) const {
  const int64_t v = get_int(key);
  if (v <= 0) fail(key, str_cat("must be > 0, got ", v));
  return v;
}

int64_t ModuleArgs::positive_int(const std::string& key, int64_t fallback) const {
  return has(key) ? positive_int(key) : fallback;
}

std::vector<int64_t> ModuleArgs::positive_int_list(const std::string& key) const {
  auto sizes = get_int_list(key);
  if (sizes.empty()) fail(key, "expected at least one layer size");
  for (size_t i = 0; i < sizes.size(); ++i)
    if (sizes[i] <= 0) fail(key, i, str_cat("must be > 0, got ", sizes[i]));
  return sizes;
}

std::string ModuleArgs::one_of(const std::string& key, const std::vector<std::string>& choices,
                         const std::string& fallback) const {
  if (!has(key)) return fallback;
  std::string v = get_string(key);
  if (std::find(choices.begin(), choices.end(), v) == choices.end())
    fail(key, str_cat("expected one of ", join_names(choices), ", found '", v, "'"));
  return v;
}

}  // namespace recmod
