#include "recmod/train/trainer.h"

#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <iomanip>
#include <numeric>
#include <tuple>

#include "recmod/common/errors.h"
#include "recmod/data/batcher.h"
#include "recmod/data/device_prefetcher.h"
#include "recmod/io/tensor_file.h"
#include "recmod/metrics/binary_metrics.h"
#include "recmod/train/checkpoint.h"
#include "recmod/train/distributed.h"
#include "recmod/train/health.h"
#include "recmod/train/train_step.h"
#include "recmod/train/training_setup.h"

namespace recmod::train {

namespace {

std::atomic<bool> g_stop_requested{false};

extern "C" void on_stop_signal(int signal) {
  g_stop_requested = true;
  std::signal(signal, SIG_DFL);  // a second Ctrl-C (or SIGTERM) kills at once
}

// For the lifetime of a fit() call, SIGINT and SIGTERM (what Slurm and the
// --nproc supervisor send first) stop at the next step boundary with a
// checkpoint.
class SigintGuard {
 public:
  SigintGuard()
      : previous_int_(std::signal(SIGINT, on_stop_signal)), previous_term_(std::signal(SIGTERM, on_stop_signal)) {
    g_stop_requested = false;
  }
  ~SigintGuard() {
    std::signal(SIGINT, previous_int_);
    std::signal(SIGTERM, previous_term_);
  }
  SigintGuard(const SigintGuard&) = delete;
  SigintGuard& operator=(const SigintGuard&) = delete;

 private:
  void (*previous_int_)(int);
  void (*previous_term_)(int);
};

// A sum of per-step scalar losses. A CPU loss is read at once (reading it
// costs nothing); a device loss is added on the device and read only by
// value(), when a line is printed or logged: reading it waits for the step's
// kernels (a host synchronisation), which would stop the host from queueing
// the next step while the GPU still runs this one. Summed in double, in step
// order, as the host would.
class LossSum {
 public:
  void add(const torch::Tensor& loss) {
    const torch::Tensor l = loss.detach().reshape({});
    if (l.is_cpu()) {
      host_ += l.item<double>();
    } else {
      device_ = device_.defined() ? device_ + l.to(torch::kDouble) : l.to(torch::kDouble);
    }
  }
  double value() const { return host_ + (device_.defined() ? device_.item<double>() : 0.0); }

 private:
  double host_ = 0;
  torch::Tensor device_;
};

std::string format_duration(double seconds) {
  auto s = static_cast<int64_t>(seconds);
  std::ostringstream os;
  if (s >= 3600) os << s / 3600 << "h";
  os << std::setw(s >= 3600 ? 2 : 1) << std::setfill('0') << (s % 3600) / 60 << "m" << std::setw(2) << s % 60 << "s";
  return os.str();
}

// Examples/s, loss and ETA, on one \r line or as plain lines.
class Progress {
 public:
  Progress(std::ostream* log, bool bar, int64_t interval, std::optional<int64_t> total)
      : log_(log), bar_(bar), interval_(std::max<int64_t>(interval, 1)), total_(total), start_(now()) {}

  /// One step done. `window` (the logging window's loss and metrics, as
  /// metrics.jsonl gets them) is given at the end of each window; the bar
  /// shows the running mean of the window's losses in between.
  void step(int64_t step, int64_t epoch, const torch::Tensor& loss, int64_t examples,
            const nlohmann::json* window = nullptr) {
    examples_ += examples;
    loss_sum_.add(loss);
    ++window_;
    const bool window_end = window != nullptr || step % interval_ == 0;
    if (!log_ || (!bar_ && !window_end)) return;
    double elapsed = seconds_since(start_);
    double rate = elapsed > 0 ? examples_ / elapsed : 0;
    std::ostringstream line;
    line << "step " << step;
    if (total_) line << "/" << *total_;
    const double mean_loss =
        window && window->contains("loss") ? (*window)["loss"].get<double>() : loss_sum_.value() / window_;
    line << "  epoch " << epoch << "  loss " << std::fixed << std::setprecision(4) << mean_loss;
    if (window)  // auc and ne; with tasks each task's auc and ne (or mse)
      for (const auto& item : window->items()) {
        const std::string& key = item.key();
        const std::string base = key.substr(key.rfind('.') + 1);
        if ((base == "auc" || base == "ne" || base == "mse") && item.value().is_number())
          line << "  " << key << " " << item.value().get<double>();
      }
    line << "  " << std::setprecision(0) << rate << " ex/s";
    if (total_ && elapsed > 0) {
      double steps_per_s = (step - first_step_ + 1) / elapsed;
      line << "  ETA " << format_duration((*total_ - step) / std::max(steps_per_s, 1e-9));
    }
    if (bar_) {
      *log_ << "\r" << line.str() << "\033[K" << std::flush;
    } else {
      *log_ << line.str() << "\n" << std::flush;
    }
    if (!window_end) return;
    loss_sum_ = LossSum();
    window_ = 0;
  }
  void begin(int64_t step) { first_step_ = step + 1; }
  void message(const std::string& text) {
    if (!log_) return;
    if (bar_) *log_ << "\r\033[K";
    *log_ << text << "\n" << std::flush;
  }
  double examples_per_second() const {
    double elapsed = seconds_since(start_);
    return elapsed > 0 ? examples_ / elapsed : 0;
  }

 private:
  using Clock = std::chrono::steady_clock;
  static Clock::time_point now() { return Clock::now(); }
  static double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(now() - t).count(); }
  std::ostream* log_;
  bool bar_;
  int64_t interval_;
  std::optional<int64_t> total_;
  Clock::time_point start_;
  int64_t first_step_ = 1;
  int64_t examples_ = 0;
  LossSum loss_sum_;
  int64_t window_ = 0;
};

nlohmann::json evaluate(config::ModelGraph& model, const DataFactory& eval_data, const MetricsFn& metrics,
                        const torch::Device& device, int64_t step, dist::Communicator& comm) {
  auto source = eval_data(0);
  Predictions p;
  try {
    p = predict(model, *source, device, &comm);
  } catch (const InputError& e) {
    throw InputError(str_cat("step ", step, ": evaluation: ", e.what()));
  }
  nlohmann::json out = {{"step", step}, {"split", "eval"}};
  const nlohmann::json values = metrics(p.logits, p.labels, p.weights);  // items() must not outlive it
  for (const auto& item : values.items()) out[item.key()] = item.value();
  model->train();
  return out;
}

}  // namespace

void request_stop() { g_stop_requested = true; }

void seed_everything(uint64_t seed) { torch::manual_seed(seed); }

torch::Tensor infer(config::ModelGraph& model, const data::Batch& batch) {
  c10::InferenceMode inference;
  return model->forward(batch);
}

namespace {
// Every rank's rows of `mine` (split along dim 0), in rank order: an
// all-gather of unequal parts as an all-to-all that sends my part to every rank.
torch::Tensor gather_rows(dist::Communicator& comm, const torch::Tensor& mine) {
  const std::vector<int64_t> sizes = comm.all_gather(mine.size(0));
  std::vector<int64_t> repeats(static_cast<size_t>(mine.dim()), 1);
  repeats[0] = comm.world_size();
  return comm.all_to_all(mine.repeat(repeats), std::vector<int64_t>(sizes.size(), mine.size(0)), sizes);
}
}  // namespace

MetricsFn metrics_of_tasks(std::vector<config::TaskSpec> tasks) {
  return [tasks](const torch::Tensor& logits, const torch::Tensor& labels, const torch::Tensor& weights) {
    const torch::Tensor all_labels = labels.dim() == 1 ? labels.reshape({-1, 1}) : labels;
    if (tasks.empty()) return metrics::metrics_of_logits(logits.reshape({-1}), all_labels.select(1, 0), weights);
    nlohmann::json out;
    for (size_t t = 0; t < tasks.size(); ++t) {
      const auto& task = tasks[t];
      const torch::Tensor x = logits.select(1, static_cast<int64_t>(t));
      const torch::Tensor y = all_labels.select(1, task.label);
      const nlohmann::json values = task.loss == "mse" ? metrics::regression_metrics(x, y, weights)
                                                       : metrics::metrics_of_logits(x, y, weights);
      for (const auto& item : values.items())
        if (item.key() != "count") out[task.name + "." + item.key()] = item.value();
    }
    out["count"] = logits.size(0);
    return out;
  };
}

Predictions predict(config::ModelGraph& model, data::BatchSource& source, const torch::Device& device,
                    dist::Communicator* comm) {
  model->eval();
  const bool distributed = comm != nullptr && comm->world_size() > 1;
  std::vector<torch::Tensor> logits, labels, weights;
  auto keep_labels = [&](const data::Batch& batch) {
    labels.push_back(batch.labels.to(torch::kCPU));
    if (batch.weights.defined()) weights.push_back(batch.weights.to(torch::kCPU));
  };
  if (!distributed) {
    // Batches copied one ahead (on a GPU); the logits stay on the device
    // until the end, so no batch waits for the previous one's.
    data::DevicePrefetcher batches(source, device);
    while (auto batch = batches.next()) {
      keep_labels(batch->host);
      logits.push_back(infer(model, batch->device));
    }
    if (!logits.empty()) logits = {torch::cat(logits).to(torch::kCPU)};
  }
  if (distributed) {
    // Sharded: autograd off, but not InferenceMode (the tensors that go
    // through the collectives stay ordinary ones).
    torch::NoGradGuard no_grad;
    // A Batcher in rank mode returns this rank's rows only (it parsed only
    // those): the labels and weights are gathered with the predictions, in
    // rank order, which is the global batch's order. Any other source gives
    // every rank the whole global batch.
    const auto* own_rows = dynamic_cast<const data::Batcher*>(&source);
    if (own_rows && !own_rows->rank_mode()) own_rows = nullptr;
    while (auto batch = source.next()) {
      if (!own_rows) {
        keep_labels(*batch);
        const torch::Tensor mine =
            model->forward(rank_slice(*batch, comm->rank(), comm->world_size()).to(device)).to(torch::kCPU);
        logits.push_back(gather_rows(*comm, mine));
        continue;
      }
      comm->expect_batch_sizes(own_rows->rank_sizes());
      const torch::Tensor mine = model->forward(batch->to(device)).to(torch::kCPU);
      comm->expect_batch_sizes({});
      logits.push_back(gather_rows(*comm, mine));
      labels.push_back(gather_rows(*comm, batch->labels.to(torch::kCPU).contiguous()));
      if (batch->weights.defined()) weights.push_back(gather_rows(*comm, batch->weights.to(torch::kCPU).contiguous()));
    }
  }
  if (logits.empty()) return {torch::zeros({0}), torch::zeros({0, 1}), torch::Tensor()};
  Predictions out{torch::cat(logits), torch::cat(labels), weights.empty() ? torch::Tensor() : torch::cat(weights)};
  check_finite_predictions(out.logits);
  return out;
}

void check_finite_predictions(const torch::Tensor& logits) {
  if (torch::isfinite(logits).all().item<bool>()) return;
  const torch::Tensor rows = torch::logical_not(torch::isfinite(logits.reshape(-1))).nonzero().select(1, 0);
  std::string listed;
  for (int64_t i = 0; i < std::min<int64_t>(rows.size(0), 5); ++i)
    listed += str_cat(i ? ", " : "", rows[i].item<int64_t>());
  if (rows.size(0) > 5) listed += ", ...";
  throw InputError(str_cat("the model's predictions are not finite (nan or inf) for ", rows.size(0), " of ",
                           logits.numel(), " rows (0-based, in data order: ", listed,
                           "); the weights or the inputs are not finite"));
}

Trainer::Trainer(config::ModelGraph model, config::TrainingSpec training, RunDir run, TrainerOptions options)
    : model_(std::move(model)), training_(std::move(training)), run_(std::move(run)), options_(options) {}

TrainResult Trainer::fit(const DataFactory& train_data, const DataFactory& eval_data, const MetricsFn& metrics) {
  const auto& cfg = training_;
  const std::shared_ptr<dist::Communicator> comm = options_.comm ? options_.comm : dist::single_process();
  const bool distributed = comm->world_size() > 1;
  const bool lead = comm->rank() == 0;  // the rank that writes files
  // Shard first: a model opened deferred holds no table until its shards are drawn.
  if (distributed) shard_model(model_, options_.plan, comm);
  model_->to(options_.device);
  model_->train();
  Position pos;
  TrainerState resumed;
  if (distributed && options_.resume) {
    // Every rank maps the full checkpoint and copies its shards out of it:
    // any world size (and any plan) resumes any other, and no rank holds a
    // whole table or its optimizer state. The lead maps it first, which
    // completes an interrupted checkpoint; the others after it has.
    if (lead) resumed = map_trainer_state(run_);
    comm->barrier();
    if (!lead) resumed = map_trainer_state(run_);
    load_full_checkpoint(model_, run_.model_path());
  }
  TrainingSetup training(model_, cfg, options_.device, comm, options_.plan);
  if (options_.resume && distributed) {
    load_local_optimizer_state(training, model_, resumed.optimizer, cfg, run_.trainer_state_path());
    if (resumed.rng.defined()) restore_cpu_rng(resumed.rng);
    pos = resumed.position;
    resumed = TrainerState();  // the mapping is not kept for the run (a checkpoint replaces the file)
  } else if (options_.resume) {
    pos = load_checkpoint(model_, training, run_);
  }
  // Where rank 0 assembles each gathered table: a file in the run directory
  // for one larger than the memory it may use.
  auto gather_allocator = [&] {
    return checkpoint_tensor_allocator(run_.path(), options_.checkpoint_memory.value_or(default_checkpoint_memory()));
  };
  auto checkpoint = [&] {
    if (!distributed) return save_checkpoint(model_, training, pos, run_);
    // Rank 0 writes while the ranks gather each table in turn (the others
    // make and drop the same entries, in the same order).
    const auto allocate = gather_allocator();
    const DeferredStateDict model_state = deferred_model_state(model_, *comm, allocate);
    const DeferredStateDict optimizer_state = deferred_optimizer_state(model_, training, cfg, *comm, allocate);
    if (lead) {
      write_checkpoint(model_state, optimizer_state, pos, run_);
    } else {
      io::make_and_drop(model_state);
      io::make_and_drop(optimizer_state);
    }
    comm->barrier();  // complete only when written; no rank runs ahead of it
  };
  // Every rank stops at the same step boundary, whichever got the signal:
  // each step's gradient all-reduce carries the ranks' requests
  // (StepHooks::stop_requested), so asking costs no collective.
  bool stop_agreed = false;
  auto stop_requested = [&] { return distributed ? stop_agreed : g_stop_requested.load(); };
  auto append_metrics = [&](const nlohmann::json& line) {
    if (lead) run_.append_metrics(line.dump());
  };

  const std::optional<int64_t> total_steps = options_.steps ? options_.steps : cfg.steps;
  const bool can_eval = eval_data && metrics;
  Progress progress(options_.log, options_.progress_bar, cfg.log_interval, total_steps);
  // training.keep_best / early_stopping: the best evaluation so far is in
  // the trainer state (pos), its model in best/model.pt.
  const bool watch_best = !cfg.keep_best.empty();
  if (watch_best && !can_eval)
    throw UsageError(str_cat("training.", cfg.early_stopping ? "early_stopping" : "keep_best",
                             " needs evaluation data: pass --eval-data FILE (or set data.eval)"));
  if (watch_best && options_.resume && lead) read_best_record(run_);  // completes an interrupted write
  // Records an evaluation; true when early stopping ends the run here.
  auto note_eval = [&](const nlohmann::json& eval) {
    if (!watch_best) return false;
    const std::string& metric = cfg.keep_best;
    if (!eval.contains(metric) || !eval[metric].is_number())
      throw InputError(str_cat("step ", pos.step, ": the evaluation has no metric '", metric, "' (", eval.dump(), ")"));
    const double value = eval[metric].get<double>();
    const double min_delta = cfg.early_stopping ? cfg.early_stopping->min_delta : 0.0;
    const bool better = pos.best_step < 0 || (config::higher_is_better(metric) ? value > pos.best_value + min_delta
                                                                               : value < pos.best_value - min_delta);
    if (better) {
      pos.best_step = pos.step;
      pos.best_value = value;
      pos.evals_since_best = 0;
      const DeferredStateDict model_state =
          distributed ? deferred_model_state(model_, *comm, gather_allocator()) : deferred(state_dict(*model_));
      if (lead)
        write_best_model(model_state, BestRecord{metric, value, pos.step}, run_);
      else
        io::make_and_drop(model_state);
      if (distributed) comm->barrier();
      progress.message(str_cat("best ", metric, " so far (", value, " at step ", pos.step, "): ", best_model_path(run_)));
    } else {
      ++pos.evals_since_best;
    }
    if (cfg.early_stopping && pos.evals_since_best >= cfg.early_stopping->patience) {
      pos.stopped_early = true;
      progress.message(str_cat("early stopping at step ", pos.step, ": ", metric, " has not improved by more than ",
                               min_delta, " for ", pos.evals_since_best, " evaluations; best ", pos.best_value,
                               " at step ", pos.best_step, " (", best_model_path(run_), ")"));
      return true;
    }
    return false;
  };
  const int64_t first_step = pos.step;
  progress.begin(pos.step);
  if (options_.resume) progress.message(str_cat("resuming ", run_.path(), " at step ", pos.step));
  auto all_parameters = model_->dense_parameters();
  for (auto& p : model_->embedding_parameters()) all_parameters.push_back(p);

  // The logging window: the steps since the last train line of
  // metrics.jsonl (or since this process started). Its loss is the mean of
  // its steps' losses; with `metrics`, its predictions (made before each
  // step's update, as the loss) give the window's auc, ne, ...
  struct Window {
    LossSum loss_sum;
    int64_t steps = 0;
    std::vector<torch::Tensor> logits, labels, weights;
  } window;
  const bool window_metrics = metrics && cfg.log_interval > 0;
  auto close_window = [&] {
    nlohmann::json line{{"step", pos.step}, {"epoch", pos.epoch}, {"split", "train"},
                        {"loss", window.loss_sum.value() / static_cast<double>(std::max<int64_t>(window.steps, 1))},
                        {"steps", window.steps}};
    if (window_metrics) {
      torch::Tensor logits = window.logits.empty() ? torch::zeros({0}) : torch::cat(window.logits).to(torch::kCPU);
      torch::Tensor labels = window.labels.empty() ? torch::zeros({0, 1}) : torch::cat(window.labels);
      torch::Tensor weights = window.weights.empty() ? torch::Tensor() : torch::cat(window.weights);
      if (distributed) {  // every rank's rows, as predict() gathers them
        logits = gather_rows(*comm, logits);
        labels = gather_rows(*comm, labels.to(logits.dtype()));
        if (weights.defined()) weights = gather_rows(*comm, weights);
      }
      if (logits.numel() > 0) {
        const nlohmann::json values = metrics(logits, labels, weights);
        for (const auto& item : values.items()) line[item.key()] = item.value();
      }
    }
    line["dense_lr"] = training.dense_lr();
    line["embedding_lr"] = training.embedding_lr();
    line["examples_per_s"] = progress.examples_per_second();
    window = Window();
    return line;
  };

  // Bad records skipped in a pass (--bad-records skip): the count and the
  // first messages, on the console and in metrics.jsonl.
  auto report_bad_records = [&](const data::BatchSource& source) {
    const auto* batcher = dynamic_cast<const data::Batcher*>(&source);
    if (!batcher) return;
    const data::ReadReport r = batcher->report();
    if (r.rows_skipped == 0) return;
    progress.message(str_cat("epoch ", pos.epoch, ": ", r.summary()));
    append_metrics(nlohmann::json{{"step", pos.step}, {"epoch", pos.epoch}, {"split", "bad_records"},
                                  {"skipped", r.rows_skipped}, {"rows_read", r.rows_read}, {"first", r.first_errors}});
  };

  SigintGuard sigint;
  TrainResult result;
  torch::Tensor last_loss;  // the last step's (on the device)
  auto read_last_loss = [&] {
    if (last_loss.defined()) result.last_loss = last_loss.item<double>();
  };
  auto finished = [&] {
    return pos.stopped_early || (total_steps ? pos.step >= *total_steps : pos.epoch >= cfg.epochs);
  };
  if (pos.stopped_early)
    progress.message(str_cat("the run stopped early at step ", pos.step, " (training.early_stopping); best ",
                             cfg.keep_best, " ", pos.best_value, " at step ", pos.best_step));
  while (!finished()) {
    auto source = train_data(pos.epoch);
    // A Batcher in rank mode hands out this rank's rows of each global batch
    // (it read only those); any other source the whole global batch.
    const auto* own_rows = dynamic_cast<const data::Batcher*>(source.get());
    if (own_rows && !own_rows->rank_mode()) own_rows = nullptr;
    for (int64_t i = 0; i < pos.batch_in_epoch; ++i)  // resume: skip what the run already consumed
      if (!source->next()) break;
    // On a GPU the next batch is copied while this step runs; each rank
    // keeps its rows of a global batch before the copy.
    data::DevicePrefetcher::Prepare keep_rank_rows;
    if (distributed && !own_rows)
      keep_rank_rows = [&](const data::Batch& g) { return rank_slice(g, comm->rank(), comm->world_size()); };
    data::DevicePrefetcher batches(*source, options_.device, keep_rank_rows);
    int64_t batches_this_pass = 0;
    while (!finished()) {
      if (stop_requested()) {
        checkpoint();
        progress.message(str_cat("interrupted: checkpoint at step ", pos.step, " saved in ", run_.path(),
                                 "; continue with --resume"));
        result.steps = pos.step;
        result.interrupted = true;
        read_last_loss();
        return result;
      }
      auto batch = batches.next();
      if (!batch) break;
      ++batches_this_pass;
      const std::vector<int64_t> rank_sizes =
          own_rows ? batch->rank_sizes : rank_batch_sizes(batch->source_size, comm->world_size());
      const int64_t global_size = std::accumulate(rank_sizes.begin(), rank_sizes.end(), int64_t{0});
      const data::Batch& b = batch->device;
      StepHooks checks;
      // A non-finite loss or gradient stops the run before the update it
      // would make. Fused collections (EBC or EC) update their tables inside
      // backward, so the loss is read before it; otherwise the loss's flag
      // is read with the gradients' after backward, one synchronisation for both.
      torch::Tensor step_loss;
      checks.before_backward = [&](const torch::Tensor& loss) {
        if (training.fused().empty() && training.fused_sequences().empty()) step_loss = loss;
        else check_loss_finite(loss, pos.step + 1);
      };
      checks.after_backward = [&] {
        if (step_loss.defined()) check_step_finite(step_loss, all_parameters, pos.step + 1);
        else check_gradients_finite(all_parameters, pos.step + 1);
      };
      checks.global_batch_size = global_size;
      checks.stop_requested = g_stop_requested;
      checks.stop_agreed = &stop_agreed;
      // The sharded modules need every rank's row count: the split is rank_rows'.
      if (distributed) comm->expect_batch_sizes(rank_sizes);
      if (window_metrics)
        checks.after_forward = [&](const torch::Tensor& logits) {
          // The logits stay on their device until the window closes (a copy
          // there: the step may reuse its output buffer); labels and
          // weights are the host batch's.
          window.logits.push_back(logits.to(torch::kFloat, false, /*copy=*/!logits.is_cpu()));
          window.labels.push_back(batch->host.labels.to(torch::kFloat));
          if (batch->host.weights.defined()) window.weights.push_back(batch->host.weights.to(torch::kFloat));
        };
      training.schedule_lr(pos.step);  // from the step count alone: a resumed run gets the same rates
      const torch::Tensor loss = train_step(model_, training, b, checks);
      // training.cuda_graphs: the capture, or why a step or the run is eager (once each).
      if (const std::string note = training.take_cuda_graphs_notes(); !note.empty()) progress.message(note);
      if (distributed) comm->expect_batch_sizes({});
      ++pos.step;
      ++pos.batch_in_epoch;
      last_loss = loss;  // read at the end of the run: a read here would wait for the step
      window.loss_sum.add(loss);
      ++window.steps;
      nlohmann::json line;
      if (cfg.log_interval > 0 && pos.step % cfg.log_interval == 0) line = close_window();
      progress.step(pos.step, pos.epoch, loss, global_size, line.is_null() ? nullptr : &line);
      if (!line.is_null()) append_metrics(line);
      if (can_eval && cfg.eval_interval > 0 && pos.step % cfg.eval_interval == 0) {
        result.last_eval = evaluate(model_, eval_data, metrics, options_.device, pos.step, *comm);
        append_metrics(result.last_eval);
        progress.message(str_cat("eval at step ", pos.step, ": ", result.last_eval.dump()));
        if (note_eval(result.last_eval)) break;
      }
      if (cfg.checkpoint_interval > 0 && pos.step % cfg.checkpoint_interval == 0) checkpoint();
    }
    report_bad_records(*source);
    if (finished()) break;
    if (batches_this_pass == 0 && pos.batch_in_epoch == 0)
      throw InputError("the training data yielded no batches; check --data");
    ++pos.epoch;  // the pass ended
    pos.batch_in_epoch = 0;
  }
  const bool final_eval = can_eval && !pos.stopped_early && (cfg.eval_interval == 0 || pos.step % cfg.eval_interval != 0);
  if (!watch_best) checkpoint();
  if (final_eval) {
    result.last_eval = evaluate(model_, eval_data, metrics, options_.device, pos.step, *comm);
    append_metrics(result.last_eval);
    note_eval(result.last_eval);
  }
  if (watch_best) checkpoint();  // after the last evaluation: the trainer state holds its verdict
  result.stopped_early = pos.stopped_early;
  result.best_step = pos.best_step;
  result.best_value = pos.best_value;
  read_last_loss();
  progress.message(str_cat("done: ", pos.step, " steps, last loss ", result.last_loss, "; checkpoint in ", run_.path()));
  result.steps_this_run = pos.step - first_step;
  result.traffic = comm->traffic();
  result.steps = pos.step;
  return result;
}

}  // namespace recmod::train
