// recmod inspect FILE [--config CONFIG]: what a data file holds, before
// training on it: the format read, rows and bad records, label balance, and
// per feature the empty-bag rate, ids per row, distinct ids and (with a
// config) ids outside the table that reads it.
#include <algorithm>
#include <iomanip>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "commands/commands.h"
#include "recmod/common/errors.h"
#include "recmod/config/data_columns.h"
#include "recmod/config/model_config.h"
#include "recmod/data/open_reader.h"
#include "recmod/train/open_model.h"

namespace recmod::app {

namespace {

struct InspectArgs {
  std::string file, config, format;
  bool json = false;
};

struct FeatureStats {
  int64_t empty = 0, ids = 0, outside = 0;
  int64_t min = std::numeric_limits<int64_t>::max(), max = std::numeric_limits<int64_t>::min();
  std::unordered_set<int64_t> distinct;
  bool distinct_capped = false;
};

constexpr size_t kDistinctCap = size_t{1} << 22;

int run_inspect(const InspectArgs& a) {
  std::optional<config::ModelConfig> cfg;
  if (!a.config.empty()) {
    config::LoadOptions load;  // a run's config.yaml reads the run's vocabularies (RUN/vocab/)
    load.vocab_dir = train::run_vocab_dir(a.config, "");
    cfg = config::load_model_config(a.config, {}, load);
  }
  std::string format_name = !a.format.empty() ? a.format : cfg && !cfg->data.format.empty() ? cfg->data.format : "auto";
  data::DataFormat format = data::parse_data_format(format_name);
  std::shared_ptr<const data::DelimitedSpec> columns = cfg ? cfg->data.columns : nullptr;
  if (format == data::DataFormat::kAuto) {
    format = data::detect_format(a.file);
    if (columns && format == data::DataFormat::kCriteoTsv) format = data::DataFormat::kDelimited;
  }
  std::optional<data::DataSchema> schema;
  data::JsonlOptions jsonl;
  std::vector<uint64_t> table_rows;  // per config feature: rows its raw ids must fall in (0: hashed by the model)
  if (cfg) {
    data::DataSchema s;
    s.num_dense = cfg->features.num_dense;
    s.sparse_features = cfg->features.sparse_names();
    const auto ranges = config::string_id_ranges(*cfg);
    for (size_t f = 0; f < cfg->features.sparse.size(); ++f) {
      const auto& spec = cfg->features.sparse[f];
      s.weighted = s.weighted || spec.weighted;
      jsonl.weighted.push_back(spec.weighted);
      jsonl.vocab.push_back(spec.vocab);
      jsonl.oov_buckets.push_back(spec.oov_buckets);
      table_rows.push_back(spec.hash == "none" ? ranges[f] : 0);
    }
    jsonl.string_id_range = ranges;
    jsonl.hash_seed = cfg->data.hash_seed;
    jsonl.strict = cfg->data.strict_features;
    jsonl.binary_labels = format == data::DataFormat::kJsonl;  // a .rmb's labels are shown, not refused
    if (format == data::DataFormat::kJsonl) schema = s;
  } else if (format == data::DataFormat::kJsonl) {
    throw UsageError("inspect: JSON lines need --config CONFIG (its features: section is their schema)");
  }
  auto reader = data::open_reader(a.file, format, schema, data::BadRecordPolicy::kSkip, columns, jsonl);
  const auto& names = reader->schema().sparse_features;
  std::vector<FeatureStats> stats(names.size());
  int64_t rows = 0, positives = 0;
  double label_sum = 0;
  std::vector<double> dense_sum(reader->schema().num_dense, 0.0);
  while (auto block = reader->read(65536)) {
    const int64_t n = block->num_rows();
    rows += n;
    for (float y : block->labels) {
      positives += y == 1.0f;
      label_sum += y;
    }
    for (int64_t r = 0; r < n; ++r)
      for (size_t d = 0; d < dense_sum.size(); ++d) dense_sum[d] += block->dense[r * dense_sum.size() + d];
    for (size_t f = 0; f < names.size(); ++f) {
      auto& st = stats[f];
      const auto& col = block->sparse[f];
      for (int64_t r = 0; r < n; ++r) st.empty += col.length(r) == 0;
      // The config feature of the same name, for the table's rows.
      uint64_t rows_of_table = 0;
      if (cfg) {
        const auto model_names = cfg->features.sparse_names();
        const auto it = std::find(model_names.begin(), model_names.end(), names[f]);
        if (it != model_names.end()) rows_of_table = table_rows[it - model_names.begin()];
      }
      for (int64_t id : col.ids) {
        ++st.ids;
        st.min = std::min(st.min, id);
        st.max = std::max(st.max, id);
        if (rows_of_table > 0 && (id < 0 || static_cast<uint64_t>(id) >= rows_of_table)) ++st.outside;
        if (st.distinct.size() < kDistinctCap)
          st.distinct.insert(id);
        else
          st.distinct_capped = st.distinct_capped || !st.distinct.count(id);
      }
    }
  }
  const auto report = reader->report();
  nlohmann::json out;
  out["file"] = a.file;
  out["format"] = data::format_name(format);
  out["rows"] = rows;
  out["bad_records"] = report.rows_skipped;
  out["first_bad_records"] = report.first_errors;
  out["label_positive_fraction"] = rows ? static_cast<double>(positives) / rows : 0.0;
  out["label_mean"] = rows ? label_sum / rows : 0.0;
  out["dense_mean"] = nlohmann::json::array();
  for (double s : dense_sum) out["dense_mean"].push_back(rows ? s / rows : 0.0);
  out["sparse"] = nlohmann::json::array();
  for (size_t f = 0; f < names.size(); ++f) {
    const auto& st = stats[f];
    nlohmann::json j{{"name", names[f]},
                     {"empty_fraction", rows ? static_cast<double>(st.empty) / rows : 0.0},
                     {"ids_per_row", rows ? static_cast<double>(st.ids) / rows : 0.0},
                     {"distinct_ids", st.distinct.size()},
                     {"distinct_ids_at_least", st.distinct_capped}};
    if (st.ids > 0) {
      j["min_id"] = st.min;
      j["max_id"] = st.max;
    }
    if (cfg) j["ids_outside_table"] = st.outside;
    out["sparse"].push_back(j);
  }
  if (a.json) {
    std::cout << out.dump() << "\n";
    return 0;
  }
  std::cout << a.file << ": " << out["format"].get<std::string>() << ", " << rows << " rows, "
            << report.rows_skipped << " bad records" << (report.first_errors.empty() ? "" : " (first: " + report.first_errors[0] + ")")
            << "\n";
  std::cout << std::fixed << std::setprecision(3) << "label: mean " << out["label_mean"].get<double>() << ", "
            << positives << " exactly 1 (" << 100.0 * out["label_positive_fraction"].get<double>() << "%)\n";
  for (size_t d = 0; d < dense_sum.size(); ++d)
    std::cout << "dense[" << d << "]: mean " << out["dense_mean"][d].get<double>() << "\n";
  std::cout << std::left << std::setw(20) << "feature" << std::right << std::setw(8) << "empty%" << std::setw(10)
            << "ids/row" << std::setw(11) << "distinct" << std::setw(21) << "min id" << std::setw(21) << "max id"
            << (cfg ? "   outside table" : "") << "\n";
  for (const auto& j : out["sparse"]) {
    std::cout << std::left << std::setw(20) << j["name"].get<std::string>() << std::right << std::setw(8)
              << 100.0 * j["empty_fraction"].get<double>() << std::setw(10) << j["ids_per_row"].get<double>()
              << std::setw(11) << (std::to_string(j["distinct_ids"].get<size_t>()) + (j["distinct_ids_at_least"].get<bool>() ? "+" : ""))
              << std::setw(21) << (j.contains("min_id") ? std::to_string(j["min_id"].get<int64_t>()) : "-")
              << std::setw(21) << (j.contains("max_id") ? std::to_string(j["max_id"].get<int64_t>()) : "-");
    if (cfg) std::cout << std::setw(16) << j["ids_outside_table"].get<int64_t>();
    std::cout << "\n";
  }
  return 0;
}

}  // namespace

void add_inspect(CLI::App& app, Actions& actions) {
  auto* cmd = app.add_subcommand("inspect", "Show what a data file holds: format, rows, label balance, per-feature ids");
  auto a = std::make_shared<InspectArgs>();
  cmd->add_option("file", a->file, "Data file (any format recmod reads)")->required();
  cmd->add_option("--config", a->config,
                  "Model config: its features (the schema of JSON lines), data.columns (delimited text) and tables "
                  "(ids outside them are counted)");
  cmd->add_option("--format", a->format, "criteo_tsv | jsonl | binary | delimited (default: detected)");
  cmd->add_flag("--json", a->json, "One JSON object instead of the table");
  actions["inspect"] = [a] { return run_inspect(*a); };
}

}  // namespace recmod::app
