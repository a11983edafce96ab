// The fused embedding path against its ceiling and against libtorch, rows
// (ids looked up) per second. One table of kRows x 64 float32 (4M rows,
// 1 GiB; RECMOD_BENCH_ROWS overrides), one feature, batch 2048, bags of 20,
// ids uniform or Zipf(1.05) over the rows (hot rows scattered). Each
// benchmark takes the thread count as its argument (at::set_num_threads).
//
//   BM_GatherCeiling   a plain loop: for each bag, sum its rows (the
//                      memory-bound floor of any pooled lookup)
//   BM_EmbeddingBag    at::embedding_bag, forward only
//   BM_EbcForward      EmbeddingBagCollection forward, fused kernel (no grad)
//   BM_EbcForwardDefault  EmbeddingBagCollection forward, default path (no grad)
//   BM_FusedTrain      fused EBC forward + backward + row-wise Adagrad update
//   BM_TrainCeiling    BM_GatherCeiling's forward, then the plainest row-wise
//                      Adagrad update of each distinct row (ids grouped
//                      outside the timing): the memory-bound floor of a
//                      fused training step
//   BM_TorchSparseAdagrad  embedding_bag(sparse=true) + backward + torch::optim::Adagrad
//   BM_ModelOptimizerRowwise  default EBC (sparse grads) + ModelOptimizer row-wise Adagrad
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>

#include "recmod/modules/embedding_modules.h"
#include "recmod/optim/model_optimizer.h"

namespace {

constexpr int64_t kDim = 64;
constexpr int64_t kBatch = 2048;
constexpr int64_t kBagSize = 20;
constexpr int kBatches = 8;  // distinct pre-generated batches, cycled

int64_t rows() {
  static const int64_t n = [] {
    const char* env = std::getenv("RECMOD_BENCH_ROWS");
    return env != nullptr ? std::atoll(env) : int64_t{4} << 20;
  }();
  return n;
}

enum Dist { kUniform = 0, kZipf = 1 };

struct Batch {
  recmod::KeyedJaggedTensor kjt;
  torch::Tensor ids, offsets;  // embedding_bag layout (include_last_offset)
};

std::vector<Batch> make_batches(Dist dist) {
  std::mt19937_64 rng(dist == kZipf ? 2024 : 7);
  const int64_t n = rows();
  std::vector<double> cdf;
  std::vector<int64_t> row_of_rank;
  double total = 0;
  if (dist == kZipf) {
    cdf.resize(n);
    for (int64_t r = 0; r < n; ++r) cdf[r] = total += 1.0 / std::pow(static_cast<double>(r + 1), 1.05);
    row_of_rank.resize(n);
    std::iota(row_of_rank.begin(), row_of_rank.end(), 0);
    std::shuffle(row_of_rank.begin(), row_of_rank.end(), rng);
  }
  std::uniform_real_distribution<double> zipf(0.0, total);
  std::uniform_int_distribution<int64_t> uniform(0, n - 1);
  std::vector<Batch> out;
  for (int b = 0; b < kBatches; ++b) {
    torch::Tensor ids = torch::empty({kBatch * kBagSize}, torch::kLong);
    auto* p = ids.data_ptr<int64_t>();
    for (int64_t i = 0; i < ids.numel(); ++i)
      p[i] = dist == kZipf ? row_of_rank[std::lower_bound(cdf.begin(), cdf.end(), zipf(rng)) - cdf.begin()]
                           : uniform(rng);
    torch::Tensor lengths = torch::full({kBatch}, kBagSize, torch::kLong);
    out.push_back({recmod::KeyedJaggedTensor::from_lengths({"f"}, ids, lengths), ids,
                   torch::arange(0, kBatch * kBagSize + 1, kBagSize, torch::kLong)});
  }
  return out;
}

const std::vector<Batch>& batches(Dist dist) {
  static const std::vector<Batch> uniform = make_batches(kUniform);
  static const std::vector<Batch> zipf = make_batches(kZipf);
  return dist == kZipf ? zipf : uniform;
}

/// One EBC shared by every benchmark (a 1 GiB table is slow to initialise);
/// its weight is also the table of the libtorch baselines.
recmod::EmbeddingBagCollection& ebc() {
  static recmod::EmbeddingBagCollection m = [] {
    torch::manual_seed(0);
    return recmod::EmbeddingBagCollection({recmod::EmbeddingBagConfig(rows(), kDim, "t", {"f"})}, false);
  }();
  return m;
}

recmod::optim::OptimizerOptions rowwise_adagrad() {
  recmod::optim::OptimizerOptions o;
  o.type("rowwise_adagrad");
  o.lr(0.01);
  o.eps(1e-8);
  return o;
}

const torch::Tensor& target() {
  static const torch::Tensor t = torch::randn({kBatch, kDim});
  return t;
}

void setup(benchmark::State& state) {
  at::set_num_threads(static_cast<int>(state.range(0)));
  batches(kUniform);  // build the inputs outside the timed loop
  batches(kZipf);
}

void finish(benchmark::State& state) {
  state.counters["rows_per_s"] = benchmark::Counter(static_cast<double>(state.iterations()) * kBatch * kBagSize,
                                                    benchmark::Counter::kIsRate);
}

using Vec8 = float __attribute__((vector_size(32)));

/// The ceiling: the plainest fast gather-and-sum for exactly this shape
/// (fixed D = 64, fixed bag size, no checks, no dispatch): the bag's sum in
/// 8 AVX2 registers, rows prefetched 8 ahead. (A loop that adds into the
/// output row in memory is several times slower on random rows: the
/// out-of-order window then covers about one row's cache misses.)
__attribute__((target("avx2"))) void gather_sum(const float* table, const int64_t* ids, float* out, int64_t begin,
                                                int64_t end) {
  constexpr int64_t kAhead = 8;
  const int64_t last = end * kBagSize;
  for (int64_t bag = begin; bag < end; ++bag) {
    Vec8 acc[kDim / 8];
    for (auto& a : acc) a = Vec8{};
    for (int64_t p = bag * kBagSize; p < (bag + 1) * kBagSize; ++p) {
      if (p + kAhead < last) {
        const char* ahead = reinterpret_cast<const char*>(table + ids[p + kAhead] * kDim);
        for (int64_t line = 0; line < kDim * 4; line += 64) __builtin_prefetch(ahead + line, 0, 3);
      }
      const float* r = table + ids[p] * kDim;
      for (int64_t k = 0; k < kDim / 8; ++k) {
        Vec8 x;
        std::memcpy(&x, r + 8 * k, sizeof(x));
        acc[k] += x;
      }
    }
    std::memcpy(out + bag * kDim, acc, sizeof(acc));
  }
}

void BM_GatherCeiling(benchmark::State& state, Dist dist) {
  setup(state);
  const torch::Tensor& w = ebc()->table_weight("t");
  const float* table = w.data_ptr<float>();
  torch::Tensor out = torch::empty({kBatch, kDim});
  float* o = out.data_ptr<float>();
  int64_t step = 0;
  for (auto _ : state) {
    const Batch& b = batches(dist)[step++ % kBatches];
    const int64_t* ids = b.ids.data_ptr<int64_t>();
    at::parallel_for(0, kBatch, 32, [&](int64_t begin, int64_t end) { gather_sum(table, ids, o, begin, end); });
    benchmark::DoNotOptimize(o);
    benchmark::ClobberMemory();
  }
  finish(state);
}

/// A batch's ids grouped by row, as the fused backward groups them: the
/// distinct rows (ascending) and, per row, the bags it is in.
struct Grouped {
  std::vector<int64_t> rows;
  std::vector<int64_t> starts;  // rows.size() + 1 offsets into bags
  std::vector<int64_t> bags;
};

Grouped group(const Batch& b) {
  const int64_t n = b.ids.numel();
  const int64_t* ids = b.ids.data_ptr<int64_t>();
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return ids[x] < ids[y]; });
  Grouped g;
  for (const int64_t p : order) {
    if (g.rows.empty() || g.rows.back() != ids[p]) {
      g.rows.push_back(ids[p]);
      g.starts.push_back(static_cast<int64_t>(g.bags.size()));
    }
    g.bags.push_back(p / kBagSize);
  }
  g.starts.push_back(static_cast<int64_t>(g.bags.size()));
  return g;
}

const std::vector<Grouped>& grouped(Dist dist) {
  static const std::vector<Grouped> out[2] = {[] {
                                                std::vector<Grouped> v;
                                                for (const auto& b : batches(kUniform)) v.push_back(group(b));
                                                return v;
                                              }(),
                                              [] {
                                                std::vector<Grouped> v;
                                                for (const auto& b : batches(kZipf)) v.push_back(group(b));
                                                return v;
                                              }()};
  return out[dist];
}

/// Row-wise Adagrad on distinct rows [begin, end) of `g`, the gradient of
/// bag b being grad[b]: each row's gradient summed in 8 AVX2 registers,
/// state[r] += mean(g^2), row -= lr g / (sqrt(state[r]) + eps); the row and
/// its state prefetched (for writing) 8 rows ahead. What any fused update
/// must do at least: read and write each touched row and its state once.
__attribute__((target("avx2,fma"))) void update_rows(float* table, float* state, const float* grad, const Grouped& g,
                                                     int64_t begin, int64_t end) {
  constexpr int64_t kAhead = 8;
  constexpr float kLr = 0.01f, kEps = 1e-8f;
  for (int64_t u = begin; u < end; ++u) {
    if (u + kAhead < end) {
      const int64_t ahead = g.rows[static_cast<size_t>(u + kAhead)];
      const char* row = reinterpret_cast<const char*>(table + ahead * kDim);
      for (int64_t line = 0; line < kDim * 4; line += 64) __builtin_prefetch(row + line, 1, 3);
      __builtin_prefetch(state + ahead, 1, 3);
    }
    Vec8 acc[kDim / 8];
    for (auto& a : acc) a = Vec8{};
    for (int64_t k = g.starts[static_cast<size_t>(u)]; k < g.starts[static_cast<size_t>(u + 1)]; ++k) {
      const float* gr = grad + g.bags[static_cast<size_t>(k)] * kDim;
      for (int64_t j = 0; j < kDim / 8; ++j) {
        Vec8 x;
        std::memcpy(&x, gr + 8 * j, sizeof(x));
        acc[j] += x;
      }
    }
    Vec8 sq{};
    for (const auto& a : acc) sq += a * a;
    float sum = 0;
    for (int lane = 0; lane < 8; ++lane) sum += sq[lane];
    const int64_t r = g.rows[static_cast<size_t>(u)];
    state[r] += sum / kDim;
    const float scale = kLr / (std::sqrt(state[r]) + kEps);
    float* row = table + r * kDim;
    for (int64_t j = 0; j < kDim / 8; ++j) {
      Vec8 x;
      std::memcpy(&x, row + 8 * j, sizeof(x));
      x -= scale * acc[j];
      std::memcpy(row + 8 * j, &x, sizeof(x));
    }
  }
}

void BM_TrainCeiling(benchmark::State& state, Dist dist) {
  setup(state);
  grouped(dist);
  torch::Tensor w = ebc()->table_weight("t");
  float* table = w.data_ptr<float>();
  static torch::Tensor row_state = torch::zeros({rows()});  // the row-wise Adagrad state, as a separate array
  float* st = row_state.data_ptr<float>();
  const float* grad = target().data_ptr<float>();  // d sum(out * target) / d out
  torch::Tensor out = torch::empty({kBatch, kDim});
  float* o = out.data_ptr<float>();
  int64_t step = 0;
  for (auto _ : state) {
    const int64_t k = step++ % kBatches;
    const int64_t* ids = batches(dist)[static_cast<size_t>(k)].ids.data_ptr<int64_t>();
    at::parallel_for(0, kBatch, 32, [&](int64_t begin, int64_t end) { gather_sum(table, ids, o, begin, end); });
    const Grouped& g = grouped(dist)[static_cast<size_t>(k)];
    at::parallel_for(0, static_cast<int64_t>(g.rows.size()), 64,
                     [&](int64_t begin, int64_t end) { update_rows(table, st, grad, g, begin, end); });
    benchmark::DoNotOptimize(o);
    benchmark::ClobberMemory();
  }
  finish(state);
}

void BM_EmbeddingBag(benchmark::State& state, Dist dist) {
  setup(state);
  torch::NoGradGuard no_grad;
  const torch::Tensor& w = ebc()->table_weight("t");
  int64_t step = 0;
  for (auto _ : state) {
    const Batch& b = batches(dist)[step++ % kBatches];
    auto out = torch::embedding_bag(w, b.ids, b.offsets, false, 0, false, {}, /*include_last_offset=*/true);
    benchmark::DoNotOptimize(std::get<0>(out).data_ptr());
  }
  finish(state);
}

void ebc_forward(benchmark::State& state, Dist dist, bool fused) {
  setup(state);
  torch::NoGradGuard no_grad;
  if (fused)
    ebc()->enable_fused_optimizer(rowwise_adagrad());
  else
    ebc()->disable_fused_optimizer();
  int64_t step = 0;
  for (auto _ : state) {
    auto out = ebc()->forward(batches(dist)[step++ % kBatches].kjt);
    benchmark::DoNotOptimize(out.values().data_ptr());
  }
  ebc()->disable_fused_optimizer();
  finish(state);
}

void BM_EbcForward(benchmark::State& state, Dist dist) { ebc_forward(state, dist, true); }
void BM_EbcForwardDefault(benchmark::State& state, Dist dist) { ebc_forward(state, dist, false); }

void BM_FusedTrain(benchmark::State& state, Dist dist) {
  setup(state);
  ebc()->enable_fused_optimizer(rowwise_adagrad());
  int64_t step = 0;
  for (auto _ : state) {
    auto out = ebc()->forward(batches(dist)[step++ % kBatches].kjt);
    (out.values() * target()).sum().backward();
  }
  ebc()->disable_fused_optimizer();
  finish(state);
}

void BM_TorchSparseAdagrad(benchmark::State& state, Dist dist) {
  setup(state);
  torch::Tensor w = ebc()->table_weight("t");
  torch::optim::Adagrad optimizer({w}, torch::optim::AdagradOptions(0.01).eps(1e-8));
  int64_t step = 0;
  for (auto _ : state) {
    const Batch& b = batches(dist)[step++ % kBatches];
    auto out = torch::embedding_bag(w, b.ids, b.offsets, false, 0, /*sparse=*/true, {}, true);
    (std::get<0>(out) * target()).sum().backward();
    optimizer.step();
    w.mutable_grad().reset();
  }
  finish(state);
}

void BM_ModelOptimizerRowwise(benchmark::State& state, Dist dist) {
  setup(state);
  ebc()->set_sparse(true);
  recmod::optim::ModelOptimizer optimizer({}, recmod::optim::OptimizerOptions(), {{"t", ebc()->table_weight("t")}},
                                          rowwise_adagrad());
  int64_t step = 0;
  for (auto _ : state) {
    optimizer.zero_grad();
    auto out = ebc()->forward(batches(dist)[step++ % kBatches].kjt);
    (out.values() * target()).sum().backward();
    optimizer.step();
  }
  optimizer.zero_grad();
  ebc()->set_sparse(false);
  finish(state);
}

#define RECMOD_BENCH(fn)                                                                              \
  BENCHMARK_CAPTURE(fn, uniform, kUniform)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond); \
  BENCHMARK_CAPTURE(fn, zipf, kZipf)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond)

RECMOD_BENCH(BM_GatherCeiling);
RECMOD_BENCH(BM_EmbeddingBag);
RECMOD_BENCH(BM_EbcForward);
RECMOD_BENCH(BM_EbcForwardDefault);
RECMOD_BENCH(BM_FusedTrain);
RECMOD_BENCH(BM_TrainCeiling);
RECMOD_BENCH(BM_TorchSparseAdagrad);
RECMOD_BENCH(BM_ModelOptimizerRowwise);

}  // namespace

BENCHMARK_MAIN();
