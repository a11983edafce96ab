// Data path throughput: Criteo TSV parsing (MB/s, one thread), the same rows
// through the generic delimited reader, and binary reading (GB/s) against a
// plain memcpy of the same bytes.
//   build/bench/data_bench [--benchmark_filter=...]
// The TSV input is the real 1000-row Criteo sample repeated to ~32 MiB (in
// memory, so the disk is out of the measurement); the binary input is the
// same rows converted, read from a file mapped into the page cache.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>

#include "recmod/data/bad_record_budget.h"
#include "recmod/data/batcher.h"
#include "recmod/data/binary_format.h"
#include "recmod/data/criteo_tsv.h"
#include "recmod/data/delimited.h"
#include "recmod/data/mapped_file.h"

namespace {

using namespace recmod::data;

/// The shared data folder: $RECMOD_DATA_DIR, else ../shared/data next to the
/// repository this file was compiled from.
std::string data_dir() {
  if (const char* dir = std::getenv("RECMOD_DATA_DIR")) return dir;
  std::string repo = __FILE__;
  repo = repo.substr(0, repo.rfind('/'));  // .../bench
  repo = repo.substr(0, repo.rfind('/'));  // repository root
  return repo + "/../shared/data";
}

const std::string kSample = data_dir() + "/criteo_kaggle_head1000/train.txt";
bool binary_written = false;

const std::string& criteo_text() {
  static const std::string text = [] {
    std::ifstream in(kSample);
    std::string one(std::istreambuf_iterator<char>(in), {});
    if (one.empty()) throw std::runtime_error(kSample + ": missing or empty");
    if (one.back() != '\n') one += '\n';
    std::string all;
    while (all.size() < (32u << 20)) all += one;
    return all;
  }();
  return text;
}

const std::string& binary_path() {
  static const std::string path = [] {
    const std::string p = "/tmp/recmod_data_bench_" + std::to_string(::getpid()) + ".rmb";
    CriteoTsvReader reader("bench.tsv", criteo_text());
    BinaryWriter writer(p, reader.schema());
    while (auto block = reader.read(65536)) writer.write(*block);
    writer.close();
    binary_written = true;
    return p;
  }();
  return path;
}

void BM_CriteoTsvParse(benchmark::State& state) {
  const auto& text = criteo_text();
  int64_t rows = 0;
  for (auto _ : state) {
    CriteoTsvReader reader("bench.tsv", text);
    while (auto block = reader.read(state.range(0))) {
      rows += block->num_rows();
      benchmark::DoNotOptimize(block->sparse.back().ids.data());
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(text.size()));
  state.counters["rows/s"] = benchmark::Counter(static_cast<double>(rows), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_CriteoTsvParse)->Arg(8192)->ThreadRange(1, 2)->Unit(benchmark::kMillisecond);

/// The same Criteo rows through the generic delimited reader (data.columns:
/// label, 13 dense log1p with default 0, 26 hashed string ids), trailing
/// fields padded to 40: what routing Criteo through it would cost.
std::shared_ptr<const DelimitedSpec> criteo_as_columns() {
  auto spec = std::make_shared<DelimitedSpec>();
  spec->delimiter = '\t';
  spec->schema = criteo_schema();
  ColumnSpec label;
  label.name = "label";
  label.role = ColumnRole::kLabel;
  label.target = 0;
  spec->columns.push_back(label);
  for (int i = 0; i < kCriteoNumDense; ++i) {
    ColumnSpec c;
    c.name = "I" + std::to_string(i + 1);
    c.role = ColumnRole::kDense;
    c.target = i;
    c.log1p = true;
    c.default_value = "0";
    spec->columns.push_back(c);
  }
  for (int k = 0; k < kCriteoNumSparse; ++k) {
    ColumnSpec c;
    c.name = "C" + std::to_string(k + 1);
    c.role = ColumnRole::kSparse;
    c.target = k;
    c.range = 1 << 20;
    spec->columns.push_back(c);
  }
  return spec;
}

const std::string& criteo_text_padded() {
  static const std::string text = [] {
    std::string out;
    size_t begin = 0;
    const auto& in = criteo_text();
    while (begin < in.size()) {
      const size_t end = in.find('\n', begin);
      const std::string_view line(in.data() + begin, end - begin);
      out.append(line);
      out.append(static_cast<size_t>(39 - std::count(line.begin(), line.end(), '\t')), '\t');
      out += '\n';
      begin = end + 1;
    }
    return out;
  }();
  return text;
}

void BM_DelimitedParseCriteo(benchmark::State& state) {
  const auto& text = criteo_text_padded();
  const auto spec = criteo_as_columns();
  int64_t rows = 0;
  for (auto _ : state) {
    DelimitedReader reader("bench.tsv", text, spec);
    while (auto block = reader.read(state.range(0))) {
      rows += block->num_rows();
      benchmark::DoNotOptimize(block->sparse.back().ids.data());
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(text.size()));
  state.counters["rows/s"] = benchmark::Counter(static_cast<double>(rows), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_DelimitedParseCriteo)->Arg(8192)->Unit(benchmark::kMillisecond);

/// Rows to ExampleColumns slices (what the batcher consumes).
void BM_BinaryRead(benchmark::State& state) {
  const auto& path = binary_path();
  BinaryReader reader(path);
  const MappedFile file(path);
  for (auto _ : state) {
    reader.reset();
    while (auto block = reader.read(state.range(0))) benchmark::DoNotOptimize(block->sparse.back().ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(file.size()));
}
BENCHMARK(BM_BinaryRead)->Arg(8192)->Unit(benchmark::kMillisecond);

/// Rows straight to Batch tensors (KJT key-major), what the in-order Batcher runs.
void BM_BinaryReadBatch(benchmark::State& state) {
  const auto& path = binary_path();
  BinaryReader reader(path);
  const MappedFile file(path);
  for (auto _ : state) {
    reader.reset();
    while (auto batch = reader.read_batch(state.range(0))) benchmark::DoNotOptimize(batch->sparse.values().data_ptr());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(file.size()));
}
BENCHMARK(BM_BinaryReadBatch)->Arg(8192)->Unit(benchmark::kMillisecond);

/// One rank's data pass, shuffled as training reads it (buffer 16384, global
/// batch 2048). range(0) = 1: the whole file, what every rank of a 2-rank run
/// parsed before the ranks read only their rows (and what one process
/// reads); 2: rank 0 of 2 in rank mode (a text file's records counted first
/// by a pass over its lines, then its rows parsed and the others' passed
/// over). range(1) = 1: the count known before the pass, as in every later
/// epoch or evaluation of the same file (count_records_cached keeps it).
/// Counter "parsed": rows parsed per pass.
template <bool kText>
void BM_RankPass(benchmark::State& state) {
  const int64_t world = state.range(0);
  const bool counted = state.range(1) == 1;
  auto open = []() -> std::unique_ptr<ExampleReader> {
    if (kText) return std::make_unique<CriteoTsvReader>("bench.tsv", criteo_text());
    return std::make_unique<BinaryReader>(binary_path());
  };
  int64_t parsed = 0, rows = 0;
  const int64_t known = counted ? count_records(*open()) : -1;
  for (auto _ : state) {
    BatcherOptions options;
    options.batch_size = 2048;
    options.shuffle_buffer = 16384;
    options.seed = 1;
    auto reader = open();
    if (world > 1) {  // as open_batches: the count from the header, or a pass over the text
      options.world_size = world;
      options.num_records = counted ? known : kText ? count_records(*open()) : *reader->num_records();
    }
    Batcher batcher(std::move(reader), options);
    while (auto batch = batcher.next()) {
      rows += batch->size();
      benchmark::DoNotOptimize(batch->labels.data_ptr());
    }
    parsed += batcher.report().rows_read;
  }
  state.counters["parsed"] = static_cast<double>(parsed) / static_cast<double>(state.iterations());
  state.counters["rows/s"] = benchmark::Counter(static_cast<double>(rows), benchmark::Counter::kIsRate);
}
BENCHMARK_TEMPLATE(BM_RankPass, true)->Args({1, 0})->Args({2, 0})->Args({2, 1})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_RankPass, false)->Args({1, 0})->Args({2, 0})->Unit(benchmark::kMillisecond)->UseRealTime();

/// --bad-records skip: the same text with a bad record (an I1 that is not a
/// number) after every 100th line, 1 % of the records.
const std::string& criteo_text_with_bad() {
  static const std::string text = [] {
    const std::string& good = criteo_text();
    std::string all;
    int64_t line = 0;
    for (size_t at = 0; at < good.size();) {
      const size_t next = good.find('\n', at) + 1;
      all.append(good, at, next - at);
      at = next;
      if (++line % 100 == 0) all += "1\tnot" + std::string(38, '\t') + "\n";
    }
    return all;
  }();
  return text;
}

/// One rank's shuffled pass with --bad-records skip (buffer 16384, global
/// batch 2048). range(0) = 1: the whole file through a skipping reader and
/// its budget, what every rank of a 2-rank run did before (and what one
/// process does); 2: rank 0 of 2 (the records counted by a pass over the
/// lines, rank 0's half of them parsed to find its bad records, the other
/// half's taken as found by rank 1 at the same time (outside the timing),
/// then its rows of each batch parsed). range(1) = 1: count and bad records
/// known, as in every later epoch or evaluation of the same file
/// (bad_records_cached). Counter "parsed": records parsed per pass (the
/// check's and the batches').
void BM_RankPassSkip(benchmark::State& state) {
  const int64_t world = state.range(0);
  const bool known = state.range(1) == 1;
  auto open = [] { return std::make_unique<CriteoTsvReader>("bench.tsv", criteo_text_with_bad(), BadRecordPolicy::kSkip); };
  const int64_t records = count_records(*open());
  const auto [other_first, other_count] = rank_rows(records, 1, 2);
  const BadRecords other = find_bad_records(*open(), other_first, other_count);
  std::shared_ptr<const BadRecords> remembered;
  if (world > 1 && known) {
    const auto [first, count] = rank_rows(records, 0, 2);
    remembered = std::make_shared<const BadRecords>(merge_bad_records({find_bad_records(*open(), first, count), other}));
  }
  int64_t parsed = 0, rows = 0;
  for (auto _ : state) {
    BatcherOptions options;
    options.batch_size = 2048;
    options.shuffle_buffer = 16384;
    options.seed = 1;
    std::unique_ptr<ExampleReader> reader = open();
    const ExampleReader* parsing = reader.get();
    if (world > 1) {
      options.world_size = world;
      options.max_bad_fraction = 0.05;
      options.bad_records = remembered;
      if (!known) {
        const int64_t n = count_records(*open());
        const auto [first, count] = rank_rows(n, 0, 2);
        auto checking = open();
        const BadRecords mine = find_bad_records(*checking, first, count);
        parsed += checking->report().rows_read + checking->report().rows_skipped;
        options.bad_records = std::make_shared<const BadRecords>(merge_bad_records({mine, other}));
      }
    } else {
      reader = std::make_unique<BadRecordBudget>(std::move(reader), 0.05);
    }
    Batcher batcher(std::move(reader), options);
    while (auto batch = batcher.next()) {
      rows += batch->size();
      benchmark::DoNotOptimize(batch->labels.data_ptr());
    }
    parsed += parsing->report().rows_read + parsing->report().rows_skipped;
  }
  state.counters["parsed"] = static_cast<double>(parsed) / static_cast<double>(state.iterations());
  state.counters["rows/s"] = benchmark::Counter(static_cast<double>(rows), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_RankPassSkip)->Args({1, 0})->Args({2, 0})->Args({2, 1})->Unit(benchmark::kMillisecond)->UseRealTime();

/// The ceiling: copying the mapped file's bytes in chunks of the same size.
void BM_MemcpyMappedFile(benchmark::State& state) {
  const MappedFile file(binary_path());
  std::vector<char> dst(1 << 20);
  for (auto _ : state) {
    for (size_t at = 0; at < file.size(); at += dst.size()) {
      const size_t n = std::min(dst.size(), file.size() - at);
      std::memcpy(dst.data(), file.data() + at, n);
      benchmark::DoNotOptimize(dst.data());
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(file.size()));
}
BENCHMARK(BM_MemcpyMappedFile)->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  if (binary_written) std::remove(binary_path().c_str());
  return 0;
}
