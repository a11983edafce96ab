#include "recmod/train/checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>

#include "recmod/common/errors.h"
#include "recmod/common/state_dict.h"
#include "recmod/io/atomic_file.h"
#include "recmod/io/mapped_tensors.h"
#include "recmod/io/tensor_file.h"
#include "recmod/train/checkpoint_keys.h"

namespace recmod::train {

using io::load_tensors;
using io::save_tensors;
using io::write_tensors;
using io::write_file_atomically;
using io::ByteSink;
using io::FileWriteError;

namespace {

constexpr char kOptimizerPrefix[] = "optimizer.";

torch::Tensor scalar(int64_t v) { return torch::tensor({v}, torch::kLong); }
torch::Tensor scalar_double(double v) { return torch::tensor({v}, torch::kDouble); }

int64_t read_scalar(const StateDict& state, const std::string& key, const std::string& origin) {
  const torch::Tensor* t = find_tensor(state, key);
  if (!t || t->numel() != 1) throw CheckpointError(str_cat(origin, ": missing trainer key '", key, "'"));
  return t->to(torch::kLong).item<int64_t>();
}

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

}  // namespace

void write_checkpoint(const DeferredStateDict& model_state, const DeferredStateDict& optimizer_state,
                      const Position& pos, const RunDir& run) {
  Digest model_digest;
  write_file_atomically(pending_model_path(run), [&](const ByteSink& sink) {
    write_tensors(model_state, [&](const void* data, size_t size) {
      model_digest.update(data, size);
      sink(data, size);
    });
  });
  DeferredStateDict trainer_state = optimizer_state;
  for (auto& entry : trainer_state) entry.key = kOptimizerPrefix + entry.key;
  StateDict scalars;
  scalars.emplace_back("trainer.step", scalar(pos.step));
  scalars.emplace_back("trainer.epoch", scalar(pos.epoch));
  scalars.emplace_back("trainer.batch_in_epoch", scalar(pos.batch_in_epoch));
  scalars.emplace_back("trainer.best_step", scalar(pos.best_step));
  scalars.emplace_back("trainer.best_value", scalar_double(pos.best_value));
  scalars.emplace_back("trainer.evals_since_best", scalar(pos.evals_since_best));
  scalars.emplace_back("trainer.stopped_early", scalar(pos.stopped_early ? 1 : 0));
  scalars.emplace_back("trainer.rng", at::detail::getDefaultCPUGenerator().get_state());
  scalars.emplace_back("trainer.model_digest", scalar(model_digest.value()));
  for (auto& entry : deferred(scalars)) trainer_state.push_back(std::move(entry));
  try {
    save_tensors(run.trainer_state_path(), trainer_state);
  } catch (const FileWriteError&) {
    // The old trainer state stays and names the old model.pt: the pending
    // model would only be a stray file (a disk that filled up, a size limit).
    std::remove(pending_model_path(run).c_str());
    throw;
  }
  if (std::rename(pending_model_path(run).c_str(), run.model_path().c_str()) != 0)
    throw FileWriteError(str_cat(run.model_path(), ": cannot replace the file: ", std::strerror(errno)));
}

void save_checkpoint(config::ModelGraph& model, const TrainingSetup& training, const Position& pos,
                     const RunDir& run) {
  write_checkpoint(deferred(state_dict(*model)), deferred(training.state_dict()), pos, run);
}

namespace {
/// read_trainer_state's work on the file's tensors, however they were read.
TrainerState trainer_state_of(const StateDict& state, const RunDir& run) {
  const std::string origin = run.trainer_state_path();
  match_model_to_state(state, run);
  TrainerState out;
  for (const auto& [key, value] : state)
    if (key.rfind(kOptimizerPrefix, 0) == 0) out.optimizer.emplace_back(key.substr(sizeof(kOptimizerPrefix) - 1), value);
  out.position = Position{read_scalar(state, "trainer.step", origin), read_scalar(state, "trainer.epoch", origin),
                          read_scalar(state, "trainer.batch_in_epoch", origin)};
  // Absent in checkpoints written before early stopping existed: no best yet.
  if (find_tensor(state, "trainer.best_step")) {
    out.position.best_step = read_scalar(state, "trainer.best_step", origin);
    out.position.best_value = find_tensor(state, "trainer.best_value")->to(torch::kDouble).item<double>();
    out.position.evals_since_best = read_scalar(state, "trainer.evals_since_best", origin);
    out.position.stopped_early = read_scalar(state, "trainer.stopped_early", origin) != 0;
  }
  if (const torch::Tensor* rng = find_tensor(state, "trainer.rng")) out.rng = *rng;
  return out;
}
}  // namespace

TrainerState read_trainer_state(const RunDir& run) {
  return trainer_state_of(load_tensors(run.trainer_state_path()), run);
}

TrainerState map_trainer_state(const RunDir& run) {
  TrainerState out = trainer_state_of(io::map_tensors(run.trainer_state_path(), /*release_verified=*/true), run);
  // A few KB, restored once: on the heap, so that only the optimizer state refers to the file.
  if (out.rng.defined()) out.rng = out.rng.clone();
  return out;
}

std::string best_model_path(const RunDir& run) { return run.path() + "/best/model.pt"; }

namespace {
std::string best_record_path(const RunDir& run) { return run.path() + "/best/best.json"; }
}  // namespace

void write_best_model(const DeferredStateDict& model_state, const BestRecord& record, const RunDir& run) {
  const std::string model = best_model_path(run);
  const std::string pending = model + ".pending";
  std::error_code ec;
  std::filesystem::create_directories(run.path() + "/best", ec);
  if (ec) throw FileWriteError(str_cat(run.path(), "/best: cannot create the directory: ", ec.message()));
  Digest digest;
  write_file_atomically(pending, [&](const ByteSink& sink) {
    write_tensors(model_state, [&](const void* data, size_t size) {
      digest.update(data, size);
      sink(data, size);
    });
  });
  const nlohmann::json json{{"metric", record.metric}, {"value", record.value}, {"step", record.step},
                            {"model_digest", digest.value()}};
  write_file_atomically(best_record_path(run), json.dump() + "\n");
  if (std::rename(pending.c_str(), model.c_str()) != 0)
    throw FileWriteError(str_cat(model, ": cannot replace the file: ", std::strerror(errno)));
}

std::optional<BestRecord> read_best_record(const RunDir& run) {
  const std::string path = best_record_path(run);
  if (!std::filesystem::exists(path)) return std::nullopt;
  std::ifstream in(path);
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError(str_cat(path, ": not the JSON recmod writes: ", e.what()));
  }
  const std::string model = best_model_path(run);
  const int64_t want = json.value("model_digest", int64_t{0});
  if (!std::filesystem::exists(model) || file_digest(model) != want) {
    const std::string pending = model + ".pending";
    if (!std::filesystem::exists(pending) || file_digest(pending) != want)
      throw CheckpointError(str_cat(model, " is not the model ", path, " names (edited or copied from another run?)"));
    if (std::rename(pending.c_str(), model.c_str()) != 0)
      throw CheckpointError(str_cat(model, ": cannot complete the interrupted write from ", pending, ": ",
                                    std::strerror(errno)));
  }
  return BestRecord{json.value("metric", std::string()), json.value("value", 0.0), json.value("step", int64_t{0})};
}

std::string config_of_checkpoint(const std::string& checkpoint) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(checkpoint).parent_path();
  std::vector<std::string> looked{(dir / "config.yaml").string()};
  if (dir.filename() == "best") looked.push_back((dir.parent_path() / "config.yaml").string());  // RUN/best/model.pt
  for (const auto& candidate : looked)
    if (fs::is_regular_file(candidate)) return candidate;
  throw UsageError(str_cat("no config given, and none in the checkpoint's run directory (looked for ",
                           join_names(looked), "); pass the model config: recmod eval CONFIG --checkpoint ",
                           checkpoint));
}

void restore_cpu_rng(const torch::Tensor& state) {
  at::Generator generator = at::detail::getDefaultCPUGenerator();  // a handle to the shared generator
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(state);
}

Position load_checkpoint(config::ModelGraph& model, TrainingSetup& training, const RunDir& run) {
  TrainerState state = read_trainer_state(run);
  load_model(model, run.model_path());
  training.load_state_dict(state.optimizer, run.trainer_state_path());
  if (state.rng.defined()) restore_cpu_rng(state.rng);
  return state.position;
}

void load_model(config::ModelGraph& model, const std::string& path) {
  // Copied from the file's mapped pages into the model's own tensors: no
  // second copy of the model on the heap while loading.
  const StateDict state = io::map_tensors(path);
  check_checkpoint_keys(state, model_keys(model), path);  // one line naming the likely cause
  recmod::load_state_dict(*model, state, path);
  io::check_mapped_unchanged(state);  // not cut or rewritten while being copied
}

}  // namespace recmod::train
