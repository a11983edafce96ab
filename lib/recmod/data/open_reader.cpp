#include "recmod/data/open_reader.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>

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

namespace {
std::mutex g_bad_mutex;
std::map<std::string, std::shared_ptr<const BadRecords>> g_bad;  // key: path, how, size, mtime
int64_t g_bad_scans = 0;

/// How a JSON lines or delimited file is checked, for bad_records_cached's
/// key: the schema and the options that make a record bad (vocabularies and
/// column specs by identity: another object is another key).
std::string checking_of(const DataSchema& schema, const ReadOptions& options) {
  std::string out = str_cat(" schema ", schema.num_dense, " ", join_names(schema.sparse_features), " ",
                            schema.num_labels, " ", schema.weighted, " columns ",
                            reinterpret_cast<uintptr_t>(options.columns.get()));
  const JsonlOptions& j = options.jsonl;
  out += str_cat(" jsonl ", j.strict, j.binary_labels, " ", j.hash_seed);
  for (const bool b : j.binary_per_label) out += b ? "1" : "0";
  out += ";";
  for (const bool b : j.weighted) out += b ? "1" : "0";
  for (const auto r : j.string_id_range) out += str_cat(",", r);
  out += ";";
  for (const auto& v : j.vocab) out += str_cat(",", reinterpret_cast<uintptr_t>(v.get()));
  for (const auto b : j.oov_buckets) out += str_cat(",", b);
  out += ";";
  for (const auto l : j.id_limit) out += str_cat(",", l);
  return out;
}
}  // namespace

std::shared_ptr<const BadRecords> bad_records_cached(
    const std::string& path, const std::string& how, int64_t num_records, int64_t rank, int64_t world_size,
    const std::function<std::unique_ptr<ExampleReader>()>& open,
    const std::function<std::vector<BadRecords>(const BadRecords&)>& share) {
  std::string key;
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0)
    key = path + "\n" + how + "\n" + std::to_string(static_cast<int64_t>(st.st_size)) + "\n" +
          std::to_string(static_cast<int64_t>(st.st_mtim.tv_sec)) + "." +
          std::to_string(static_cast<int64_t>(st.st_mtim.tv_nsec));
  std::shared_ptr<const BadRecords> known;
  if (!key.empty()) {
    std::lock_guard<std::mutex> lock(g_bad_mutex);
    if (auto it = g_bad.find(key); it != g_bad.end() && it->second->num_records == num_records) known = it->second;
  }
  auto part_of = [&](int64_t r) {
    const auto [first, count] = rank_rows(num_records, r, world_size);
    if (known) return bad_records_within(*known, first, count);
    {
      std::lock_guard<std::mutex> lock(g_bad_mutex);
      ++g_bad_scans;
    }
    return find_bad_records(*open(), first, count);
  };
  std::vector<BadRecords> parts;
  if (share) {
    parts = share(part_of(rank));
  } else {
    for (int64_t r = 0; r < world_size; ++r) parts.push_back(part_of(r));
  }
  TORCH_CHECK(static_cast<int64_t>(parts.size()) == world_size, "share_bad_records: expected ", world_size,
              " parts, got ", parts.size());
  for (int64_t r = 0; r < world_size; ++r)
    if (parts[static_cast<size_t>(r)].num_records != rank_rows(num_records, r, world_size).second)
      throw_input_error(path, ": rank ", r, " counted another number of records than this rank's ", num_records,
                        " (do the ranks read the same file?)");
  auto all = std::make_shared<const BadRecords>(merge_bad_records(parts));
  if (!key.empty()) {
    std::lock_guard<std::mutex> lock(g_bad_mutex);
    g_bad[key] = all;
  }
  return all;
}

int64_t bad_record_scans() {
  std::lock_guard<std::mutex> lock(g_bad_mutex);
  return g_bad_scans;
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
  if (options.world_size > 1) {
    batcher.rank = options.rank;
    batcher.world_size = options.world_size;
    auto known = reader->num_records();
    // Text: counted by a pass over its line ends, once per file and process
    // (later epochs and evaluations of the unchanged file reuse the count).
    std::string how = std::to_string(static_cast<int>(format));
    if (options.columns)
      how += str_cat(" delimiter ", static_cast<int>(options.columns->delimiter), " quote ",
                     static_cast<int>(options.columns->quote), " header ", options.columns->header);
    auto reopen = [&] { return open_reader(path, format, given, options.bad_records, options.columns, options.jsonl); };
    batcher.num_records = known ? *known : count_records_cached(path, how, reopen);
    // Skipping applies to the text formats (.rmb and .npy fail on a bad
    // record whatever the policy): every rank learns every bad record.
    const bool text = format == DataFormat::kCriteoTsv || format == DataFormat::kJsonl || format == DataFormat::kDelimited;
    if (options.bad_records == BadRecordPolicy::kSkip && text) {
      if (!(options.max_bad_fraction >= 0.0 && options.max_bad_fraction <= 1.0))  // as BadRecordBudget
        throw UsageError(str_cat("--max-bad-fraction must be in [0, 1], got ", options.max_bad_fraction));
      batcher.bad_records = bad_records_cached(path, how + checking_of(model_schema, options), batcher.num_records,
                                               options.rank, options.world_size, reopen, options.share_bad_records);
      batcher.max_bad_fraction = options.max_bad_fraction;
    }
  }
  // A rank with every bad record known checks the budget in its plan.
  if (options.bad_records == BadRecordPolicy::kSkip && !batcher.bad_records)
    reader = std::make_unique<BadRecordBudget>(std::move(reader), options.max_bad_fraction);
  return std::make_unique<Batcher>(std::move(reader), batcher);
}

}  // namespace recmod::data
