#pragma once
// The configs a run directory has run with, and what --resume may change.
//   config.yaml                 the config the run started with
//   config.1.yaml, config.2.yaml, ...  each --resume that changed it, in order
//                               (the last one is the config in force)
//   run.json                    {"global_batch_size": N}: ranks x training.batch_size
// A resumed run continues the same optimisation: only the keys listed by
// resumable_changes() may differ from the run's latest version.
#include <cstdint>
#include <string>
#include <vector>

#include "recmod/train/run_dir.h"

namespace recmod::train {

/// One difference between two configs: its key path ("training.epochs",
/// "nodes.dense_arch.layer_sizes") and both values in YAML flow style
/// ("" where the key is absent).
struct ConfigChange {
  std::string path, before, after;
};

/// Compares two YAML configs as trees: maps key by key, lists of one length
/// item by item (`path[i]`; a list of another length is one change),
/// scalars as text, or by value when both are numbers (0.01 == 1e-2).
/// Comments, layout and key order do not count. InputError on text that is not YAML.
std::vector<ConfigChange> config_changes(const std::string& before_yaml, const std::string& after_yaml);

/// The key paths a resumed run may change (a path also covers the keys
/// under it): training.epochs, training.steps, training.log_interval,
/// training.eval_interval, training.checkpoint_interval, training.batch_size
/// (only when ranks x batch_size stays the run's global batch), data.eval,
/// sharding.
const std::vector<std::string>& resumable_changes();

/// A new run: writes config.yaml (`config_text`, the effective config) and
/// run.json with the run's global batch.
void start_config_history(const RunDir& run, const std::string& config_text, int64_t global_batch_size);

/// --resume: compares `config_text` with the run's latest config version.
/// A change outside resumable_changes() (or a batch_size that changes the
/// global batch) is a UsageError naming every changed key path with both
/// values; allowed changes keep `config_text` as the next version
/// (config.N.yaml). Returns the changes (empty: the same config, nothing written).
std::vector<ConfigChange> check_resume_config(const RunDir& run, const std::string& config_text,
                                              int64_t global_batch_size);

/// The run's config versions, oldest first (config.yaml, config.1.yaml, ...).
std::vector<std::string> config_versions(const RunDir& run);

/// "training.epochs (2 -> 4), data.eval (absent -> e.rmb)".
std::string describe_changes(const std::vector<ConfigChange>& changes);

}  // namespace recmod::train
