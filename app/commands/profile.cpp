// recmod profile CONFIG [--data FILE | --synthetic]: where a training step's
// time and memory go.
#include <fstream>
#include <iostream>

#include "commands/commands.h"
#include "commands/config_overrides.h"
#include "commands/distributed_run.h"
#include "commands/runtime.h"
#include "recmod/common/errors.h"
#include "recmod/data/batcher.h"
#include "recmod/profile/profiler.h"
#include "recmod/train/distributed.h"
#include "recmod/train/open_model.h"
#include "recmod/train/quantized_model.h"

namespace recmod::app {

namespace {

struct ProfileArgs {
  std::string config;
  std::string data;
  std::string format;
  bool synthetic = false;
  int64_t steps = 20;
  int64_t warmup = 3;
  int64_t batch_size = 0;
  std::string trace = "profile_trace.json";
  std::string json;
  std::string device = "cpu";
  int threads = 0;
  std::vector<std::string> overrides;  // --set KEY=VALUE
  std::string checkpoint;
  bool inference = false;
  DistArgs dist;
};

/// The batches a profile steps on: random ones shaped like the config's
/// features (--synthetic), or the data file's.
/// With `world` > 1 each rank parses only its rows of each global batch
/// (the Batcher's rank mode) and `rank_sizes` is set to tell every rank's share.
profile::NextBatch batches_for(const ProfileArgs& args, train::OpenedModel& opened, int64_t batch_size,
                               int64_t rank = 0, int64_t world = 1, profile::RankSizes* rank_sizes = nullptr) {
  if (args.synthetic) {
    auto synthetic = std::make_shared<profile::SyntheticBatches>(opened.model, batch_size, opened.config.training.seed);
    return [synthetic] { return std::optional<data::Batch>(synthetic->next()); };
  }
  train::DataOptions read;
  read.format = args.format;
  read.batch_size = batch_size;
  read.rank = rank;
  read.world_size = world;
  std::shared_ptr<data::BatchSource> source = train::open_batches(opened, args.data, read);
  const auto* own_rows = dynamic_cast<const data::Batcher*>(source.get());
  if (rank_sizes != nullptr && own_rows != nullptr && own_rows->rank_mode())
    *rank_sizes = [source, own_rows] { return own_rows->rank_sizes(); };
  return [source] { return source->next(); };
}

void print_report(const ProfileArgs& args, const profile::ProfileReport& report) {
  std::cout << report.to_table();
  if (!args.trace.empty()) std::cout << "Chrome trace: " << args.trace << "\n";
  if (!args.json.empty()) {
    std::ofstream(args.json) << report.to_json().dump(2) << "\n";
    std::cout << "JSON report: " << args.json << "\n";
  }
}

/// --inference / --checkpoint: forward passes of the model as `recmod eval`
/// runs it (a quantized checkpoint's tables, or the config's int data_types
/// quantized), in one process.
int run_inference_profile(const ProfileArgs& args) {
  if (args.dist.nproc > 1) throw UsageError("profile --inference runs in one process; drop --nproc");
  set_threads(args.threads);
  auto opened = train::open_model(args.config, args.checkpoint, args.overrides);
  const auto quantized = train::quantize_as_configured(opened.model);
  if (!quantized.empty()) std::cerr << "quantized as configured: " << quantized.size() << " table(s)\n";
  const int64_t batch_size = args.batch_size > 0 ? args.batch_size : opened.config.training.batch_size;
  const profile::NextBatch next = batches_for(args, opened, batch_size);
  auto report =
      profile::profile_inference(opened.model, next, args.steps, args.warmup, parse_device(args.device), args.trace);
  print_report(args, report);
  return 0;
}

int run_profile(const ProfileArgs& args) {
  if (args.synthetic == !args.data.empty()) throw UsageError("give exactly one of --data FILE and --synthetic");
  if (!args.checkpoint.empty() || args.inference) return run_inference_profile(args);
  if (auto code = run_as_local_ranks(args.dist, args.config, args.overrides, args.device)) return *code;
  const Joined joined = join_run(args.dist, args.threads, args.config, args.device);
  const int64_t world = joined.comm->world_size();
  auto opened = world > 1 ? train::open_model_deferred(args.config, args.overrides)
                          : train::open_model(args.config, "", args.overrides);
  auto& model = opened.model;
  // Per rank; the batches are global (world x that), each rank steps on its rows.
  const int64_t batch_size = world * (args.batch_size > 0 ? args.batch_size : opened.config.training.batch_size);
  profile::RankSizes rank_sizes;
  const profile::NextBatch next = batches_for(args, opened, batch_size, joined.comm->rank(), world, &rank_sizes);
  // A rank's own GPU under --nproc with --device cuda (as `recmod train`).
  const torch::Device device = joined.device;
  if (device.is_cpu())
    for (const std::string& said : {fit_threads_to_step(batch_size / world), tune_blas_spin(batch_size / world)})
      if (!said.empty() && joined.lead()) std::cerr << said << "\n";
  dist::ShardingPlan plan;
  if (world > 1) {
    plan = train::plan_model(model, opened.config, world, memory_per_rank(joined));
    train::shard_model(model, plan, joined.comm);
  }
  auto report = profile::profile_model(model, opened.config.training, next, args.steps, args.warmup, device,
                                       joined.lead() ? args.trace : "", joined.comm, rank_sizes, plan);
  if (!joined.lead()) return 0;
  if (world > 1)
    std::cout << "rank 0 of " << world << " ranks; batch " << batch_size << " in all (" << batch_size / world
              << " per rank); per-node times and memory are rank 0's\n";
  print_report(args, report);
  return 0;
}

}  // namespace

void add_profile(CLI::App& app, Actions& actions) {
  auto* cmd = app.add_subcommand(
      "profile", "Per-node forward/backward time, throughput, parameter and optimizer memory, peak RSS");
  auto args = std::make_shared<ProfileArgs>();
  cmd->add_option("config", args->config, "Model config (YAML)")->required();
  add_config_overrides(cmd, args->overrides);
  cmd->add_option("--data", args->data, "Profile on batches of this data file");
  cmd->add_option("--format", args->format, "Data format: criteo_tsv | jsonl | binary");
  cmd->add_flag("--synthetic", args->synthetic, "Profile on random batches shaped like the config's features");
  cmd->add_option("--steps", args->steps, "Timed steps")->capture_default_str();
  cmd->add_option("--warmup", args->warmup, "Untimed steps first")->capture_default_str();
  cmd->add_option("--batch-size", args->batch_size, "Examples per step (default: the config's)");
  cmd->add_option("--trace", args->trace, "Chrome trace output ('' for none)")->capture_default_str();
  cmd->add_option("--json", args->json, "Also write the report as JSON to FILE");
  cmd->add_option("--device", args->device, "cpu | cuda | cuda:N")->capture_default_str();
  cmd->add_flag("--inference", args->inference,
                "Profile forward passes as `recmod eval` runs them (eval mode, no grad); tables the config declares "
                "int8 | int4 | int2 are quantized");
  cmd->add_option("--checkpoint", args->checkpoint,
                  "Load this checkpoint (float or quantized, as `recmod eval` does); implies --inference");
  cmd->add_option("--threads", args->threads, "CPU threads (default: one per core)");
  add_dist_options(cmd, args->dist);
  actions["profile"] = [args] { return run_profile(*args); };
}

}  // namespace recmod::app
