#pragma once
// The parts of a model config that are not the module graph: features,
// training settings and data defaults (see docs/config.md). Nodes stay as
// ConfigNodes here; the registry's builders read them (graph.h).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "recmod/config/config_node.h"
#include "recmod/data/delimited.h"
#include "recmod/dist/sharding_plan.h"
#include "recmod/optim/optimizer_options.h"

namespace recmod::config {

/// One sparse feature and how its raw ids map into [0, range).
struct SparseFeatureSpec {
  std::string name;
  std::string hash = "none";  // none | mod | murmur
  int64_t range = 0;          // > 0 when hash != none
  bool weighted = false;      // JSON lines may give it {"ids", "weights"}
  // `vocab: FILE` (JSON lines' string ids through a vocabulary of recmod
  // vocab; relative to the config): the file as resolved, and its ids for
  // this feature (null while the file does not exist yet, or when the config
  // was loaded with LoadOptions::read_vocab_files false). `oov_buckets`: ids
  // not in it hash into this many rows after the vocabulary's.
  std::string vocab_path{};
  std::shared_ptr<const data::ColumnVocab> vocab{};
  int64_t oov_buckets = 1;
};

struct FeaturesSpec {
  int64_t num_dense = 0;
  std::vector<SparseFeatureSpec> sparse;
  std::vector<std::string> sparse_names() const;
};

/// training.early_stopping: stop when `metric` of the periodic evaluations
/// has not improved by more than min_delta for `patience` evaluations.
struct EarlyStoppingSpec {
  std::string metric = "auc";  // one of eval_metric_names()
  int64_t patience = 1;        // > 0
  double min_delta = 0.0;      // >= 0
};

/// The evaluation metrics early stopping and the best checkpoint may watch,
/// and whether a larger value is better (auc, accuracy) or a smaller one (ne,
/// log_loss, mse, rmse). A multi-task metric is "<task>.<metric>".
const std::vector<std::string>& eval_metric_names();
bool higher_is_better(const std::string& metric);

/// One task of a multi-task model (the config's `tasks:` section): an output
/// node (a (B, 1) logit or prediction), the label column it learns, its loss
/// and that loss's weight in the training loss sum_t weight_t * loss_t.
struct TaskSpec {
  std::string name;
  std::string output;           // a node
  int64_t label = 0;            // the label column (index into the data's labels)
  std::string label_name;       // as the config named it
  std::string loss = "bce";     // bce: binary cross-entropy with logits; mse: mean squared error
  double weight = 1.0;          // >= 0
};
/// What a task's evaluation reports (and may watch): bce: auc, ne, log_loss,
/// accuracy; mse: mse, rmse.
const std::vector<std::string>& task_metric_names(const std::string& loss);

struct TrainingSpec {
  // Checked at parse time (optim::find_problem), each error at its YAML key.
  optim::OptimizerOptions dense_optimizer{"adam", 0.001};
  optim::OptimizerOptions embedding_optimizer{"rowwise_adagrad", 0.05};
  int64_t batch_size = 256;
  int64_t epochs = 1;
  std::optional<int64_t> steps;  // when set, overrides epochs
  uint64_t seed = 0;
  int64_t eval_interval = 0;        // steps; 0 = only at the end
  int64_t checkpoint_interval = 0;  // steps; 0 = only at the end
  bool shuffle = true;
  int64_t log_interval = 50;  // steps between plain progress lines
  // EmbeddingBagCollections on CPU train through the fused path (the update
  // runs inside backward, only touched rows; same math as the optimizer).
  bool fused_embeddings = true;
  // fp32 | bf16: the dtype of the MLPs' matrix products in training steps
  // (master weights, optimizer state and checkpoints stay fp32).
  std::string dense_precision = "fp32";
  // off | auto: on a CUDA device, `auto` captures the dense part of each
  // training step as one CUDA graph where the model and batch allow it
  // (train/graph_step.h), eager otherwise; ignored on the CPU.
  std::string cuda_graphs = "auto";
  std::optional<EarlyStoppingSpec> early_stopping;
  // An eval metric: the run keeps best/model.pt, the model at the best
  // evaluation by it. "" = none; defaults to early_stopping's metric.
  std::string keep_best;
  // `tasks:` (multi-task): one loss per task, metrics per task as
  // "<task>.<metric>". Empty: one binary cross-entropy task on label 0.
  std::vector<TaskSpec> tasks;
};

struct DataSpec {
  std::string format;  // criteo_tsv | jsonl | binary | delimited ("" = from the file name)
  std::string train;
  std::string eval;
  /// `data.columns` (and delimiter, header, side_tables, ...): how a
  /// delimited text file maps to the features (config/data_columns.h).
  std::shared_ptr<const data::DelimitedSpec> columns;
  bool strict_features = false;  // JSON lines: a feature the config does not name is a bad record
  /// The labels of an example by name, in column order: delimited text's
  /// label columns, else `data.labels` (JSON lines' "label" list), default [label].
  std::vector<std::string> labels{"label"};
  bool sample_weights = false;  // JSON lines carry "weight" (delimited text: a sample_weight column)
  uint64_t hash_seed = 0;        // XXH3 seed of string ids (delimited text and JSON lines)
  /// Every vocabulary file the config names (data.columns' and features'
  /// `vocab:`), as resolved, each once, in config order.
  std::vector<std::string> vocab_files;
};

/// A node as written: its name, type, input names and its YAML.
struct NodeSpec {
  std::string name;
  std::string type;
  std::vector<std::string> inputs;
  ConfigNode yaml;
};

/// What a ModelGraph is built from: the features, the nodes and the output.
/// Nothing about how it is trained or fed.
struct ModelSpec {
  std::string file;
  FeaturesSpec features;
  std::vector<NodeSpec> nodes;  // in file order
  std::string output;  // the first task's output with `tasks:`
  std::optional<ConfigNode> output_yaml;
  /// Multi-task: every task's output node, in task order (forward then
  /// returns (B, T)); empty: `output` alone (forward returns (B)).
  std::vector<std::string> outputs;
  std::vector<ConfigNode> outputs_yaml;
  int64_t num_labels = 1;  // label columns a batch carries (the data's labels, data.labels)
};

/// A whole config file: the model, and the run's sections, which go to the
/// trainer (training) and the data layer (data) explicitly.
struct ModelConfig : ModelSpec {
  TrainingSpec training;
  DataSpec data;
  /// `sharding:` (`auto`, or per table a type or {type, ranks}); empty: all
  /// automatic. Table names are checked against the nodes' tables when the
  /// config is read; ranks against the world size by the planner (dist/planner.h).
  dist::ShardingRequest sharding;
  /// The command line's `--set KEY=VALUE` overrides applied to the file, and
  /// the document they gave (YAML text; empty without overrides): what a run
  /// directory keeps as its config.yaml.
  std::vector<std::string> overrides;
  std::string effective_yaml;
};

/// How a config is loaded, beyond its text.
struct LoadOptions {
  /// Read the vocabulary files the config names (`vocab:`) and check them
  /// against the tables. recmod vocab turns it off: it writes those files,
  /// which may be missing, stale or too large yet.
  bool read_vocab_files = true;
  /// A run directory's copies of its vocabularies (train::RunDir::vocab_dir):
  /// a `vocab: FILE` is read from here by FILE's base name when a copy is
  /// there (else from FILE). "" = none.
  std::string vocab_dir;
};

/// Reads and checks everything but the node options (builders check those).
ModelConfig parse_model_config(const ConfigNode& root, const LoadOptions& options = {});
/// `overrides`: "KEY=VALUE" each (ConfigNode::with_overrides).
ModelConfig load_model_config(const std::string& path, const std::vector<std::string>& overrides = {},
                              const LoadOptions& options = {});

/// Names a node may take as input besides other nodes.
inline constexpr char kDenseFeatures[] = "features.dense";
inline constexpr char kSparseFeatures[] = "features.sparse";

}  // namespace recmod::config
