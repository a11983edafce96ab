// Quantized pooled lookups against the fp32 fused forward and against
// torch's own quantized kernels, rows (ids looked up) per second. The
// workload of fused_embedding_bench: one table of kRows x 64 (4M rows;
// RECMOD_BENCH_ROWS overrides), one feature, batch 2048, bags of 20, ids
// uniform (memory-bound: the tables are far larger than the cache). The
// argument is the thread count (at::set_num_threads).
//
//   BM_Fp32FusedForward  EmbeddingBagCollection forward, fused kernel, no grad (fp32 rows, 256 B)
//   BM_QuantForward/int8  quant::EmbeddingBagCollection forward (INT8 rows: 64 + 8 B)
//   BM_QuantForward/int4  (INT4 rows: 32 + 4 B)
//   BM_TorchByte          torch.ops.quantized.embedding_bag_byte_rowwise_offsets on the same INT8 rows
//   BM_Torch4bit          torch.ops.quantized.embedding_bag_4bit_rowwise_offsets on the same INT4 rows
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cstdlib>
#include <random>

#include "recmod/modules/embedding_modules.h"
#include "recmod/quant/embedding_modules.h"

namespace {

constexpr int64_t kDim = 64;
constexpr int64_t kBatch = 2048;
constexpr int64_t kBagSize = 20;
constexpr int kBatches = 8;

int64_t rows() {
  static const int64_t n = [] {
    const char* env = std::getenv("RECMOD_BENCH_ROWS");
    return env != nullptr ? std::atoll(env) : int64_t{4} << 20;
  }();
  return n;
}

struct Batch {
  recmod::KeyedJaggedTensor kjt;
  torch::Tensor ids, offsets;
};

const std::vector<Batch>& batches() {
  static const std::vector<Batch> out = [] {
    std::mt19937_64 rng(7);
    std::uniform_int_distribution<int64_t> uniform(0, rows() - 1);
    std::vector<Batch> v;
    for (int b = 0; b < kBatches; ++b) {
      torch::Tensor ids = torch::empty({kBatch * kBagSize}, torch::kLong);
      auto* p = ids.data_ptr<int64_t>();
      for (int64_t i = 0; i < ids.numel(); ++i) p[i] = uniform(rng);
      v.push_back({recmod::KeyedJaggedTensor::from_lengths({"f"}, ids, torch::full({kBatch}, kBagSize, torch::kLong)),
                   ids, torch::arange(0, kBatch * kBagSize + 1, kBagSize, torch::kLong)});
    }
    return v;
  }();
  return out;
}

recmod::EmbeddingBagCollection& ebc() {
  static recmod::EmbeddingBagCollection m = [] {
    torch::manual_seed(0);
    recmod::EmbeddingBagCollection e({recmod::EmbeddingBagConfig(rows(), kDim, "t", {"f"})}, false);
    recmod::optim::OptimizerOptions sgd;
    sgd.type("sgd");
    e->enable_fused_optimizer(sgd);
    return e;
  }();
  return m;
}

std::shared_ptr<recmod::quant::EmbeddingBagCollectionImpl> quantized(recmod::DataType type) {
  static std::map<recmod::DataType, std::shared_ptr<recmod::quant::EmbeddingBagCollectionImpl>> cache;
  auto& q = cache[type];
  if (!q) {
    recmod::quant::QuantConfig config;
    config.weight = type == recmod::DataType::INT8 ? torch::kQInt8 : torch::kQUInt4x2;
    q = recmod::quant::EmbeddingBagCollectionImpl::from_float(*ebc(), config);
    q->eval();
  }
  return q;
}

/// The fused rows torch's ops read (the same bytes quantize_rows gives).
const torch::Tensor& torch_rows(recmod::DataType type) {
  static std::map<recmod::DataType, torch::Tensor> cache;
  auto& t = cache[type];
  if (!t.defined()) t = recmod::quant::quantize_rows(ebc()->table_weight("t"), type);
  return t;
}

void setup(benchmark::State& state) {
  at::set_num_threads(static_cast<int>(state.range(0)));
  batches();
}

void finish(benchmark::State& state, double bytes_per_row) {
  state.counters["rows_per_s"] = benchmark::Counter(static_cast<double>(state.iterations()) * kBatch * kBagSize,
                                                    benchmark::Counter::kIsRate);
  state.counters["bytes_per_row"] = bytes_per_row;
}

void BM_Fp32FusedForward(benchmark::State& state) {
  setup(state);
  torch::NoGradGuard no_grad;
  ebc();
  int64_t step = 0;
  for (auto _ : state) {
    auto out = ebc()->forward(batches()[step++ % kBatches].kjt);
    benchmark::DoNotOptimize(out.values().data_ptr());
  }
  finish(state, kDim * 4);
}

void BM_QuantForward(benchmark::State& state, recmod::DataType type) {
  setup(state);
  torch::NoGradGuard no_grad;
  auto q = quantized(type);
  int64_t step = 0;
  for (auto _ : state) {
    auto out = q->forward(batches()[step++ % kBatches].kjt);
    benchmark::DoNotOptimize(out.values().data_ptr());
  }
  finish(state, static_cast<double>(q->table_bytes(0)) / static_cast<double>(rows()));
}

using QuantOp = at::Tensor(const at::Tensor&, const at::Tensor&, const c10::optional<at::Tensor>&, bool, int64_t, bool,
                           const c10::optional<at::Tensor>&, const c10::optional<at::Tensor>&, bool);

void torch_op(benchmark::State& state, const char* name, recmod::DataType type) {
  setup(state);
  torch::NoGradGuard no_grad;
  static std::map<std::string, c10::TypedOperatorHandle<QuantOp>> ops;
  auto it = ops.find(name);
  if (it == ops.end())
    it = ops.emplace(name, c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<QuantOp>()).first;
  const torch::Tensor& w = torch_rows(type);
  int64_t step = 0;
  for (auto _ : state) {
    const Batch& b = batches()[step++ % kBatches];
    auto out = it->second.call(w, b.ids, b.offsets, false, 0, false, c10::nullopt, c10::nullopt, true);
    benchmark::DoNotOptimize(out.data_ptr());
  }
  finish(state, static_cast<double>(w.size(1)));
}

void BM_TorchByte(benchmark::State& state) {
  torch_op(state, "quantized::embedding_bag_byte_rowwise_offsets", recmod::DataType::INT8);
}
void BM_Torch4bit(benchmark::State& state) {
  torch_op(state, "quantized::embedding_bag_4bit_rowwise_offsets", recmod::DataType::INT4);
}

BENCHMARK(BM_Fp32FusedForward)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_QuantForward, int8, recmod::DataType::INT8)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_QuantForward, int4, recmod::DataType::INT4)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_TorchByte)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Torch4bit)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
