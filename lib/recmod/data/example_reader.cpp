#include "recmod/data/example_reader.h"

#include <algorithm>

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

std::optional<Batch> ExampleReader::read_batch(int64_t max_rows) {
  auto block = read(max_rows);
  if (!block) return std::nullopt;
  return block->to_batch();
}

int64_t ExampleReader::read_into(int64_t max_rows, ExampleColumns& out) {
  auto block = read(max_rows);
  if (!block) return 0;
  out.append(*block);
  return block->num_rows();
}

int64_t ExampleReader::skip(int64_t n) {
  int64_t passed = 0;
  while (passed < n) {
    auto block = read(std::min<int64_t>(n - passed, 8192));
    if (!block) break;
    passed += block->num_rows();
  }
  return passed;
}

void ReadReport::skip(std::string message) {
  ++rows_skipped;
  if (first_errors.size() < kMaxErrors) first_errors.push_back(std::move(message));
}

}  // namespace recmod::data
