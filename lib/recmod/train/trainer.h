#pragma once
// The training loop: batches from a BatchSource through a ModelGraph,
// BCE-with-logits loss, ModelOptimizer, periodic evaluation and atomic
// checkpoints in a RunDir, exact resume, SIGINT-safe stop.
#include <torch/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>

#include "recmod/config/graph.h"
#include "recmod/data/batch.h"
#include "recmod/dist/communicator.h"
#include "recmod/dist/sharding_plan.h"
#include "recmod/train/checkpoint.h"
#include "recmod/train/run_dir.h"
#include "recmod/train/training_setup.h"

namespace recmod::train {

/// A fresh pass over a data set; `epoch` seeds its shuffling, so the same
/// (seed, epoch) gives the same batches.
using DataFactory = std::function<std::unique_ptr<data::BatchSource>(int64_t epoch)>;
/// Metrics of predictions (logits (N), or (N, T) with tasks) against the
/// labels (N, num_labels), with the sample weights (N; undefined when the
/// data has none), as one JSON object.
using MetricsFn = std::function<nlohmann::json(const torch::Tensor& logits, const torch::Tensor& labels,
                                               const torch::Tensor& weights)>;

/// The metrics of the config's tasks: without tasks, metrics_of_logits of
/// the logits against label column 0 (auc, ne, ...); with tasks, per task
/// "<task>.<metric>" (bce: auc, ne, log_loss, accuracy, calibration; mse:
/// mse, rmse), each weighted by the sample weights when there are some, and
/// "count".
MetricsFn metrics_of_tasks(std::vector<config::TaskSpec> tasks);

/// What predict() returns: a whole data set's logits, labels and weights.
struct Predictions {
  torch::Tensor logits;   // (N), or (N, T) for a config with T tasks
  torch::Tensor labels;   // (N, num_labels)
  torch::Tensor weights;  // (N) sample weights; undefined when the data has none
};

struct TrainerOptions {
  torch::Device device = torch::kCPU;
  std::optional<int64_t> steps;  // overrides the config's steps / epochs
  bool resume = false;
  bool progress_bar = false;     // a \r-updated line (terminal) instead of plain lines
  std::ostream* log = nullptr;   // progress and messages; nullptr = silent
  /// A distributed run: this rank's communicator and the sharding plan.
  /// The data factories then yield global batches (world_size x the
  /// per-rank batch); each rank trains on its rows (rank_slice), and only
  /// rank 0 writes into the run directory. Null: one process.
  std::shared_ptr<dist::Communicator> comm;
  dist::ShardingPlan plan;
  /// Distributed checkpoints: the largest table state rank 0 assembles in
  /// memory; a larger one goes into a file in the run directory that the
  /// kernel pages out (checkpoint_tensor_allocator). Unset: half the memory
  /// available when each checkpoint starts.
  std::optional<int64_t> checkpoint_memory;
};

struct TrainResult {
  int64_t steps = 0;         // optimizer steps done in total (including resumed ones)
  double last_loss = 0.0;
  bool interrupted = false;  // stopped by SIGINT (a checkpoint was written)
  bool stopped_early = false;  // training.early_stopping ended the run (now or in the run resumed)
  int64_t best_step = -1;      // training.keep_best: the step of best/model.pt; -1 when none
  double best_value = 0.0;
  nlohmann::json last_eval;  // the last evaluation's metrics; null when none
  /// Distributed runs: this rank's traffic with the others during fit(),
  /// and the steps it covers (training, evaluation and checkpoints).
  dist::Traffic traffic;
  int64_t steps_this_run = 0;
};

class Trainer {
 public:
  /// `training` is the config's training section: the model does not carry it.
  Trainer(config::ModelGraph model, config::TrainingSpec training, RunDir run, TrainerOptions options);
  /// Trains per `training`. The caller checks that the batch size fits in
  /// memory first (check_batch_fits, before it creates the run directory). `eval_data` and `metrics`
  /// may be empty (no evaluation).
  TrainResult fit(const DataFactory& train_data, const DataFactory& eval_data, const MetricsFn& metrics);

 private:
  config::ModelGraph model_;
  config::TrainingSpec training_;
  RunDir run_;
  TrainerOptions options_;
};

/// One batch's logits (B), or (B, T) with tasks, without autograd: the
/// model must be in eval mode; runs under c10::InferenceMode, so no graph is
/// recorded, no version counters are bumped and the modules take their
/// no-grad paths (the EmbeddingBagCollection's fused lookup on every table
/// at once, MLP layers as one GEMM and one bias + ReLU pass, the
/// interaction's kernel alone). The result is a fresh inference tensor.
torch::Tensor infer(config::ModelGraph& model, const data::Batch& batch);

/// Logits, labels and sample weights of a whole data set, in eval mode, no
/// grad (infer() per batch in one process). With a distributed communicator
/// (a sharded model, global batches), each rank predicts its rows and every
/// rank returns all of them, in data order. A NaN or inf logit throws
/// InputError naming the rows.
Predictions predict(config::ModelGraph& model, data::BatchSource& source, const torch::Device& device,
                    dist::Communicator* comm = nullptr);
/// predict() refuses non-finite logits through this: InputError naming how
/// many rows, and the first few (0-based, in data order).
void check_finite_predictions(const torch::Tensor& logits);

/// Seeds torch's generators (model initialisation, anything random).
void seed_everything(uint64_t seed);

/// Requests a stop at the next step boundary (what SIGINT does).
void request_stop();

}  // namespace recmod::train
