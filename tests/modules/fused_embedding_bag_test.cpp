#include "recmod/modules/fused_embedding_bag.h"

#include <ATen/Parallel.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <string>

#include "recmod/common/errors.h"
#include "recmod/modules/embedding_modules.h"
#include "recmod/optim/model_optimizer.h"
#include "recmod/optim/sparse_optimizer.h"
#include "support/embedding_batches.h"

namespace recmod {
namespace fused_embedding_bag_test {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<EmbeddingBagConfig> tables(bool weighted) { return test::three_tables(weighted); }

KeyedJaggedTensor batch(int64_t b, uint64_t seed, bool weighted, torch::Dtype id_dtype = torch::kLong) {
  return test::three_table_batch(b, seed, weighted, id_dtype);
}

/// Two EBCs with identical tables. `dyadic`: all tables SUM and every
/// weight a multiple of 1/64 in [-1, 1], so that with dyadic_loss_of every
/// gradient and SGD step is exact, whatever the summation order or FMA use.
std::pair<EmbeddingBagCollection, EmbeddingBagCollection> twins(bool weighted, bool dyadic = false) {
  torch::manual_seed(7);
  EmbeddingBagCollection a(tables(weighted || dyadic), weighted);
  EmbeddingBagCollection b(tables(weighted || dyadic), weighted);
  torch::NoGradGuard no_grad;
  for (const auto& t : a->embedding_bag_configs()) {
    if (dyadic) a->table_weight(t.name).copy_(torch::randint(-64, 65, a->table_weight(t.name).sizes()) / 64.0);
    b->table_weight(t.name).copy_(a->table_weight(t.name));
  }
  return {a, b};
}

/// A loss whose gradient depends on the output: sum(out * target) + 0.5 * sum(out^2).
torch::Tensor loss_of(const KeyedTensor& out, int64_t step) {
  torch::manual_seed(1000 + step);
  const torch::Tensor target = torch::randn(out.values().sizes());
  return (out.values() * target).sum() + 0.5 * out.values().square().sum();
}

/// sum(out * target) with integer targets in [-4, 4]: gradients are exact.
torch::Tensor dyadic_loss_of(const KeyedTensor& out, int64_t step) {
  torch::manual_seed(2000 + step);
  return (out.values() * torch::randint(-4, 5, out.values().sizes())).sum();
}

void expect_tables_equal(EmbeddingBagCollection& a, EmbeddingBagCollection& b, bool exact) {
  for (const auto& t : a->embedding_bag_configs()) {
    const auto& wa = a->table_weight(t.name);
    const auto& wb = b->table_weight(t.name);
    if (exact) {
      EXPECT_TRUE(torch::equal(wa, wb)) << t.name << " max diff " << (wa - wb).abs().max().item<double>();
    } else {
      EXPECT_TRUE(torch::allclose(wa, wb, 1e-5, 1e-6)) << t.name << " max diff " << (wa - wb).abs().max().item<double>();
    }
  }
}

optim::OptimizerOptions opts(const std::string& type, double lr, double weight_decay = 0.0) {
  return test::optimizer_options(type, lr, weight_decay);
}

TEST(FusedEmbeddingBag, ForwardMatchesDefaultPath) {
  for (bool weighted : {false, true}) {
    for (auto id_dtype : {torch::kLong, torch::kInt}) {
      auto [plain, fused] = twins(weighted);
      fused->enable_fused_optimizer(opts("sgd", 0.1));
      const auto kjt = batch(16, 3, weighted, id_dtype);
      const KeyedTensor expected = plain->forward(kjt);
      const KeyedTensor got = fused->forward(kjt);
      EXPECT_EQ(got.keys(), expected.keys());
      EXPECT_EQ(got.length_per_key(), expected.length_per_key());
      EXPECT_EQ(got.values().sizes(), expected.values().sizes());
      EXPECT_TRUE(torch::allclose(got.values(), expected.values(), 1e-5, 1e-6))
          << "weighted " << weighted << "\n" << got.values() - expected.values();
    }
  }
}

/// Exact equality needs exact arithmetic: libtorch's backward sums a row's
/// duplicates in its own order (and OpenBLAS's axpy may fuse multiply-adds),
/// so with arbitrary floats the two differ in the last bit. Dyadic weights
/// and integer targets make every step exact; MatchModelOptimizer below
/// covers arbitrary values, MEAN pooling and weights with a tolerance.
TEST(FusedEmbeddingBag, SgdGivesExactlyAutogradPlusPlainSgd) {
  auto [plain, fused] = twins(false, /*dyadic=*/true);
  torch::optim::SGD sgd(plain->parameters(), torch::optim::SGDOptions(1.0 / 16));
  fused->enable_fused_optimizer(opts("sgd", 1.0 / 16));
  for (int step = 0; step < 4; ++step) {
    const auto kjt = batch(32, 100 + step, false);
    sgd.zero_grad();
    dyadic_loss_of(plain->forward(kjt), step).backward();
    sgd.step();
    dyadic_loss_of(fused->forward(kjt), step).backward();
    for (const auto& p : fused->parameters()) EXPECT_FALSE(p.grad().defined()) << "the fused path made a .grad";
  }
  expect_tables_equal(plain, fused, /*exact=*/true);
}

TEST(FusedEmbeddingBag, RowwiseAdagradGivesExactlyModelOptimizer) {
  auto [plain, fused] = twins(false, /*dyadic=*/true);
  std::vector<std::pair<std::string, torch::Tensor>> params;
  for (const auto& t : plain->embedding_bag_configs())
    params.emplace_back("embedding_bags." + t.name + ".weight", plain->table_weight(t.name));
  const auto o = opts("rowwise_adagrad", 0.1, 0.01);
  optim::ModelOptimizer optimizer({}, opts("sgd", 0.1), params, o);
  fused->enable_fused_optimizer(o);
  for (int step = 0; step < 4; ++step) {
    const auto kjt = batch(32, 200 + step, false);
    optimizer.zero_grad();
    dyadic_loss_of(plain->forward(kjt), step).backward();
    optimizer.step();
    dyadic_loss_of(fused->forward(kjt), step).backward();
  }
  expect_tables_equal(plain, fused, /*exact=*/true);
  const StateDict state = fused->fused_optimizer_state_dict();
  const StateDict reference = optimizer.state_dict();
  ASSERT_EQ(state.size(), 3u);
  for (const auto& [key, value] : state) {
    EXPECT_THAT(key, HasSubstr(".weight.momentum1"));
    const torch::Tensor* ref = find_tensor(reference, "embedding." + key);
    ASSERT_NE(ref, nullptr) << key;
    EXPECT_TRUE(torch::equal(value, *ref)) << key;
  }
}

TEST(FusedEmbeddingBag, MatchModelOptimizer) {
  for (const std::string type : {"adagrad", "rowwise_adagrad", "sgd"}) {
   for (bool weighted : {false, true}) {
    auto [plain, fused] = twins(weighted);
    std::vector<std::pair<std::string, torch::Tensor>> params;
    for (const auto& t : plain->embedding_bag_configs())
      params.emplace_back("embedding_bags." + t.name + ".weight", plain->table_weight(t.name));
    const auto o = opts(type, 0.05, 0.02);
    optim::ModelOptimizer optimizer({}, opts("sgd", 0.1), params, o);
    fused->enable_fused_optimizer(o);
    for (int step = 0; step < 3; ++step) {
      const auto kjt = batch(24, 300 + step, weighted);
      optimizer.zero_grad();
      loss_of(plain->forward(kjt), step).backward();
      optimizer.step();
      loss_of(fused->forward(kjt), step).backward();
    }
    SCOPED_TRACE(type + (weighted ? " weighted" : ""));
    expect_tables_equal(plain, fused, /*exact=*/false);
   }
  }
}

TEST(FusedEmbeddingBag, PerSampleWeightGradientsMatchAutograd) {
  auto [plain, fused] = twins(true);
  fused->enable_fused_optimizer(opts("sgd", 0.0));  // lr 0: tables unchanged
  const auto base = batch(16, 400, true);
  auto with_grad_weights = [&] {
    torch::Tensor w = base.weights().clone().set_requires_grad(true);
    return std::make_pair(KeyedJaggedTensor::from_lengths(base.keys(), base.values(), base.lengths(), w), w);
  };
  auto [kjt_plain, w_plain] = with_grad_weights();
  auto [kjt_fused, w_fused] = with_grad_weights();
  loss_of(plain->forward(kjt_plain), 0).backward();
  loss_of(fused->forward(kjt_fused), 0).backward();
  ASSERT_TRUE(w_fused.grad().defined());
  EXPECT_TRUE(torch::allclose(w_fused.grad(), w_plain.grad(), 1e-5, 1e-5)) << w_fused.grad() - w_plain.grad();
  // lr 0: the fused update left the tables as they were.
  expect_tables_equal(plain, fused, /*exact=*/true);
}

/// The kernel path and the tensor-ops path (what non-CPU devices run) agree,
/// for each algorithm and storage dtype.
TEST(FusedEmbeddingBag, CpuKernelMatchesTensorOpsPath) {
  for (auto dtype : {torch::kFloat, torch::kHalf, torch::kBFloat16}) {
    for (const std::string type : {"sgd", "adagrad", "rowwise_adagrad"}) {
      for (bool weighted : {false, true}) {
        SCOPED_TRACE(type + " " + c10::toString(dtype) + (weighted ? " weighted" : ""));
        torch::manual_seed(11);
        const torch::Tensor w0 = (torch::randn({40, 16}) * 0.1).to(dtype);
        FusedLookupPlan plan;
        plan.tables = {w0.clone(), w0.clone().narrow(1, 0, 8).contiguous()};
        plan.pooling = {PoolingType::SUM, weighted ? PoolingType::SUM : PoolingType::MEAN};
        plan.slots = {{0, 1, 0}, {1, 0, 16}, {0, 0, 24}};
        plan.output_dim = 40;
        const auto kjt = batch(8, 500, weighted);
        FusedLookupInput input{kjt.values().remainder(40), kjt.offsets(),
                               weighted ? kjt.weights() : torch::Tensor(), kjt.stride(), kjt.offset_per_key()};
        FusedLookupPlan generic_plan = plan;
        generic_plan.tables = {plan.tables[0].clone(), plan.tables[1].clone()};
        const torch::Tensor out = fused_pooled_forward(plan, input);
        const torch::Tensor out_generic = fused_pooled_forward(generic_plan, input, /*generic=*/true);
        const double tol = dtype == torch::kFloat ? 1e-5 : 2e-2;
        EXPECT_TRUE(torch::allclose(out, out_generic, tol, tol)) << out - out_generic;
        FusedEmbeddingOptimizer opt(plan.tables, opts(type, 0.1, 0.01));
        FusedEmbeddingOptimizer opt_generic(generic_plan.tables, opts(type, 0.1, 0.01));
        const torch::Tensor grad = torch::randn({8, 40});
        const torch::Tensor wg = fused_backward_update(plan, input, grad, opt, weighted);
        const torch::Tensor wg_generic = fused_backward_update(generic_plan, input, grad, opt_generic, weighted, true);
        EXPECT_FALSE(torch::equal(plan.tables[0], w0)) << "no update";
        for (size_t t = 0; t < 2; ++t) {
          EXPECT_TRUE(torch::allclose(plan.tables[t].to(torch::kFloat), generic_plan.tables[t].to(torch::kFloat), tol, tol));
          if (opt.states()[t].defined()) {
            EXPECT_TRUE(torch::allclose(opt.states()[t], opt_generic.states()[t], 1e-4, 1e-6));
          }
        }
        if (weighted) {
          EXPECT_TRUE(torch::allclose(wg, wg_generic, tol, tol));
        }
      }
    }
  }
}

TEST(FusedEmbeddingBag, HalfStorageAccumulatesInFloat) {
  // 1024 copies of 1 + 2^-10 in fp16: an fp16 accumulator rounds away the
  // 2^-10 parts once the sum passes 2048; fp32 keeps them.
  FusedLookupPlan plan;
  plan.tables = {torch::full({2, 1}, 1.0 + 1.0 / 1024, torch::kHalf)};
  plan.pooling = {PoolingType::SUM};
  plan.slots = {{0, 0, 0}};
  plan.output_dim = 1;
  const int64_t n = 4096;
  FusedLookupInput input{torch::zeros({n}, torch::kLong), torch::tensor({int64_t{0}, n}), torch::Tensor(), 1, {0, n}};
  const torch::Tensor out = fused_pooled_forward(plan, input);
  EXPECT_FLOAT_EQ(out.item<float>(), static_cast<float>(n * (1.0 + 1.0 / 1024)));
  plan.tables = {torch::full({2, 1}, 1.0 + 1.0 / 128, torch::kBFloat16)};
  EXPECT_FLOAT_EQ(fused_pooled_forward(plan, input).item<float>(), static_cast<float>(n * (1.0 + 1.0 / 128)));
}

TEST(FusedEmbeddingBag, DeterministicAcrossThreadCounts) {
  const int threads = at::get_num_threads();
  std::vector<torch::Tensor> results;
  for (int n : {1, 2, 3}) {
    at::set_num_threads(n);
    auto [unused, fused] = twins(false);
    fused->enable_fused_optimizer(opts("rowwise_adagrad", 0.1));
    for (int step = 0; step < 2; ++step) loss_of(fused->forward(batch(256, 600 + step, false)), step).backward();
    results.push_back(torch::cat({fused->table_weight("t_sum").flatten(), fused->table_weight("t_two").flatten(),
                                  fused->fused_optimizer_state_dict()[0].second}));
  }
  at::set_num_threads(threads);
  EXPECT_TRUE(torch::equal(results[0], results[1]));
  EXPECT_TRUE(torch::equal(results[0], results[2]));
}

TEST(FusedEmbeddingBag, ManySmallTablesSharedOutWholeMatchOneThread) {
  // 12 tables of 128 bags each (~190 lookups, ~25 KB of rows each): every
  // table is too small to split its rows, all of them together (~260 KB) are
  // enough for 2-3 tasks, so with 2 or 3 threads the tables are shared out
  // whole; the result must be the one thread's, bit for bit (the tensor-op
  // path within tolerance).
  const int threads = at::get_num_threads();
  const int64_t num_tables = 12, b = 128;
  torch::manual_seed(21);
  FusedLookupPlan base;
  int64_t column = 0;
  for (int64_t t = 0; t < num_tables; ++t) {
    const int64_t dim = t % 3 == 0 ? 8 : 16;
    base.tables.push_back(torch::randn({50 + 37 * t, dim}) * 0.1);
    base.pooling.push_back(t % 2 == 0 ? PoolingType::SUM : PoolingType::MEAN);
    base.slots.push_back({t, num_tables - 1 - t, column});  // key order differs from table order
    column += dim;
  }
  base.output_dim = column;
  const torch::Tensor lengths = torch::randint(0, 4, {num_tables * b}, torch::kLong);
  const torch::Tensor offsets = torch::cat({torch::zeros({1}, torch::kLong), lengths.cumsum(0)});
  std::vector<int64_t> offset_per_key;
  for (int64_t k = 0; k <= num_tables; ++k) offset_per_key.push_back(offsets[k * b].item<int64_t>());
  const FusedLookupInput input{torch::randint(0, 50, {offset_per_key.back()}, torch::kLong), offsets, torch::Tensor(),
                               b, offset_per_key};
  const torch::Tensor grad = torch::randn({b, column});
  for (const std::string type : {"sgd", "adagrad", "rowwise_adagrad"}) {
    SCOPED_TRACE(type);
    std::vector<torch::Tensor> results;
    for (int n : {1, 2, 3}) {
      at::set_num_threads(n);
      FusedLookupPlan plan = base;
      for (auto& w : plan.tables) w = w.clone();
      FusedEmbeddingOptimizer opt(plan.tables, opts(type, 0.1));
      fused_backward_update(plan, input, grad, opt, false);
      std::vector<torch::Tensor> parts;
      for (size_t t = 0; t < plan.tables.size(); ++t) {
        parts.push_back(plan.tables[t].flatten());
        if (opt.states()[t].defined()) parts.push_back(opt.states()[t].flatten());
      }
      results.push_back(torch::cat(parts));
      if (n == 2) {
        FusedLookupPlan generic = base;
        for (auto& w : generic.tables) w = w.clone();
        FusedEmbeddingOptimizer opt_generic(generic.tables, opts(type, 0.1));
        fused_backward_update(generic, input, grad, opt_generic, false, /*generic=*/true);
        for (size_t t = 0; t < plan.tables.size(); ++t) {
          EXPECT_FALSE(torch::equal(plan.tables[t], base.tables[t])) << "table " << t << " not updated";
          EXPECT_TRUE(torch::allclose(plan.tables[t], generic.tables[t], 1e-5, 1e-6)) << "table " << t;
        }
      }
    }
    at::set_num_threads(threads);
    EXPECT_TRUE(torch::equal(results[0], results[1]));
    EXPECT_TRUE(torch::equal(results[0], results[2]));
  }
}

TEST(FusedEmbeddingBag, StateDictRoundTripResumesExactly) {
  auto [a, b] = twins(false);
  const auto o = opts("adagrad", 0.1);
  a->enable_fused_optimizer(o);
  for (int step = 0; step < 2; ++step) loss_of(a->forward(batch(16, 700 + step, false)), step).backward();
  // b resumes from a's tables and optimizer state.
  {
    torch::NoGradGuard no_grad;
    for (const auto& t : a->embedding_bag_configs()) b->table_weight(t.name).copy_(a->table_weight(t.name));
  }
  b->enable_fused_optimizer(o);
  StateDict saved;
  for (const auto& [k, v] : a->fused_optimizer_state_dict()) saved.emplace_back(k, v.clone());
  EXPECT_EQ(saved[0].first, "embedding_bags.t_sum.weight.sum");
  b->load_fused_optimizer_state_dict(saved, "ckpt/step_2.pt");
  for (auto* m : {&a, &b}) loss_of((*m)->forward(batch(16, 702, false)), 2).backward();
  expect_tables_equal(a, b, /*exact=*/true);
  EXPECT_TRUE(torch::equal(a->fused_optimizer_state_dict()[1].second, b->fused_optimizer_state_dict()[1].second));
}

template <typename F>
std::string checkpoint_error_of(F&& f) {
  try {
    f();
  } catch (const CheckpointError& e) {
    return e.what();
  }
  return "<no CheckpointError>";
}

TEST(FusedEmbeddingBag, LoadStateDictErrorsNameTheKey) {
  EmbeddingBagCollection ebc(tables(false), false);
  ebc->enable_fused_optimizer(opts("rowwise_adagrad", 0.1));
  StateDict state = ebc->fused_optimizer_state_dict();
  StateDict missing(state.begin() + 1, state.end());
  EXPECT_THAT(checkpoint_error_of([&] { ebc->load_fused_optimizer_state_dict(missing, "ckpt.pt"); }),
              HasSubstr("ckpt.pt: missing fused optimizer key 'embedding_bags.t_sum.weight.momentum1'"));
  StateDict wrong = state;
  wrong[0].second = torch::zeros({3});
  EXPECT_THAT(checkpoint_error_of([&] { ebc->load_fused_optimizer_state_dict(wrong, "ckpt.pt"); }),
              HasSubstr("key 'embedding_bags.t_sum.weight.momentum1' has shape [3], the model expects [50]"));
  StateDict extra = state;
  extra.emplace_back("embedding_bags.t_sum.weight.sum", torch::zeros({50, 8}));
  EXPECT_THAT(checkpoint_error_of([&] { ebc->load_fused_optimizer_state_dict(extra, "ckpt.pt"); }),
              HasSubstr("unexpected fused optimizer key 'embedding_bags.t_sum.weight.sum'"));
}

TEST(FusedEmbeddingBag, OutOfRangeIdIsAnInputError) {
  EmbeddingBagCollection ebc({EmbeddingBagConfig(10, 4, "t", {"f"})}, false);
  ebc->enable_fused_optimizer(opts("sgd", 0.1));
  const auto kjt = KeyedJaggedTensor::from_lengths({"f"}, torch::tensor({1, 10, 2}), torch::tensor({2, 1}));
  try {
    ebc->forward(kjt);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("id 10 (input key 0, position 1) is out of range for table 0 with 10 rows"));
  }
}

TEST(FusedEmbeddingBag, NoUpdateWithoutGradModeAndDefaultPathAfterDisable) {
  auto [plain, fused] = twins(false);
  fused->enable_fused_optimizer(opts("sgd", 0.1));
  const auto kjt = batch(8, 800, false);
  {
    torch::NoGradGuard no_grad;
    EXPECT_FALSE(fused->forward(kjt).values().requires_grad());
  }
  expect_tables_equal(plain, fused, /*exact=*/true);
  fused->disable_fused_optimizer();
  EXPECT_FALSE(fused->fused_optimizer_enabled());
  EXPECT_TRUE(fused->fused_optimizer_state_dict().empty());
  fused->forward(kjt).values().sum().backward();
  EXPECT_TRUE(fused->table_weight("t_sum").grad().defined());
}

TEST(FusedEmbeddingBag, InvalidOptimizerIsAnInputError) {
  EmbeddingBagCollection ebc(tables(false), false);
  EXPECT_THROW(ebc->enable_fused_optimizer(opts("adam", 0.1)), InputError);
  EXPECT_FALSE(ebc->fused_optimizer_enabled());
}

}  // namespace fused_embedding_bag_test
}  // namespace recmod

namespace recmod {
namespace fused_embedding_bag_test {

/// The VmFlags line of the mapping in /proc/self/smaps that holds `address`
/// ("" when not found).
std::string vm_flags_at(const void* address) {
  std::ifstream smaps("/proc/self/smaps");
  const auto a = reinterpret_cast<uintptr_t>(address);
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    uintptr_t begin = 0, end = 0;
    if (std::sscanf(line.c_str(), "%" SCNxPTR "-%" SCNxPTR " ", &begin, &end) == 2 && line.find(':') > line.find('-')) {
      inside = a >= begin && a < end;
    } else if (inside && line.rfind("VmFlags:", 0) == 0) {
      return line;
    }
  }
  return "";
}

/// The first byte of a whole 2 MiB page inside the tensor's memory.
const void* first_huge_page(const torch::Tensor& t) {
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  return reinterpret_cast<const void*>((reinterpret_cast<uintptr_t>(t.data_ptr()) + kHuge - 1) & ~(kHuge - 1));
}

// Random row updates on tables far beyond the TLB's reach of 4 KiB pages
// spent most of their time in page walks (BENCHMARKS.md): CPU tables and
// their optimizer state are advised huge pages (VmFlags "hg") before their
// first write, and the state still starts at initial_accumulator_value.
TEST(FusedEmbeddingBag, TablesAndOptimizerStateAreAdvisedHugePages) {
  std::ifstream thp("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string mode;
  if (!std::getline(thp, mode) || mode.find("[never]") != std::string::npos)
    GTEST_SKIP() << "transparent huge pages are off or absent here";
  EmbeddingTable table(1 << 16, 64, torch::kFloat, torch::kCPU);  // 16 MiB
  torch::NoGradGuard no_grad;
  table->weight.uniform_(-0.1, 0.1);
  EXPECT_THAT(vm_flags_at(first_huge_page(table->weight)), HasSubstr(" hg"));
  for (const char* type : {"adagrad", "rowwise_adagrad"}) {
    SCOPED_TRACE(type);
    FusedEmbeddingOptimizer optimizer({table->weight},
                                      optim::OptimizerOptions(type, 0.1).initial_accumulator_value(0.25));
    const torch::Tensor& state = optimizer.states()[0];
    if (state.nbytes() >= (size_t{4} << 20)) {
      EXPECT_THAT(vm_flags_at(first_huge_page(state)), HasSubstr(" hg"));
    }
    EXPECT_TRUE(torch::equal(state, torch::full_like(state, 0.25)));
  }
  // A small table (no whole 2 MiB page) is left alone and works as before.
  EmbeddingTable small(4, 8, torch::kFloat, torch::kCPU);
  EXPECT_EQ(small->weight.numel(), 32);
}

}  // namespace fused_embedding_bag_test
}  // namespace recmod

// Stochastic rounding of fp16 / bf16 tables (issue 16): the fused update's
// write-back through apply_row_update (CPU kernel) and the tensor-op path.
namespace recmod {
namespace fused_embedding_bag_test {

/// A (4, 64) table of ones in `dtype`, each row looked up once per step with
/// gradient 1: `steps` SGD steps of `lr` each, every element should end at
/// 1 - steps * lr.
torch::Tensor tiny_updates(torch::Dtype dtype, bool stochastic, double lr, int steps, bool generic = false,
                           uint64_t seed = 5) {
  FusedLookupPlan plan;
  plan.tables = {torch::ones({4, 64}, dtype)};
  plan.pooling = {PoolingType::SUM};
  plan.slots = {{0, 0, 0}};
  plan.output_dim = 64;
  FusedLookupInput input{torch::arange(4, torch::kLong), torch::arange(5, torch::kLong), torch::Tensor(), 4, {0, 4}};
  torch::manual_seed(seed);
  FusedEmbeddingOptimizer opt(plan.tables, opts("sgd", lr), {stochastic});
  const torch::Tensor grad = torch::ones({4, 64});
  for (int s = 0; s < steps; ++s) fused_backward_update(plan, input, grad, opt, false, generic);
  return plan.tables[0];
}

TEST(FusedEmbeddingBag, StochasticRoundingAveragesTinyUpdatesThatNearestDrops) {
  // Each update is under half a unit in the last place below 1.0 (bf16 2^-9,
  // fp16 2^-12): rounding to nearest drops every one.
  for (auto [dtype, lr] : {std::pair{torch::kBFloat16, 1e-3}, std::pair{torch::kHalf, 1e-4}}) {
    SCOPED_TRACE(c10::toString(dtype));
    const int steps = 100;
    const double expected = tiny_updates(torch::kFloat, false, lr, steps).mean().item<double>();
    EXPECT_NEAR(expected, 1.0 - steps * lr, 1e-5);
    EXPECT_TRUE(torch::equal(tiny_updates(dtype, false, lr, steps), torch::ones({4, 64}, dtype)));
    for (bool generic : {false, true}) {
      const torch::Tensor w = tiny_updates(dtype, true, lr, steps, generic);
      EXPECT_EQ(w.scalar_type(), dtype);
      // The mean of 256 elements: within 5% of the total move (its standard
      // deviation is under 1%).
      EXPECT_NEAR(w.to(torch::kFloat).mean().item<double>(), expected, 0.05 * steps * lr) << (generic ? "tensor ops" : "cpu");
      EXPECT_GT(w.to(torch::kFloat).std().item<double>(), 0.0);  // elements round independently
    }
  }
}

TEST(FusedEmbeddingBag, StochasticRoundingIsDeterministicUnderItsSeed) {
  const int threads = at::get_num_threads();
  std::vector<torch::Tensor> results;
  for (int n : {1, 2, 3}) {
    at::set_num_threads(n);
    results.push_back(tiny_updates(torch::kBFloat16, true, 1e-3, 20));
  }
  at::set_num_threads(threads);
  EXPECT_TRUE(torch::equal(results[0], results[1]));
  EXPECT_TRUE(torch::equal(results[0], results[2]));
  // The tensor-op path uses the same bits: the same table.
  EXPECT_TRUE(torch::equal(results[0], tiny_updates(torch::kBFloat16, true, 1e-3, 20, /*generic=*/true)));
  // Another seed, other bits.
  EXPECT_FALSE(torch::equal(results[0], tiny_updates(torch::kBFloat16, true, 1e-3, 20, false, /*seed=*/6)));
}

TEST(FusedEmbeddingBag, StochasticRoundingFlagsMustMatchTheTables) {
  const std::vector<torch::Tensor> two = {torch::ones({2, 4}, torch::kBFloat16), torch::ones({2, 4}, torch::kBFloat16)};
  EXPECT_THROW(FusedEmbeddingOptimizer(two, opts("sgd", 0.1), {true}), c10::Error);
  EXPECT_FALSE(FusedEmbeddingOptimizer(two, opts("sgd", 0.1)).rounding(1).stochastic);
  EXPECT_TRUE(FusedEmbeddingOptimizer(two, opts("sgd", 0.1), {false, true}).rounding(1).stochastic);
}

// The row-sparse optimizer (EmbeddingCollection, unfused collections)
// rounds with the same rule and bits: for the same row gradients, seed and
// steps, its rows are bit-identical to the fused backward's, on the CPU
// kernel and the tensor-op path, for every rule and both 16-bit types.
TEST(FusedEmbeddingBag, StochasticRoundingOnTheRowSparsePathIsBitIdenticalToTheFusedPath) {
  const int64_t rows = 16, dim = 24, batch = 4, per_bag = 3;
  for (auto dtype : {torch::kBFloat16, torch::kHalf}) {
    for (const char* rule : {"sgd", "adagrad", "rowwise_adagrad"}) {
      for (bool tensor_ops : {false, true}) {
        SCOPED_TRACE(std::string(c10::toString(dtype)) + " " + rule + (tensor_ops ? " tensor ops" : " cpu"));
        torch::manual_seed(3);
        const torch::Tensor init = torch::randn({rows, dim}).to(dtype);
        FusedLookupPlan plan;
        plan.tables = {init.clone()};
        plan.pooling = {PoolingType::SUM};
        plan.slots = {{0, 0, 0}};
        plan.output_dim = dim;
        torch::manual_seed(11);
        FusedEmbeddingOptimizer fused(plan.tables, opts(rule, 0.05), {true});
        torch::Tensor table = init.clone();
        torch::manual_seed(11);
        optim::SparseOptimizer sparse({{"t", table}}, opts(rule, 0.05), {true});
        ASSERT_EQ(fused.rounding_state().seed(), sparse.rounding_state().seed());
        optim::RoundingState given = optim::RoundingState::given(sparse.rounding_state().seed(), 0);
        torch::Tensor state = optim::make_row_state(optim::row_update_of(rule, "test"), opts(rule, 0.05), {rows, dim},
                                                    torch::TensorOptions().dtype(torch::kFloat));
        torch::Tensor nearest = init.clone();
        optim::SparseOptimizer to_nearest({{"t", nearest}}, opts(rule, 0.05));
        const torch::Tensor bag = torch::arange(batch).repeat_interleave(per_bag);
        for (int step = 0; step < 3; ++step) {
          // Duplicate ids; gradients in 1/64ths, so every sum is exact in
          // any order and the 16-bit gradient holds it.
          const torch::Tensor ids = torch::randint(0, rows, {batch * per_bag}, torch::kLong);
          const torch::Tensor grad_out = torch::randint(-8, 9, {batch, dim}).to(torch::kFloat) / 64;
          FusedLookupInput input{ids,
                                 torch::arange(0, batch * per_bag + 1, per_bag, torch::kLong),
                                 torch::Tensor(),
                                 batch,
                                 {0, batch * per_bag}};
          fused_backward_update(plan, input, grad_out, fused, false, /*generic=*/tensor_ops);
          const torch::Tensor g = torch::zeros({rows, dim}).index_add_(0, ids, grad_out.index_select(0, bag));
          if (tensor_ops) {  // update_rows' device-generic path, by hand
            optim::update_rows(opts(rule, 0.05), table, state, optim::touched_rows(g.to(dtype)),
                               /*use_tensor_ops=*/true, given.rounding(true));
            given.advance();
          } else {
            table.mutable_grad() = g.to(dtype);
            sparse.step();
          }
          nearest.mutable_grad() = g.to(dtype);
          to_nearest.step();
          EXPECT_TRUE(torch::equal(plan.tables[0], table)) << "step " << step;
        }
        EXPECT_EQ((tensor_ops ? given : sparse.rounding_state()).step(), 3u);
        EXPECT_EQ(fused.rounding_state().step(), 3u);
        // The bits did something: rounding to nearest gives other rows.
        EXPECT_FALSE(torch::equal(table, nearest));
      }
    }
  }
}

// A shard rounds each value with the bits of its global row and column
// (optim::ShardOffsets): row_wise and column_wise blocks updated on their
// own, on the fused path and on the row-sparse path, hold bit for bit the
// block of the whole table updated in one piece. This is what lets N ranks
// round as one process (DistributedCli.StochasticRoundingMatchesOneProcess).
TEST(FusedEmbeddingBag, StochasticRoundingOfAShardMatchesTheWholeTableBitwise) {
  const int64_t rows = 16, dim = 24;
  struct Block {
    int64_t row, rows, col, cols;
  };
  // column blocks of 10 and 14: not on a multiple of 4 columns
  const std::vector<Block> blocks = {{0, 6, 0, dim}, {6, 10, 0, dim}, {0, rows, 0, 10}, {0, rows, 10, 14}};
  const uint64_t seed = 1234;
  for (auto dtype : {torch::kBFloat16, torch::kHalf}) {
    for (const char* rule : {"sgd", "adagrad", "rowwise_adagrad"}) {
      SCOPED_TRACE(std::string(c10::toString(dtype)) + " " + rule);
      torch::manual_seed(3);
      const torch::Tensor init = torch::randn({rows, dim}).to(dtype);
      std::vector<torch::Tensor> grads;  // per step, one bag per row; 1/64ths, exact in 16 bits
      for (int s = 0; s < 3; ++s) grads.push_back(torch::randint(-8, 9, {rows, dim}).to(torch::kFloat) / 64);
      // Each row looked up once per step: its gradient is grads[s]'s row.
      const auto fused = [&](torch::Tensor table, const std::vector<torch::Tensor>& g, optim::ShardOffsets at,
                             bool generic = false) {
        FusedLookupPlan plan;
        plan.tables = {table};
        plan.pooling = {PoolingType::SUM};
        plan.slots = {{0, 0, 0}};
        plan.output_dim = table.size(1);
        FusedEmbeddingOptimizer opt(plan.tables, opts(rule, 0.05), {true}, {at});
        opt.rounding_state() = optim::RoundingState::given(seed, 0);
        const int64_t n = table.size(0);
        FusedLookupInput input{torch::arange(n, torch::kLong), torch::arange(n + 1, torch::kLong), torch::Tensor(), n,
                               {0, n}};
        for (const auto& gs : g) fused_backward_update(plan, input, gs, opt, false, generic);
        return plan.tables[0];
      };
      const auto row_sparse = [&](torch::Tensor table, const std::vector<torch::Tensor>& g, optim::ShardOffsets at) {
        optim::SparseOptimizer opt({{"t", table}}, opts(rule, 0.05), {true}, {at});
        opt.rounding_state() = optim::RoundingState::given(seed, 0);
        for (const auto& gs : g) {
          table.mutable_grad() = gs.to(dtype);
          opt.step();
        }
        return table;
      };
      const torch::Tensor whole = fused(init.clone(), grads, {});
      ASSERT_TRUE(torch::equal(row_sparse(init.clone(), grads, {}), whole));
      for (const auto& b : blocks) {
        // rowwise_adagrad keeps one momentum per column block (TorchRec's):
        // another update, not a rounding question
        if (std::string(rule) == "rowwise_adagrad" && b.cols != dim) continue;
        SCOPED_TRACE("rows " + std::to_string(b.row) + "+" + std::to_string(b.rows) + ", columns " +
                     std::to_string(b.col) + "+" + std::to_string(b.cols));
        const auto block = [&](const torch::Tensor& t) {
          return t.narrow(0, b.row, b.rows).narrow(1, b.col, b.cols).clone();  // not a view of `init`
        };
        std::vector<torch::Tensor> g;
        for (const auto& gs : grads) g.push_back(block(gs));
        const optim::ShardOffsets at{static_cast<uint64_t>(b.row), static_cast<uint64_t>(b.col)};
        EXPECT_TRUE(torch::equal(fused(block(init), g, at), block(whole))) << "fused";
        EXPECT_TRUE(torch::equal(fused(block(init), g, at, /*generic=*/true), block(whole))) << "fused, tensor ops";
        EXPECT_TRUE(torch::equal(row_sparse(block(init), g, at), block(whole))) << "row-sparse";
        // Local row and column numbers would give other bits.
        if (b.row != 0 || b.col != 0) {
          EXPECT_FALSE(torch::equal(fused(block(init), g, {}), block(whole)));
        }
      }
    }
  }
}

}  // namespace fused_embedding_bag_test
}  // namespace recmod
