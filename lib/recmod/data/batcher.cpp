#include "recmod/data/batcher.h"

#include <numeric>
#include <random>

#include "recmod/common/errors.h"

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
}  // namespace

Batcher::Batcher(std::unique_ptr<ExampleReader> reader, BatcherOptions options)
    : reader_(std::move(reader)), options_(options) {
  TORCH_CHECK(reader_, "Batcher: expected a reader, got null");
  if (options_.batch_size <= 0) throw_input_error("Batcher: batch_size must be > 0, got ", options_.batch_size);
  if (options_.shuffle_buffer < 0)
    throw_input_error("Batcher: shuffle_buffer must be >= 0, got ", options_.shuffle_buffer);
  if (options_.prefetch <= 0) throw_input_error("Batcher: prefetch must be > 0, got ", options_.prefetch);
  if (options_.read_rows <= 0) throw_input_error("Batcher: read_rows must be > 0, got ", options_.read_rows);
  schema_ = reader_->schema();
  thread_ = std::thread([this] { run(); });
}

Batcher::~Batcher() { stop(); }

void Batcher::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    queue_.clear();
  }
  not_full_.notify_all();
  not_empty_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool Batcher::push(Batch batch) {
  std::unique_lock<std::mutex> lock(mutex_);
  not_full_.wait(lock, [&] { return stopping_ || static_cast<int64_t>(queue_.size()) < options_.prefetch; });
  if (stopping_) return false;
  queue_.push_back(std::move(batch));
  lock.unlock();
  not_empty_.notify_one();
  return true;
}

void Batcher::run() {
  try {
    ExampleColumns pool(schema_);
    std::mt19937_64 rng(options_.seed);
    const bool shuffle = options_.shuffle_buffer > 1;
    const int64_t fill = std::max(options_.shuffle_buffer, options_.batch_size);
    bool end_of_data = false;
    while (true) {
      while (!end_of_data && pool.num_rows() < fill) {
        {
          std::lock_guard<std::mutex> lock(mutex_);
          if (stopping_) return;
        }
        auto block = reader_->read(options_.read_rows);
        if (block && pool.empty())
          pool = std::move(*block);
        else if (block)
          pool.append(*block);
        else
          end_of_data = true;
      }
      if (shuffle) pool = pool.take(permutation(pool.num_rows(), rng));
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
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    error_ = std::current_exception();
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    done_ = true;
    report_ = reader_->report();
  }
  not_empty_.notify_all();
}

std::optional<Batch> Batcher::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  not_empty_.wait(lock, [&] { return stopping_ || !queue_.empty() || done_; });
  if (!queue_.empty()) {
    Batch batch = std::move(queue_.front());
    queue_.pop_front();
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
