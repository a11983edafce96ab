// recmod train CONFIG --data ...: trains a model from its config.
#include <unistd.h>

#include <iostream>

#include "commands/commands.h"
#include "commands/runtime.h"
#include "recmod/common/errors.h"
#include "recmod/metrics/binary_metrics.h"
#include "recmod/train/batch_memory.h"
#include "recmod/train/open_model.h"
#include "recmod/train/trainer.h"

namespace recmod::app {

namespace {

struct TrainArgs {
  std::string config;
  std::string data;
  std::string eval_data;
  std::string format;
  std::string out = "runs/latest";
  bool resume = false;
  std::string device = "cpu";
  int threads = 0;
  int64_t steps = 0;
};

int run_train(const TrainArgs& args) {
  set_threads(args.threads);
  auto opened = train::open_model(args.config);
  const auto& t = opened.config.training;
  const std::string data = !args.data.empty() ? args.data : opened.config.data.train;
  const std::string eval_data = !args.eval_data.empty() ? args.eval_data : opened.config.data.eval;
  if (data.empty()) throw UsageError("no training data: pass --data FILE (or set data.train in the config)");
  const torch::Device device = parse_device(args.device);
  if (device.is_cpu()) train::check_batch_fits(*opened.model, t.batch_size);  // before the run directory exists
  train::RunDir run(args.out, args.resume);
  if (!args.resume) run.save_config(args.config);

  train::DataOptions read;
  read.format = args.format;
  read.shuffle = t.shuffle;
  read.seed = t.seed;
  train::DataFactory train_data = [=](int64_t epoch) { return train::open_batches(opened, data, read, epoch); };
  train::DataFactory eval_factory;
  if (!eval_data.empty()) {
    train::DataOptions in_order;
    in_order.format = args.format;
    eval_factory = [=](int64_t) { return train::open_batches(opened, eval_data, in_order); };
  }
  train_data(0);  // a data file that does not fit the model fails here, before training

  train::TrainerOptions options;
  options.device = device;
  if (args.steps > 0) options.steps = args.steps;
  options.resume = args.resume;
  options.progress_bar = isatty(STDERR_FILENO);
  options.log = &std::cerr;
  train::Trainer trainer(opened.model, t, run, options);
  auto result = trainer.fit(train_data, eval_factory, metrics::metrics_of_logits);
  std::cout << "steps " << result.steps << ", last loss " << result.last_loss << "\n";
  if (!result.last_eval.is_null()) std::cout << "eval " << result.last_eval.dump() << "\n";
  std::cout << "checkpoint: " << run.model_path() << "\n";
  return result.interrupted ? 130 : 0;
}

}  // namespace

void add_train(CLI::App& app, Actions& actions) {
  auto* cmd = app.add_subcommand("train", "Train a model config on a data file; checkpoints and metrics go to --out");
  auto args = std::make_shared<TrainArgs>();
  cmd->add_option("config", args->config, "Model config (YAML)")->required();
  cmd->add_option("--data", args->data, "Training data (criteo_tsv, jsonl or binary)");
  cmd->add_option("--eval-data", args->eval_data, "Validation data, evaluated every eval_interval steps and at the end");
  cmd->add_option("--format", args->format, "Data format: criteo_tsv | jsonl | binary (default: from the file name)");
  cmd->add_option("--out", args->out, "Run directory (model.pt, trainer_state.pt, metrics.jsonl)")->capture_default_str();
  cmd->add_flag("--resume", args->resume, "Continue the run in --out from its last checkpoint");
  cmd->add_option("--device", args->device, "cpu | cuda | cuda:N")->capture_default_str();
  cmd->add_option("--threads", args->threads, "CPU threads (default: one per core)");
  cmd->add_option("--steps", args->steps, "Stop after this many steps (overrides the config)");
  actions["train"] = [args] { return run_train(*args); };
}

}  // namespace recmod::app
