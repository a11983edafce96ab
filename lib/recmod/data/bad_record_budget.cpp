#include "recmod/data/bad_record_budget.h"

#include "recmod/common/errors.h"

namespace recmod::data {

BadRecordBudget::BadRecordBudget(std::unique_ptr<ExampleReader> reader, double max_fraction, int64_t min_records)
    : reader_(std::move(reader)), max_fraction_(max_fraction), min_records_(min_records) {
  TORCH_CHECK(reader_, "BadRecordBudget: no reader");
  if (!(max_fraction >= 0.0 && max_fraction <= 1.0))
    throw UsageError(str_cat("--max-bad-fraction must be in [0, 1], got ", max_fraction));
}

std::string bad_record_budget_error(const ReadReport& r, double max_fraction, int64_t min_records, bool at_end) {
  const int64_t seen = r.rows_read + r.rows_skipped;
  if (r.rows_skipped == 0 || (!at_end && seen < min_records)) return {};
  const double fraction = static_cast<double>(r.rows_skipped) / static_cast<double>(seen);
  if (fraction <= max_fraction) return {};
  std::string first;
  for (const auto& e : r.first_errors) first += "\n  " + e;
  return str_cat(r.rows_skipped, " bad records of ", seen, " read (", 100.0 * fraction, "%) exceed --max-bad-fraction ",
                 max_fraction, "; the first:", first);
}

void BadRecordBudget::check(bool at_end) const {
  std::string error = bad_record_budget_error(reader_->report(), max_fraction_, min_records_, at_end);
  if (!error.empty()) throw InputError(std::move(error));
}

std::optional<ExampleColumns> BadRecordBudget::read(int64_t max_rows) {
  auto block = reader_->read(max_rows);
  check(!block);
  return block;
}

std::optional<Batch> BadRecordBudget::read_batch(int64_t max_rows) {
  auto batch = reader_->read_batch(max_rows);
  check(!batch);
  return batch;
}

}  // namespace recmod::data
