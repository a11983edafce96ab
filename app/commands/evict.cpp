// recmod evict CONFIG --checkpoint model.pt --data FILE: streams data through
// the model's managed-collision tables, lets them evict (re-initialising
// evicted rows where the node says so), writes the updated checkpoint and
// reports per table: ids seen, distinct ids, slots used, evicted, hit rate.
// Distributed (--nproc or a launcher) the tables are sharded as in training.
#include <filesystem>
#include <iomanip>
#include <iostream>

#include "commands/commands.h"
#include "commands/distributed_run.h"
#include "commands/runtime.h"
#include "recmod/common/errors.h"
#include "recmod/common/state_dict.h"
#include "recmod/dist/sharded_eviction_tracker.h"
#include "recmod/io/tensor_file.h"
#include "recmod/mc/eviction_report.h"
#include "recmod/train/distributed.h"
#include "recmod/train/open_model.h"

namespace recmod::app {

namespace {

struct EvictArgs {
  std::string config, checkpoint, data, format, out;
  bool json = false;
  int threads = 0;
  DistArgs dist;
};

void print_table(const nlohmann::json& report, const std::string& out) {
  std::cout << std::left << std::setw(28) << "table" << std::right << std::setw(10) << "ids seen" << std::setw(10)
            << "distinct" << std::setw(12) << "slots used" << std::setw(10) << "evicted" << std::setw(10) << "hit rate"
            << "\n";
  for (const auto& r : report)
    std::cout << std::left << std::setw(28) << (r["node"].get<std::string>() + "." + r["table"].get<std::string>())
              << std::right << std::setw(10) << r["ids_seen"].get<int64_t>() << std::setw(10)
              << r["distinct_ids"].get<int64_t>() << std::setw(12)
              << (std::to_string(r["slots_used"].get<int64_t>()) + "/" + std::to_string(r["slots"].get<int64_t>()))
              << std::setw(10) << r["evicted"].get<int64_t>() << std::setw(10) << std::fixed << std::setprecision(4)
              << r["hit_rate"].get<double>() << "\n";
  std::cout << "updated checkpoint: " << out << "\n";
}

void print_report(const EvictArgs& args, const nlohmann::json& report, const std::string& out) {
  if (args.json)
    std::cout << nlohmann::json{{"checkpoint", out}, {"tables", report}}.dump() << "\n";
  else
    print_table(report, out);
}

/// One process: the unsharded model, its MC-EBC nodes' modules evicting on
/// the whole stream.
int run_evict_here(const EvictArgs& args) {
  auto opened = train::open_model(args.config, args.checkpoint);
  std::unique_ptr<EvictionTracker> tracker;
  try {
    tracker = std::make_unique<EvictionTracker>(*opened.model);
  } catch (const InputError&) {
    throw UsageError(str_cat(args.config, " has no ManagedCollisionEmbeddingBagCollection node; nothing to evict"));
  }
  train::DataOptions data;
  data.format = args.format;
  auto source = train::open_batches(opened, args.data, data);
  while (auto batch = source->next()) tracker->observe(opened.model->inputs(*batch).second.sparse);
  const std::string out = args.out.empty() ? args.checkpoint : args.out;
  train::check_checkpoint_unchanged(opened);  // before writing what was read from it
  io::save_tensors(out, state_dict(*opened.model));
  print_report(args, tracker->to_json(), out);
  return 0;
}

/// Distributed: the model sharded as `recmod train` shards it, the
/// checkpoint loaded at any world size; each rank reads its rows of each
/// global batch (the config's batch size per rank) and the shards evict as
/// in training. Rank 0 writes the checkpoint, gathered table by table.
int run_evict_sharded(const EvictArgs& args, const Joined& joined) {
  const int64_t world = joined.comm->world_size();
  auto opened = train::open_model_deferred(args.config);
  train::shard_model(opened.model, train::plan_model(opened.model, opened.config, world, memory_per_rank(joined)),
                     joined.comm);
  train::load_full_checkpoint(opened.model, args.checkpoint);
  std::unique_ptr<dist::ShardedEvictionTracker> tracker;
  try {
    tracker = std::make_unique<dist::ShardedEvictionTracker>(*opened.model, joined.comm);
  } catch (const InputError&) {
    throw UsageError(str_cat(args.config, " has no ManagedCollisionEmbeddingBagCollection node; nothing to evict"));
  }
  train::DataOptions data;
  data.format = args.format;
  data.batch_size = world * opened.config.training.batch_size;
  data.rank = joined.comm->rank();
  data.world_size = world;
  data.comm = joined.comm;
  auto source = train::open_batches(opened, args.data, data);
  while (auto batch = source->next()) tracker->observe(opened.model->inputs(*batch).second.sparse);
  const nlohmann::json report = tracker->to_json();
  const std::string out = args.out.empty() ? args.checkpoint : args.out;
  const std::string dir = std::filesystem::path(out).parent_path().string();
  const DeferredStateDict state = train::deferred_model_state(
      opened.model, *joined.comm,
      train::checkpoint_tensor_allocator(dir.empty() ? "." : dir, train::default_checkpoint_memory()));
  if (joined.lead())
    io::save_tensors(out, state);
  else
    io::make_and_drop(state);
  joined.comm->barrier();  // written before any rank reports success
  if (joined.lead()) print_report(args, report, out);
  return 0;
}

int run_evict(const EvictArgs& args) {
  if (auto code = run_as_local_ranks(args.dist, args.config)) return *code;
  const Joined joined = join_run(args.dist, args.threads, args.config);
  if (joined.comm->world_size() > 1) return run_evict_sharded(args, joined);
  return run_evict_here(args);
}

}  // namespace

void add_evict(CLI::App& app, Actions& actions) {
  auto* cmd = app.add_subcommand("evict", "Stream data through the managed-collision tables, evict, and update the checkpoint");
  auto args = std::make_shared<EvictArgs>();
  cmd->add_option("config", args->config, "Model config (YAML)")->required();
  cmd->add_option("--checkpoint", args->checkpoint, "model.pt to update")->required();
  cmd->add_option("--data", args->data, "Data to stream through the tables")->required();
  cmd->add_option("--format", args->format, "Data format: criteo_tsv | jsonl | binary");
  cmd->add_option("--out", args->out, "Where to write the updated checkpoint (default: over --checkpoint)");
  cmd->add_flag("--json", args->json, "Print the report as JSON");
  cmd->add_option("--threads", args->threads, "CPU threads (default: one per core)");
  add_dist_options(cmd, args->dist);
  actions["evict"] = [args] { return run_evict(*args); };
}

}  // namespace recmod::app
