#pragma once
// The checkpoint protocol of a training run (next to the run directory it
// writes into): model.pt and trainer_state.pt written so that a kill at any
// moment leaves the last complete checkpoint loadable, and read back for an
// exact resume.
#include <cstdint>
#include <optional>
#include <string>

#include "recmod/common/state_dict.h"
#include "recmod/config/graph.h"
#include "recmod/train/run_dir.h"
#include "recmod/train/training_setup.h"

namespace recmod::train {

/// Where the trainer is; saved in trainer_state.pt under "trainer.*".
struct Position {
  int64_t step = 0;            // optimizer steps done
  int64_t epoch = 0;           // current pass over the data
  int64_t batch_in_epoch = 0;  // batches of this epoch already consumed
  // The best evaluation so far (training.keep_best / early_stopping):
  int64_t best_step = -1;         // its step; -1: none yet
  double best_value = 0.0;        // its metric value
  int64_t evals_since_best = 0;   // evaluations since, for early stopping's patience
  bool stopped_early = false;     // early stopping ended the run (a --resume stays stopped)
};

/// The best model by an eval metric, kept beside the latest checkpoint:
///   best/model.pt   the model's state_dict at the best evaluation
///   best/best.json  {"metric", "value", "step", "model_digest"}
/// Written as a checkpoint is: model.pt.pending, then best.json naming its
/// digest, then the rename; a kill at any moment leaves the previous best or
/// the new one (read_best_record completes an interrupted write).
struct BestRecord {
  std::string metric;
  double value = 0.0;
  int64_t step = 0;
};
std::string best_model_path(const RunDir& run);
void write_best_model(const DeferredStateDict& model_state, const BestRecord& record, const RunDir& run);
/// best/best.json, after completing an interrupted write; nullopt when the
/// run has no best model. CheckpointError when best/model.pt is not the model best.json names.
std::optional<BestRecord> read_best_record(const RunDir& run);

/// Writes the model, the optimizer state, the position and the CPU RNG.
/// A checkpoint is two files; a kill may land between their writes. Order:
/// (1) model.pt.pending, (2) trainer_state.pt naming model.pt's digest,
/// (3) rename model.pt.pending -> model.pt. Each step is atomic, so after a
/// kill either both files are the old step, or trainer_state.pt is new and
/// the pending model is its match (load_checkpoint rolls it forward).
void save_checkpoint(config::ModelGraph& model, const TrainingSetup& training, const Position& position,
                     const RunDir& run);

/// Restores what save_checkpoint wrote (completing an interrupted one);
/// CheckpointError when model.pt is not the model trainer_state.pt names.
Position load_checkpoint(config::ModelGraph& model, TrainingSetup& training, const RunDir& run);

/// What trainer_state.pt holds besides the model's digest.
struct TrainerState {
  StateDict optimizer;  // TrainingSetup::state_dict()'s keys
  Position position;
  torch::Tensor rng;    // the CPU generator's state; undefined when absent
};

/// save_checkpoint from state dicts: what it does with the model's and the
/// optimizers' own; a distributed run passes the full ones, gathered one
/// tensor at a time while rank 0 writes (the other ranks make_and_drop the
/// same entries: model first, then optimizer). The makes of the optimizer
/// state are not reached when model.pt cannot be written.
void write_checkpoint(const DeferredStateDict& model_state, const DeferredStateDict& optimizer_state,
                      const Position& position, const RunDir& run);
/// Completes an interrupted checkpoint (rolls model.pt.pending forward) and
/// reads trainer_state.pt; CheckpointError when model.pt does not match it.
TrainerState read_trainer_state(const RunDir& run);
/// read_trainer_state (same checks, same errors) with the optimizer state
/// left in the file's pages (io::map_tensors; the verification gives them
/// back as it goes): what a rank of a distributed resume reads, to copy its
/// shards out of it (load_local_optimizer_state) without ever holding the
/// whole state. The position and the RNG state are the process's own.
TrainerState map_trainer_state(const RunDir& run);
/// Sets torch's CPU generator to a saved state.
void restore_cpu_rng(const torch::Tensor& state);

/// The config.yaml of the run a checkpoint belongs to: beside it
/// (RUN/model.pt) or, for RUN/best/model.pt, in RUN. UsageError naming
/// the places looked at when there is none.
std::string config_of_checkpoint(const std::string& checkpoint);

/// Loads a model.pt written by `recmod train` (or torch.save of a matching
/// state_dict) into the model (strict keys).
void load_model(config::ModelGraph& model, const std::string& path);

}  // namespace recmod::train
