// recmod generate / recmod convert / recmod vocab: the data library's file tools.
#include <algorithm>
#include <iostream>
#include <map>

#include "commands/commands.h"
#include "recmod/common/errors.h"
#include "recmod/config/graph.h"
#include "recmod/data/convert.h"
#include "recmod/data/generate.h"
#include "recmod/data/open_reader.h"
#include "recmod/data/vocab.h"
#include "recmod/train/open_model.h"

namespace recmod::app {

namespace {

struct GenerateArgs {
  std::string out;
  int64_t rows = 10000;
  int64_t dense = 13;
  int64_t sparse = 26;
  int64_t cardinality = 1000;
  int64_t max_ids = 1;
  std::string format = "binary";
  uint64_t seed = 0;
  double signal = 1.0;
  int64_t skip = 0;
};

int run_generate(const GenerateArgs& a) {
  if (a.rows <= 0 || a.dense < 0 || a.sparse < 0 || a.cardinality <= 0 || a.max_ids <= 0 || a.skip < 0)
    throw UsageError("generate: --rows, --cardinality and --max-ids must be > 0, --dense, --sparse and --skip >= 0");
  data::GenerateOptions options;
  options.num_rows = a.rows;
  options.num_dense = a.dense;
  options.sparse = data::numbered_features(a.sparse, a.cardinality, a.max_ids);
  options.seed = a.seed;
  options.signal_strength = a.signal;
  data::generate_to_file(options, a.out, a.format == "jsonl" ? data::GenerateFormat::kJsonl : data::GenerateFormat::kBinary,
                         a.skip);
  std::cout << "wrote " << a.rows << " examples (" << a.dense << " dense, " << a.sparse << " sparse features C1..C"
            << a.sparse << ") to " << a.out << "\n";
  return 0;
}

struct ConvertArgs {
  std::string input, output, format, config;
  std::string to = "binary";
  bool skip_bad = false;
};

int run_convert(const ConvertArgs& a) {
  data::ConvertOptions options;
  if (!a.format.empty()) {
    std::string f = a.format;
    std::replace(f.begin(), f.end(), '_', '-');
    options.input_format = data::parse_data_format(f);
  }
  if (!a.config.empty()) {
    const auto config = config::load_model_config(a.config);
    options.schema = config::build_model(a.config)->schema();
    options.columns = config.data.columns;  // delimited text as the config describes it
    // JSON lines as train reads them: string ids hashed or through the
    // features' vocabularies, weighted features, labels checked (also .rmb's).
    auto jsonl = train::jsonl_reading(config, *options.schema);
    options.jsonl = std::move(jsonl.options);
    const auto format =
        options.input_format == data::DataFormat::kAuto ? data::detect_format(a.input) : options.input_format;
    if (format == data::DataFormat::kJsonl) options.schema = jsonl.schema;
  }
  options.on_bad_record = a.skip_bad ? data::BadRecordPolicy::kSkip : data::BadRecordPolicy::kFail;
  auto report = a.to == "npy" ? data::convert_to_criteo_npy(a.input, a.output, options)
                              : data::convert_to_binary(a.input, a.output, options);
  std::cout << a.output << ": " << report.summary() << "\n";
  return 0;
}

struct VocabArgs {
  std::string config, data, out;
  int64_t min_count = 1;
  int64_t top_k = 0;
};

int run_vocab(const VocabArgs& a) {
  config::LoadOptions load;
  load.read_vocab_files = false;  // the file this writes may not exist yet, or be stale
  const auto config = config::load_model_config(a.config, {}, load);
  std::map<std::string, int64_t> buckets;  // per vocabulary column: its OOV buckets
  data::Vocabulary vocab;
  if (config.data.columns) {
    for (const auto& c : config.data.columns->columns)
      if (c.ids == data::IdKind::kVocab) buckets[c.name] = c.oov_buckets;
    vocab = data::build_vocabulary(a.data, *config.data.columns, {a.min_count, a.top_k});
  } else {
    std::vector<std::string> features;
    for (const auto& f : config.features.sparse)
      if (!f.vocab_path.empty()) {
        features.push_back(f.name);
        buckets[f.name] = f.oov_buckets;
      }
    if (features.empty())
      throw UsageError("vocab: " + a.config +
                       " has no data.columns and no feature with 'vocab: FILE'; a vocabulary is built for delimited "
                       "text's string-id columns or for JSON lines' features that name one");
    vocab = data::build_jsonl_vocabulary(a.data, features, {a.min_count, a.top_k});
  }
  data::save_vocabulary(vocab, a.out);
  for (const auto& c : vocab.columns) {
    const auto it = buckets.find(c.column);
    const int64_t k = it == buckets.end() ? 1 : it->second;
    std::cout << c.column << ": " << c.distinct << " distinct, " << c.ids.size() << " kept (table rows "
              << c.num_rows(k) << " with "
              << (k == 1 ? str_cat("the OOV bucket ", c.oov_id())
                         : str_cat(k, " OOV buckets ", c.oov_id(), "..", c.num_rows(k) - 1))
              << "), OOV share " << (c.total ? 100.0 * static_cast<double>(c.oov) / static_cast<double>(c.total) : 0.0)
              << "% of " << c.total << " ids\n";
  }
  std::cout << "wrote " << a.out << "\n";
  return 0;
}

}  // namespace

void add_data_commands(CLI::App& app, Actions& actions) {
  auto* gen = app.add_subcommand("generate", "Write synthetic examples with a planted signal (features C1..CN)");
  auto g = std::make_shared<GenerateArgs>();
  gen->add_option("--out", g->out, "Output file")->required();
  gen->add_option("--rows", g->rows, "Examples")->capture_default_str();
  gen->add_option("--dense", g->dense, "Dense features")->capture_default_str();
  gen->add_option("--sparse", g->sparse, "Sparse features, named C1..CN")->capture_default_str();
  gen->add_option("--cardinality", g->cardinality, "Distinct ids per sparse feature (Zipf-distributed)")->capture_default_str();
  gen->add_option("--max-ids", g->max_ids, "Ids per bag: uniform in [1, max]")->capture_default_str();
  gen->add_option("--format", g->format, "binary | jsonl")->check(CLI::IsMember({"binary", "jsonl"}))->capture_default_str();
  gen->add_option("--seed", g->seed, "Seed (same seed, same file)")->capture_default_str();
  gen->add_option("--signal", g->signal, "Strength of the planted per-id signal")->capture_default_str();
  gen->add_option("--skip", g->skip, "Start after this many rows of the stream (a held-out set with the same signal)")
      ->capture_default_str();
  actions["generate"] = [g] { return run_generate(*g); };

  auto* conv = app.add_subcommand(
      "convert", "Convert a data file (Criteo TSV, JSON lines, delimited text) to recmod's binary format");
  auto c = std::make_shared<ConvertArgs>();
  conv->add_option("input", c->input, "Input data file")->required();
  conv->add_option("output", c->output, "Output binary file (with --to npy: the prefix of the three .npy files)")->required();
  conv->add_option("--format", c->format,
                   "Input format: criteo_tsv | jsonl | binary | delimited | criteo_npy (default: detected)");
  conv->add_option("--to", c->to, "Output format: binary (.rmb) or npy (TorchRec's Criteo <prefix>_dense/_sparse/_labels.npy)")
      ->check(CLI::IsMember({"binary", "npy"}))
      ->capture_default_str();
  conv->add_option("--config", c->config,
                   "Model config whose features give the schema (needed for JSON lines; its data.columns for "
                   "delimited text)");
  conv->add_flag("--skip-bad", c->skip_bad, "Skip bad records (and report them) instead of failing");
  actions["convert"] = [c] { return run_convert(*c); };

  auto* voc = app.add_subcommand(
      "vocab",
      "Build a vocabulary of each string-id column of delimited text (data.columns), or of JSON lines' features "
      "that name a vocab");
  auto v = std::make_shared<VocabArgs>();
  voc->add_option("config", v->config,
                  "Model config whose data.columns (or, for JSON lines, features with vocab:) describe the file")
      ->required();
  voc->add_option("--data", v->data, "Data file (delimited text or JSON lines) to count ids in")->required();
  voc->add_option("--min-count", v->min_count, "Keep ids seen at least this often")->check(CLI::PositiveNumber)->capture_default_str();
  voc->add_option("--top-k", v->top_k, "Keep at most this many ids per column, most frequent first (0: all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  voc->add_option("--out", v->out, "Vocabulary file to write")->required();
  actions["vocab"] = [v] { return run_vocab(*v); };
}

}  // namespace recmod::app
