#include "recmod/data/open_reader.h"

#include <algorithm>

#include <cstring>

#include "recmod/common/errors.h"
#include "recmod/data/bad_record_budget.h"
#include "recmod/data/binary_format.h"
#include "recmod/data/compressed_stream.h"
#include "recmod/data/criteo_npy.h"
#include "recmod/data/criteo_tsv.h"
#include "recmod/data/jsonl.h"

namespace recmod::data {

DataFormat parse_data_format(const std::string& name) {
  if (name == "auto") return DataFormat::kAuto;
  // criteo_tsv is the one spelling messages and docs use; the others are
  // accepted because earlier versions wrote them.
  if (name == "criteo_tsv" || name == "criteo-tsv" || name == "tsv") return DataFormat::kCriteoTsv;
  if (name == "jsonl") return DataFormat::kJsonl;
  if (name == "binary" || name == "rmb") return DataFormat::kBinary;
  if (name == "delimited") return DataFormat::kDelimited;
  if (name == "criteo_npy" || name == "criteo-npy" || name == "npy") return DataFormat::kCriteoNpy;
  throw UsageError(str_cat("unknown data format '", name,
                           "'; expected one of [auto, criteo_tsv, jsonl, binary, delimited, criteo_npy]"));
}

std::string format_name(DataFormat format) {
  switch (format) {
    case DataFormat::kAuto: return "auto";
    case DataFormat::kCriteoTsv: return "criteo_tsv";
    case DataFormat::kJsonl: return "jsonl";
    case DataFormat::kBinary: return "binary";
    case DataFormat::kDelimited: return "delimited";
    case DataFormat::kCriteoNpy: return "criteo_npy";
  }
  return "?";
}

DataFormat detect_format(const std::string& path) {
  // TorchRec's Criteo .npy: a day's three files, named by one of them or their prefix.
  if (is_criteo_npy(path)) return DataFormat::kCriteoNpy;
  // The first 4 KiB of the text: decompressed when the file is gzip or zstd.
  const std::string head = read_text_prefix(path, 4096);
  if (head.size() >= sizeof(kBinaryMagic) && std::memcmp(head.data(), kBinaryMagic, sizeof(kBinaryMagic)) == 0) {
    if (detect_compression(path) != Compression::kNone)
      throw_input_error(path, ": a compressed recmod binary (.rmb) file; .rmb files are read memory-mapped, so "
                        "decompress it first (gzip -d or zstd -d)");
    return DataFormat::kBinary;
  }
  for (const char c : head) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    return c == '{' ? DataFormat::kJsonl : DataFormat::kCriteoTsv;
  }
  return DataFormat::kCriteoTsv;
}

namespace {
void check_schema_agrees(const std::string& path, const DataSchema& file, const std::optional<DataSchema>& given) {
  if (!given) return;
  if (given->num_dense != file.num_dense || given->sparse_features != file.sparse_features ||
      given->num_labels != file.num_labels || given->weighted != file.weighted)
    throw_input_error(path, ": the file has ", file.num_dense, " dense features, sparse ",
                      join_names(file.sparse_features), ", ", file.num_labels, " label(s)",
                      file.weighted ? ", weighted" : "", "; expected ", given->num_dense, " dense, sparse ",
                      join_names(given->sparse_features), ", ", given->num_labels, " label(s)",
                      given->weighted ? ", weighted" : "");
}
}  // namespace

std::unique_ptr<ExampleReader> open_reader(const std::string& path, DataFormat format,
                                           const std::optional<DataSchema>& schema, BadRecordPolicy policy,
                                           std::shared_ptr<const DelimitedSpec> columns, const JsonlOptions& jsonl) {
  const DataFormat found = detect_format(path);
  // A config that describes its columns reads its text files with them.
  if (format == DataFormat::kAuto) format = columns && found == DataFormat::kCriteoTsv ? DataFormat::kDelimited : found;
  // A text format asked for (e.g. by a config's data.format) on a binary
  // file would fail at line 1 with a parse error that hides the cause.
  if (found == DataFormat::kCriteoNpy && format != DataFormat::kCriteoNpy)
    throw_input_error(path, ": TorchRec Criteo .npy files, but the data format asked for is ", format_name(format),
                      "; use --format criteo_npy (or auto)");
  if (found == DataFormat::kBinary && format != DataFormat::kBinary)
    throw_input_error(path, ": this is a recmod binary (.rmb) file, but the data format asked for is ",
                      format_name(format), "; use --format binary (or auto)");
  std::unique_ptr<ExampleReader> reader;
  switch (format) {
    case DataFormat::kCriteoTsv:
      reader = std::make_unique<CriteoTsvReader>(path, policy);
      break;
    case DataFormat::kBinary: {
      auto binary = std::make_unique<BinaryReader>(path);
      // Labels checked against the loss, as JSON lines' are (jsonl carries
      // what the model's tasks ask: 0/1 for binary cross-entropy).
      std::vector<bool> binary_labels;
      for (int64_t l = 0; l < binary->schema().num_labels; ++l) {
        const auto k = static_cast<size_t>(l);
        binary_labels.push_back(k < jsonl.binary_per_label.size() ? jsonl.binary_per_label[k] : jsonl.binary_labels);
      }
      binary->require_binary_labels(std::move(binary_labels));
      reader = std::move(binary);
      break;
    }
    case DataFormat::kCriteoNpy:
      reader = std::make_unique<CriteoNpyReader>(path);
      break;
    case DataFormat::kJsonl:
      if (!schema) throw_input_error(path, ": JSON lines need a schema (dense count and sparse feature names)");
      return std::make_unique<JsonlReader>(path, *schema, policy, jsonl);
    case DataFormat::kDelimited:
      if (!columns)
        throw_input_error(path, ": delimited text needs its columns described (data.columns in the config; "
                          "docs/data.md \"Delimited text\")");
      reader = std::make_unique<DelimitedReader>(path, std::move(columns), policy);
      break;
    case DataFormat::kAuto:
      break;
  }
  check_schema_agrees(path, reader->schema(), schema);
  return reader;
}

std::unique_ptr<BatchSource> open_batches(const std::string& path, BatcherOptions options, int64_t epoch,
                                          DataFormat format, const std::optional<DataSchema>& schema,
                                          BadRecordPolicy policy, std::shared_ptr<const DelimitedSpec> columns,
                                          const JsonlOptions& jsonl) {
  options.seed += static_cast<uint64_t>(epoch);
  return std::make_unique<Batcher>(open_reader(path, format, schema, policy, std::move(columns), jsonl), options);
}

std::unique_ptr<BatchSource> open_batches(const std::string& path, const ReadOptions& options,
                                          const DataSchema& model_schema, int64_t epoch) {
  DataFormat format = parse_data_format(options.format.empty() ? "auto" : options.format);
  if (format == DataFormat::kAuto) {
    format = detect_format(path);
    if (options.columns && format == DataFormat::kCriteoTsv) format = DataFormat::kDelimited;
  }
  // JSON lines carry no schema of their own: they are read with the model's.
  // The other formats bring theirs, which the caller checks against the
  // model (with a message naming the config).
  std::optional<DataSchema> given;
  if (format == DataFormat::kJsonl) given = model_schema;
  BatcherOptions batcher;
  batcher.batch_size = options.batch_size;
  batcher.shuffle_buffer = options.shuffle ? std::max<int64_t>(16384, options.batch_size) : 0;
  batcher.seed = options.seed;
  batcher.seed += static_cast<uint64_t>(epoch);
  auto reader = open_reader(path, format, given, options.bad_records, options.columns, options.jsonl);
  if (options.world_size > 1 && options.bad_records == BadRecordPolicy::kFail) {
    batcher.rank = options.rank;
    batcher.world_size = options.world_size;
    auto known = reader->num_records();
    // Text: counted by a pass over its line ends, once per file and process
    // (later epochs and evaluations of the unchanged file reuse the count).
    std::string how = std::to_string(static_cast<int>(format));
    if (options.columns)
      how += str_cat(" delimiter ", static_cast<int>(options.columns->delimiter), " quote ",
                     static_cast<int>(options.columns->quote), " header ", options.columns->header);
    batcher.num_records = known ? *known : count_records_cached(path, how, [&] {
      return open_reader(path, format, given, options.bad_records, options.columns, options.jsonl);
    });
  }
  if (options.bad_records == BadRecordPolicy::kSkip)
    reader = std::make_unique<BadRecordBudget>(std::move(reader), options.max_bad_fraction);
  return std::make_unique<Batcher>(std::move(reader), batcher);
}

}  // namespace recmod::data
