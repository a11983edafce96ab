#pragma once
// The one way a command opens a model and its data: config file -> built
// graph (+ checkpoint), and a data file -> batches checked against the
// model's features. The app's commands are flags and printing around these.
#include <memory>
#include <string>
#include <vector>

#include "recmod/common/state_dict.h"
#include "recmod/config/graph.h"
#include "recmod/config/model_config.h"
#include "recmod/data/batch.h"
#include "recmod/data/jsonl.h"

namespace recmod::dist {
class Communicator;
}  // namespace recmod::dist

namespace recmod::train {

/// A model as a command holds it: the whole config (its training and data
/// sections are the run's, passed on explicitly) and the graph built from it.
struct OpenedModel {
  config::ModelConfig config;
  config::ModelGraph model{nullptr};
};

/// Loads and checks the config, seeds torch with training.seed (initial
/// weights are reproducible), builds the graph and, when `checkpoint` is
/// given, loads its weights (strict keys): the tables use the checkpoint's
/// mapped pages as their storage (io::map_tensors, adopt_checkpoint_tables;
/// check_checkpoint_unchanged after use). ConfigError / CheckpointError.
/// `overrides`: the command line's `--set KEY=VALUE` flags. Vocabularies
/// (`vocab:` keys) are read from the run directory's copies (RunDir::vocab_dir,
/// by base name) when `load.vocab_dir` says so, else when the checkpoint
/// (model.pt or best/model.pt), or without one the config file, lies in a
/// run directory that has copies (run_vocab_dir).
OpenedModel open_model(const std::string& config_path, const std::string& checkpoint = "",
                       const std::vector<std::string>& overrides = {}, const config::LoadOptions& load = {});
/// The vocab/ directory of the run `checkpoint` (or, when empty, the config
/// file `config_path`) belongs to, when that run directory (it has a
/// config.yaml) holds one; else "".
std::string run_vocab_dir(const std::string& config_path, const std::string& checkpoint);

/// For a command that has used a model open_model loaded: CheckpointError
/// when the checkpoint file its tensors are mapped from was cut short or
/// written in place since (io::check_mapped_unchanged); what was computed
/// from it is then not to be trusted. Call it before reporting results.
void check_checkpoint_unchanged(const OpenedModel& opened);

/// Each embedding table of `model` that is allocated but unwritten (built
/// deferred, then materialize_deferred_tables(draw=false)) takes the
/// checkpoint tensor of its key as its storage (Tensor::set_data), when
/// shape, dtype and layout match: the table and the loaded tensor become one
/// buffer, load_state_dict's copy then finds them the same and skips, and
/// the unwritten allocation is freed with its pages never touched. Peak
/// memory of loading: the model once, not twice (issue 18). Other tensors
/// are left for load_state_dict to copy or report. Returns the count adopted.
int64_t adopt_checkpoint_tables(torch::nn::Module& model, const StateDict& state);

/// open_model for a rank of a distributed run: the embedding tables are
/// built deferred (DeferTableAllocation: no memory, the same initial values
/// when drawn), for shard_model to draw this rank's shards from; no
/// checkpoint (load_full_state loads one after sharding).
OpenedModel open_model_deferred(const std::string& config_path, const std::vector<std::string>& overrides = {},
                                const config::LoadOptions& load = {});

/// How JSON lines are read for a model (`config`'s features, data and
/// tasks): the schema (`model_schema` with the data's labels, sample weights
/// and weighted features) and the reader's checks and id mappings (string
/// ids' ranges, vocabularies, id limits, labels 0/1 for binary cross-entropy
/// tasks; the last also applies to .rmb). A feature whose vocabulary file does
/// not exist yet is an InputError naming recmod vocab.
struct JsonlReading {
  data::DataSchema schema;
  data::JsonlOptions options;
};
JsonlReading jsonl_reading(const config::ModelConfig& config, const data::DataSchema& model_schema);

/// How a command reads data for a model; empty or zero fields fall back to
/// the config (data.format, training.batch_size).
struct DataOptions {
  std::string format;
  int64_t batch_size = 0;
  bool shuffle = false;
  uint64_t seed = 0;
  bool skip_bad_records = false;  // --bad-records skip: count and skip them, within max_bad_fraction
  double max_bad_fraction = 0.01;
  /// A rank of a distributed run (batch_size is the global batch): the
  /// source reads only this rank's rows (data::ReadOptions::rank).
  int64_t rank = 0;
  int64_t world_size = 1;
  /// The run's communicator (world_size > 1): with skip_bad_records the
  /// ranks exchange the bad records each found in its share of the file
  /// (share_bad_records), so opening the data is then collective.
  std::shared_ptr<dist::Communicator> comm;
};

/// The batches of `path` for `opened`; the file's features are checked
/// against the model's (InputError naming the file and the config).
std::unique_ptr<data::BatchSource> open_batches(const OpenedModel& opened, const std::string& path,
                                                const DataOptions& options, int64_t epoch = 0);

}  // namespace recmod::train
