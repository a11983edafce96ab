// embedding_bag forward + backward + optimizer update, rows per second:
// recmod's row-sparse optimizers vs libtorch's embedding_bag(sparse=true) +
// torch::optim::Adagrad. A 1M x 64 table, batch 2048, bags of 20, Zipf ids.
// Counters: lookups_per_s (ids looked up, 2048 * 20 a step) and
// updated_rows_per_s (distinct rows written a step), per wall-clock second.
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <random>

#include "recmod/optim/row_update.h"
#include "recmod/optim/sparse_optimizer.h"

namespace {

constexpr int64_t kRows = 1'000'000;
constexpr int64_t kDim = 64;
constexpr int64_t kBatch = 2048;
constexpr int64_t kBagSize = 20;
constexpr int kBatches = 16;  // distinct pre-generated batches, cycled

struct Batch {
  torch::Tensor ids, offsets;
  int64_t unique_rows;
};

/// Zipf(1.05) over the rows, rank r -> a fixed random row (hot rows spread over the table). Seeded.
std::vector<Batch> zipf_batches() {
  std::mt19937_64 rng(2024);
  std::vector<double> cdf(kRows);
  double total = 0;
  for (int64_t r = 0; r < kRows; ++r) cdf[r] = total += 1.0 / std::pow(static_cast<double>(r + 1), 1.05);
  std::vector<int64_t> row_of_rank(kRows);
  std::iota(row_of_rank.begin(), row_of_rank.end(), 0);
  std::shuffle(row_of_rank.begin(), row_of_rank.end(), rng);
  std::uniform_real_distribution<double> uniform(0.0, total);
  std::vector<Batch> batches;
  for (int b = 0; b < kBatches; ++b) {
    torch::Tensor ids = torch::empty({kBatch * kBagSize}, torch::kLong);
    auto* p = ids.data_ptr<int64_t>();
    for (int64_t i = 0; i < ids.numel(); ++i)
      p[i] = row_of_rank[std::lower_bound(cdf.begin(), cdf.end(), uniform(rng)) - cdf.begin()];
    const int64_t unique = std::get<0>(torch::_unique(ids)).numel();
    batches.push_back({ids, torch::arange(0, kBatch * kBagSize, kBagSize, torch::kLong), unique});
  }
  return batches;
}

const std::vector<Batch>& batches() {
  static const std::vector<Batch> b = zipf_batches();
  return b;
}

torch::Tensor make_table() {
  torch::manual_seed(0);
  return torch::empty({kRows, kDim}).uniform_(-0.01, 0.01).set_requires_grad(true);
}

/// Forward + backward of a weighted sum of the pooled bags: a sparse COO gradient.
void forward_backward(const torch::Tensor& table, const Batch& batch, const torch::Tensor& target) {
  auto out = torch::embedding_bag(table, batch.ids, batch.offsets, /*scale_grad_by_freq=*/false, /*mode=*/0,
                                  /*sparse=*/true);
  (std::get<0>(out) * target).sum().backward();
}

void set_counters(benchmark::State& state, int64_t updated_rows) {
  const auto steps = static_cast<double>(state.iterations());
  state.counters["lookups_per_s"] =
      benchmark::Counter(steps * kBatch * kBagSize, benchmark::Counter::kIsRate);
  state.counters["updated_rows_per_s"] =
      benchmark::Counter(static_cast<double>(updated_rows), benchmark::Counter::kIsRate);
}

void BM_Recmod(benchmark::State& state, const std::string& type) {
  torch::Tensor table = make_table();
  recmod::optim::OptimizerOptions options;
  options.type(type);
  options.lr(0.01);
  recmod::optim::SparseOptimizer optimizer({{"t", table}}, options);
  const torch::Tensor target = torch::randn({kBatch, kDim});
  int64_t step = 0, updated_rows = 0;
  for (auto _ : state) {
    const Batch& batch = batches()[step++ % kBatches];
    forward_backward(table, batch, target);
    optimizer.step();
    table.mutable_grad().reset();
    updated_rows += batch.unique_rows;
  }
  set_counters(state, updated_rows);
}

void BM_TorchAdagrad(benchmark::State& state) {
  torch::Tensor table = make_table();
  torch::optim::Adagrad optimizer({table}, torch::optim::AdagradOptions(0.01).eps(1e-8));
  const torch::Tensor target = torch::randn({kBatch, kDim});
  int64_t step = 0, updated_rows = 0;
  for (auto _ : state) {
    const Batch& batch = batches()[step++ % kBatches];
    forward_backward(table, batch, target);
    optimizer.step();
    table.mutable_grad().reset();
    updated_rows += batch.unique_rows;
  }
  set_counters(state, updated_rows);
}

/// The row-sparse update alone of a bf16 table (issue 16): each batch's
/// distinct rows with bf16 gradients, rowwise_adagrad with fp32 state, by
/// update_rows' CPU kernel (the fused path's apply_row_update; what bf16
/// tables take since 85147da) or its tensor-op path (what they took
/// before), rounded to nearest or stochastically. (libtorch 1.13's CPU
/// embedding_bag takes no bf16, so no forward / backward here.)
void BM_RowSparseUpdateBf16(benchmark::State& state, bool tensor_ops, bool stochastic) {
  torch::manual_seed(0);
  torch::Tensor table = torch::empty({kRows, kDim}).uniform_(-0.01, 0.01).to(torch::kBFloat16);
  recmod::optim::OptimizerOptions options;
  options.type("rowwise_adagrad");
  options.lr(0.01);
  torch::Tensor row_state = recmod::optim::make_row_state(recmod::optim::RowUpdate::rowwise_adagrad, options,
                                                          table.sizes(), torch::TensorOptions().dtype(torch::kFloat));
  std::vector<recmod::optim::RowGradients> grads;
  for (const auto& b : batches()) {
    const torch::Tensor rows = std::get<0>(torch::_unique(b.ids));
    grads.push_back({rows, torch::randn({rows.numel(), kDim}).mul_(0.01).to(torch::kBFloat16)});
  }
  auto rounding = recmod::optim::RoundingState::given(7, 0);
  int64_t step = 0, updated_rows = 0;
  for (auto _ : state) {
    const auto& g = grads[step++ % kBatches];
    recmod::optim::update_rows(options, table, row_state, g, tensor_ops, rounding.rounding(stochastic));
    rounding.advance();
    updated_rows += g.rows.numel();
  }
  state.counters["updated_rows_per_s"] =
      benchmark::Counter(static_cast<double>(updated_rows), benchmark::Counter::kIsRate);
}

BENCHMARK_CAPTURE(BM_RowSparseUpdateBf16, kernel_nearest, false, false)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_RowSparseUpdateBf16, tensor_ops_nearest, true, false)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_RowSparseUpdateBf16, kernel_stochastic, false, true)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_RowSparseUpdateBf16, tensor_ops_stochastic, true, true)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK_CAPTURE(BM_Recmod, rowwise_adagrad, std::string("rowwise_adagrad"))->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Recmod, adagrad, std::string("adagrad"))->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_TorchAdagrad)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
