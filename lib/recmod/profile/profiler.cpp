#include "recmod/profile/profiler.h"

#include <ATen/CPUGeneratorImpl.h>
#include <sys/resource.h>
#include <torch/torch.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <map>
#include <numeric>
#include <set>
#include <sstream>

#include "recmod/common/errors.h"
#include "recmod/common/state_dict.h"
#include "recmod/train/distributed.h"
#include "recmod/train/graph_step.h"
#include "recmod/train/train_step.h"
#include "recmod/train/training_setup.h"

namespace recmod::profile {

namespace {

using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); }
double us_since(Clock::time_point origin, Clock::time_point t) { return std::chrono::duration<double, std::micro>(t - origin).count(); }

// The tensors that carry a node's output gradient.
std::vector<torch::Tensor> grad_carriers(const config::Value& v) {
  switch (v.kind) {
    case config::ValueKind::Dense: return {v.dense};
    case config::ValueKind::Pooled: return {v.pooled.values()};
    case config::ValueKind::Sequence: {
      std::vector<torch::Tensor> out;
      for (const auto& kv : v.sequence) out.push_back(kv.second.values());
      return out;
    }
    case config::ValueKind::Sparse: return {};
  }
  return {};
}

void sync(const torch::Device& device) {
  // Only CPU timing is synchronous by itself; on CUDA, a .item() on a tiny
  // tensor drains the stream without needing CUDA headers here.
  if (device.is_cuda()) torch::zeros({1}, torch::TensorOptions().device(device)).sum().item<float>();
}

// Waits for all of a CUDA device's streams (side streams too: CUDA graphs,
// input copies) without launching work on them (the CUDA activity steps
// count every kernel).
void sync_device(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

/// The CUDA activity of up to kGpuActivitySteps more steps: each takes a
/// batch, copies it to `device` and runs `run` on it, timed until the GPU
/// is done.
GpuActivity gpu_activity_steps(int64_t steps, const NextBatch& next_batch, const torch::Device& device,
                               const std::function<void(const data::Batch&, int64_t)>& run) {
  sync_device(device);
  return measure_gpu_activity(std::min(steps, kGpuActivitySteps), [&]() -> std::optional<double> {
    auto batch = next_batch();
    if (!batch) return std::nullopt;
    const auto start = Clock::now();
    run(batch->to(device), batch->size());
    sync_device(device);
    return ms_between(start, Clock::now());
  });
}

std::string human_bytes(int64_t bytes) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(2);
  if (bytes >= (int64_t{1} << 30)) os << bytes / double(int64_t{1} << 30) << " GiB";
  else if (bytes >= (1 << 20)) os << bytes / double(1 << 20) << " MiB";
  else if (bytes >= (1 << 10)) os << bytes / double(1 << 10) << " KiB";
  else os << bytes << " B";
  return os.str();
}

}  // namespace

int64_t peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;  // Linux reports KiB
}

SyntheticBatches::SyntheticBatches(config::ModelGraph& model, int64_t batch_size, uint64_t seed)
    : schema_(model->schema()), batch_size_(batch_size), id_range_(int64_t{1} << 40),
      generator_(at::detail::createCPUGenerator(seed)) {
  bool all_hashed = true;
  for (const auto& f : model->spec().features.sparse) all_hashed = all_hashed && f.hash != "none";
  if (!all_hashed)
    for (const auto& [name, weight] : model->embedding_parameters())
      if (weight.dim() == 2) id_range_ = std::min(id_range_, weight.size(0));
}

data::Batch SyntheticBatches::next() {
  const int64_t num_sparse = static_cast<int64_t>(schema_.sparse_features.size());
  auto dense = torch::randn({batch_size_, schema_.num_dense}, generator_);
  auto ids = torch::randint(0, id_range_, {num_sparse * batch_size_}, generator_, torch::kLong);
  auto lengths = torch::ones({num_sparse * batch_size_}, torch::kInt);
  auto labels = torch::randint(0, 2, {batch_size_, schema_.num_labels}, generator_, torch::kFloat);
  return data::Batch{dense, KeyedJaggedTensor::from_lengths(schema_.sparse_features, ids, lengths, std::nullopt, batch_size_),
                     labels};
}

namespace {

/// Times each node's forward as the executor runs it, and hooks the tensors
/// that will carry its output gradient and its parameters' gradients, so a
/// node's backward can be timed from the gradient reaching its output to its
/// parameters' (or inputs') gradients being done.
class NodeTimer : public config::NodeObserver {
 public:
  NodeTimer(config::ModelGraph& model, const torch::Device& device, Clock::time_point step_start)
      : model_(model), device_(device), forward_start_(model->nodes().size()),
        forward_end_(model->nodes().size()), grad_at_output_(model->nodes().size(), step_start),
        backward_end_(model->nodes().size(), step_start), got_grad_(model->nodes().size(), false) {
    // A node's backward ends when its parameters' gradients are done.
    for (size_t i = 0; i < model->nodes().size(); ++i)
      for (const auto& child : model->named_children()) {
        if (child.key() != model->nodes()[i].name) continue;
        for (auto& param : child.value()->parameters())
          if (param.requires_grad())  // not counters such as an MC module's iteration
            hooks_.emplace_back(param, param.register_hook([this, i](torch::Tensor) { backward_end_[i] = Clock::now(); }));
      }
  }
  ~NodeTimer() override {
    for (auto& [tensor, id] : hooks_) tensor.remove_hook(id);
  }
  NodeTimer(const NodeTimer&) = delete;
  NodeTimer& operator=(const NodeTimer&) = delete;

  void before_node(size_t i) override { forward_start_[i] = Clock::now(); }
  void after_node(size_t i, const config::Value& output) override {
    sync(device_);
    forward_end_[i] = Clock::now();
    for (auto& carrier : grad_carriers(output)) {
      if (!carrier.requires_grad()) continue;
      hooks_.emplace_back(carrier, carrier.register_hook([this, i](torch::Tensor) {
        if (!got_grad_[i]) grad_at_output_[i] = Clock::now();
        got_grad_[i] = true;
      }));
    }
  }

  Clock::time_point forward_start(size_t i) const { return forward_start_[i]; }
  Clock::time_point forward_end(size_t i) const { return forward_end_[i]; }
  /// A parameter-free node's backward ends when its inputs have their gradients.
  std::pair<Clock::time_point, Clock::time_point> backward_span(size_t i, Clock::time_point backward_start) const {
    auto end = backward_end_[i];
    for (int64_t id : model_->input_ids(i))
      if (id >= 0 && got_grad_[id]) end = std::max(end, grad_at_output_[id]);
    const auto start = got_grad_[i] ? grad_at_output_[i] : backward_start;
    return {start, std::max(start, end)};
  }

 private:
  config::ModelGraph& model_;
  torch::Device device_;
  std::vector<Clock::time_point> forward_start_, forward_end_, grad_at_output_, backward_end_;
  std::vector<bool> got_grad_;
  std::vector<std::pair<torch::Tensor, unsigned>> hooks_;
};

/// What profile_model and profile_inference collect over the timed steps:
/// per-node times, the step times, and the Chrome trace of both.
class StepRecorder {
 public:
  StepRecorder(const config::ModelGraph& model, Clock::time_point origin)
      : model_(model), origin_(origin), forward_ms_(model->nodes().size(), 0), backward_ms_(model->nodes().size(), 0) {}

  void forward(size_t node, Clock::time_point start, Clock::time_point end) {
    forward_ms_[node] += ms_between(start, end);
    span(model_->nodes()[node].name, "forward", 0, start, end);
  }
  void backward(size_t node, Clock::time_point start, Clock::time_point end) {
    backward_ms_[node] += ms_between(start, end);
    span(model_->nodes()[node].name, "backward", 1, start, end);
  }
  void step(Clock::time_point start, Clock::time_point end, int64_t batch_size) {
    span("step", "step", 2, start, end);
    total_step_ms_ += ms_between(start, end);
    examples_ += batch_size;
    ++steps_;
  }
  /// The report's step and per-node figures (averages over the timed steps).
  void summarise(ProfileReport& report) const {
    report.batch_size = examples_ / steps_;
    report.steps = steps_;
    report.step_ms = total_step_ms_ / static_cast<double>(steps_);
    report.examples_per_s = total_step_ms_ > 0 ? static_cast<double>(examples_) / (total_step_ms_ / 1000.0) : 0;
    for (size_t i : model_->order())
      report.nodes.push_back({model_->nodes()[i].name, model_->nodes()[i].type, forward_ms_[i] / steps_,
                              backward_ms_[i] / steps_});
  }
  /// Writes the Chrome trace ("" writes nothing).
  void write_trace(const std::string& path) const {
    if (path.empty()) return;
    std::ofstream out(path);
    out << nlohmann::json{{"traceEvents", trace_}, {"displayTimeUnit", "ms"}}.dump() << "\n";
    if (!out) throw InputError(str_cat(path, ": cannot write the trace"));
  }

 private:
  void span(const std::string& name, const char* category, int tid, Clock::time_point start, Clock::time_point end) {
    trace_.push_back({{"name", name}, {"cat", category}, {"ph", "X"}, {"pid", 0}, {"tid", tid},
                      {"ts", us_since(origin_, start)}, {"dur", us_since(start, end)}});
  }

  const config::ModelGraph& model_;
  Clock::time_point origin_;
  std::vector<double> forward_ms_, backward_ms_;
  nlohmann::json trace_ = nlohmann::json::array();
  double total_step_ms_ = 0;
  int64_t examples_ = 0, steps_ = 0;
};

}  // namespace

ProfileReport profile_model(config::ModelGraph& model, const config::TrainingSpec& training_spec,
                            const NextBatch& next_batch, int64_t steps, int64_t warmup, const torch::Device& device,
                            const std::string& trace_path, std::shared_ptr<dist::Communicator> comm,
                            const RankSizes& rank_sizes, const dist::ShardingPlan& plan) {
  if (!comm) comm = dist::single_process();
  const bool distributed = comm->world_size() > 1;
  TORCH_CHECK(steps > 0, "profile: steps must be > 0, got ", steps);
  model->to(device);
  model->train();
  // Trains as `recmod train` does (the same TrainingSetup and train_step), so
  // the step time here is the one training sees.
  train::TrainingSetup training(model, training_spec, device, comm, plan);
  const auto& order = model->order();
  ProfileReport report;
  StepRecorder recorder(model, Clock::now());

  // training.cuda_graphs captures after a few eager steps, and the capture
  // step itself is slow: the timed steps start once it is done (at most
  // kGraphWarmupSteps more untimed steps than --warmup).
  constexpr int64_t kGraphWarmupSteps = 8;
  int64_t untimed = warmup;
  for (int64_t step = 0; step < untimed + steps; ++step) {
    auto batch = next_batch();
    if (!batch) throw InputError(str_cat("profile: the data ran out after ", step, " batches; use fewer --steps"));
    if (step == untimed && training.graph_step() && training.graph_step()->warming_up() &&
        untimed < warmup + kGraphWarmupSteps)
      ++untimed;
    const bool timed = step >= untimed;
    const bool own_rows = distributed && rank_sizes;
    int64_t global_size = batch->size();
    if (own_rows) {  // this rank's rows only; the sharded modules are told every rank's count
      const std::vector<int64_t> sizes = rank_sizes();
      global_size = std::accumulate(sizes.begin(), sizes.end(), int64_t{0});
      comm->expect_batch_sizes(sizes);
    }
    auto b = (distributed && !own_rows ? train::rank_slice(*batch, comm->rank(), comm->world_size()) : *batch).to(device);
    sync(device);
    const auto step_start = Clock::now();
    NodeTimer timer(model, device, step_start);
    Clock::time_point backward_start = step_start;
    train::StepHooks hooks;
    hooks.observer = &timer;
    hooks.before_backward = [&](const torch::Tensor&) { backward_start = Clock::now(); };
    hooks.global_batch_size = global_size;
    train::train_step(model, training, b, hooks);
    if (own_rows) comm->expect_batch_sizes({});
    sync(device);
    const auto step_end = Clock::now();
    if (!timed) continue;
    for (size_t i : order) {
      recorder.forward(i, timer.forward_start(i), timer.forward_end(i));
      const auto [start, end] = timer.backward_span(i, backward_start);
      recorder.backward(i, start, end);
    }
    recorder.step(step_start, step_end, global_size);
  }
  recorder.summarise(report);
  if (device.is_cuda() && !distributed)
    report.gpu = gpu_activity_steps(steps, next_batch, device, [&](const data::Batch& b, int64_t size) {
      train::StepHooks hooks;
      hooks.global_batch_size = size;
      train::train_step(model, training, b, hooks);
    });

  // Memory: each embedding table on its own line, dense parameters together.
  std::map<std::string, int64_t> optimizer_bytes;
  for (const auto& [key, tensor] : training.state_dict()) {
    auto first = key.find('.'), last = key.rfind('.');
    std::string param = first < last ? key.substr(first + 1, last - first - 1) : key;
    std::string group = key.rfind("dense.", 0) == 0 ? "dense parameters" : param;
    optimizer_bytes[group] += tensor.numel() * static_cast<int64_t>(tensor.element_size());
  }
  for (const auto& [name, weight] : model->embedding_parameters())
    report.memory.push_back({name, weight.numel() * static_cast<int64_t>(weight.element_size()), optimizer_bytes[name]});
  ParameterMemory dense{"dense parameters", 0, optimizer_bytes["dense parameters"]};
  for (const auto& [name, p] : model->dense_parameters()) dense.parameter_bytes += p.numel() * static_cast<int64_t>(p.element_size());
  report.memory.push_back(dense);
  if (device.is_cuda()) report.cuda_graphs = training.cuda_graphs_status();
  report.peak_rss_bytes = peak_rss_bytes();
  recorder.write_trace(trace_path);
  return report;
}

ProfileReport profile_inference(config::ModelGraph& model, const NextBatch& next_batch, int64_t steps, int64_t warmup,
                                const torch::Device& device, const std::string& trace_path) {
  TORCH_CHECK(steps > 0, "profile: steps must be > 0, got ", steps);
  model->to(device);
  model->eval();
  c10::InferenceMode inference;  // as train::infer, what `recmod eval` runs
  const auto& order = model->order();
  ProfileReport report;
  report.inference = true;
  StepRecorder recorder(model, Clock::now());
  for (int64_t step = 0; step < warmup + steps; ++step) {
    auto batch = next_batch();
    if (!batch) throw InputError(str_cat("profile: the data ran out after ", step, " batches; use fewer --steps"));
    auto b = batch->to(device);
    sync(device);
    const auto step_start = Clock::now();
    NodeTimer timer(model, device, step_start);
    model->forward(b, &timer);
    sync(device);
    const auto step_end = Clock::now();
    if (step < warmup) continue;
    for (size_t i : order) recorder.forward(i, timer.forward_start(i), timer.forward_end(i));
    recorder.step(step_start, step_end, batch->size());
  }
  recorder.summarise(report);
  if (device.is_cuda())
    report.gpu = gpu_activity_steps(steps, next_batch, device,
                                    [&](const data::Batch& b, int64_t) { model->forward(b); });
  // Memory: each table (a quantized one's codes, scale and bias together,
  // by their state_dict keys less the suffix), then the dense parameters.
  std::map<std::string, int64_t> table_bytes;
  std::vector<std::string> table_order;
  std::set<std::string> dense_keys;
  for (const auto& [name, p] : model->dense_parameters()) dense_keys.insert(name);
  ParameterMemory dense{"dense parameters", 0, 0};
  for (const auto& [key, tensor] : state_dict(*model)) {
    const int64_t bytes = tensor.numel() * static_cast<int64_t>(tensor.element_size());
    if (dense_keys.count(key)) {
      dense.parameter_bytes += bytes;
      continue;
    }
    std::string table = key;
    for (const char* suffix : {"_qscale", "_qbias"})
      if (table.size() > std::strlen(suffix) && table.compare(table.size() - std::strlen(suffix), std::string::npos, suffix) == 0)
        table.resize(table.size() - std::strlen(suffix));
    if (!table_bytes.count(table)) table_order.push_back(table);
    table_bytes[table] += bytes;
  }
  for (const auto& t : table_order) report.memory.push_back({t, table_bytes[t], 0});
  report.memory.push_back(dense);
  report.peak_rss_bytes = peak_rss_bytes();
  recorder.write_trace(trace_path);
  return report;
}

nlohmann::json ProfileReport::to_json() const {
  nlohmann::json nodes_json = nlohmann::json::array(), memory_json = nlohmann::json::array();
  for (const auto& n : nodes)
    nodes_json.push_back({{"name", n.name}, {"type", n.type}, {"forward_ms", n.forward_ms}, {"backward_ms", n.backward_ms}});
  int64_t params = 0, opt = 0;
  for (const auto& m : memory) {
    memory_json.push_back({{"name", m.name}, {"parameter_bytes", m.parameter_bytes}, {"optimizer_bytes", m.optimizer_bytes}});
    params += m.parameter_bytes;
    opt += m.optimizer_bytes;
  }
  nlohmann::json out = {{"mode", inference ? "inference" : "train"}, {"batch_size", batch_size}, {"steps", steps},
                        {"step_ms", step_ms}, {"examples_per_s", examples_per_s},
                        {"nodes", nodes_json}, {"memory", memory_json}, {"total_parameter_bytes", params},
                        {"total_optimizer_bytes", opt}, {"peak_rss_bytes", peak_rss_bytes}};
  if (gpu) out["cuda"] = gpu->to_json();
  if (!cuda_graphs.empty()) out["cuda_graphs"] = cuda_graphs;
  return out;
}

std::string ProfileReport::to_table() const {
  std::ostringstream os;
  os << std::fixed << std::setprecision(3);
  os << (inference ? "inference (forward only, no grad), " : "") << "batch " << batch_size << ", " << steps
     << " timed steps: " << step_ms << " ms/step, " << std::setprecision(0)
     << examples_per_s << " examples/s\n";
  // First, so a report cut short still says whether the step was a graph.
  if (!cuda_graphs.empty()) os << "cuda graphs: " << cuda_graphs << "\n";
  os << "\n" << std::setprecision(3);
  os << std::left << std::setw(24) << "node" << std::setw(28) << "type" << std::right << std::setw(12) << "forward ms"
     << std::setw(13) << "backward ms" << "\n";
  for (const auto& n : nodes)
    os << std::left << std::setw(24) << n.name << std::setw(28) << n.type << std::right << std::setw(12) << n.forward_ms
       << std::setw(13) << n.backward_ms << "\n";
  os << "\n" << std::left << std::setw(52) << "parameters" << std::right << std::setw(14) << "weights" << std::setw(14)
     << "optimizer" << "\n";
  int64_t params = 0, opt = 0;
  for (const auto& m : memory) {
    os << std::left << std::setw(52) << m.name << std::right << std::setw(14) << human_bytes(m.parameter_bytes)
       << std::setw(14) << human_bytes(m.optimizer_bytes) << "\n";
    params += m.parameter_bytes;
    opt += m.optimizer_bytes;
  }
  os << std::left << std::setw(52) << "total" << std::right << std::setw(14) << human_bytes(params) << std::setw(14)
     << human_bytes(opt) << "\n";
  os << "peak RSS " << human_bytes(peak_rss_bytes) << "\n";
  if (gpu) os << gpu->to_line();
  return os.str();
}

}  // namespace recmod::profile
