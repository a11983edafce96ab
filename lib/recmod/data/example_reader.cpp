#include "recmod/data/example_reader.h"

#include "recmod/common/errors.h"

namespace recmod::data {

std::string ReadReport::summary() const {
  std::string s = str_cat(rows_read, " rows read");
  if (rows_skipped > 0) {
    s += str_cat(", ", rows_skipped, " bad record", rows_skipped == 1 ? "" : "s", " skipped");
    if (!first_errors.empty()) s += " (first: " + first_errors.front() + ")";
  }
  return s;
}

void ReadReport::skip(std::string message) {
  ++rows_skipped;
  if (first_errors.size() < kMaxErrors) first_errors.push_back(std::move(message));
}

}  // namespace recmod::data
