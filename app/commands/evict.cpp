// recmod evict CONFIG --checkpoint model.pt --data FILE: streams data through
// the model's managed-collision tables, lets them evict (re-initialising
// evicted rows where the node says so), writes the updated checkpoint and
// reports per table: ids seen, distinct ids, slots used, evicted, hit rate.
#include <torch/torch.h>

#include <iomanip>
#include <iostream>
#include <unordered_set>

#include "commands/commands.h"
#include "commands/data_io.h"
#include "commands/runtime.h"
#include "recmod/common/errors.h"
#include "recmod/common/state_dict.h"
#include "recmod/config/graph.h"
#include "recmod/mc/mc_embedding_modules.h"
#include "recmod/train/checkpoint.h"
#include "recmod/train/trainer.h"

namespace recmod::app {

namespace {

struct EvictArgs {
  std::string config, checkpoint, data, format, out;
  bool json = false;
  int threads = 0;
};

struct TableStats {
  std::string node, table;
  std::vector<std::string> features;
  int64_t slots = 0;
  int64_t ids_seen = 0;
  int64_t hits = 0;
  int64_t evicted = 0;
  int64_t slots_used = 0;
  std::unordered_set<int64_t> distinct;
};

// The table's ids, ascending; int64 max marks an empty slot.
torch::Tensor table_ids(ManagedCollisionEmbeddingBagCollectionImpl& mc, const std::string& table) {
  auto module = mc.managed_collision_collection()->module_for(table);
  for (const auto& b : module->named_buffers())
    if (b.key() == "_mch_sorted_raw_ids") {
      auto ids = b.value();
      return ids.masked_select(ids != std::numeric_limits<int64_t>::max());
    }
  throw InputError(str_cat("table '", table, "' has no _mch_sorted_raw_ids buffer"));
}

int run_evict(const EvictArgs& args) {
  set_threads(args.threads);
  auto model_config = config::load_model_config(args.config);
  config::ModelGraph model(model_config);
  train::load_model(model, args.checkpoint);
  std::vector<std::pair<std::string, std::shared_ptr<ManagedCollisionEmbeddingBagCollectionImpl>>> mc_nodes;
  for (const auto& child : model->named_children())
    if (auto mc = std::dynamic_pointer_cast<ManagedCollisionEmbeddingBagCollectionImpl>(child.value()))
      mc_nodes.emplace_back(child.key(), mc);
  if (mc_nodes.empty())
    throw UsageError(str_cat(args.config, " has no ManagedCollisionEmbeddingBagCollection node; nothing to evict"));

  std::vector<TableStats> stats;
  for (auto& [name, mc] : mc_nodes)
    for (const auto& t : mc->embedding_bag_collection()->embedding_bag_configs())
      {
        TableStats st;
        st.node = name;
        st.table = t.name;
        st.features = t.feature_names;
        st.slots = t.num_embeddings;
        stats.push_back(std::move(st));
      }

  auto source = open_data(args.data, args.format.empty() ? model_config.data.format : args.format, model->schema(),
                          model_config.training.batch_size, false, 0);
  model->check_schema(source->schema(), args.data);
  torch::NoGradGuard no_grad;
  model->train();  // MC modules record ids and evict only in training mode
  while (auto batch = source->next()) {
    auto sparse = model->inputs(*batch).second.sparse;
    size_t s = 0;
    for (auto& [name, mc] : mc_nodes) {
      std::vector<torch::Tensor> before;
      const size_t first = s;
      for (; s < stats.size() && stats[s].node == name; ++s) before.push_back(table_ids(*mc, stats[s].table));
      auto remapped = mc->forward(sparse).second;
      for (size_t i = first; i < s; ++i) {
        auto& st = stats[i];
        for (const auto& f : st.features) {
          auto raw = sparse[f].values().to(torch::kLong).contiguous();
          auto slots = (*remapped)[f].values();
          st.ids_seen += raw.numel();
          st.hits += (slots != st.slots - 1).sum().item<int64_t>();  // slot zch_size-1 takes the ids not in the table
          const int64_t* p = raw.data_ptr<int64_t>();
          st.distinct.insert(p, p + raw.numel());
        }
        auto after = table_ids(*mc, st.table);
        st.evicted += torch::isin(before[i - first], after, /*assume_unique=*/true, /*invert=*/true).sum().item<int64_t>();
        st.slots_used = after.numel();
      }
    }
  }
  const std::string out = args.out.empty() ? args.checkpoint : args.out;
  train::save_tensors(out, state_dict(*model));

  nlohmann::json report = nlohmann::json::array();
  for (const auto& st : stats)
    report.push_back({{"node", st.node}, {"table", st.table}, {"ids_seen", st.ids_seen},
                      {"distinct_ids", static_cast<int64_t>(st.distinct.size())}, {"slots", st.slots},
                      {"slots_used", st.slots_used}, {"evicted", st.evicted},
                      {"hit_rate", st.ids_seen ? double(st.hits) / st.ids_seen : 0.0}});
  if (args.json) {
    std::cout << nlohmann::json{{"checkpoint", out}, {"tables", report}}.dump() << "\n";
    return 0;
  }
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
