// recmod plan CONFIG --world-size N: where each embedding table would live on
// N ranks (the config's `sharding:` section, the rest planned automatically)
// and what each rank would hold and do per step. A calculation on the
// config's table shapes: nothing is built or allocated, so any world size and
// any model size can be planned here.
#include <iostream>

#include "commands/commands.h"
#include "commands/config_overrides.h"
#include "recmod/common/errors.h"
#include "recmod/config/embedding_tables.h"
#include "recmod/config/model_config.h"
#include "recmod/dist/planner.h"

namespace recmod::app {

namespace {

struct PlanArgs {
  std::string config;
  int64_t world_size = 1;
  std::string memory_per_rank;
  std::string device = "cpu";
  int64_t batch_size = 0;  // 0: the config's training.batch_size
  double pooling_factor = 1.0;
  bool json = false;
  std::vector<std::string> overrides;  // --set KEY=VALUE
};

int run_plan(const PlanArgs& args) {
  if (args.world_size < 1) throw UsageError(str_cat("plan: --world-size must be >= 1, got ", args.world_size));
  if (args.batch_size < 0) throw UsageError(str_cat("plan: --batch-size must be >= 1, got ", args.batch_size));
  if (!(args.pooling_factor >= 0))
    throw UsageError(str_cat("plan: --pooling-factor must be >= 0, got ", args.pooling_factor));
  dist::PlannerOptions options;
  options.world_size = args.world_size;
  options.device = args.device;
  options.pooling_factor = args.pooling_factor;
  if (!args.memory_per_rank.empty()) {
    options.memory_per_rank = dist::parse_byte_size(args.memory_per_rank);
    if (!options.memory_per_rank || *options.memory_per_rank <= 0)
      throw UsageError("plan: --memory-per-rank expects a size such as 64G, 512M or 1073741824 (bytes), got '" +
                       args.memory_per_rank + "'");
  }
  const auto config = config::load_model_config(args.config, args.overrides);
  options.batch_size_per_rank = args.batch_size > 0 ? args.batch_size : config.training.batch_size;
  options.optimizer = config.training.embedding_optimizer;
  // Towers' tables are replicated on every rank (data_parallel), as training keeps them.
  auto tables = config::embedding_tables_of(config);
  for (auto& t : config::tower_tables_of(config)) tables.push_back(std::move(t));
  if (tables.empty()) throw UsageError(args.config + " has no embedding tables; nothing to shard");
  const auto plan = dist::plan_sharding(tables, config::towers_sharding_request(config, config.sharding), options);
  if (args.json) {
    auto out = dist::plan_to_json(plan, tables, options);
    out["config"] = args.config;
    std::cout << out.dump() << "\n";
  } else {
    std::cout << args.config << ": " << dist::format_plan(plan, tables, options);
  }
  return 0;
}

}  // namespace

void add_plan(CLI::App& app, Actions& actions) {
  auto* cmd = app.add_subcommand(
      "plan",
      "Plan the sharding of a config's embedding tables over N ranks and estimate per-rank memory, lookups and "
      "communication (nothing is built)");
  auto args = std::make_shared<PlanArgs>();
  cmd->add_option("config", args->config, "Model config (YAML)")->required();
  add_config_overrides(cmd, args->overrides);
  cmd->add_option("--world-size", args->world_size, "Number of ranks")->required();
  cmd->add_option("--memory-per-rank", args->memory_per_rank,
                  "Memory for tables and optimizer state per rank: bytes, or with K/M/G/T (powers of 1024), e.g. 64G");
  cmd->add_option("--device", args->device, "cpu | cuda (what memory-per-rank describes)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_option("--batch-size", args->batch_size,
                  "Examples per rank and step (default: the config's training.batch_size)");
  cmd->add_option("--pooling-factor", args->pooling_factor, "Ids per bag, for the estimates")->capture_default_str();
  cmd->add_flag("--json", args->json, "Print the plan and the estimates as one JSON object");
  actions["plan"] = [args] { return run_plan(*args); };
}

}  // namespace recmod::app
