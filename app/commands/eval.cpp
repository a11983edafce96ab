// recmod eval CONFIG --checkpoint model.pt --data ...: metrics of a trained model.
#include <torch/torch.h>

#include <fstream>
#include <iomanip>
#include <iostream>

#include "commands/commands.h"
#include "commands/config_overrides.h"
#include "commands/distributed_run.h"
#include "commands/runtime.h"
#include "recmod/common/errors.h"
#include "recmod/io/tensor_file.h"
#include "recmod/metrics/binary_metrics.h"
#include "recmod/train/checkpoint.h"
#include "recmod/train/distributed.h"
#include "recmod/train/open_model.h"
#include "recmod/train/trainer.h"

namespace recmod::app {

namespace {

struct EvalArgs {
  std::string config;
  std::string checkpoint;
  std::string data;
  std::string format;
  bool json = false;
  std::string predictions;
  std::string baseline;
  std::string device = "cpu";
  int threads = 0;
  std::vector<std::string> overrides;  // --set KEY=VALUE
  DistArgs dist;
};

int run_eval(const EvalArgs& given) {
  EvalArgs args = given;
  if (args.config.empty()) {  // the run's own config.yaml, as `recmod train` saved it
    args.config = train::config_of_checkpoint(args.checkpoint);
    std::cerr << "config: " << args.config << " (the checkpoint's run)\n";
  }
  if (auto code = run_as_local_ranks(args.dist, args.config, args.overrides)) return *code;
  const Joined joined = join_run(args.dist, args.threads, args.config);
  const int64_t world = joined.comm->world_size();
  auto opened = world > 1 ? train::open_model_deferred(args.config, args.overrides)
                          : train::open_model(args.config, args.checkpoint, args.overrides);
  const std::string data = !args.data.empty() ? args.data : opened.config.data.eval;
  if (data.empty()) throw UsageError("no data: pass --data FILE (or set data.eval in the config)");
  auto device = parse_device(args.device);
  if (world > 1 && !device.is_cpu())
    throw UsageError("distributed evaluation runs on the CPU (gloo) in this build; use --device cpu");
  // Each rank holds its shards of the checkpoint and predicts its rows of
  // each global batch; every rank ends with all predictions, rank 0 prints.
  if (world > 1) {
    train::shard_model(opened.model, train::plan_model(opened.model, opened.config, world, memory_per_rank(joined)), joined.comm);
    train::load_full_state(opened.model, io::load_tensors(args.checkpoint), args.checkpoint);
  }
  opened.model->to(device);
  train::DataOptions read;
  read.format = args.format;
  read.batch_size = world * opened.config.training.batch_size;
  auto source = train::open_batches(opened, data, read);
  auto [logits, labels] = train::predict(opened.model, *source, device, joined.comm.get());
  if (logits.numel() == 0) throw InputError(str_cat(data, ": no examples to evaluate (the file has no records)"));
  if (!joined.lead()) return 0;
  auto metrics = metrics::metrics_of_logits(logits, labels);
  if (!args.predictions.empty()) {
    std::ofstream out(args.predictions);
    auto probs = torch::sigmoid(logits.to(torch::kDouble));
    auto p = probs.accessor<double, 1>();
    out << std::setprecision(9);
    for (int64_t i = 0; i < p.size(0); ++i) out << p[i] << "\n";
    if (!out) throw InputError(str_cat(args.predictions, ": cannot write the predictions"));
  }
  if (!args.baseline.empty()) {
    // The same data through a reference checkpoint (the float model of a
    // quantized one): its metrics and the change, quantized minus baseline.
    if (world > 1) throw UsageError("--baseline runs in one process; drop --nproc");
    auto reference = train::open_model(args.config, args.baseline, args.overrides);
    reference.model->to(device);
    auto again = train::open_batches(reference, data, read);
    auto [base_logits, base_labels] = train::predict(reference.model, *again, device, nullptr);
    auto base = metrics::metrics_of_logits(base_logits, base_labels);
    nlohmann::json delta;
    for (const char* key : {"auc", "ne", "log_loss", "accuracy", "calibration"})
      delta[key] = metrics[key].get<double>() - base[key].get<double>();
    metrics["baseline"] = base;
    metrics["change"] = delta;
  }
  if (args.json) {
    std::cout << metrics.dump() << "\n";
  } else {
    for (const char* key : {"auc", "ne", "log_loss", "accuracy", "calibration"})
      std::cout << std::left << std::setw(12) << key << " " << std::fixed << std::setprecision(4) << metrics[key].get<double>()
                << "\n";
    std::cout << std::left << std::setw(12) << "count" << " " << metrics["count"].get<int64_t>() << "\n";
    if (metrics.contains("change"))
      for (const char* key : {"auc", "ne"})
        std::cout << std::left << std::setw(12) << (std::string(key) + " change") << " " << std::showpos << std::fixed
                  << std::setprecision(5) << metrics["change"][key].get<double>() << std::noshowpos << " (baseline "
                  << std::setprecision(4) << metrics["baseline"][key].get<double>() << ")\n";
  }
  return 0;
}

}  // namespace

void add_eval(CLI::App& app, Actions& actions) {
  auto* cmd = app.add_subcommand("eval", "Evaluate a checkpoint: AUC, NE, log loss, accuracy, calibration, count");
  auto args = std::make_shared<EvalArgs>();
  cmd->add_option("config", args->config, "Model config (YAML); default: config.yaml of the checkpoint's run directory");
  add_config_overrides(cmd, args->overrides);
  cmd->add_option("--checkpoint", args->checkpoint, "model.pt of a run")->required();
  cmd->add_option("--data", args->data, "Evaluation data");
  cmd->add_option("--format", args->format, "Data format: criteo_tsv | jsonl | binary");
  cmd->add_flag("--json", args->json, "Print one JSON object instead of a table");
  cmd->add_option("--predictions", args->predictions, "Write one predicted probability per line to FILE");
  cmd->add_option("--baseline", args->baseline,
                  "Also evaluate this checkpoint (e.g. the float model of a quantized one) and report the change");
  cmd->add_option("--device", args->device, "cpu | cuda | cuda:N")->capture_default_str();
  cmd->add_option("--threads", args->threads, "CPU threads (default: one per core)");
  add_dist_options(cmd, args->dist);
  actions["eval"] = [args] { return run_eval(*args); };
}

}  // namespace recmod::app
