#pragma once
// Opening a data file by format: the one place that maps a format name (or a
// file's first bytes) to a reader.
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "recmod/data/batcher.h"
#include "recmod/data/delimited.h"
#include "recmod/data/example_reader.h"
#include "recmod/data/jsonl.h"

namespace recmod::data {

enum class DataFormat { kAuto, kCriteoTsv, kJsonl, kBinary, kDelimited, kCriteoNpy };

/// "auto", "criteo_tsv", "jsonl", "binary", "delimited" (older spellings "criteo-tsv",
/// "tsv" and "rmb" are accepted too); throws
/// UsageError listing the valid names.
DataFormat parse_data_format(const std::string& name);
std::string format_name(DataFormat format);
/// By content: the binary magic -> kBinary; a first non-blank '{' -> kJsonl;
/// otherwise kCriteoTsv. A gzip or zstd file (by its first bytes; a .gz or
/// .zst name must have them) is judged by its decompressed text, so
/// x.tsv.gz is Criteo TSV and x.jsonl.zst JSON lines; a compressed .rmb is an
/// InputError (binary files are read memory-mapped).
DataFormat detect_format(const std::string& path);

/// Opens `path`. JSON lines need `schema` (the other formats carry or imply
/// their own; a given schema must then agree with the file's). Delimited
/// text needs `columns` (a config's data.columns); with columns, kAuto reads
/// a text file that is not JSON lines as delimited.
std::unique_ptr<ExampleReader> open_reader(const std::string& path, DataFormat format = DataFormat::kAuto,
                                           const std::optional<DataSchema>& schema = std::nullopt,
                                           BadRecordPolicy policy = BadRecordPolicy::kFail,
                                           std::shared_ptr<const DelimitedSpec> columns = nullptr,
                                           const JsonlOptions& jsonl = {});

/// open_reader + Batcher for one epoch: the shuffle seed is options.seed +
/// epoch, so every epoch has its own order and a run is reproducible (what a
/// trainer's per-epoch data factory calls).
std::unique_ptr<BatchSource> open_batches(const std::string& path, BatcherOptions options, int64_t epoch = 0,
                                          DataFormat format = DataFormat::kAuto,
                                          const std::optional<DataSchema>& schema = std::nullopt,
                                          BadRecordPolicy policy = BadRecordPolicy::kFail,
                                          std::shared_ptr<const DelimitedSpec> columns = nullptr,
                                          const JsonlOptions& jsonl = {});

/// How a command reads a data set into batches.
struct ReadOptions {
  std::string format;        // criteo_tsv | jsonl | binary | delimited | auto ("" = auto: from the file's first bytes)
  std::shared_ptr<const DelimitedSpec> columns;  // a config's data.columns: text is read as delimited
  JsonlOptions jsonl;                            // how JSON lines are checked and their string ids hashed
  BadRecordPolicy bad_records = BadRecordPolicy::kFail;
  double max_bad_fraction = 0.01;  // with kSkip: more bad records than this fraction fail the read (BadRecordBudget)
  int64_t batch_size = 256;
  bool shuffle = false;      // rows mixed in a buffer of max(16384, batch_size) rows
  uint64_t seed = 0;         // the shuffle's seed; epoch e shuffles with seed + e
  /// A rank of a data-parallel run (world_size > 1; batch_size is then the
  /// global batch): the Batcher reads only this rank's rows of each global
  /// batch (BatcherOptions::rank), a text file being counted first by a pass
  /// over its lines. With kSkip on text, which rows fill a batch depends on
  /// which are bad, so the bad records are found first: this rank parses its
  /// contiguous 1/world_size of the records (find_bad_records),
  /// share_bad_records gives every rank's findings, and the Batcher plans
  /// with all of them (BatcherOptions::bad_records). Both the count and the
  /// bad records are kept per file and process (bad_records_cached).
  int64_t rank = 0;
  int64_t world_size = 1;
  /// Collective (every rank calls it with its part, in the same order of
  /// files): every rank's part, in rank order (train::share_bad_records:
  /// the run's communicator). Unset: this rank checks every part itself.
  std::function<std::vector<BadRecords>(const BadRecords& mine)> share_bad_records;
};

/// The bad records of the text file at `path` (`num_records` records) for a
/// rank of a distributed run: its part of them is found by parsing its
/// contiguous share of the records (`open` opens a skipping reader), or taken
/// from what this process found for the unchanged file before (by path,
/// `how` it is read, size and mtime); `share` (see ReadOptions) gives the
/// whole. Every rank calls `share`, found or remembered.
std::shared_ptr<const BadRecords> bad_records_cached(
    const std::string& path, const std::string& how, int64_t num_records, int64_t rank, int64_t world_size,
    const std::function<std::unique_ptr<ExampleReader>()>& open,
    const std::function<std::vector<BadRecords>(const BadRecords&)>& share);
/// How many parts bad_records_cached parsed (rather than remembered).
int64_t bad_record_scans();

/// The batches of `path` for a model whose features are `model_schema`: the
/// one way train, eval, profile and evict open data. JSON lines are read with
/// `model_schema`; the other formats bring their own schema (check it against
/// the model's).
std::unique_ptr<BatchSource> open_batches(const std::string& path, const ReadOptions& options,
                                          const DataSchema& model_schema, int64_t epoch = 0);

}  // namespace recmod::data
