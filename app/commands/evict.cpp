// recmod evict CONFIG --checkpoint model.pt --data FILE: streams data through
// the model's managed-collision tables, lets them evict (re-initialising
// evicted rows where the node says so), writes the updated checkpoint and
// reports per table: ids seen, distinct ids, slots used, evicted, hit rate.
#include <iomanip>
#include <iostream>

#include "commands/commands.h"
#include "commands/runtime.h"
#include "recmod/common/errors.h"
#include "recmod/common/state_dict.h"
#include "recmod/io/tensor_file.h"
#include "recmod/mc/eviction_report.h"
#include "recmod/train/open_model.h"

namespace recmod::app {

namespace {

struct EvictArgs {
  std::string config, checkpoint, data, format, out;
  bool json = false;
  int threads = 0;
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

int run_evict(const EvictArgs& args) {
  set_threads(args.threads);
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
  const nlohmann::json report = tracker->to_json();
  if (args.json)
    std::cout << nlohmann::json{{"checkpoint", out}, {"tables", report}}.dump() << "\n";
  else
    print_table(report, out);
  return 0;
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
  actions["evict"] = [args] { return run_evict(*args); };
}

}  // namespace recmod::app
