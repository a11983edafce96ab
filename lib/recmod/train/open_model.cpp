#include "recmod/train/open_model.h"

#include <filesystem>

#include "recmod/common/errors.h"
#include "recmod/config/data_columns.h"
#include "recmod/data/criteo_tsv.h"
#include "recmod/data/open_reader.h"
#include "recmod/io/mapped_tensors.h"
#include "recmod/modules/embedding_modules.h"
#include "recmod/train/checkpoint.h"
#include "recmod/train/checkpoint_keys.h"
#include "recmod/train/distributed.h"
#include "recmod/train/quantized_model.h"
#include "recmod/train/trainer.h"

namespace recmod::train {

int64_t adopt_checkpoint_tables(torch::nn::Module& model, const StateDict& state) {
  int64_t adopted = 0;
  torch::NoGradGuard no_grad;
  for (const auto& item : model.named_modules(/*name_prefix=*/"", /*include_self=*/false)) {
    auto table = std::dynamic_pointer_cast<EmbeddingTableImpl>(item.value());
    if (!table || table->deferred()) continue;
    const torch::Tensor* loaded = find_tensor(state, item.key() + ".weight");
    if (!loaded || !loaded->is_cpu() || !loaded->is_contiguous() || loaded->sizes() != table->weight.sizes() ||
        loaded->scalar_type() != table->weight.scalar_type() || !table->weight.is_cpu())
      continue;
    table->weight.set_data(*loaded);
    ++adopted;
  }
  return adopted;
}

std::string run_vocab_dir(const std::string& config_path, const std::string& checkpoint) {
  namespace fs = std::filesystem;
  fs::path dir = fs::path(checkpoint.empty() ? config_path : checkpoint).parent_path();
  if (!checkpoint.empty() && dir.filename() == "best") dir = dir.parent_path();  // RUN/best/model.pt
  if (dir.empty()) dir = ".";
  std::error_code ec;
  if (fs::is_directory(dir / "vocab", ec) && fs::is_regular_file(dir / "config.yaml", ec))
    return (dir / "vocab").string();
  return "";
}

OpenedModel open_model(const std::string& config_path, const std::string& checkpoint,
                       const std::vector<std::string>& overrides, const config::LoadOptions& load) {
  OpenedModel out;
  config::LoadOptions options = load;
  if (options.vocab_dir.empty()) options.vocab_dir = run_vocab_dir(config_path, checkpoint);
  out.config = config::load_model_config(config_path, overrides, options);
  seed_everything(out.config.training.seed);
  if (checkpoint.empty()) {
    out.model = config::ModelGraph(static_cast<const config::ModelSpec&>(out.config));
    return out;
  }
  // The checkpoint overwrites every table: build them deferred and allocate
  // them undrawn (no random init of what is loaded next; eval of a large
  // model starts in the time it takes to read it).
  {
    DeferTableAllocation defer(/*whole=*/true);
    out.model = config::ModelGraph(static_cast<const config::ModelSpec&>(out.config));
  }
  // A quantized checkpoint (recmod quantize) swaps the collections it
  // quantized before anything is allocated: their float tables never are.
  // The tensors are the file's pages (mapped, CRC-verified); the tables
  // adopt them, so a table costs no memory of the process's own until it is
  // written (copy-on-write), and a page read is one of the page cache's.
  StateDict state = io::map_tensors(checkpoint);
  const bool quantized = has_quantized_tables(state);
  if (quantized) use_quantized_tables(out.model, state, checkpoint);
  materialize_deferred_tables(*out.model, /*draw=*/false);
  adopt_checkpoint_tables(*out.model, state);
  if (quantized) {
    load_model_state(out.model, std::move(state), checkpoint);
  } else {
    check_checkpoint_keys(state, model_keys(out.model), checkpoint);  // one line naming the likely cause
    recmod::load_state_dict(*out.model, state, checkpoint);
  }
  // Verifying and loading read every page once; nothing has written the
  // mapped tensors yet, so the pages can go back to the page cache until
  // the model reads them (a forward pass maps only the rows it looks up).
  io::release_mapped_pages(state);
  return out;
}

void check_checkpoint_unchanged(const OpenedModel& opened) {
  if (opened.model) io::check_mapped_unchanged(state_dict(*opened.model));
}

OpenedModel open_model_deferred(const std::string& config_path, const std::vector<std::string>& overrides,
                                const config::LoadOptions& load) {
  DeferTableAllocation defer;
  return open_model(config_path, "", overrides, load);
}

JsonlReading jsonl_reading(const config::ModelConfig& config, const data::DataSchema& model_schema) {
  // JSON lines: checked against the features (weighted ones, string ids,
  // vocabularies) and the loss (binary cross-entropy: labels 0 or 1).
  JsonlReading out;
  data::DataSchema& schema = out.schema;
  data::JsonlOptions& jsonl = out.options;
  const auto& features = config.features.sparse;
  schema = model_schema;
  jsonl.strict = config.data.strict_features;
  jsonl.binary_labels = true;
  // Several labels (data.labels); those only regression (mse) tasks learn may
  // hold any number, the others are checked against binary cross-entropy.
  schema.num_labels = static_cast<int64_t>(config.data.labels.size());
  schema.sample_weights = config.data.sample_weights;
  const auto& tasks = config.training.tasks;
  if (!tasks.empty()) {
    jsonl.binary_per_label.assign(static_cast<size_t>(schema.num_labels), true);
    for (int64_t l = 0; l < schema.num_labels; ++l) {
      bool bce = false, used = false;
      for (const auto& t : tasks)
        if (t.label == l) {
          used = true;
          bce = bce || t.loss == "bce";
        }
      jsonl.binary_per_label[static_cast<size_t>(l)] = bce || !used;
    }
  }
  jsonl.hash_seed = config.data.hash_seed;
  jsonl.string_id_range = config::string_id_ranges(config);
  jsonl.id_limit = config::unhashed_id_limits(config);
  for (const auto& f : features) {
    jsonl.vocab.push_back(f.vocab);
    jsonl.oov_buckets.push_back(f.oov_buckets);
    if (!f.vocab_path.empty() && !f.vocab)
      throw_input_error(f.vocab_path, ": no such vocabulary file (feature '", f.name,
                        "' has 'vocab:'); build it with recmod vocab CONFIG --data FILE --out ", f.vocab_path);
    jsonl.weighted.push_back(f.weighted);
    schema.weighted = schema.weighted || f.weighted;
  }
  return out;
}

std::unique_ptr<data::BatchSource> open_batches(const OpenedModel& opened, const std::string& path,
                                                const DataOptions& options, int64_t epoch) {
  data::ReadOptions read;
  read.format = options.format.empty() ? opened.config.data.format : options.format;
  read.batch_size = options.batch_size > 0 ? options.batch_size : opened.config.training.batch_size;
  read.shuffle = options.shuffle;
  read.seed = options.seed;
  read.columns = opened.config.data.columns;
  read.bad_records = options.skip_bad_records ? data::BadRecordPolicy::kSkip : data::BadRecordPolicy::kFail;
  read.max_bad_fraction = options.max_bad_fraction;
  read.rank = options.rank;
  read.world_size = options.world_size;
  if (options.comm && options.world_size > 1)
    read.share_bad_records = [comm = options.comm](const data::BadRecords& mine) { return share_bad_records(*comm, mine); };
  const auto& tasks = opened.config.training.tasks;
  auto jsonl = jsonl_reading(opened.config, opened.model->schema());
  read.jsonl = std::move(jsonl.options);
  const data::DataSchema& schema = jsonl.schema;
  auto source = data::open_batches(path, read, schema, epoch);
  try {
    opened.model->check_schema(source->schema(), path);
    for (const auto& t : tasks)
      if (t.label >= source->schema().num_labels)
        throw_input_error(path, ": task '", t.name, "' learns label '", t.label_name, "' (column ", t.label,
                          "), but the data has ", source->schema().num_labels, " label(s)");
  } catch (const InputError& e) {
    // A text file taken for Criteo TSV because nothing said otherwise.
    const bool guessed = (read.format.empty() || read.format == "auto") &&
                         data::detect_format(path) == data::DataFormat::kCriteoTsv;
    if (guessed) throw InputError(e.what() + std::string(data::kReadAsCriteoHint));
    throw;
  }
  return source;
}

}  // namespace recmod::train
