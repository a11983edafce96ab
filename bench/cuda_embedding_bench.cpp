// EmbeddingBagCollection on a CUDA device against the device's copy speed
// (issue #6: EBC forward bytes/s vs a device-to-device copy, target >= 0.6).
// Without a CUDA device every benchmark reports an error and is skipped.
//
// Shapes: one table of RECMOD_BENCH_ROWS (default 16M) x 64 float32 (4 GiB,
// far beyond the L2), batch 16384, bags of 20 uniform ids; and a DLRM-like
// EBC of 26 tables of 1M x 64 with one feature each.
//
//   BM_CudaCopy          a device-to-device copy of 1 GiB; bytes = read + written
//   BM_CudaEmbeddingBag  at::embedding_bag forward on the same ids (libtorch's kernel)
//   BM_CudaEbcForward    EmbeddingBagCollection forward (no grad)
//   BM_CudaEbc26Forward  the 26-table EBC forward (one kernel launch for all tables)
//   BM_CudaEmbeddingBag26 libtorch's embedding_bag on each of the 26 tables
//   BM_CudaEbcForwardUnrolled, BM_CudaEbcForwardSplit, BM_CudaEbc26ForwardUnrolled,
//   BM_CudaEbc26ForwardSplit  the same forwards with the kernel variant named
//                        (recmod/cuda/tbe.h TbeForward; the plain ones run the
//                        default: RECMOD_TBE_FORWARD, else baseline)
//   BM_CudaEbcForwardPipelined  the 1-table forward 16 times, one synchronize:
//                        the per-call host work and copies overlap the kernels
//   BM_CudaEbcTrainStep  forward + backward + fused row-wise Adagrad
//   BM_CudaSparseAdagrad embedding_bag(sparse) + backward + torch::optim::Adagrad
// Bytes of a lookup: the rows read (ids x D x 4), the ids and offsets read
// and the pooled output written, each once: the fewest any kernel must move.
// Times are wall time around the loop with a device synchronize per
// iteration (each iteration is ~0.1-1 ms, far above the sync's cost).
#include <benchmark/benchmark.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdlib>

#include "recmod/cuda/tbe.h"
#include "recmod/modules/embedding_modules.h"
#include "recmod/optim/model_optimizer.h"

namespace {

constexpr int64_t kDim = 64;
constexpr int64_t kBatch = 16384;
constexpr int64_t kBagSize = 20;
constexpr int kBatches = 8;

int64_t rows() {
  const char* env = std::getenv("RECMOD_BENCH_ROWS");
  return env != nullptr ? std::atoll(env) : int64_t{16} << 20;
}

bool have_cuda(benchmark::State& state) {
  if (torch::cuda::is_available()) return true;
  state.SkipWithError("no CUDA device");
  for (auto _ : state) {
  }
  return false;
}

const torch::Device kCuda(torch::kCUDA);

struct Lookup {
  recmod::KeyedJaggedTensor kjt;
  torch::Tensor ids, offsets;
};

std::vector<Lookup> make_lookups(const std::vector<std::string>& keys, int64_t table_rows) {
  std::vector<Lookup> out;
  const auto n_keys = static_cast<int64_t>(keys.size());
  for (int b = 0; b < kBatches; ++b) {
    torch::manual_seed(100 + b);
    torch::Tensor ids = torch::randint(0, table_rows, {n_keys * kBatch * kBagSize}, torch::kLong).to(kCuda);
    torch::Tensor lengths = torch::full({n_keys * kBatch}, kBagSize, torch::kLong).to(kCuda);
    torch::Tensor offsets = torch::arange(0, kBatch * kBagSize + 1, kBagSize, torch::kLong).to(kCuda);
    out.push_back({recmod::KeyedJaggedTensor::from_lengths(keys, ids, lengths), ids, offsets});
  }
  return out;
}

double lookup_bytes(int64_t n_keys) {
  const double ids = static_cast<double>(n_keys) * kBatch * kBagSize;
  return ids * kDim * 4 + ids * 8 + static_cast<double>(n_keys) * kBatch * (8 + 8 + kDim * 4);
}

template <typename F>
void timed(benchmark::State& state, F&& step, double bytes_per_iter, double rows_per_iter) {
  for (int i = 0; i < 3; ++i) step(i);  // warm-up: allocator, kernels' first launch
  torch::cuda::synchronize();
  int64_t i = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    step(i++);
    torch::cuda::synchronize();
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  state.counters["bytes_per_s"] =
      benchmark::Counter(bytes_per_iter * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["rows_per_s"] =
      benchmark::Counter(rows_per_iter * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

recmod::EmbeddingBagCollection& one_table() {
  static recmod::EmbeddingBagCollection m = [] {
    torch::manual_seed(0);
    recmod::EmbeddingBagCollection ebc(
        recmod::EmbeddingBagCollectionOptions({recmod::EmbeddingBagConfig(rows(), kDim, "t", {"f"})}).device(kCuda));
    return ebc;
  }();
  return m;
}

const std::vector<Lookup>& one_table_lookups() {
  static const std::vector<Lookup> l = make_lookups({"f"}, rows());
  return l;
}

recmod::optim::OptimizerOptions rowwise_adagrad() {
  recmod::optim::OptimizerOptions o;
  o.type("rowwise_adagrad");
  o.lr(0.01);
  return o;
}

void BM_CudaCopy(benchmark::State& state) {
  if (!have_cuda(state)) return;
  const int64_t n = int64_t{1} << 28;  // floats: 1 GiB
  torch::Tensor src = torch::rand({n}, kCuda), dst = torch::empty({n}, kCuda);
  const double bytes = 2.0 * static_cast<double>(n) * 4;
  timed(state, [&](int64_t) { dst.copy_(src); }, bytes, 0);
}

void BM_CudaEmbeddingBag(benchmark::State& state) {
  if (!have_cuda(state)) return;
  torch::NoGradGuard no_grad;
  const torch::Tensor& w = one_table()->table_weight("t");
  const auto& lookups = one_table_lookups();
  timed(
      state,
      [&](int64_t i) {
        const Lookup& l = lookups[i % kBatches];
        auto out = torch::embedding_bag(w, l.ids, l.offsets, false, 0, false, {}, /*include_last_offset=*/true);
        benchmark::DoNotOptimize(std::get<0>(out).data_ptr());
      },
      lookup_bytes(1), kBatch * kBagSize);
}

void BM_CudaEbcForward(benchmark::State& state) {
  if (!have_cuda(state)) return;
  torch::NoGradGuard no_grad;
  const auto& lookups = one_table_lookups();
  timed(
      state,
      [&](int64_t i) { benchmark::DoNotOptimize(one_table()->forward(lookups[i % kBatches].kjt).values().data_ptr()); },
      lookup_bytes(1), kBatch * kBagSize);
}

/// Runs a benchmark with one forward kernel variant, then restores the setting.
template <typename F>
void with_variant(recmod::cuda::TbeForward variant, benchmark::State& state, F&& f) {
  if (!have_cuda(state)) return;
  const recmod::cuda::TbeForward saved = recmod::cuda::tbe_forward_variant();
  recmod::cuda::tbe_set_forward_variant(variant);
  f(state);
  recmod::cuda::tbe_set_forward_variant(saved);
}

void BM_CudaEbcForwardUnrolled(benchmark::State& state) {
  with_variant(recmod::cuda::TbeForward::unrolled, state, BM_CudaEbcForward);
}

void BM_CudaEbcForwardSplit(benchmark::State& state) {
  with_variant(recmod::cuda::TbeForward::split, state, BM_CudaEbcForward);
}

void BM_CudaEbcForwardPipelined(benchmark::State& state) {
  if (!have_cuda(state)) return;
  torch::NoGradGuard no_grad;
  const auto& lookups = one_table_lookups();
  constexpr int kCalls = 16;
  timed(
      state,
      [&](int64_t i) {
        for (int c = 0; c < kCalls; ++c)
          benchmark::DoNotOptimize(one_table()->forward(lookups[(i + c) % kBatches].kjt).values().data_ptr());
      },
      kCalls * lookup_bytes(1), kCalls * kBatch * kBagSize);
}

constexpr int64_t kTables = 26, kRows26 = int64_t{1} << 20;

/// The DLRM-like collection: 26 tables of 1M x 64, one feature each.
struct Ebc26 {
  recmod::EmbeddingBagCollection ebc{nullptr};
  std::vector<Lookup> lookups;
};

Ebc26& ebc26() {
  static Ebc26 m = [] {
    std::vector<recmod::EmbeddingBagConfig> tables;
    std::vector<std::string> keys;
    for (int64_t t = 0; t < kTables; ++t) {
      keys.push_back("C" + std::to_string(t + 1));
      tables.emplace_back(kRows26, kDim, "t" + std::to_string(t), std::vector<std::string>{keys.back()});
    }
    torch::manual_seed(0);
    Ebc26 e;
    e.ebc = recmod::EmbeddingBagCollection(recmod::EmbeddingBagCollectionOptions(tables).device(kCuda));
    e.lookups = make_lookups(keys, kRows26);
    return e;
  }();
  return m;
}

void BM_CudaEbc26Forward(benchmark::State& state) {
  if (!have_cuda(state)) return;
  torch::NoGradGuard no_grad;
  Ebc26& m = ebc26();
  timed(
      state,
      [&](int64_t i) { benchmark::DoNotOptimize(m.ebc->forward(m.lookups[i % kBatches].kjt).values().data_ptr()); },
      lookup_bytes(kTables), static_cast<double>(kTables) * kBatch * kBagSize);
}

void BM_CudaEbc26ForwardUnrolled(benchmark::State& state) {
  with_variant(recmod::cuda::TbeForward::unrolled, state, BM_CudaEbc26Forward);
}

void BM_CudaEbc26ForwardSplit(benchmark::State& state) {
  with_variant(recmod::cuda::TbeForward::split, state, BM_CudaEbc26Forward);
}

void BM_CudaEmbeddingBag26(benchmark::State& state) {
  if (!have_cuda(state)) return;
  torch::NoGradGuard no_grad;
  Ebc26& m = ebc26();
  const int64_t per_key = kBatch * kBagSize;
  timed(
      state,
      [&](int64_t i) {
        const Lookup& l = m.lookups[i % kBatches];
        std::vector<torch::Tensor> pooled;
        for (int64_t t = 0; t < kTables; ++t) {
          const torch::Tensor ids = l.ids.slice(0, t * per_key, (t + 1) * per_key);
          pooled.push_back(std::get<0>(torch::embedding_bag(m.ebc->table_weight("t" + std::to_string(t)), ids,
                                                            l.offsets, false, 0, false, {}, true)));
        }
        benchmark::DoNotOptimize(torch::cat(pooled, 1).data_ptr());
      },
      lookup_bytes(kTables), static_cast<double>(kTables) * kBatch * kBagSize);
}

void BM_CudaEbcTrainStep(benchmark::State& state) {
  if (!have_cuda(state)) return;
  one_table()->enable_fused_optimizer(rowwise_adagrad());
  const auto& lookups = one_table_lookups();
  const torch::Tensor target = torch::randn({kBatch, kDim}, kCuda);
  timed(
      state,
      [&](int64_t i) { (one_table()->forward(lookups[i % kBatches].kjt).values() * target).sum().backward(); },
      0, kBatch * kBagSize);
  one_table()->disable_fused_optimizer();
}

void BM_CudaSparseAdagrad(benchmark::State& state) {
  if (!have_cuda(state)) return;
  // A table of its own: torch::optim::Adagrad keeps a dense state as large as it.
  torch::manual_seed(0);
  torch::Tensor w = (torch::rand({rows(), kDim}, kCuda) - 0.5).set_requires_grad(true);
  torch::optim::Adagrad adagrad({w}, torch::optim::AdagradOptions(0.01));
  const auto& lookups = one_table_lookups();
  const torch::Tensor target = torch::randn({kBatch, kDim}, kCuda);
  timed(
      state,
      [&](int64_t i) {
        const Lookup& l = lookups[i % kBatches];
        adagrad.zero_grad();
        auto out = torch::embedding_bag(w, l.ids, l.offsets, false, 0, /*sparse=*/true, {}, true);
        (std::get<0>(out) * target).sum().backward();
        adagrad.step();
      },
      0, kBatch * kBagSize);
}

BENCHMARK(BM_CudaCopy)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CudaEmbeddingBag)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CudaEbcForward)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CudaEbcForwardUnrolled)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CudaEbcForwardSplit)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CudaEbcForwardPipelined)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CudaEbc26Forward)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CudaEbc26ForwardUnrolled)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CudaEbc26ForwardSplit)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CudaEmbeddingBag26)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CudaEbcTrainStep)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CudaSparseAdagrad)->UseManualTime()->Unit(benchmark::kMicrosecond);

// EmbeddingCollection (unpooled) forward, no grad: one sequence-lookup
// launch (recmod/cuda/tbe_sequence.h) against libtorch's embedding on the
// same ids; one table of 4M x 64 float32 (1 GiB), 16384 x 20 ids. Bytes:
// the rows read, the output rows written and the ids read, each once.
constexpr int64_t kEcRows = int64_t{4} << 20;

recmod::EmbeddingCollection& ec_table() {
  static recmod::EmbeddingCollection m = [] {
    torch::manual_seed(0);
    return recmod::EmbeddingCollection(
        recmod::EmbeddingCollectionOptions({recmod::EmbeddingConfig(kEcRows, kDim, "t", {"f"})}).device(kCuda));
  }();
  return m;
}

const std::vector<Lookup>& ec_lookups() {
  static const std::vector<Lookup> l = make_lookups({"f"}, kEcRows);
  return l;
}

double sequence_bytes() { return static_cast<double>(kBatch * kBagSize) * (2.0 * kDim * 4 + 8); }

void BM_CudaEcForward(benchmark::State& state) {
  if (!have_cuda(state)) return;
  torch::NoGradGuard no_grad;
  const auto& lookups = ec_lookups();
  timed(
      state,
      [&](int64_t i) {
        const auto out = ec_table()->forward(lookups[i % kBatches].kjt);
        benchmark::DoNotOptimize(out.front().second.values().data_ptr());
      },
      sequence_bytes(), kBatch * kBagSize);
}

void BM_CudaEmbeddingSequence(benchmark::State& state) {
  if (!have_cuda(state)) return;
  torch::NoGradGuard no_grad;
  const torch::Tensor& w = ec_table()->table_weight("t");
  const auto& lookups = ec_lookups();
  timed(
      state, [&](int64_t i) { benchmark::DoNotOptimize(torch::embedding(w, lookups[i % kBatches].ids).data_ptr()); },
      sequence_bytes(), kBatch * kBagSize);
}

BENCHMARK(BM_CudaEcForward)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CudaEmbeddingSequence)->UseManualTime()->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
