#pragma once
// Small string predicates C++17's std::string lacks (ends_with is C++20's).

#include <string>

namespace recmod {

/// Whether `s` ends with `suffix` (e.g. a file name's ".gz").
inline bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace recmod
