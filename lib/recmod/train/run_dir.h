#pragma once
// The files of a training run, in one directory:
//   model.pt          the model's state_dict (TorchRec's keys under node names)
//   trainer_state.pt  optimizer state + trainer position (step, epoch, batch, RNG)
//   metrics.jsonl     one JSON object per logged step / evaluation
//   config.yaml       the config the run was started with; config.1.yaml, ...
//                     each --resume that changed it (config_history.h)
//   run.json          the run's global batch (config_history.h)
//   report.html       its training curves (report.h), written at the end
//   vocab/            copies of the vocabulary files the config names, by
//                     base name (read back by eval/predict: config::LoadOptions)
//   .lock             flock'ed by the run writing here, for its whole life
#include <memory>
#include <string>
#include <vector>

namespace recmod::train {

class RunDir {
 public:
  /// Creates `path` when needed. Without `resume`, a directory that already
  /// holds a checkpoint is a UsageError (nothing is overwritten by accident);
  /// with `resume`, one without a checkpoint is a UsageError. First takes
  /// an exclusive flock on `path`/.lock, held while any copy of this RunDir
  /// lives (the kernel drops it when the process dies, so a crashed run
  /// leaves no stale lock): a second run on the same directory is a
  /// UsageError naming the pid that holds it, before anything is written.
  RunDir(std::string path, bool resume);
  /// The run directory another rank created (no checks, nothing created):
  /// the other ranks of a distributed run, which never write into it.
  static RunDir attach(std::string path);

  const std::string& path() const { return path_; }
  std::string model_path() const { return path_ + "/model.pt"; }
  std::string trainer_state_path() const { return path_ + "/trainer_state.pt"; }
  std::string metrics_path() const { return path_ + "/metrics.jsonl"; }
  std::string config_path() const { return path_ + "/config.yaml"; }
  std::string lock_path() const { return path_ + "/.lock"; }
  /// Where the run keeps its copies of the config's vocabulary files.
  std::string vocab_dir() const { return path_ + "/vocab"; }
  bool has_checkpoint() const;

  /// Appends one line to metrics.jsonl (flushed, so a crash keeps it).
  void append_metrics(const std::string& json_line) const;
  /// Cuts metrics.jsonl back to its last complete line (after a kill
  /// mid-append); called when resuming.
  void drop_torn_metrics_line() const;
  /// Copies the config file into the run (not on resume).
  void save_config(const std::string& config_file) const;
  /// Writes `text` as the run's config.yaml (the effective config of a run
  /// started with --set overrides), atomically.
  void save_config_text(const std::string& text) const;
  /// Copies each of `files` (the config's vocabulary files) into vocab_dir()
  /// under its base name, each atomically (a temporary renamed over it). Two
  /// files with one base name are a UsageError; a missing file an InputError.
  void save_vocabularies(const std::vector<std::string>& files) const;

 private:
  RunDir() = default;
  std::string path_;
  std::shared_ptr<const int> lock_;  // the .lock file's descriptor; closed (unlocked) with the last copy
};

}  // namespace recmod::train
