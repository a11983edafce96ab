#include "recmod/train/trainer.h"

#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>

#include <atomic>
#include <mutex>
#include <chrono>
#include <csignal>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <iomanip>
#include <set>

#include "recmod/common/errors.h"
#include "recmod/common/state_dict.h"
#include "recmod/modules/embedding_modules.h"
#include "recmod/train/atomic_file.h"
#include "recmod/train/batch_memory.h"
#include "recmod/train/checkpoint.h"
#include "recmod/train/health.h"
#include "recmod/train/training_setup.h"
#include "recmod/train/optimizer.h"

namespace recmod::train {

namespace {

std::atomic<bool> g_stop_requested{false};

extern "C" void on_sigint(int) {
  g_stop_requested = true;
  std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C kills at once
}

// Installs the SIGINT handler for the lifetime of a fit() call.
class SigintGuard {
 public:
  SigintGuard() : previous_(std::signal(SIGINT, on_sigint)) { g_stop_requested = false; }
  ~SigintGuard() { std::signal(SIGINT, previous_); }
  SigintGuard(const SigintGuard&) = delete;
  SigintGuard& operator=(const SigintGuard&) = delete;

 private:
  void (*previous_)(int);
};


// Where the trainer is; saved in trainer_state.pt under "trainer.*".
struct Position {
  int64_t step = 0;            // optimizer steps done
  int64_t epoch = 0;           // current pass over the data
  int64_t batch_in_epoch = 0;  // batches of this epoch already consumed
};

constexpr char kOptimizerPrefix[] = "optimizer.";

torch::Tensor scalar(int64_t v) { return torch::tensor({v}, torch::kLong); }

int64_t read_scalar(const StateDict& state, const std::string& key, const std::string& origin) {
  const torch::Tensor* t = find_tensor(state, key);
  if (!t || t->numel() != 1) throw CheckpointError(str_cat(origin, ": missing trainer key '", key, "'"));
  return t->to(torch::kLong).item<int64_t>();
}

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

  void step(int64_t step, int64_t epoch, double loss, int64_t examples) {
    examples_ += examples;
    loss_sum_ += loss;
    ++window_;
    if (!log_ || (!bar_ && step % interval_ != 0)) return;
    double elapsed = seconds_since(start_);
    double rate = elapsed > 0 ? examples_ / elapsed : 0;
    std::ostringstream line;
    line << "step " << step;
    if (total_) line << "/" << *total_;
    line << "  epoch " << epoch << "  loss " << std::fixed << std::setprecision(4) << loss_sum_ / window_ << "  "
         << std::setprecision(0) << rate << " ex/s";
    if (total_ && elapsed > 0) {
      double steps_per_s = (step - first_step_ + 1) / elapsed;
      line << "  ETA " << format_duration((*total_ - step) / std::max(steps_per_s, 1e-9));
    }
    if (bar_) {
      *log_ << "\r" << line.str() << "\033[K" << std::flush;
    } else {
      *log_ << line.str() << "\n" << std::flush;
    }
    loss_sum_ = 0;
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
  double loss_sum_ = 0;
  int64_t window_ = 0;
};

/// FNV-1a over the bytes of model.pt: trainer_state.pt records it, so a resume
/// can tell whether the two files belong to the same step.
/// FNV-1a over a byte stream (the model file's identity in trainer_state.pt).
class Digest {
 public:
  void update(const void* data, size_t size) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < size; ++i) h_ = (h_ ^ p[i]) * 1099511628211ULL;
  }
  int64_t value() const { return static_cast<int64_t>(h_); }

 private:
  uint64_t h_ = 1469598103934665603ULL;
};

/// Read in chunks: a model file can be larger than the memory left beside the model.
int64_t file_digest(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chunk(size_t{1} << 20);
  Digest d;
  while (in) {
    in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    d.update(chunk.data(), static_cast<size_t>(in.gcount()));
  }
  return d.value();
}

std::string pending_model_path(const RunDir& run) { return run.model_path() + ".pending"; }


/// A checkpoint is two files; a kill may land between their writes. Order:
/// (1) model.pt.pending, (2) trainer_state.pt naming model.pt's digest,
/// (3) rename model.pt.pending -> model.pt. Each step is atomic, so after a
/// kill either both files are the old step, or trainer_state.pt is new and
/// the pending model is its match (load_checkpoint rolls it forward).
void save_checkpoint(config::ModelGraph& model, const TrainingSetup& training, const Position& pos,
                     const RunDir& run) {
  Digest model_digest;
  write_file_atomically(pending_model_path(run), [&](const ByteSink& sink) {
    write_tensors(state_dict(*model), [&](const void* data, size_t size) {
      model_digest.update(data, size);
      sink(data, size);
    });
  });
  StateDict trainer_state;
  for (const auto& [key, value] : training.state_dict()) trainer_state.emplace_back(kOptimizerPrefix + key, value);
  trainer_state.emplace_back("trainer.step", scalar(pos.step));
  trainer_state.emplace_back("trainer.epoch", scalar(pos.epoch));
  trainer_state.emplace_back("trainer.batch_in_epoch", scalar(pos.batch_in_epoch));
  trainer_state.emplace_back("trainer.rng", at::detail::getDefaultCPUGenerator().get_state());
  trainer_state.emplace_back("trainer.model_digest", scalar(model_digest.value()));
  save_tensors(run.trainer_state_path(), trainer_state);
  if (std::rename(pending_model_path(run).c_str(), run.model_path().c_str()) != 0)
    throw FileWriteError(str_cat(run.model_path(), ": cannot replace the file: ", std::strerror(errno)));
}

/// Makes model.pt the model trainer_state.pt was saved with (see save_checkpoint).
void match_model_to_state(const StateDict& state, const RunDir& run) {
  const torch::Tensor* expected = find_tensor(state, "trainer.model_digest");
  if (!expected) return;  // written before digests were recorded
  const int64_t want = expected->item<int64_t>();
  if (file_digest(run.model_path()) == want) return;
  const std::string pending = pending_model_path(run);
  if (std::filesystem::exists(pending) && file_digest(pending) == want) {
    if (std::rename(pending.c_str(), run.model_path().c_str()) != 0)
      throw CheckpointError(str_cat(run.model_path(), ": cannot complete the interrupted checkpoint from ", pending,
                                    ": ", std::strerror(errno)));
    return;
  }
  throw CheckpointError(str_cat(run.model_path(), " is not the model ", run.trainer_state_path(),
                                " was saved with (edited or copied from another run?); cannot resume exactly"));
}

Position load_checkpoint(config::ModelGraph& model, TrainingSetup& training, const RunDir& run) {
  const std::string origin = run.trainer_state_path();
  StateDict state = load_tensors(origin);
  match_model_to_state(state, run);
  load_model(model, run.model_path());
  StateDict optimizer_state;
  for (const auto& [key, value] : state)
    if (key.rfind(kOptimizerPrefix, 0) == 0) optimizer_state.emplace_back(key.substr(sizeof(kOptimizerPrefix) - 1), value);
  training.load_state_dict(optimizer_state, origin);
  Position pos{read_scalar(state, "trainer.step", origin), read_scalar(state, "trainer.epoch", origin),
               read_scalar(state, "trainer.batch_in_epoch", origin)};
  if (const torch::Tensor* rng = find_tensor(state, "trainer.rng")) {
    at::Generator generator = at::detail::getDefaultCPUGenerator();  // a handle to the shared generator
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(*rng);
  }
  return pos;
}

nlohmann::json evaluate(config::ModelGraph& model, const DataFactory& eval_data, const MetricsFn& metrics,
                        const torch::Device& device, int64_t step) {
  auto source = eval_data(0);
  auto [logits, labels] = predict(model, *source, device);
  nlohmann::json out = {{"step", step}, {"split", "eval"}};
  const nlohmann::json values = metrics(logits, labels);  // items() must not outlive it
  for (const auto& item : values.items()) out[item.key()] = item.value();
  model->train();
  return out;
}

}  // namespace

void request_stop() { g_stop_requested = true; }

void seed_everything(uint64_t seed) { torch::manual_seed(seed); }

void load_model(config::ModelGraph& model, const std::string& path) {
  recmod::load_state_dict(*model, load_tensors(path), path);
}

std::pair<torch::Tensor, torch::Tensor> predict(config::ModelGraph& model, data::BatchSource& source,
                                                const torch::Device& device) {
  torch::NoGradGuard no_grad;
  model->eval();
  std::vector<torch::Tensor> logits, labels;
  while (auto batch = source.next()) {
    logits.push_back(model->forward(batch->to(device)).to(torch::kCPU));
    labels.push_back(batch->labels.select(1, 0).to(torch::kCPU));
  }
  if (logits.empty()) return {torch::zeros({0}), torch::zeros({0})};
  return {torch::cat(logits), torch::cat(labels)};
}

Trainer::Trainer(config::ModelGraph model, RunDir run, TrainerOptions options)
    : model_(std::move(model)), run_(std::move(run)), options_(options) {}

TrainResult Trainer::fit(const DataFactory& train_data, const DataFactory& eval_data, const MetricsFn& metrics) {
  const auto& cfg = model_->config().training;
  model_->to(options_.device);
  model_->train();
  if (options_.device.is_cpu()) check_batch_fits(*model_, cfg.batch_size);
  TrainingSetup training(model_, options_.device);
  Position pos;
  if (options_.resume) pos = load_checkpoint(model_, training, run_);

  const std::optional<int64_t> total_steps = options_.steps ? options_.steps : cfg.steps;
  const bool can_eval = eval_data && metrics;
  Progress progress(options_.log, options_.progress_bar, cfg.log_interval, total_steps);
  progress.begin(pos.step);
  if (options_.resume) progress.message(str_cat("resuming ", run_.path(), " at step ", pos.step));
  auto all_parameters = model_->dense_parameters();
  for (auto& p : model_->embedding_parameters()) all_parameters.push_back(p);

  SigintGuard sigint;
  TrainResult result;
  auto finished = [&] { return total_steps ? pos.step >= *total_steps : pos.epoch >= cfg.epochs; };
  while (!finished()) {
    auto source = train_data(pos.epoch);
    for (int64_t i = 0; i < pos.batch_in_epoch; ++i)  // resume: skip what the run already consumed
      if (!source->next()) break;
    int64_t batches_this_pass = 0;
    while (!finished()) {
      if (g_stop_requested) {
        save_checkpoint(model_, training, pos, run_);
        progress.message(str_cat("interrupted: checkpoint at step ", pos.step, " saved in ", run_.path(),
                                 "; continue with --resume"));
        result.steps = pos.step;
        result.interrupted = true;
        return result;
      }
      auto batch = source->next();
      if (!batch) break;
      ++batches_this_pass;
      auto b = batch->to(options_.device);
      training.zero_grad();
      auto logits = model_->forward(b);
      auto loss = torch::binary_cross_entropy_with_logits(logits, b.labels.select(1, 0));
      check_loss_finite(loss, pos.step + 1);
      loss.backward();
      check_gradients_finite(all_parameters, pos.step + 1);
      training.step();
      ++pos.step;
      ++pos.batch_in_epoch;
      result.last_loss = loss.item<double>();
      progress.step(pos.step, pos.epoch, result.last_loss, b.size());
      if (cfg.log_interval > 0 && pos.step % cfg.log_interval == 0)
        run_.append_metrics(nlohmann::json{{"step", pos.step}, {"epoch", pos.epoch}, {"split", "train"},
                                           {"loss", result.last_loss},
                                           {"examples_per_s", progress.examples_per_second()}}
                                .dump());
      if (can_eval && cfg.eval_interval > 0 && pos.step % cfg.eval_interval == 0) {
        result.last_eval = evaluate(model_, eval_data, metrics, options_.device, pos.step);
        run_.append_metrics(result.last_eval.dump());
        progress.message(str_cat("eval at step ", pos.step, ": ", result.last_eval.dump()));
      }
      if (cfg.checkpoint_interval > 0 && pos.step % cfg.checkpoint_interval == 0)
        save_checkpoint(model_, training, pos, run_);
    }
    if (finished()) break;
    if (batches_this_pass == 0 && pos.batch_in_epoch == 0)
      throw InputError("the training data yielded no batches; check --data");
    ++pos.epoch;  // the pass ended
    pos.batch_in_epoch = 0;
  }
  save_checkpoint(model_, training, pos, run_);
  if (can_eval && (cfg.eval_interval == 0 || pos.step % cfg.eval_interval != 0)) {
    result.last_eval = evaluate(model_, eval_data, metrics, options_.device, pos.step);
    run_.append_metrics(result.last_eval.dump());
  }
  progress.message(str_cat("done: ", pos.step, " steps, last loss ", result.last_loss, "; checkpoint in ", run_.path()));
  result.steps = pos.step;
  return result;
}

}  // namespace recmod::train
