#pragma once
// `recmod profile`: per-node forward/backward time, throughput, parameter
// and optimizer memory per table, peak RSS, and a Chrome trace
// (chrome://tracing, Perfetto) of the measured steps.
#include <nlohmann/json.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "recmod/config/graph.h"
#include "recmod/dist/communicator.h"
#include "recmod/dist/sharding_plan.h"
#include "recmod/data/batch.h"
#include "recmod/profile/gpu_activity.h"

namespace recmod::profile {

struct NodeTiming {
  std::string name;
  std::string type;
  double forward_ms = 0;   // mean per step
  double backward_ms = 0;  // mean per step: from the gradient reaching the node's output to its inputs/parameters
};

struct ParameterMemory {
  std::string name;  // an embedding table's state_dict key, or "dense parameters"
  int64_t parameter_bytes = 0;
  int64_t optimizer_bytes = 0;
};

struct ProfileReport {
  bool inference = false;  // forward-only steps (profile_inference)
  int64_t batch_size = 0;
  int64_t steps = 0;
  double step_ms = 0;  // forward + backward + optimizer, mean
  double examples_per_s = 0;
  std::vector<NodeTiming> nodes;
  std::vector<ParameterMemory> memory;
  int64_t peak_rss_bytes = 0;
  /// Training on a CUDA device: training.cuda_graphs' outcome after the
  /// steps ("captured (dense part: ...)", "eager: <reason>"); "" otherwise.
  std::string cuda_graphs;
  /// On a CUDA device: kernels per step and GPU busy/idle time, measured
  /// over extra steps after the timed ones (gpu_activity.h).
  std::optional<GpuActivity> gpu;

  nlohmann::json to_json() const;
  std::string to_table() const;
};

/// Random batches shaped like the config's features: dense N(0, 1), one id
/// per sparse feature per sample, labels 0/1. Ids stay within every table
/// (hashed features: any int64; others: below the smallest table).
class SyntheticBatches {
 public:
  SyntheticBatches(config::ModelGraph& model, int64_t batch_size, uint64_t seed);
  data::Batch next();

 private:
  data::DataSchema schema_;
  int64_t batch_size_;
  int64_t id_range_;
  torch::Generator generator_;
};

/// The most extra steps whose CUDA activity a profile records.
constexpr int64_t kGpuActivitySteps = 10;

using NextBatch = std::function<std::optional<data::Batch>()>;
/// With a source that yields only this rank's rows of each global batch (a
/// Batcher in rank mode): every rank's row count of the batch last returned.
using RankSizes = std::function<std::vector<int64_t>()>;

/// Runs `warmup` untimed then `steps` timed training steps on `device`.
/// Writes the Chrome trace of the timed steps to `trace_path` ("" = none).
/// On a CUDA device (one process), then up to kGpuActivitySteps more steps
/// with the profiler recording CUDA activity and no per-node timing (which
/// synchronises after every node): the report's `gpu`.
/// `training` is the config's training section (optimizers, fused path).
/// With a distributed `comm` the model must be sharded (train::shard_model)
/// and `next_batch` yield global batches: each rank steps on its rows, and
/// the report is this rank's (examples/s counts the global batch). With
/// `rank_sizes`, `next_batch` yields this rank's rows only (it parsed only
/// those) and rank_sizes() says every rank's share. `plan`: the one
/// shard_model applied, so that stochastic rounding draws by global row and
/// column as in `recmod train` (train::TrainingSetup).
ProfileReport profile_model(config::ModelGraph& model, const config::TrainingSpec& training,
                            const NextBatch& next_batch, int64_t steps, int64_t warmup, const torch::Device& device,
                            const std::string& trace_path, std::shared_ptr<dist::Communicator> comm = nullptr,
                            const RankSizes& rank_sizes = {}, const dist::ShardingPlan& plan = {});

/// Runs `warmup` untimed then `steps` timed forward passes in eval mode
/// without grad (what `recmod eval` does per batch): per-node forward times,
/// examples/s, and memory per table from the state_dict (a quantized table's
/// codes, scale and bias together), no optimizer. For quantized models.
/// On a CUDA device, `gpu` as for profile_model, over forward passes.
ProfileReport profile_inference(config::ModelGraph& model, const NextBatch& next_batch, int64_t steps, int64_t warmup,
                                const torch::Device& device, const std::string& trace_path);

/// Peak resident set size of this process so far.
int64_t peak_rss_bytes();

}  // namespace recmod::profile
