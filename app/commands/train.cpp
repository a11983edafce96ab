// recmod train CONFIG --data ...: trains a model from its config.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>

#include "commands/commands.h"
#include "commands/config_overrides.h"
#include "commands/distributed_run.h"
#include "commands/runtime.h"
#include "recmod/common/errors.h"
#include "recmod/common/memory.h"
#include "recmod/dist/planner.h"
#include "recmod/io/mapped_tensors.h"
#include "recmod/io/tensor_file.h"
#include "recmod/metrics/binary_metrics.h"
#include "recmod/train/batch_memory.h"
#include "recmod/train/checkpoint_keys.h"
#include "recmod/train/config_history.h"
#include "recmod/train/distributed.h"
#include "recmod/train/open_model.h"
#include "recmod/train/report.h"
#include "recmod/train/sharded_warm_start.h"
#include "recmod/train/trainer.h"

namespace recmod::app {

namespace {

struct TrainArgs {
  std::string config;
  std::string data;
  std::string eval_data;
  std::string format;
  std::string eval_format;  // "" = --format
  std::string out = "runs/latest";
  bool resume = false;
  std::string device = "cpu";
  int threads = 0;
  int64_t steps = 0;
  std::string init_from;               // warm start: another checkpoint's values
  std::vector<std::string> init_only;  // ... for these nodes only
  std::string bad_records = "fail";
  double max_bad_fraction = 0.01;
  std::vector<std::string> overrides;  // --set KEY=VALUE
  std::string checkpoint_memory;       // "" = half the available memory
  DistArgs dist;
};

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(str_cat(path, ": cannot read it"));
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

int run_train(const TrainArgs& args) {
  if (!args.init_from.empty() && args.resume)
    throw UsageError(
        "--init-from starts a new run from another checkpoint's values, --resume continues this run from "
        "its own checkpoint: drop one");
  if (!args.init_only.empty() && args.init_from.empty()) throw UsageError("--init-only needs --init-from CHECKPOINT");
  std::optional<int64_t> checkpoint_memory;
  if (!args.checkpoint_memory.empty()) {
    const auto bytes = dist::parse_byte_size(args.checkpoint_memory);
    if (!bytes || *bytes < 0)
      throw UsageError("--checkpoint-memory expects a size such as 8G, 512M or 0 (bytes), got '" +
                       args.checkpoint_memory + "'");
    checkpoint_memory = static_cast<int64_t>(*bytes);
  }
  if (auto code = run_as_local_ranks(args.dist, args.config, args.overrides, args.device)) return *code;
  const Joined joined = join_run(args.dist, args.threads, args.config, args.device);
  const int64_t world = joined.comm->world_size();
  // A rank of a distributed run builds its tables deferred and draws only its
  // shards; a warm start (--init-from) then copies each rank's rows/columns
  // straight out of the mapped checkpoint (warm_start_sharded).
  const bool deferred = world > 1;
  // A resumed run reads its vocabularies from its own copies (the ids its
  // tables were trained with), not the files the config names now.
  config::LoadOptions load;
  if (args.resume) load.vocab_dir = train::run_vocab_dir(args.out + "/config.yaml", "");
  auto opened = deferred ? train::open_model_deferred(args.config, args.overrides, load)
                         : train::open_model(args.config, "", args.overrides, load);
  const auto& t = opened.config.training;
  const std::string data = !args.data.empty() ? args.data : opened.config.data.train;
  const std::string eval_data = !args.eval_data.empty() ? args.eval_data : opened.config.data.eval;
  if (data.empty()) throw UsageError("no training data: pass --data FILE (or set data.train in the config)");
  if (!t.keep_best.empty() && eval_data.empty())
    throw UsageError(str_cat("training.", t.early_stopping ? "early_stopping" : "keep_best",
                             " needs evaluation data: pass --eval-data FILE (or set data.eval in the config)"));
  const torch::Device device = joined.device;  // a rank's own GPU under --nproc with --device cuda
  if (device.is_cpu()) {
    train::check_batch_fits(*opened.model, t.batch_size);  // before the run directory exists
    if (const std::string fitted = fit_threads_to_step(t.batch_size); !fitted.empty() && joined.lead())
      std::cerr << fitted << "\n";
    tune_blas_spin(t.batch_size);  // what it chose: `recmod profile` prints it
  }
  dist::ShardingPlan plan;
  if (world > 1) plan = train::plan_model(opened.model, opened.config, world, memory_per_rank(joined));
  if (!args.init_from.empty()) {
    // mapped: the ranks of a host share its pages, and a rank keeps none resident that it does not copy
    const StateDict checkpoint = io::map_tensors(args.init_from, /*release_verified=*/world > 1);
    const auto report = world > 1 ? train::warm_start_sharded(opened.model, plan, joined.comm, checkpoint,
                                                              args.init_only, args.init_from)
                                  : train::warm_start(opened.model, checkpoint, args.init_only, args.init_from);
    io::check_mapped_unchanged(checkpoint);
    if (joined.lead()) std::cerr << report.describe(args.init_from);
  }
  train::DataOptions read;
  read.batch_size = world * t.batch_size;  // global batches; each rank takes its rows
  read.format = args.format;
  read.shuffle = t.shuffle;
  read.seed = t.seed;
  read.skip_bad_records = args.bad_records == "skip";
  read.max_bad_fraction = args.max_bad_fraction;
  read.rank = joined.comm->rank();  // each rank reads only its rows
  read.world_size = world;
  read.comm = joined.comm;  // --bad-records skip: the ranks share the bad records each found
  train::DataFactory train_data = [=](int64_t epoch) { return train::open_batches(opened, data, read, epoch); };
  train::DataFactory eval_factory;
  if (!eval_data.empty()) {
    train::DataOptions in_order;
    in_order.batch_size = world * t.batch_size;
    in_order.format = args.eval_format.empty() ? args.format : args.eval_format;
    in_order.skip_bad_records = read.skip_bad_records;
    in_order.max_bad_fraction = read.max_bad_fraction;
    in_order.rank = read.rank;  // each rank parses only its rows; predict() gathers the predictions
    in_order.world_size = world;
    in_order.comm = joined.comm;
    eval_factory = [=](int64_t) { return train::open_batches(opened, eval_data, in_order); };
  }
  // Data that does not fit the model, or evaluation data with no records,
  // fails here: before the run directory exists, so a failed start leaves
  // nothing behind.
  if (!train_data(0)->next()) throw InputError(str_cat(data, ": no training examples (the file has no records)"));
  if (eval_factory && !eval_factory(0)->next())
    throw InputError(str_cat(eval_data, ": no examples to evaluate (the file has no records)"));

  // Rank 0 creates (and checks) the run directory and its config history
  // (a --resume whose config changed more than docs/cli.md allows is
  // refused); the others wait for it. With --set, the run keeps the config
  // it ran with, not the file.
  std::optional<train::RunDir> created;
  if (joined.lead()) {
    created.emplace(args.out, args.resume);
    const std::string config_text =
        opened.config.effective_yaml.empty() ? read_text_file(args.config) : opened.config.effective_yaml;
    const int64_t global_batch = world * t.batch_size;
    created->save_vocabularies(opened.config.data.vocab_files);  // RUN/vocab/: eval and predict read these
    if (!args.resume) {
      train::start_config_history(*created, config_text, global_batch);
    } else if (const auto changes = train::check_resume_config(*created, config_text, global_batch); !changes.empty()) {
      std::cerr << "resuming with a changed config: " << train::describe_changes(changes) << "; kept as "
                << train::config_versions(*created).back() << "\n";
    }
  }
  joined.comm->barrier();
  const train::RunDir run = created ? *created : train::RunDir::attach(args.out);
  if (joined.lead() && world > 1) {
    std::cerr << "distributed: " << world << " ranks (" << joined.env.source << "), global batch "
              << world * t.batch_size << " (" << t.batch_size << " per rank); sharding: " << train::describe_plan(plan)
              << "\n";
  }

  train::TrainerOptions options;
  options.device = device;
  if (args.steps > 0) options.steps = args.steps;
  options.resume = args.resume;
  options.progress_bar = isatty(STDERR_FILENO) && world == 1;
  options.log = joined.lead() ? &std::cerr : nullptr;
  options.comm = joined.comm;
  options.plan = plan;
  options.checkpoint_memory = checkpoint_memory;
  train::Trainer trainer(opened.model, t, run, options);
  auto result = trainer.fit(train_data, eval_factory, train::metrics_of_tasks(t.tasks));
  if (!joined.lead()) return result.interrupted ? 130 : 0;
  std::cout << "steps " << result.steps << ", last loss " << result.last_loss << "\n";
  if (world > 1 && result.steps_this_run > 0) {
    const auto per_step = [&](int64_t bytes) {
      return format_bytes(static_cast<double>(bytes) / static_cast<double>(result.steps_this_run));
    };
    std::cout << "rank 0 communication per step (sent + received): all-to-all "
              << per_step(result.traffic.all_to_all_bytes) << ", all-reduce "
              << per_step(result.traffic.all_reduce_bytes) << ", other " << per_step(result.traffic.other_bytes)
              << "; collectives " << result.traffic.collectives << " ("
              << str_cat(std::lround(10.0 * static_cast<double>(result.traffic.collectives) /
                                     static_cast<double>(result.steps_this_run)) /
                         10.0)
              << " a step, start-up and checkpoints included)\n";
  }
  if (!result.last_eval.is_null()) std::cout << "eval " << result.last_eval.dump() << "\n";
  if (result.stopped_early) std::cout << "stopped early (training.early_stopping)\n";
  std::cout << "checkpoint: " << run.model_path() << "\n";
  if (result.best_step >= 0)
    std::cout << "best: " << train::best_model_path(run) << " (" << t.keep_best << " " << result.best_value
              << " at step " << result.best_step << ")\n";
  // The run's curves as a page (recmod report); a page that cannot be
  // written does not undo the training it shows.
  const std::string report = run.path() + "/report.html";
  // A run shorter than training.log_interval with no evaluation logged no
  // line: there is no curve to draw.
  if (!std::filesystem::exists(run.path() + "/metrics.jsonl")) {
    std::cout << "report: none (nothing logged: the run was shorter than training.log_interval)\n";
    return result.interrupted ? 130 : 0;
  }
  try {
    train::write_report({run.path()}, report);
    std::cout << "report: " << report << "\n";
  } catch (const Error& e) {
    std::cerr << "recmod: warning: " << report << " not written: " << e.what() << "\n";
  }
  return result.interrupted ? 130 : 0;
}

}  // namespace

void add_train(CLI::App& app, Actions& actions) {
  auto* cmd = app.add_subcommand("train", "Train a model config on a data file; checkpoints and metrics go to --out");
  auto args = std::make_shared<TrainArgs>();
  cmd->add_option("config", args->config, "Model config (YAML)")->required();
  add_config_overrides(cmd, args->overrides);
  cmd->add_option("--data", args->data, "Training data (criteo_tsv, jsonl or binary)");
  cmd->add_option("--eval-data", args->eval_data,
                  "Validation data, evaluated every eval_interval steps and at the end");
  cmd->add_option(
      "--format", args->format,
      "Data format: criteo_tsv | jsonl | binary | delimited (default: the config's data.format, else detected "
      "from the file's content, not its name: the .rmb magic, a first '{' for JSON lines, else Criteo TSV; "
      ".gz and .zst files by their decompressed text)");
  cmd->add_option(
      "--eval-format", args->eval_format,
      "Format of --eval-data when it differs from --format (e.g. .rmb training data, JSON lines evaluation data)");
  cmd->add_option("--out", args->out, "Run directory (model.pt, trainer_state.pt, metrics.jsonl)")
      ->capture_default_str();
  cmd->add_flag("--resume", args->resume, "Continue the run in --out from its last checkpoint");
  cmd->add_option("--device", args->device, "cpu | cuda | cuda:N")->capture_default_str();
  cmd->add_option("--threads", args->threads, "CPU threads (default: one per core)");
  cmd->add_option("--steps", args->steps, "Stop after this many steps (overrides the config)");
  cmd->add_option("--bad-records", args->bad_records,
                  "fail: the first bad record ends the run (file:line); skip: bad records are skipped and counted "
                  "(run log and metrics.jsonl), within --max-bad-fraction")
      ->check(CLI::IsMember({"fail", "skip"}))
      ->capture_default_str();
  cmd->add_option("--max-bad-fraction", args->max_bad_fraction,
                  "With --bad-records skip: more bad records than this fraction of those read fails the run")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  cmd->add_option("--init-from", args->init_from,
                  "Start from this checkpoint's values (warm start; the keys the model shares with it) instead of the "
                  "random initialisation; prints what was loaded and what was not");
  cmd->add_option("--init-only", args->init_only, "With --init-from: only these nodes (repeatable), e.g. sparse_arch");
  cmd->add_option("--checkpoint-memory", args->checkpoint_memory,
                  "Distributed runs: the largest table state rank 0 gathers in memory for a checkpoint (e.g. 8G); "
                  "a larger one is gathered in a file in --out that the kernel pages out. Default: half the memory "
                  "available at each checkpoint");
  add_dist_options(cmd, args->dist);
  actions["train"] = [args] { return run_train(*args); };
}

}  // namespace recmod::app
