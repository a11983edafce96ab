// Each rank of a distributed run reads only its own rows: ExampleReader::skip
// passes over records without parsing them (every format gives the rows that
// reading all and dropping gives, with the same line numbers), and a Batcher
// in rank mode hands each rank its rows of exactly the global batches one
// Batcher makes, shuffle included, parsing only those rows.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <numeric>

#include "recmod/common/errors.h"
#include "recmod/config/model_config.h"
#include "recmod/data/bad_record_budget.h"
#include "recmod/data/batcher.h"
#include "recmod/data/binary_format.h"
#include "recmod/data/criteo_npy.h"
#include "recmod/data/criteo_tsv.h"
#include "recmod/data/delimited.h"
#include "recmod/data/jsonl.h"
#include "recmod/data/open_reader.h"
#include "support/test_util.h"

namespace recmod::data {
namespace rank_reading_test {

using ::testing::HasSubstr;
using ::testing::Not;
using test::error_of;

constexpr int64_t kRows = 103;

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "recmod_rank_" + std::to_string(::getpid()) + "_" + name;
}

std::string file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Row r: label r % 2, dense [r, r / 2], one id per feature (npy holds no more).
ExampleColumns sample(int64_t rows) {
  DataSchema schema;
  schema.num_dense = 2;
  schema.sparse_features = {"a", "b"};
  ExampleColumns c(schema);
  for (int64_t r = 0; r < rows; ++r) {
    c.labels.push_back(static_cast<float>(r % 2));
    c.dense.push_back(static_cast<float>(r));
    c.dense.push_back(static_cast<float>(r) / 2);
    c.sparse[0].ids.push_back(r * 7 % 31);
    c.close_bag(0);
    c.sparse[1].ids.push_back(1000 + r);
    c.close_bag(1);
    c.finish_row();
  }
  return c;
}

/// Criteo TSV of `rows` rows (I1 = the row number), with blank and CRLF lines.
std::string criteo_text(int64_t rows) {
  std::string text;
  for (int64_t r = 0; r < rows; ++r) {
    text += std::to_string(r % 2) + "\t" + std::to_string(r);
    for (int i = 1; i < 13; ++i) text += "\t" + std::to_string(i);
    for (int k = 0; k < 26; ++k) text += "\t" + std::to_string(r * 31 + k);  // hex digits
    text += r % 10 == 3 ? "\r\n" : "\n";
    if (r % 17 == 5) text += "\n";  // blank lines are not records
  }
  return text;
}

/// CSV with a header, quoted cells (one across a line break) and blank lines.
std::string csv_text(int64_t rows) {
  std::string text = "click,price,site\n";
  for (int64_t r = 0; r < rows; ++r) {
    text += std::to_string(r % 2) + "," + std::to_string(r) + ",";
    text += r % 9 == 4 ? "\"s" + std::to_string(r) + "\nnext, line\"\n" : "s" + std::to_string(r) + "\n";
    if (r % 13 == 2) text += "\r\n";
  }
  return text;
}

std::shared_ptr<const DelimitedSpec> csv_columns() {
  static const auto config = config::parse_model_config(config::ConfigNode::load_string(
      "features:\n  dense: {count: 1}\n  sparse: [site]\nnodes:\n  ebc:\n    type: EmbeddingBagCollection\n"
      "    input: features.sparse\n    tables:\n      - {name: t, num_embeddings: 100, embedding_dim: 4, "
      "feature_names: [site]}\n  logit: {type: Linear, input: ebc, out_features: 1}\noutput: logit\n"
      "data:\n  header: true\n  columns:\n    - {name: click, role: label}\n    - {name: price, role: dense}\n"
      "    - {name: site, role: sparse, range: 1000}\n",
      "m.yaml"));
  return config.data.columns;
}

struct Format {
  std::string name;
  std::function<std::unique_ptr<ExampleReader>()> open;
};

/// Every format, over kRows rows each (text kept alive by the lambdas).
std::vector<Format> formats() {
  const ExampleColumns rows = sample(kRows);
  const std::string rmb = temp_path("data.rmb");
  write_binary(rmb, rows);
  const std::string npy = temp_path("day");
  write_criteo_npy(npy, rows);
  auto tsv = std::make_shared<std::string>(criteo_text(kRows));
  auto csv = std::make_shared<std::string>(csv_text(kRows));
  const std::string jsonl_path = temp_path("data.jsonl");
  write_jsonl(jsonl_path, rows);
  auto jsonl = std::make_shared<std::string>(file_text(jsonl_path));
  // Blank lines between records.
  for (size_t at = jsonl->find('\n', 100); at != std::string::npos; at = jsonl->find('\n', at + 400))
    jsonl->insert(at + 1, "  \n");
  const DataSchema schema = rows.schema();
  return {
      {"binary", [rmb] { return std::make_unique<BinaryReader>(rmb); }},
      {"criteo_npy", [npy] { return std::make_unique<CriteoNpyReader>(npy); }},
      {"criteo_tsv", [tsv] { return std::make_unique<CriteoTsvReader>("d.tsv", *tsv); }},
      {"jsonl", [jsonl, schema] { return std::make_unique<JsonlReader>("d.jsonl", *jsonl, schema); }},
      {"delimited", [csv] { return std::make_unique<DelimitedReader>("d.csv", *csv, csv_columns()); }},
  };
}

ExampleColumns read_all(ExampleReader& reader) {
  ExampleColumns all(reader.schema());
  while (auto block = reader.read(10)) all.append(*block);
  return all;
}

void expect_same_rows(const ExampleColumns& a, const ExampleColumns& b, const std::string& where) {
  ASSERT_EQ(a.num_rows(), b.num_rows()) << where;
  EXPECT_EQ(a.labels, b.labels) << where;
  EXPECT_EQ(a.dense, b.dense) << where;
  ASSERT_EQ(a.sparse.size(), b.sparse.size()) << where;
  for (size_t f = 0; f < a.sparse.size(); ++f) {
    EXPECT_EQ(a.sparse[f].ids, b.sparse[f].ids) << where << " feature " << f;
    EXPECT_EQ(a.sparse[f].offsets, b.sparse[f].offsets) << where << " feature " << f;
    EXPECT_EQ(a.sparse[f].weights, b.sparse[f].weights) << where << " feature " << f;
  }
}

TEST(ReaderSkip, PassesOverTheSameRowsThatReadingAllAndDroppingWould) {
  for (const auto& format : formats()) {
    auto all_reader = format.open();
    const ExampleColumns all = read_all(*all_reader);
    ASSERT_EQ(all.num_rows(), kRows) << format.name;
    auto reader = format.open();
    ExampleColumns kept(reader->schema());
    std::vector<int64_t> expected;
    int64_t row = 0;
    for (int64_t i = 0; row < kRows; ++i) {
      const int64_t skip = (i * 5) % 4, read = 1 + (i * 3) % 4;  // 0-3 passed, 1-4 read
      const int64_t passed = reader->skip(skip);
      EXPECT_EQ(passed, std::min(skip, kRows - row)) << format.name;
      row += passed;
      if (auto block = reader->read(read)) {
        for (int64_t r = 0; r < block->num_rows(); ++r) expected.push_back(row + r);
        row += block->num_rows();
        kept.append(*block);
      }
    }
    EXPECT_EQ(reader->skip(5), 0) << format.name;  // at the end
    EXPECT_FALSE(reader->read(1)) << format.name;
    expect_same_rows(kept, all.take(expected), format.name);
    EXPECT_EQ(reader->report().rows_read, static_cast<int64_t>(expected.size())) << format.name << ": only read rows parse";
    auto counted = format.open();
    EXPECT_EQ(count_records(*counted), kRows) << format.name;
  }
}

TEST(ReaderSkip, ABadRecordAfterPassedLinesKeepsItsLineNumber) {
  std::string text = criteo_text(20);
  // Record 12 (0-based): lines 1-6, a blank line 7, then records 6.. on lines 8..: record 12 is line 14.
  size_t at = 0;
  for (int line = 1; line < 14; ++line) at = text.find('\n', at) + 1;
  text.insert(at, "1\tnot" + std::string(38, '\t') + "\n");
  CriteoTsvReader reader("d.tsv", text);
  EXPECT_EQ(reader.skip(12), 12);
  EXPECT_THAT(error_of<InputError>([&] { reader.read(2); }), HasSubstr("d.tsv:14: expected an integer for I1, found 'not'"));
  // Passing over it does not look at it.
  CriteoTsvReader passing("d.tsv", text);
  EXPECT_EQ(passing.skip(100), 21);
}

struct Pass {
  int64_t batch_size, shuffle_buffer, read_rows;
  bool drop_last;

  BatcherOptions options(uint64_t seed) const {
    BatcherOptions out;
    out.batch_size = batch_size;
    out.shuffle_buffer = shuffle_buffer;
    out.read_rows = read_rows;
    out.drop_last = drop_last;
    out.seed = seed;
    return out;
  }
};

/// Every batch of one pass as rows.
std::vector<ExampleColumns> batches_of(Batcher& batcher, std::vector<std::vector<int64_t>>* rank_sizes = nullptr) {
  std::vector<ExampleColumns> out;
  while (auto batch = batcher.next()) {
    out.push_back(ExampleColumns::from_batch(*batch, batcher.schema()));
    if (rank_sizes) rank_sizes->push_back(batcher.rank_sizes());
  }
  return out;
}

TEST(RankBatcher, EveryRanksRowsMakeTheGlobalBatchesOfOneProcess) {
  const std::vector<Pass> passes = {
      {10, 0, 8192, false},  // in order, last batch of 3
      {10, 0, 8192, true},   // ... dropped
      {7, 16, 5, false},     // shuffled over many fills, leftovers carried
      {7, 16, 5, true},
      {9, 40, 8, false},
      {2, 30, 7, false},     // global batches smaller than 3 ranks
  };
  for (const auto& format : formats()) {
    for (const Pass& pass : passes) {
      const BatcherOptions options = pass.options(/*seed=*/11);
      Batcher one(format.open(), options);
      const auto global = batches_of(one);
      for (int64_t world : {2, 3}) {
        const std::string where = format.name + " batch " + std::to_string(pass.batch_size) + " shuffle " +
                                  std::to_string(pass.shuffle_buffer) + (pass.drop_last ? " drop_last" : "") +
                                  ", " + std::to_string(world) + " ranks";
        std::vector<std::vector<ExampleColumns>> parts;
        std::vector<double> seen;  // every row's dense[0] (its row number), over all ranks
        for (int64_t rank = 0; rank < world; ++rank) {
          BatcherOptions mine = options;
          mine.rank = rank;
          mine.world_size = world;
          auto counter = format.open();
          mine.num_records = count_records(*counter);
          Batcher batcher(format.open(), mine);
          std::vector<std::vector<int64_t>> sizes;
          parts.push_back(batches_of(batcher, &sizes));
          ASSERT_EQ(parts.back().size(), global.size()) << where;
          int64_t own = 0;
          for (size_t k = 0; k < global.size(); ++k) {
            const auto [first, count] = rank_rows(global[k].num_rows(), rank, world);
            EXPECT_EQ(parts.back()[k].num_rows(), count) << where << " batch " << k;
            EXPECT_EQ(sizes[k][static_cast<size_t>(rank)], count) << where;
            EXPECT_EQ(std::accumulate(sizes[k].begin(), sizes[k].end(), int64_t{0}), global[k].num_rows()) << where;
            expect_same_rows(parts.back()[k], global[k].slice(first, first + count), where);
            own += count;
            const int64_t width = parts.back()[k].schema().num_dense;
            for (int64_t r = 0; r < count; ++r) seen.push_back(parts.back()[k].dense[static_cast<size_t>(width * r)]);
          }
          const ReadReport report = batcher.report();
          EXPECT_EQ(report.rows_read, own) << where << ": a rank parses its rows only";
          // The others' rows before its last one are passed over; those after it are not even passed.
          EXPECT_LE(report.rows_read + report.rows_passed, kRows) << where;
        }
        // Disjoint, and (without drop_last) every row once.
        std::sort(seen.begin(), seen.end());
        EXPECT_TRUE(std::adjacent_find(seen.begin(), seen.end()) == seen.end()) << where;
        if (!pass.drop_last) {
          EXPECT_EQ(static_cast<int64_t>(seen.size()), kRows) << where;
        }
      }
    }
  }
}

TEST(RankBatcher, ABadRecordFailsTheRankWhoseRowItIsWithItsLine) {
  std::string text = criteo_text(16);
  // Record 5 (line 6): in order with global batch 4, batch 1 = records 4..7, rank 0 takes 4 and 5.
  size_t at = 0;
  for (int line = 1; line < 6; ++line) at = text.find('\n', at) + 1;
  text.replace(at, text.find('\n', at) - at, "1\tx");
  BatcherOptions options;
  options.batch_size = 4;
  options.world_size = 2;
  options.num_records = 16;
  options.rank = 0;
  Batcher owner(std::make_unique<CriteoTsvReader>("d.tsv", text), options);
  EXPECT_THAT(error_of<InputError>([&] { batches_of(owner); }), HasSubstr("d.tsv:6: expected"));
  options.rank = 1;
  Batcher other(std::make_unique<CriteoTsvReader>("d.tsv", text), options);
  EXPECT_EQ(batches_of(other).size(), 4u);  // passed over, not parsed
}

TEST(RankBatcher, AFileShorterThanCountedIsAnError) {
  BatcherOptions options;
  options.batch_size = 4;
  options.world_size = 2;
  options.num_records = 20;
  const std::string text = criteo_text(10);
  Batcher batcher(std::make_unique<CriteoTsvReader>("d.tsv", text), options);
  EXPECT_THAT(error_of<InputError>([&] { batches_of(batcher); }), HasSubstr("counted when the pass began"));
}

/// The rows one pass (epoch `epoch`) of the JSON lines file at `path` gives
/// this rank (`options.rank`).
int64_t rows_of_jsonl_pass(const std::string& path, const ReadOptions& options, int64_t epoch) {
  auto source = open_batches(path, options, sample(1).schema(), epoch);
  int64_t rows = 0;
  while (auto batch = source->next()) rows += batch->size();
  return rows;
}

// A text file's records are counted (one pass over its line ends) once per
// file: later epochs of the unchanged file reuse the count; a file rewritten
// (another size or mtime) is counted again, and its new rows are read.
TEST(RankBatcher, ATextFileIsCountedOnceUntilItChanges) {
  const std::string path = temp_path("counted.jsonl");
  write_jsonl(path, sample(kRows));
  ReadOptions options;
  options.format = "jsonl";
  options.batch_size = 10;
  options.shuffle = true;
  options.world_size = 2;
  options.rank = 1;
  auto rows_of_pass = [&](int64_t epoch) { return rows_of_jsonl_pass(path, options, epoch); };
  const int64_t before = record_count_scans();
  EXPECT_EQ(rows_of_pass(0), kRows / 2);  // rank 1 of 2: 5 rows of each batch of 10, 1 of the last 3
  EXPECT_EQ(record_count_scans(), before + 1);
  EXPECT_EQ(rows_of_pass(1), kRows / 2);
  EXPECT_EQ(rows_of_pass(2), kRows / 2);
  EXPECT_EQ(record_count_scans(), before + 1);  // epochs 1 and 2 reused the count
  options.rank = 0;
  EXPECT_EQ(rows_of_pass(0), kRows - kRows / 2);
  EXPECT_EQ(record_count_scans(), before + 1);  // so does the other rank's view
  write_jsonl(path, sample(kRows + 20));
  EXPECT_EQ(rows_of_pass(0), (kRows + 20 + 1) / 2);
  EXPECT_EQ(record_count_scans(), before + 2);
  std::remove(path.c_str());
}

// --bad-records skip: the ranks find the bad records first (each parses a
// contiguous part, the parts are merged), then each parses only its rows of
// the batches one skipping process makes.

/// `text` with a bad record after every 7th line (from line 3 on, after the
/// CSV header), at record boundaries only (a quoted cell's next line is
/// not), and the first record bad too where `first_bad` says so.
std::string with_bad_records(const std::string& text, const std::string& bad, bool first_bad, int64_t every = 7) {
  std::string out;
  int64_t line = 0;
  size_t at = 0;
  if (first_bad) out += bad + "\n";
  while (at < text.size()) {
    const size_t end = text.find('\n', at);
    const size_t next = end == std::string::npos ? text.size() : end + 1;
    out += text.substr(at, next - at);
    ++line;
    at = next;
    const bool record_boundary = text.compare(at, 4, "next") != 0;
    if (line >= 3 && line % every == 0 && record_boundary && at < text.size()) out += bad + "\n";
  }
  return out;
}

/// Text formats with bad records (skipping readers), and how many bad ones.
struct BadFormat {
  std::string name;
  std::function<std::unique_ptr<ExampleReader>()> open;
};

std::vector<BadFormat> bad_formats(int64_t every = 7) {
  const ExampleColumns rows = sample(kRows);
  auto tsv = std::make_shared<std::string>(
      with_bad_records(criteo_text(kRows), "1\tnot" + std::string(38, '\t'), true, every));
  auto csv = std::make_shared<std::string>(with_bad_records(csv_text(kRows), "1,2", false, every));
  const std::string jsonl_path = temp_path("bad.jsonl");
  write_jsonl(jsonl_path, rows);
  auto jsonl = std::make_shared<std::string>(with_bad_records(file_text(jsonl_path), "{\"label\": ", true, every));
  const DataSchema schema = rows.schema();
  const auto skip = BadRecordPolicy::kSkip;
  return {
      {"criteo_tsv", [tsv, skip] { return std::make_unique<CriteoTsvReader>("d.tsv", *tsv, skip); }},
      {"jsonl", [jsonl, schema, skip] { return std::make_unique<JsonlReader>("d.jsonl", *jsonl, schema, skip); }},
      {"delimited", [csv, skip] { return std::make_unique<DelimitedReader>("d.csv", *csv, csv_columns(), skip); }},
  };
}

/// What the ranks of a run find: each its contiguous part, merged. Checks
/// that a rank parses its part only (and at most the next good record).
std::shared_ptr<const BadRecords> bad_records_of_ranks(const BadFormat& format, int64_t world, const std::string& where) {
  auto counter = format.open();
  const int64_t records = count_records(*counter);
  std::vector<BadRecords> parts;
  for (int64_t rank = 0; rank < world; ++rank) {
    const auto [first, count] = rank_rows(records, rank, world);
    auto reader = format.open();
    parts.push_back(find_bad_records(*reader, first, count));
    const ReadReport parsed = reader->report();
    EXPECT_GE(parsed.rows_read + parsed.rows_skipped, count) << where << " rank " << rank;
    EXPECT_LE(parsed.rows_read + parsed.rows_skipped, count + 1) << where << " rank " << rank << ": parses its part only";
  }
  return std::make_shared<const BadRecords>(merge_bad_records(parts));
}

TEST(RankBatcherSkip, RanksFindingTheirPartsFindEveryBadRecordWithOneProcesssMessages) {
  for (const auto& format : bad_formats()) {
    auto whole = format.open();
    const int64_t records = count_records(*whole);
    auto one = format.open();
    const BadRecords all = find_bad_records(*one, 0, records);
    auto reading = format.open();  // one skipping process's count
    while (reading->read(1000)) {
    }
    ASSERT_EQ(static_cast<int64_t>(all.records.size()), reading->report().rows_skipped) << format.name;
    EXPECT_EQ(all.first_errors, reading->report().first_errors) << format.name;
    ASSERT_GT(all.records.size(), ReadReport::kMaxErrors) << format.name;
    for (int64_t world : {2, 3}) {
      const auto merged = bad_records_of_ranks(format, world, format.name);
      EXPECT_EQ(merged->num_records, records) << format.name;
      EXPECT_EQ(merged->records, all.records) << format.name << ", " << world << " ranks";
      EXPECT_EQ(merged->first_errors, all.first_errors) << format.name << ", " << world << " ranks";
      // What a rank remembers of the whole gives the whole back.
      std::vector<BadRecords> again;
      for (int64_t rank = 0; rank < world; ++rank) {
        const auto [first, count] = rank_rows(records, rank, world);
        again.push_back(bad_records_within(all, first, count));
      }
      const BadRecords remerged = merge_bad_records(again);
      EXPECT_EQ(remerged.records, all.records) << format.name;
      EXPECT_EQ(remerged.first_errors, all.first_errors) << format.name;
    }
  }
}

TEST(RankBatcherSkip, EveryRanksRowsMakeTheBatchesOfOneSkippingProcess) {
  const std::vector<Pass> passes = {
      {10, 0, 8192, false},  // in order
      {10, 0, 8192, true},
      {7, 16, 5, false},  // shuffled over many fills
      {7, 16, 5, true},
      {2, 30, 7, false},  // global batches smaller than 3 ranks
  };
  for (const auto& format : bad_formats()) {
    for (const Pass& pass : passes) {
      const BatcherOptions options = pass.options(/*seed=*/5);
      Batcher one(std::make_unique<BadRecordBudget>(format.open(), 1.0), options);
      const auto global = batches_of(one);
      const ReadReport one_report = one.report();
      ASSERT_GT(one_report.rows_skipped, 0) << format.name;
      for (int64_t world : {2, 3}) {
        const std::string where = format.name + " batch " + std::to_string(pass.batch_size) + " shuffle " +
                                  std::to_string(pass.shuffle_buffer) + (pass.drop_last ? " drop_last" : "") + ", " +
                                  std::to_string(world) + " ranks";
        const auto bad = bad_records_of_ranks(format, world, where);
        for (int64_t rank = 0; rank < world; ++rank) {
          BatcherOptions mine = options;
          mine.rank = rank;
          mine.world_size = world;
          mine.bad_records = bad;
          auto reader = format.open();
          const ExampleReader* parsing = reader.get();
          Batcher batcher(std::move(reader), mine);
          const auto parts = batches_of(batcher);
          ASSERT_EQ(parts.size(), global.size()) << where;
          int64_t own = 0;
          for (size_t k = 0; k < global.size(); ++k) {
            const auto [first, count] = rank_rows(global[k].num_rows(), rank, world);
            expect_same_rows(parts[k], global[k].slice(first, first + count), where + " batch " + std::to_string(k));
            own += count;
          }
          EXPECT_EQ(parsing->report().rows_read, own) << where << ": a rank parses its rows only";
          // The report is one skipping process's.
          const ReadReport report = batcher.report();
          EXPECT_EQ(report.rows_read, one_report.rows_read) << where;
          EXPECT_EQ(report.rows_skipped, one_report.rows_skipped) << where;
          EXPECT_EQ(report.first_errors, one_report.first_errors) << where;
        }
      }
    }
  }
}

TEST(RankBatcherSkip, TheBudgetFailsAfterTheBatchesOneProcessHandsOut) {
  for (const Pass& pass : std::vector<Pass>{{4, 0, 8192, false}, {5, 12, 6, false}}) {
    const auto format = bad_formats(/*every=*/2)[0];  // Criteo TSV, a third of its records bad
    const BatcherOptions options = pass.options(/*seed=*/3);
    Batcher one(std::make_unique<BadRecordBudget>(format.open(), 0.2, /*min_records=*/40), options);
    std::vector<ExampleColumns> global;
    const std::string message = error_of<InputError>([&] {
      while (auto batch = one.next()) global.push_back(ExampleColumns::from_batch(*batch, one.schema()));
    });
    ASSERT_THAT(message, HasSubstr("exceed --max-bad-fraction 0.2"));
    ASSERT_FALSE(global.empty());
    for (int64_t world : {2, 3}) {
      const auto bad = bad_records_of_ranks(format, world, "budget");
      for (int64_t rank = 0; rank < world; ++rank) {
        BatcherOptions mine = options;
        mine.rank = rank;
        mine.world_size = world;
        mine.bad_records = bad;
        mine.max_bad_fraction = 0.2;
        mine.min_bad_check = 40;
        Batcher batcher(format.open(), mine);
        size_t handed = 0;
        const std::string theirs = error_of<InputError>([&] {
          while (auto batch = batcher.next()) {
            ASSERT_LT(handed, global.size());
            const auto [first, count] = rank_rows(global[handed].num_rows(), rank, world);
            expect_same_rows(ExampleColumns::from_batch(*batch, batcher.schema()), global[handed].slice(first, first + count),
                             "budget batch " + std::to_string(handed));
            ++handed;
          }
        });
        EXPECT_EQ(handed, global.size()) << world << " ranks, rank " << rank;
        EXPECT_EQ(theirs, message) << world << " ranks, rank " << rank;
      }
    }
  }
}

// The bad records of a file are found once per file and process (by path,
// size and mtime), as its record count is; a rewritten file is checked again.
TEST(RankBatcherSkip, AFilesBadRecordsAreFoundOnceUntilItChanges) {
  const std::string path = temp_path("skipped.jsonl");
  write_jsonl(path, sample(kRows));
  std::string text = with_bad_records(file_text(path), "{\"label\": ", true);
  {
    std::ofstream(path, std::ios::binary) << text;
  }
  ReadOptions options;
  options.format = "jsonl";
  options.batch_size = 10;
  options.shuffle = true;
  options.bad_records = BadRecordPolicy::kSkip;
  options.max_bad_fraction = 1.0;  // a bad record in every 8: beyond the default budget
  options.world_size = 2;
  options.rank = 1;
  int64_t shared = 0;
  // The other rank's part, as it would send it (the exchange is the communicator's in a run).
  options.share_bad_records = [&](const BadRecords& mine) {
    ++shared;
    auto reader = open_reader(path, DataFormat::kJsonl, sample(1).schema(), BadRecordPolicy::kSkip);
    const int64_t records = count_records(*open_reader(path, DataFormat::kJsonl, sample(1).schema()));
    const auto [first, count] = rank_rows(records, 0, 2);
    return std::vector<BadRecords>{find_bad_records(*reader, first, count), mine};
  };
  auto rows_of_pass = [&](int64_t epoch) { return rows_of_jsonl_pass(path, options, epoch); };
  const int64_t before = bad_record_scans();
  EXPECT_EQ(rows_of_pass(0), kRows / 2);  // rank 1 of 2: half of the good rows
  EXPECT_EQ(bad_record_scans(), before + 1);  // its part only
  EXPECT_EQ(rows_of_pass(1), kRows / 2);
  EXPECT_EQ(bad_record_scans(), before + 1);  // remembered
  EXPECT_EQ(shared, 2);                       // ... and still shared: every rank takes part every time
  write_jsonl(path, sample(kRows + 20));      // rewritten: no bad records now
  EXPECT_EQ(rows_of_pass(0), (kRows + 20) / 2);  // rank 1: 5 of each 10, 1 of the last 3
  EXPECT_EQ(bad_record_scans(), before + 2);
  std::remove(path.c_str());
}

TEST(RankBatcherSkip, AMisshapenRecordAfterPassedOnesGetsNoNotCriteoHint) {
  // The file's first record misshapen: most likely not Criteo TSV at all.
  const std::string misshapen_first = "a,b,c\n" + criteo_text(10);  // the reader views the text: keep it alive
  CriteoTsvReader first("d.tsv", misshapen_first, BadRecordPolicy::kSkip);
  first.read(2);
  // A misshapen record that is the first one read after skip() passed over
  // good ones (a rank's part starts there): a bad record, not a wrong format.
  std::string text = criteo_text(10);
  text.insert(text.find('\n') + 1, "a,b,c\n");  // record 1
  CriteoTsvReader passed("d.tsv", text, BadRecordPolicy::kSkip);
  EXPECT_EQ(passed.skip(1), 1);
  passed.read(2);
  ASSERT_EQ(first.report().first_errors.size(), 1u);
  ASSERT_EQ(passed.report().first_errors.size(), 1u);
  EXPECT_THAT(first.report().first_errors[0], HasSubstr(kReadAsCriteoHint));
  EXPECT_THAT(passed.report().first_errors[0], HasSubstr("d.tsv:2: "));
  EXPECT_THAT(passed.report().first_errors[0], Not(HasSubstr(kReadAsCriteoHint)));
}

}  // namespace rank_reading_test
}  // namespace recmod::data
