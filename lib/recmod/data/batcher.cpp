#include "recmod/data/batcher.h"

#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <random>

#include "recmod/common/errors.h"
#include "recmod/data/bad_record_budget.h"

namespace recmod::data {

namespace {
/// Fisher-Yates with mt19937_64 (its output is fixed by the standard, unlike
/// std::shuffle's use of it), so a seed gives the same order everywhere.
std::vector<int64_t> permutation(int64_t n, std::mt19937_64& rng) {
  std::vector<int64_t> p(n);
  std::iota(p.begin(), p.end(), 0);
  for (int64_t i = n - 1; i > 0; --i) std::swap(p[i], p[rng() % static_cast<uint64_t>(i + 1)]);
  return p;
}

/// The global batches of one pass as record numbers: run_in_order's and
/// run_shuffled's pool with record numbers in place of rows. A reader that
/// fails on bad records returns exactly the records asked for until the data
/// ends, so the pool sizes, hence the permutations, are those of the rows.
/// A skipping reader returns the good records asked for: with
/// options.bad_records the plan numbers the good records (0..good - 1), as
/// that reader's rows, and maps them to record numbers; each read that reader
/// would make is checked against the budget as BadRecordBudget checks it.
class BatchPlan {
 public:
  BatchPlan(int64_t num_records, const BatcherOptions& options)
      : total_(num_records), options_(options), rng_(options.seed),
        fill_(std::max(options.shuffle_buffer, options.batch_size)), bad_(options.bad_records.get()) {
    if (!bad_) return;
    total_ = bad_->num_records - static_cast<int64_t>(bad_->records.size());
    good_before_.reserve(bad_->records.size());
    for (size_t i = 0; i < bad_->records.size(); ++i) good_before_.push_back(bad_->records[i] - static_cast<int64_t>(i));
  }

  /// Appends the next fill's batches (in order: the next batch); false once
  /// the pass is over, or when the budget failed (error()).
  bool plan_more(std::deque<std::vector<int64_t>>& out) {
    if (done_) return false;
    const int64_t batch_size = options_.batch_size;
    const size_t first_new = out.size();
    if (options_.shuffle_buffer <= 1) {
      const int64_t n = std::min(batch_size, total_ - next_);
      if (!read_checked(batch_size, std::max<int64_t>(n, 0))) return false;
      done_ = n <= 0 || (n < batch_size && options_.drop_last);
      if (done_) {
        next_ += std::max<int64_t>(n, 0);  // a dropped last batch was still read (good_read counts it)
        return false;
      }
      out.emplace_back(static_cast<size_t>(n));
      std::iota(out.back().begin(), out.back().end(), next_);
      next_ += n;
      to_records(out, first_new);
      return true;
    }
    bool end_of_data = false;
    while (!end_of_data && static_cast<int64_t>(pool_.size()) < fill_) {
      const int64_t got = std::min(options_.read_rows, total_ - next_);
      if (!read_checked(options_.read_rows, got)) return false;
      if (got == 0) end_of_data = true;
      for (int64_t i = 0; i < got; ++i) pool_.push_back(next_ + i);
      next_ += got;
    }
    const std::vector<int64_t> order = permutation(static_cast<int64_t>(pool_.size()), rng_);
    std::vector<int64_t> permuted(pool_.size());
    for (size_t i = 0; i < order.size(); ++i) permuted[i] = pool_[static_cast<size_t>(order[i])];
    const auto size = static_cast<int64_t>(permuted.size());
    int64_t start = 0;
    for (; size - start >= batch_size; start += batch_size)
      out.emplace_back(permuted.begin() + start, permuted.begin() + start + batch_size);
    if (end_of_data) {
      if (size > start && !options_.drop_last) out.emplace_back(permuted.begin() + start, permuted.end());
      pool_.clear();
      done_ = true;
      to_records(out, first_new);
      return true;
    }
    pool_.assign(permuted.begin() + start, permuted.end());  // the rest waits for the next fill
    to_records(out, first_new);
    return true;
  }

  /// The lowest record in no planned batch yet (the record count when none).
  int64_t lowest_unplanned() const {
    return record_of(pool_.empty() ? next_ : std::min(next_, *std::min_element(pool_.begin(), pool_.end())));
  }

  /// With bad_records: the budget's message once a read failed it, and the
  /// good and bad records the skipping reader has read so far.
  const std::string& error() const { return error_; }
  int64_t good_read() const { return next_; }
  int64_t bad_read() const { return bad_read_; }

 private:
  /// The record number of good record `g` (g itself without bad records).
  int64_t record_of(int64_t g) const {
    if (!bad_) return g;
    return g + static_cast<int64_t>(std::upper_bound(good_before_.begin(), good_before_.end(), g) - good_before_.begin());
  }

  void to_records(std::deque<std::vector<int64_t>>& out, size_t first_new) const {
    if (!bad_) return;
    for (size_t b = first_new; b < out.size(); ++b)
      for (auto& g : out[b]) g = record_of(g);
  }

  /// A read of `asked` good records that returned `got` (next_ not yet
  /// advanced): the records it passed (up to its last row, or the rest of the
  /// data when it came short) and BadRecordBudget's check after it.
  bool read_checked(int64_t asked, int64_t got) {
    if (!bad_) return true;
    const int64_t read_to = got < asked ? bad_->num_records : record_of(next_ + got - 1) + 1;
    ReadReport seen;
    seen.rows_read = next_ + got;
    seen.rows_skipped = bad_read_ = read_to - seen.rows_read;
    const auto messages = std::min<size_t>(static_cast<size_t>(bad_read_), bad_->first_errors.size());
    seen.first_errors.assign(bad_->first_errors.begin(), bad_->first_errors.begin() + static_cast<std::ptrdiff_t>(messages));
    error_ = bad_record_budget_error(seen, options_.max_bad_fraction, options_.min_bad_check, got == 0);
    if (error_.empty()) return true;
    done_ = true;
    pool_.clear();
    return false;
  }

  int64_t total_;  // records (with bad_records: good records)
  BatcherOptions options_;
  std::mt19937_64 rng_;
  int64_t fill_;
  const BadRecords* bad_;
  std::vector<int64_t> good_before_;  // per bad record: the good records before it (ascending)
  std::vector<int64_t> pool_;  // shuffled: records read into the pool, not yet cut into a batch
  int64_t next_ = 0;           // the first record not yet in the pool
  int64_t bad_read_ = 0;
  std::string error_;
  bool done_ = false;
};
}  // namespace

std::pair<int64_t, int64_t> rank_rows(int64_t total, int64_t rank, int64_t world_size) {
  const int64_t base = total / world_size, extra = total % world_size;
  return {rank * base + std::min(rank, extra), base + (rank < extra ? 1 : 0)};
}

int64_t count_records(ExampleReader& reader) {
  if (auto n = reader.num_records()) return *n;
  int64_t total = 0;
  for (int64_t got; (got = reader.skip(int64_t{1} << 20)) > 0;) total += got;
  return total;
}

BadRecords find_bad_records(ExampleReader& reader, int64_t first, int64_t count) {
  BadRecords out;
  out.num_records = count;
  if (reader.skip(first) != first)
    throw_input_error("the data ended before record ", first, " (did the file change since it was counted?)");
  // One row at a time: each read passes the bad records before the next good
  // one, so the skipped count tells where they were. Reading on past the end
  // for a good row may parse records of the next part; those are not ours.
  ExampleColumns scratch(reader.schema());
  const int64_t end = first + count;
  for (int64_t record = first; record < end;) {
    const int64_t skipped = reader.records_skipped();
    const int64_t got = reader.read_into(1, scratch);
    const int64_t bad = reader.records_skipped() - skipped;
    for (int64_t i = 0; i < bad && record + i < end; ++i) out.records.push_back(record + i);
    record += bad + got;
    if (got == 0) {
      if (record < end)
        throw_input_error("the data ended at record ", record, " of the ", end,
                          " counted before (did the file change since it was counted?)");
      break;
    }
    if (scratch.num_rows() >= 4096) scratch.truncate(0);
  }
  out.first_errors = reader.report().first_errors;
  if (out.first_errors.size() > out.records.size()) out.first_errors.resize(out.records.size());
  return out;
}

BadRecords merge_bad_records(const std::vector<BadRecords>& parts) {
  BadRecords all;
  for (const auto& part : parts) {
    all.num_records += part.num_records;
    all.records.insert(all.records.end(), part.records.begin(), part.records.end());
    for (const auto& message : part.first_errors)
      if (all.first_errors.size() < ReadReport::kMaxErrors) all.first_errors.push_back(message);
  }
  return all;
}

BadRecords bad_records_within(const BadRecords& all, int64_t first, int64_t count) {
  BadRecords part;
  part.num_records = count;
  const auto lo = std::lower_bound(all.records.begin(), all.records.end(), first);
  const auto hi = std::lower_bound(lo, all.records.end(), first + count);
  part.records.assign(lo, hi);
  for (auto i = static_cast<size_t>(lo - all.records.begin());
       i < static_cast<size_t>(hi - all.records.begin()) && i < all.first_errors.size(); ++i)
    part.first_errors.push_back(all.first_errors[i]);
  return part;
}

namespace {
std::mutex g_counts_mutex;
std::map<std::string, int64_t> g_counts;  // key: path, how, size, mtime
int64_t g_count_scans = 0;
}  // namespace

int64_t count_records_cached(const std::string& path, const std::string& how,
                             const std::function<std::unique_ptr<ExampleReader>()>& open) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return count_records(*open());
  const std::string key = path + "\n" + how + "\n" + std::to_string(static_cast<int64_t>(st.st_size)) + "\n" +
                          std::to_string(static_cast<int64_t>(st.st_mtim.tv_sec)) + "." +
                          std::to_string(static_cast<int64_t>(st.st_mtim.tv_nsec));
  {
    std::lock_guard<std::mutex> lock(g_counts_mutex);
    if (auto it = g_counts.find(key); it != g_counts.end()) return it->second;
  }
  const int64_t n = count_records(*open());
  std::lock_guard<std::mutex> lock(g_counts_mutex);
  ++g_count_scans;
  g_counts[key] = n;
  return n;
}

int64_t record_count_scans() {
  std::lock_guard<std::mutex> lock(g_counts_mutex);
  return g_count_scans;
}

Batcher::Batcher(std::unique_ptr<ExampleReader> reader, BatcherOptions options)
    : reader_(std::move(reader)), options_(options) {
  TORCH_CHECK(reader_, "Batcher: expected a reader, got null");
  if (options_.batch_size <= 0) throw_input_error("Batcher: batch_size must be > 0, got ", options_.batch_size);
  if (options_.shuffle_buffer < 0)
    throw_input_error("Batcher: shuffle_buffer must be >= 0, got ", options_.shuffle_buffer);
  if (options_.prefetch <= 0) throw_input_error("Batcher: prefetch must be > 0, got ", options_.prefetch);
  if (options_.read_rows <= 0) throw_input_error("Batcher: read_rows must be > 0, got ", options_.read_rows);
  if (options_.world_size < 1 || options_.rank < 0 || options_.rank >= options_.world_size)
    throw_input_error("Batcher: expected 0 <= rank < world_size, got rank ", options_.rank, " of ", options_.world_size);
  if (options_.bad_records) {
    TORCH_CHECK(options_.world_size > 1, "Batcher: bad_records is for rank mode");
    const auto& bad = options_.bad_records->records;
    TORCH_CHECK(std::is_sorted(bad.begin(), bad.end()) &&
                    (bad.empty() || (bad.front() >= 0 && bad.back() < options_.bad_records->num_records)),
                "Batcher: bad_records must be ascending record numbers below its count");
    options_.num_records = options_.bad_records->num_records;
  }
  if (options_.world_size > 1 && options_.num_records < 0) {
    const auto n = reader_->num_records();
    TORCH_CHECK(n, "Batcher: rank mode needs the record count of a reader that cannot tell it (count_records)");
    options_.num_records = *n;
  }
  schema_ = reader_->schema();
  thread_ = std::thread([this] { run(); });
}

Batcher::~Batcher() { stop(); }

void Batcher::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    queue_.clear();
    queue_global_.clear();
  }
  not_full_.notify_all();
  not_empty_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool Batcher::push(Batch batch, int64_t global_size) {
  std::unique_lock<std::mutex> lock(mutex_);
  not_full_.wait(lock, [&] { return stopping_ || static_cast<int64_t>(queue_.size()) < options_.prefetch; });
  if (stopping_) return false;
  queue_.push_back(std::move(batch));
  queue_global_.push_back(global_size);
  lock.unlock();
  not_empty_.notify_one();
  return true;
}

void Batcher::run() {
  try {
    if (options_.world_size > 1)
      run_rank();
    else if (options_.shuffle_buffer > 1)
      run_shuffled();
    else
      run_in_order();
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    error_ = std::current_exception();
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    done_ = true;
    report_ = reader_->report();
    report_.rows_passed = passed_;
    if (options_.bad_records) {  // what one skipping process's reader reports
      report_.rows_read = plan_good_;
      report_.rows_skipped = plan_bad_;
      const auto& messages = options_.bad_records->first_errors;
      report_.first_errors.assign(messages.begin(),
                                  messages.begin() + std::min<std::ptrdiff_t>(static_cast<std::ptrdiff_t>(messages.size()), plan_bad_));
    }
  }
  not_empty_.notify_all();
}

bool Batcher::stopping() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stopping_;
}

void Batcher::run_in_order() {
  // Readers return exactly the rows asked for until the data ends, so only
  // the last batch can be short.
  while (!stopping()) {
    auto batch = reader_->read_batch(options_.batch_size);
    if (!batch) return;
    if (batch->size() < options_.batch_size && options_.drop_last) return;
    if (!push(std::move(*batch))) return;
  }
}

void Batcher::run_shuffled() {
  ExampleColumns pool(schema_);
  std::mt19937_64 rng(options_.seed);
  const int64_t fill = std::max(options_.shuffle_buffer, options_.batch_size);
  bool end_of_data = false;
  while (true) {
    while (!end_of_data && pool.num_rows() < fill) {
      if (stopping()) return;
      auto block = reader_->read(options_.read_rows);
      if (block && pool.empty())
        pool = std::move(*block);
      else if (block)
        pool.append(*block);
      else
        end_of_data = true;
    }
    pool = pool.take(permutation(pool.num_rows(), rng));
    int64_t start = 0;
    for (; pool.num_rows() - start >= options_.batch_size; start += options_.batch_size)
      if (!push(pool.slice(start, start + options_.batch_size).to_batch())) return;
    if (end_of_data) {
      if (pool.num_rows() > start && !options_.drop_last && !push(pool.slice(start, pool.num_rows()).to_batch()))
        return;
      break;
    }
    pool = pool.slice(start, pool.num_rows());  // the rest waits for the next fill
  }
}

void Batcher::pass(int64_t n, int64_t& cursor) {
  if (n <= 0) return;
  const int64_t got = reader_->skip(n);
  passed_ += got;
  cursor += got;
  if (got < n)
    throw_input_error("the data ended at record ", cursor, " of the ", options_.num_records,
                      " counted when the pass began (did the file change?)");
}

void Batcher::run_rank() {
  const int64_t rank = options_.rank, world = options_.world_size;
  BatchPlan plan(options_.num_records, options_);
  struct Part {
    std::vector<int64_t> records;  // this rank's, in batch order
    int64_t global_size = 0;
    int64_t batch_end = 0;  // in order: the record after the batch's last
  };
  std::deque<Part> parts;  // planned, not yet handed out
  // This rank's records in `parts` not yet read, ascending from wanted[next_wanted].
  std::vector<int64_t> wanted;
  size_t next_wanted = 0;
  std::deque<std::vector<int64_t>> planned;
  const bool in_order = options_.shuffle_buffer <= 1;
  auto plan_more = [&] {
    const bool more = plan.plan_more(planned);
    wanted.erase(wanted.begin(), wanted.begin() + static_cast<std::ptrdiff_t>(next_wanted));
    next_wanted = 0;
    const size_t old_size = wanted.size();
    for (auto& batch : planned) {
      const auto size = static_cast<int64_t>(batch.size());
      const auto [first, count] = rank_rows(size, rank, world);
      Part part{std::vector<int64_t>(batch.begin() + first, batch.begin() + first + count), size,
                batch.empty() ? 0 : batch.back() + 1};
      if (!in_order) wanted.insert(wanted.end(), part.records.begin(), part.records.end());
      parts.push_back(std::move(part));
    }
    std::sort(wanted.begin() + static_cast<std::ptrdiff_t>(old_size), wanted.end());
    std::inplace_merge(wanted.begin(), wanted.begin() + static_cast<std::ptrdiff_t>(old_size), wanted.end());
    planned.clear();
    plan_good_ = plan.good_read();
    plan_bad_ = plan.bad_read();
    return more;
  };
  // Rows read and not yet handed out, in record order.
  ExampleColumns held(schema_);
  std::vector<int64_t> held_record;
  std::vector<char> held_done;
  int64_t done_count = 0;
  int64_t cursor = 0;  // the reader's next record
  while (!stopping()) {
    if (parts.empty() && !plan_more()) {
      // Every batch before the read that failed the budget is handed out.
      if (!plan.error().empty()) throw InputError(plan.error());
      return;
    }
    if (parts.empty()) continue;
    const Part part = std::move(parts.front());
    parts.pop_front();
    if (in_order) {
      // One contiguous run of a contiguous batch (of good records: a
      // skipping reader passes the bad ones between them): straight from the
      // reader (.rmb builds the tensors itself).
      const auto count = static_cast<int64_t>(part.records.size());
      std::optional<Batch> batch = ExampleColumns(schema_).to_batch();
      if (count > 0) {
        pass(part.records.front() - cursor, cursor);
        batch = reader_->read_batch(count);
        if (!batch || batch->size() != count)
          throw_input_error("the data ended before record ", part.records.back() + 1, " of the ",
                            options_.num_records, " counted when the pass began (did the file change?)");
        cursor = part.records.back() + 1;
      }
      pass(part.batch_end - cursor, cursor);  // the other ranks' rest of the batch
      if (!push(std::move(*batch), part.global_size)) return;
      continue;
    }
    // Every record up to this part's last is placed in a batch before any of
    // them is read (placing one may take further fills), so each is parsed
    // only when it is this rank's.
    const int64_t need = part.records.empty() ? cursor : *std::max_element(part.records.begin(), part.records.end()) + 1;
    while (plan.lowest_unplanned() < need && plan_more()) {
    }
    while (cursor < need) {
      if (next_wanted == wanted.size() || wanted[next_wanted] >= need) {
        pass(need - cursor, cursor);
        break;
      }
      pass(wanted[next_wanted] - cursor, cursor);
      const int64_t first = cursor;
      int64_t end = first;
      while (next_wanted < wanted.size() && wanted[next_wanted] == end) {
        ++end;
        ++next_wanted;
      }
      if (reader_->read_into(end - first, held) != end - first)
        throw_input_error("the data ended before record ", end, " of the ", options_.num_records,
                          " counted when the pass began (did the file change?)");
      for (int64_t r = first; r < end; ++r) held_record.push_back(r);
      held_done.resize(held_record.size(), 0);
      cursor = end;
    }
    std::vector<int64_t> rows;
    rows.reserve(part.records.size());
    for (const int64_t record : part.records) {
      const auto at = std::lower_bound(held_record.begin(), held_record.end(), record);
      TORCH_CHECK(at != held_record.end() && *at == record, "Batcher: record ", record, " was not read");
      const auto row = static_cast<int64_t>(at - held_record.begin());
      rows.push_back(row);
      held_done[static_cast<size_t>(row)] = 1;
      ++done_count;
    }
    Batch batch = held.take(rows).to_batch();
    if (done_count * 2 > held.num_rows()) {  // drop the rows handed out (amortized)
      std::vector<int64_t> keep;
      std::vector<int64_t> kept_record;
      for (size_t i = 0; i < held_record.size(); ++i)
        if (!held_done[i]) {
          keep.push_back(static_cast<int64_t>(i));
          kept_record.push_back(held_record[i]);
        }
      held = held.take(keep);
      held_record = std::move(kept_record);
      held_done.assign(held_record.size(), 0);
      done_count = 0;
    }
    if (!push(std::move(batch), part.global_size)) return;
  }
}

std::vector<int64_t> Batcher::rank_sizes() const {
  if (options_.world_size <= 1) return {};
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<int64_t> out;
  for (int64_t r = 0; r < options_.world_size; ++r) out.push_back(rank_rows(last_global_, r, options_.world_size).second);
  return out;
}

std::optional<Batch> Batcher::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  not_empty_.wait(lock, [&] { return stopping_ || !queue_.empty() || done_; });
  if (!queue_.empty()) {
    Batch batch = std::move(queue_.front());
    queue_.pop_front();
    last_global_ = queue_global_.front();
    queue_global_.pop_front();
    lock.unlock();
    not_full_.notify_one();
    return batch;
  }
  if (error_ && !stopping_) {
    auto error = error_;
    error_ = nullptr;  // thrown once; later calls see the end
    std::rethrow_exception(error);
  }
  return std::nullopt;
}

ReadReport Batcher::report() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return report_;
}

}  // namespace recmod::data
