// End-to-end DLRM training at Criteo Kaggle scale (configs/dlrm_criteo_kaggle.yaml:
// 26 tables of dimension 16, 33.8M rows; bottom MLP 13-512-256-64-16, dot
// interaction, top MLP 512-256-1; row-wise Adagrad on the tables, Adagrad on
// the MLPs), examples per second, each benchmark taking {batch, threads}:
//
//   BM_RecmodDlrm   recmod's training step as `recmod train` runs it: the model
//                   built from the YAML config, forward, BCE-with-logits,
//                   backward (the EBC's fused row-wise Adagrad applies in it),
//                   ModelOptimizer step for the MLPs. No data loading (batches
//                   are pre-made), no health checks.
//   BM_LibtorchDlrm the same model as a C++ user of libtorch writes it:
//                   26 torch::nn::EmbeddingBag(sparse=true), torch::nn::Linear
//                   MLPs, the same interaction, torch::optim::Adagrad for all.
//   BM_RecmodDlrmInference  recmod's forward as `recmod eval` runs it
//                   (train::infer: eval mode, c10::InferenceMode, the fused
//                   lookup; the model opened as eval opens it, without a
//                   TrainingSetup). Forward only: no data reading, no metrics.
//   BM_LibtorchDlrmInference the plain libtorch model's forward in
//                   torch::NoGradGuard, eval mode.
//   BM_DotInteraction the model's DotInteraction alone (27 vectors of 16),
//                   forward + backward, at the same batch: its share of the
//                   training step is this time over BM_RecmodDlrm's.
//   BM_TopMlp       the top MLP alone (367 -> 512 -> 256, ReLU), forward +
//                   backward (input and parameter gradients) at the same batch.
//   BM_SgemmRoofForward the forward products alone (X W^T per Linear): the
//                   roof of a forward pass, 0.949 MFLOP per example.
//   BM_DenseOptimizerStep the dense optimizer's step alone over the 7 Linear
//                   layers' weights and biases (0.48 M floats), {type: 0 sgd,
//                   1 adagrad, 2 adam; path: 0 fused loop, 1 libtorch ops},
//                   1 thread: the per-step cost it adds at any batch size.
//   BM_SgemmRoof    the model's matrix products alone (each Linear's forward
//                   X W^T and its two backward products, at the same batch and
//                   thread count, with the GEMM recmod's layers use: oneDNN's
//                   where the build has it, else libtorch's), reported as the
//                   examples/s a model made of nothing but those products
//                   would reach: the compute roof.
//
// Ids are uniform over each table (the worst case for caches). The figure of
// merit is examples/s; scripts/bench turns the three into ratios.
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>
#include <dlfcn.h>
#include <torch/torch.h>

#include <map>

#include "recmod/config/graph.h"
#include "recmod/modules/embedding_modules.h"
#include "recmod/modules/interaction.h"
#include "recmod/modules/mlp.h"
#include "recmod/modules/onednn_linear.h"
#include "recmod/optim/dense_optimizer.h"
#include "recmod/train/train_step.h"
#include "recmod/train/trainer.h"
#include "recmod/train/training_setup.h"

namespace {

const char* kConfig = RECMOD_SOURCE_DIR "/configs/dlrm_criteo_kaggle.yaml";
constexpr int64_t kDense = 13;
constexpr int64_t kDim = 16;
constexpr int kBatches = 4;  // distinct pre-made batches, cycled

/// libtorch's intra-op threads and OpenBLAS's, as `recmod --threads` sets them.
void set_threads(int threads) {
  at::set_num_threads(threads);
  using SetThreads = void (*)(int);
  if (auto* f = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) f(threads);
}

/// The config's model, set up for training exactly as `recmod train` does.
struct RecmodModel {
  recmod::config::ModelGraph graph;
  std::unique_ptr<recmod::train::TrainingSetup> training;
  std::vector<int64_t> rows;  // per table, in feature order
};

RecmodModel& recmod_model() {
  static RecmodModel m = [] {
    recmod::train::seed_everything(0);
    const recmod::config::ModelConfig config = recmod::config::load_model_config(kConfig);
    RecmodModel out{recmod::config::ModelGraph(static_cast<const recmod::config::ModelSpec&>(config)), nullptr, {}};
    out.graph->train();
    out.training = std::make_unique<recmod::train::TrainingSetup>(out.graph, config.training, torch::kCPU);
    for (const auto& [path, ebc] : out.training->fused())
      for (const auto& t : ebc->embedding_bag_configs()) out.rows.push_back(t.num_embeddings);
    return out;
  }();
  return m;
}

/// The config's model as `recmod eval` opens it: no TrainingSetup, eval mode.
recmod::config::ModelGraph& recmod_eval_model() {
  static recmod::config::ModelGraph m = [] {
    recmod::train::seed_everything(0);
    const recmod::config::ModelConfig config = recmod::config::load_model_config(kConfig);
    recmod::config::ModelGraph graph(static_cast<const recmod::config::ModelSpec&>(config));
    graph->eval();
    return graph;
  }();
  return m;
}

/// The plain libtorch model.
struct PlainDlrmImpl : torch::nn::Module {
  explicit PlainDlrmImpl(const std::vector<int64_t>& rows) {
    for (size_t t = 0; t < rows.size(); ++t) {
      tables.push_back(register_module(
          "t" + std::to_string(t),
          torch::nn::EmbeddingBag(torch::nn::EmbeddingBagOptions(rows[t], kDim).mode(torch::kSum).sparse(true))));
    }
    bottom = register_module("bottom", mlp({kDense, 512, 256, 64, 16}, /*last_relu=*/true));
    const int64_t n = static_cast<int64_t>(rows.size()) + 1;
    top = register_module("top", mlp({kDim + n * (n - 1) / 2, 512, 256, 1}, /*last_relu=*/false));
    pairs = torch::triu_indices(n, n, 1, torch::kLong);
  }
  static torch::nn::Sequential mlp(const std::vector<int64_t>& sizes, bool last_relu) {
    torch::nn::Sequential s;
    for (size_t i = 0; i + 1 < sizes.size(); ++i) {
      s->push_back(torch::nn::Linear(sizes[i], sizes[i + 1]));
      if (last_relu || i + 2 < sizes.size()) s->push_back(torch::nn::ReLU());
    }
    return s;
  }
  torch::Tensor forward(const torch::Tensor& dense, const std::vector<torch::Tensor>& ids, const torch::Tensor& offsets) {
    torch::Tensor x = bottom->forward(dense);
    std::vector<torch::Tensor> features{x};
    for (size_t t = 0; t < tables.size(); ++t) features.push_back(tables[t]->forward(ids[t], offsets));
    torch::Tensor all = torch::stack(features, 1);  // (B, 27, 16)
    torch::Tensor z = torch::bmm(all, all.transpose(1, 2));
    torch::Tensor flat = z.index({torch::indexing::Slice(), pairs[0], pairs[1]});
    return top->forward(torch::cat({x, flat}, 1)).squeeze(1);
  }
  std::vector<torch::nn::EmbeddingBag> tables;
  torch::nn::Sequential bottom{nullptr}, top{nullptr};
  torch::Tensor pairs;
};
TORCH_MODULE(PlainDlrm);

struct PlainModel {
  PlainDlrm model{nullptr};
  std::unique_ptr<torch::optim::Adagrad> optimizer;
};

PlainModel& plain_model() {
  static PlainModel m = [] {
    torch::manual_seed(0);
    PlainModel out;
    out.model = PlainDlrm(recmod_model().rows);
    out.optimizer = std::make_unique<torch::optim::Adagrad>(out.model->parameters(), torch::optim::AdagradOptions(0.01));
    return out;
  }();
  return m;
}

struct Batch {
  recmod::data::Batch recmod;
  std::vector<torch::Tensor> ids;  // per table, (B)
  torch::Tensor offsets;           // arange(B): one id per bag, as in Criteo
};

const std::vector<Batch>& batches(int64_t b) {
  static std::map<int64_t, std::vector<Batch>> cache;
  auto& out = cache[b];
  if (!out.empty()) return out;
  const auto& rows = recmod_model().rows;
  std::vector<std::string> keys;
  for (size_t t = 0; t < rows.size(); ++t) keys.push_back("C" + std::to_string(t + 1));
  for (int i = 0; i < kBatches; ++i) {
    torch::manual_seed(100 + i);
    Batch batch;
    for (int64_t r : rows) batch.ids.push_back(torch::randint(0, r, {b}, torch::kLong));
    batch.offsets = torch::arange(b, torch::kLong);
    batch.recmod.dense = torch::randn({b, kDense});
    batch.recmod.labels = torch::randint(0, 2, {b, 1}).to(torch::kFloat);
    batch.recmod.sparse = recmod::KeyedJaggedTensor::from_lengths(
        keys, torch::cat(batch.ids), torch::ones({static_cast<int64_t>(rows.size()) * b}, torch::kLong));
    out.push_back(std::move(batch));
  }
  return out;
}

void finish(benchmark::State& state, int64_t b) {
  state.counters["examples_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations() * b), benchmark::Counter::kIsRate);
}

void BM_RecmodDlrm(benchmark::State& state) {
  const int64_t b = state.range(0);
  set_threads(static_cast<int>(state.range(1)));
  auto& m = recmod_model();
  const auto& data = batches(b);
  int64_t i = 0;
  for (auto _ : state) {
    const recmod::data::Batch& batch = data[i++ % kBatches].recmod;
    const torch::Tensor loss = recmod::train::train_step(m.graph, *m.training, batch);
    benchmark::DoNotOptimize(loss.data_ptr());
  }
  finish(state, b);
}

void BM_RecmodDlrmInference(benchmark::State& state) {
  const int64_t b = state.range(0);
  set_threads(static_cast<int>(state.range(1)));
  auto& m = recmod_eval_model();
  const auto& data = batches(b);
  int64_t i = 0;
  for (auto _ : state) {
    const torch::Tensor logits = recmod::train::infer(m, data[i++ % kBatches].recmod);
    benchmark::DoNotOptimize(logits.data_ptr());
  }
  finish(state, b);
}

void BM_LibtorchDlrmInference(benchmark::State& state) {
  const int64_t b = state.range(0);
  set_threads(static_cast<int>(state.range(1)));
  auto& m = plain_model();
  m.model->eval();
  const auto& data = batches(b);
  int64_t i = 0;
  torch::NoGradGuard no_grad;
  for (auto _ : state) {
    const Batch& batch = data[i++ % kBatches];
    const torch::Tensor logits = m.model->forward(batch.recmod.dense, batch.ids, batch.offsets);
    benchmark::DoNotOptimize(logits.data_ptr());
  }
  m.model->train();
  finish(state, b);
}

void BM_LibtorchDlrm(benchmark::State& state) {
  const int64_t b = state.range(0);
  set_threads(static_cast<int>(state.range(1)));
  auto& m = plain_model();
  const auto& data = batches(b);
  int64_t i = 0;
  for (auto _ : state) {
    const Batch& batch = data[i++ % kBatches];
    m.optimizer->zero_grad();
    torch::Tensor loss = torch::binary_cross_entropy_with_logits(
        m.model->forward(batch.recmod.dense, batch.ids, batch.offsets), batch.recmod.labels.select(1, 0));
    loss.backward();
    m.optimizer->step();
    benchmark::DoNotOptimize(loss.data_ptr());
  }
  finish(state, b);
}

/// (in, out) of every Linear of the model, bottom then top.
const std::vector<std::pair<int64_t, int64_t>>& layer_shapes() {
  static const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {13, 512}, {512, 256}, {256, 64}, {64, 16}, {367, 512}, {512, 256}, {256, 1}};
  return shapes;
}

void BM_SgemmRoof(benchmark::State& state) {
  const int64_t b = state.range(0);
  set_threads(static_cast<int>(state.range(1)));
  struct Layer {
    torch::Tensor x, w, dy;
  };
  std::vector<Layer> layers;
  double flops_per_example = 0;
  for (const auto& [in, out] : layer_shapes()) {
    layers.push_back({torch::randn({b, in}), torch::randn({out, in}), torch::randn({b, out})});
    flops_per_example += 6.0 * static_cast<double>(in * out);  // forward + grad input + grad weight
  }
  for (auto _ : state) {
    for (const Layer& l : layers) {
      benchmark::DoNotOptimize(recmod::mm_any(l.x, false, l.w, true).data_ptr());   // forward
      benchmark::DoNotOptimize(recmod::mm_any(l.dy, false, l.w, false).data_ptr());  // grad input
      benchmark::DoNotOptimize(recmod::mm_any(l.dy, true, l.x, false).data_ptr());   // grad weight
    }
  }
  finish(state, b);
  state.counters["flops_per_example"] = flops_per_example;
  state.counters["gflops"] = benchmark::Counter(static_cast<double>(state.iterations() * b) * flops_per_example / 1e9,
                                                benchmark::Counter::kIsRate);
}

void BM_SgemmRoofForward(benchmark::State& state) {
  const int64_t b = state.range(0);
  set_threads(static_cast<int>(state.range(1)));
  std::vector<std::pair<torch::Tensor, torch::Tensor>> layers;
  double flops_per_example = 0;
  for (const auto& [in, out] : layer_shapes()) {
    layers.emplace_back(torch::randn({b, in}), torch::randn({out, in}));
    flops_per_example += 2.0 * static_cast<double>(in * out);
  }
  for (auto _ : state)
    for (const auto& [x, w] : layers) benchmark::DoNotOptimize(recmod::mm_any(x, false, w, true).data_ptr());
  finish(state, b);
  state.counters["flops_per_example"] = flops_per_example;
  state.counters["gflops"] = benchmark::Counter(static_cast<double>(state.iterations() * b) * flops_per_example / 1e9,
                                                benchmark::Counter::kIsRate);
}

void BM_TopMlp(benchmark::State& state) {
  const int64_t b = state.range(0);
  set_threads(static_cast<int>(state.range(1)));
  torch::manual_seed(0);
  recmod::MLP mlp(recmod::MLPOptions(367, {512, 256}));
  const torch::Tensor x = torch::randn({b, 367}).requires_grad_(true);
  const torch::Tensor grad = torch::randn({b, 256});
  std::vector<torch::Tensor> inputs{x};
  for (const auto& p : mlp->parameters()) inputs.push_back(p);
  for (auto _ : state) {
    const torch::Tensor out = mlp->forward(x);
    const auto grads = torch::autograd::grad({out}, inputs, {grad});
    benchmark::DoNotOptimize(grads[0].data_ptr());
  }
  finish(state, b);
}

void BM_DotInteraction(benchmark::State& state) {
  const int64_t b = state.range(0);
  set_threads(static_cast<int>(state.range(1)));
  torch::manual_seed(0);
  const int64_t f = 26;
  const torch::Tensor dense = torch::randn({b, kDim}).requires_grad_(true);
  const torch::Tensor sparse = torch::randn({b, f * kDim}).requires_grad_(true);
  const torch::Tensor grad = torch::randn({b, kDim + (f + 1) * f / 2});
  for (auto _ : state) {
    const torch::Tensor out = recmod::dot_interaction(dense, sparse, f);
    const auto grads = torch::autograd::grad({out}, {dense, sparse}, {grad});
    benchmark::DoNotOptimize(grads[1].data_ptr());
  }
  finish(state, b);
}

void BM_DenseOptimizerStep(benchmark::State& state) {
  set_threads(1);
  const char* types[] = {"sgd", "adagrad", "adam"};
  std::vector<std::pair<std::string, torch::Tensor>> params;
  for (const auto& [in, out] : layer_shapes()) {
    const std::string name = "l" + std::to_string(params.size() / 2);
    params.emplace_back(name + ".weight", torch::randn({out, in}).requires_grad_(true));
    params.emplace_back(name + ".bias", torch::randn({out}).requires_grad_(true));
  }
  for (auto& [_, p] : params) p.mutable_grad() = torch::randn(p.sizes()) * 1e-3;
  recmod::optim::DenseOptimizer opt(params, recmod::optim::OptimizerOptions(types[state.range(0)], 1e-6));
  opt.use_tensor_ops(state.range(1) != 0);
  for (auto _ : state) opt.step();
  state.SetLabel(std::string(types[state.range(0)]) + (state.range(1) ? " libtorch ops" : " fused"));
}

void shapes(benchmark::internal::Benchmark* bench) {
  for (int64_t b : {2048, 128})
    for (int64_t threads : {1, 2}) bench->Args({b, threads});
  bench->ArgNames({"batch", "threads"})->UseRealTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_SgemmRoof)->Apply(shapes);
BENCHMARK(BM_RecmodDlrm)->Apply(shapes);
BENCHMARK(BM_LibtorchDlrm)->Apply(shapes);
BENCHMARK(BM_DotInteraction)->Apply(shapes);
BENCHMARK(BM_TopMlp)->Apply(shapes);
BENCHMARK(BM_SgemmRoofForward)->Apply(shapes);
BENCHMARK(BM_RecmodDlrmInference)->Apply(shapes);
BENCHMARK(BM_LibtorchDlrmInference)->Apply(shapes);
BENCHMARK(BM_DenseOptimizerStep)
    ->ArgsProduct({{0, 1, 2}, {0, 1}})
    ->ArgNames({"type", "ops"})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
