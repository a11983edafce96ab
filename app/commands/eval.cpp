// recmod eval CONFIG --checkpoint model.pt --data ...: metrics of a trained model.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iomanip>
#include <iostream>

#include "commands/commands.h"
#include "commands/config_overrides.h"
#include "commands/distributed_run.h"
#include "commands/runtime.h"
#include "recmod/common/errors.h"
#include "recmod/data/batcher.h"
#include "recmod/metrics/binary_metrics.h"
#include "recmod/train/checkpoint.h"
#include "recmod/train/distributed.h"
#include "recmod/train/open_model.h"
#include "recmod/train/quantized_model.h"
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
  bool with_labels = false;
  std::string bad_records = "fail";
  double max_bad_fraction = 0.01;
  std::string baseline;
  std::string device = "cpu";
  int threads = 0;
  int64_t batch_size = 0;  // 0: the config's training.batch_size
  std::vector<std::string> overrides;  // --set KEY=VALUE
  DistArgs dist;
};

// --predictions FILE: one line per example. One task, no --with-labels: the
// probability alone (as before). Otherwise a tab-separated table with a
// header: [row, the labels,] then per task its prediction (bce: the
// probability, mse: the predicted value).
void write_predictions(const std::string& path, const train::Predictions& p,
                       const std::vector<config::TaskSpec>& tasks, const std::vector<std::string>& label_names,
                       bool with_labels) {
  std::ofstream out(path);
  const int64_t n = p.logits.size(0);
  std::vector<std::string> names;
  std::vector<torch::Tensor> columns;
  if (tasks.empty()) {
    names.push_back("prediction");
    columns.push_back(torch::sigmoid(p.logits.reshape({-1}).to(torch::kDouble)));
  }
  for (size_t t = 0; t < tasks.size(); ++t) {
    const torch::Tensor x = p.logits.select(1, static_cast<int64_t>(t)).to(torch::kDouble);
    names.push_back(tasks[t].name);
    columns.push_back(tasks[t].loss == "mse" ? x : torch::sigmoid(x));
  }
  const bool table = with_labels || columns.size() > 1;
  const torch::Tensor labels = p.labels.to(torch::kDouble).contiguous();
  out << std::setprecision(9);
  if (table) {
    if (with_labels) {
      out << "row";
      for (int64_t l = 0; l < labels.size(1); ++l)
        out << "\tlabel." << (static_cast<size_t>(l) < label_names.size() ? label_names[l] : std::to_string(l));
      if (p.weights.defined()) out << "\tweight";
      out << "\t";
    }
    for (size_t c = 0; c < names.size(); ++c) out << (c ? "\t" : "") << names[c];
    out << "\n";
  }
  std::vector<torch::TensorAccessor<double, 1>> cells;
  for (const auto& c : columns) cells.push_back(c.accessor<double, 1>());
  const auto y = labels.accessor<double, 2>();
  const torch::Tensor w = p.weights.defined() ? p.weights.to(torch::kDouble).contiguous() : torch::zeros({0}, torch::kDouble);
  const auto wa = w.accessor<double, 1>();
  for (int64_t i = 0; i < n; ++i) {
    if (with_labels) {
      out << i;
      for (int64_t l = 0; l < y.size(1); ++l) out << "\t" << y[i][l];
      if (p.weights.defined()) out << "\t" << wa[i];
      out << "\t";
    }
    for (size_t c = 0; c < cells.size(); ++c) out << (c ? "\t" : "") << cells[c][i];
    out << "\n";
  }
  if (!out) throw InputError(str_cat(path, ": cannot write the predictions"));
}

// --bad-records skip: how many records of the evaluation data were skipped.
void report_skipped(const data::BatchSource& source) {
  const auto* batcher = dynamic_cast<const data::Batcher*>(&source);
  if (!batcher) return;
  const data::ReadReport r = batcher->report();
  if (r.rows_skipped > 0) std::cerr << r.summary() << "\n";
}

int run_eval(const EvalArgs& given) {
  EvalArgs args = given;
  if (args.config.empty()) {  // the run's own config.yaml, as `recmod train` saved it
    args.config = train::config_of_checkpoint(args.checkpoint);
    std::cerr << "config: " << args.config << " (the checkpoint's run)\n";
  }
  if (auto code = run_as_local_ranks(args.dist, args.config, args.overrides, args.device)) return *code;
  const Joined joined = join_run(args.dist, args.threads, args.config, args.device);
  const int64_t world = joined.comm->world_size();
  // The checkpoint's run keeps the vocabularies it was trained with (RUN/vocab/).
  config::LoadOptions load;
  load.vocab_dir = train::run_vocab_dir(args.config, args.checkpoint);
  auto opened = world > 1 ? train::open_model_deferred(args.config, args.overrides, load)
                          : train::open_model(args.config, args.checkpoint, args.overrides, load);
  // Tables the config declares int8 / int4 / int2 are evaluated quantized
  // (from a float checkpoint: quantized here, as `recmod quantize` would).
  if (world == 1) {
    const auto quantized = train::quantize_as_configured(opened.model);
    if (!quantized.empty()) std::cerr << "quantized as configured: " << quantized.size() << " table(s)\n";
  }
  const std::string data = !args.data.empty() ? args.data : opened.config.data.eval;
  if (data.empty()) throw UsageError("no data: pass --data FILE (or set data.eval in the config)");
  // A rank's own GPU under --nproc with --device cuda (as `recmod train`).
  const torch::Device device = joined.device;
  // Each rank holds its shards of the checkpoint and predicts its rows of
  // each global batch; every rank ends with all predictions, rank 0 prints.
  if (world > 1) {
    train::shard_model(opened.model, train::plan_model(opened.model, opened.config, world, memory_per_rank(joined)), joined.comm);
    train::load_full_checkpoint(opened.model, args.checkpoint);
  }
  opened.model->to(device);
  train::DataOptions read;
  read.format = args.format;
  read.batch_size = world * (args.batch_size > 0 ? args.batch_size : opened.config.training.batch_size);
  read.skip_bad_records = args.bad_records == "skip";
  read.max_bad_fraction = args.max_bad_fraction;
  // Each rank parses only its rows of each global batch (the Batcher's rank
  // mode; with --bad-records skip after the ranks shared the bad records).
  read.rank = joined.comm->rank();
  read.world_size = world;
  read.comm = joined.comm;
  const auto start = std::chrono::steady_clock::now();
  auto source = train::open_batches(opened, data, read);
  const auto& tasks = opened.config.training.tasks;
  const train::MetricsFn metrics_of = train::metrics_of_tasks(tasks);
  const train::Predictions predicted = train::predict(opened.model, *source, device, joined.comm.get());
  train::check_checkpoint_unchanged(opened);  // its tables are the file's pages
  const torch::Tensor& logits = predicted.logits;
  if (logits.numel() == 0) throw InputError(str_cat(data, ": no examples to evaluate (the file has no records)"));
  if (!joined.lead()) return 0;
  report_skipped(*source);
  auto metrics = metrics_of(predicted.logits, predicted.labels, predicted.weights);
  // The data pass: reading, forward and metrics (model loading not counted).
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cerr << "evaluated " << logits.size(0) << " examples in batches of " << read.batch_size << ": " << std::fixed
            << std::setprecision(3) << seconds << " s, " << std::setprecision(0)
            << static_cast<double>(logits.size(0)) / std::max(seconds, 1e-9) << " examples/s (reading, forward, metrics)"
            << std::defaultfloat << "\n";
  if (!args.predictions.empty()) write_predictions(args.predictions, predicted, tasks, opened.config.data.labels, args.with_labels);
  if (!args.baseline.empty()) {
    // The same data through a reference checkpoint (the float model of a
    // quantized one): its metrics and the change, quantized minus baseline.
    if (world > 1) throw UsageError("--baseline runs in one process; drop --nproc");
    auto reference = train::open_model(args.config, args.baseline, args.overrides);
    reference.model->to(device);
    auto again = train::open_batches(reference, data, read);
    const train::Predictions base_predicted = train::predict(reference.model, *again, device, nullptr);
    train::check_checkpoint_unchanged(reference);
    auto base = metrics_of(base_predicted.logits, base_predicted.labels, base_predicted.weights);
    nlohmann::json delta;
    for (const auto& item : metrics.items())
      if (item.key() != "count" && item.value().is_number() && base.contains(item.key()))
        delta[item.key()] = item.value().get<double>() - base[item.key()].get<double>();
    metrics["baseline"] = base;
    metrics["change"] = delta;
  }
  if (args.json) {
    std::cout << metrics.dump() << "\n";
  } else {
    std::vector<std::string> keys;
    if (tasks.empty()) keys = {"auc", "ne", "log_loss", "accuracy", "calibration"};
    for (const auto& t : tasks) {
      for (const auto& m : config::task_metric_names(t.loss)) keys.push_back(t.name + "." + m);
      if (t.loss == "bce") keys.push_back(t.name + ".calibration");
    }
    size_t width = 12;
    for (const auto& key : keys) width = std::max(width, key.size());
    for (const auto& key : keys)
      std::cout << std::left << std::setw(static_cast<int>(width)) << key << " " << std::fixed << std::setprecision(4)
                << metrics[key].get<double>() << "\n";
    std::cout << std::left << std::setw(static_cast<int>(width)) << "count" << " " << metrics["count"].get<int64_t>() << "\n";
    if (metrics.contains("change") && tasks.empty())
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
  cmd->add_option("--format", args->format, "Data format: criteo_tsv | jsonl | binary | delimited (default: the config's "
                  "data.format, else detected from the file's content)");
  cmd->add_flag("--json", args->json, "Print one JSON object instead of a table");
  cmd->add_option("--predictions", args->predictions,
                  "Write one predicted probability per line to FILE (with tasks: a tab-separated table, a column per task)");
  cmd->add_flag("--with-labels", args->with_labels,
                "With --predictions: a table with the row number (0-based), the labels and the sample weight first");
  cmd->add_option("--bad-records", args->bad_records,
                  "fail: the first bad record ends the evaluation (file:line); skip: bad records are skipped and "
                  "counted, within --max-bad-fraction")
      ->check(CLI::IsMember({"fail", "skip"}))
      ->capture_default_str();
  cmd->add_option("--max-bad-fraction", args->max_bad_fraction,
                  "With --bad-records skip: more bad records than this fraction of those read fails the evaluation")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  cmd->add_option("--baseline", args->baseline,
                  "Also evaluate this checkpoint (e.g. the float model of a quantized one) and report the change");
  cmd->add_option("--device", args->device, "cpu | cuda | cuda:N")->capture_default_str();
  cmd->add_option("--threads", args->threads, "CPU threads (default: one per core)");
  cmd->add_option("--batch-size", args->batch_size,
                  "Examples per forward pass (default: the config's training.batch_size; with --nproc, per rank)")
      ->check(CLI::PositiveNumber);
  add_dist_options(cmd, args->dist);
  actions["eval"] = [args] { return run_eval(*args); };
}

}  // namespace recmod::app
