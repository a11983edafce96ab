#pragma once
// A bad-record budget for `--bad-records skip`: the wrapped reader skips and
// counts bad records; past `max_fraction` of the records seen the read fails,
// naming the count and the first messages.
#include <memory>
#include <string>

#include "recmod/data/example_reader.h"

namespace recmod::data {

/// The budget's verdict on a reader's counts: "" when within it (nothing
/// bad, or fewer than `min_records` seen before the end, or at most
/// `max_fraction` bad), else the InputError message below. The one rule,
/// also what a rank of a distributed run applies to the reads one skipping
/// process would make (BatcherOptions::bad_records).
std::string bad_record_budget_error(const ReadReport& report, double max_fraction, int64_t min_records, bool at_end);

/// Wraps a reader opened with BadRecordPolicy::kSkip. After each block: once
/// at least `min_records` records (good + bad) were seen, or at the end of
/// the data, more than `max_fraction` of them bad is an InputError
/// "<n> bad records of <m> (x%) exceed --max-bad-fraction f; first: ...".
class BadRecordBudget : public ExampleReader {
 public:
  BadRecordBudget(std::unique_ptr<ExampleReader> reader, double max_fraction, int64_t min_records = 1000);
  const DataSchema& schema() const override { return reader_->schema(); }
  std::optional<ExampleColumns> read(int64_t max_rows) override;
  std::optional<Batch> read_batch(int64_t max_rows) override;
  int64_t skip(int64_t n) override { return reader_->skip(n); }
  // read_into: the default (through read(), which checks the budget).
  std::optional<int64_t> num_records() const override { return reader_->num_records(); }
  ReadReport report() const override { return reader_->report(); }
  int64_t records_skipped() const override { return reader_->records_skipped(); }

 private:
  void check(bool at_end) const;
  std::unique_ptr<ExampleReader> reader_;
  double max_fraction_;
  int64_t min_records_;
};

}  // namespace recmod::data
