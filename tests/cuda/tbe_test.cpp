// The CUDA table-batched kernels (recmod/cuda/tbe.h) against the CPU fused
// kernel: forward, per-sample weight gradients and the fused optimizer step,
// for every storage dtype, pooling, optimizer, id type and row width (the
// 16-byte and the scalar row loads, several column passes, and the
// tensor-op fallback for rows wider than the kernels take). Skipped without
// a CUDA device; scripts/gpu-check runs them on a GPU machine.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "recmod/common/errors.h"
#include "recmod/cuda/tbe.h"
#include "recmod/modules/fused_embedding_bag.h"
#include "support/test_util.h"

namespace recmod {
namespace tbe_test {

using ::testing::HasSubstr;

#define REQUIRE_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"

const torch::Device kCuda(torch::kCUDA, 0);

/// A lookup of `keys` features over tables of the given widths: key k uses
/// table k % tables (so table 0 serves two keys when keys > tables), tables
/// of few rows (ids repeat within and across bags), bags of 0-6 ids.
struct Lookup {
  FusedLookupPlan plan;
  FusedLookupInput input;
};

Lookup make_lookup(const std::vector<int64_t>& dims, int64_t keys, int64_t batch, torch::ScalarType dtype,
                   PoolingType pooling, bool weighted, torch::ScalarType id_type, uint64_t seed,
                   int64_t max_bag = 6) {
  torch::manual_seed(seed);
  Lookup l;
  std::vector<int64_t> rows;
  for (size_t t = 0; t < dims.size(); ++t) {
    rows.push_back(7 + 11 * static_cast<int64_t>(t));
    l.plan.tables.push_back((torch::randn({rows.back(), dims[t]}) * 0.1).to(dtype));
    l.plan.pooling.push_back(pooling);
  }
  const torch::Tensor lengths = torch::randint(0, max_bag + 1, {keys * batch}, torch::kLong);
  std::vector<torch::Tensor> ids;
  std::vector<int64_t> offset_per_key{0};
  for (int64_t k = 0; k < keys; ++k) {
    const int64_t t = k % static_cast<int64_t>(dims.size());
    const int64_t n = lengths.slice(0, k * batch, (k + 1) * batch).sum().item<int64_t>();
    ids.push_back(torch::randint(0, rows[t], {n}, torch::kLong));
    offset_per_key.push_back(offset_per_key.back() + n);
    l.plan.slots.push_back({t, k, l.plan.output_dim});
    l.plan.output_dim += dims[t];
  }
  l.input.ids = torch::cat(ids).to(id_type);
  l.input.offsets = torch::cat({torch::zeros({1}, torch::kLong), lengths.cumsum(0)});
  if (weighted) l.input.per_sample_weights = torch::rand({l.input.ids.numel()}) + 0.5;
  l.input.batch_size = batch;
  l.input.offset_per_key = offset_per_key;
  return l;
}

Lookup to_cuda(const Lookup& cpu) {
  Lookup g = cpu;
  for (auto& w : g.plan.tables) w = w.to(kCuda);
  g.input.ids = cpu.input.ids.to(kCuda);
  g.input.offsets = cpu.input.offsets.to(kCuda);
  if (cpu.input.per_sample_weights.defined()) g.input.per_sample_weights = cpu.input.per_sample_weights.to(kCuda);
  return g;
}

optim::OptimizerOptions optimizer(const std::string& type) {
  optim::OptimizerOptions o;
  o.type(type);
  o.lr(0.05);
  o.weight_decay(0.01);
  return o;
}

/// Float tolerance of a storage dtype: the two paths may round a stored row
/// to neighbouring values of that dtype.
double tolerance(torch::ScalarType dtype) {
  return dtype == torch::kFloat ? 1e-5 : dtype == torch::kHalf ? 2e-3 : 1.6e-2;
}

void expect_close(const torch::Tensor& cpu, const torch::Tensor& gpu, double tol, const std::string& what) {
  const torch::Tensor a = cpu.to(torch::kFloat), b = gpu.cpu().to(torch::kFloat);
  EXPECT_TRUE(torch::allclose(a, b, tol, tol)) << what << ": max diff " << (a - b).abs().max().item<double>();
}

TEST(CudaTbe, ForwardAndFusedUpdateMatchTheCpuKernel) {
  REQUIRE_CUDA();
  ASSERT_TRUE(cuda::tbe_available()) << "a CUDA device but no CUDA kernels in this build";
  const std::vector<std::vector<int64_t>> widths = {
      {16, 64, 8},  // 16-byte loads, one pass
      {3, 16, 5},   // scalar loads
      {300, 128},   // 16-byte loads, three passes of a warp
      {260, 7},     // scalar rows wider than the kernels take: the tensor-op fallback
  };
  int cases = 0;
  for (auto dtype : {torch::kFloat, torch::kHalf, torch::kBFloat16})
    for (const auto& dims : widths)
      for (int mode = 0; mode < 3; ++mode)
        for (auto id_type : {torch::kLong, torch::kInt})
          for (const std::string type : {"sgd", "adagrad", "rowwise_adagrad"}) {
            const bool weighted = mode == 2;
            const PoolingType pooling = mode == 1 ? PoolingType::MEAN : PoolingType::SUM;
            const std::string what = std::string(c10::toString(dtype)) + " dims " + c10::str(c10::IntArrayRef(dims)) +
                                     (weighted ? " weighted" : mode == 1 ? " mean" : " sum") + " " +
                                     c10::toString(id_type) + " " + type;
            SCOPED_TRACE(what);
            Lookup cpu = make_lookup(dims, static_cast<int64_t>(dims.size()) + 1, 33, dtype, pooling, weighted,
                                     id_type, 100 + cases++);
            Lookup gpu = to_cuda(cpu);
            FusedEmbeddingOptimizer opt_cpu(cpu.plan.tables, optimizer(type));
            FusedEmbeddingOptimizer opt_gpu(gpu.plan.tables, optimizer(type));
            const double tol = tolerance(dtype);
            for (int step = 0; step < 3; ++step) {
              const torch::Tensor out_cpu = fused_pooled_forward(cpu.plan, cpu.input);
              const torch::Tensor out_gpu = fused_pooled_forward(gpu.plan, gpu.input);
              ASSERT_TRUE(out_gpu.is_cuda());
              expect_close(out_cpu, out_gpu, tol, "forward step " + std::to_string(step));
              const torch::Tensor grad = torch::randn(out_cpu.sizes());
              const torch::Tensor wg_cpu = fused_backward_update(cpu.plan, cpu.input, grad, opt_cpu, weighted);
              const torch::Tensor wg_gpu = fused_backward_update(gpu.plan, gpu.input, grad.to(kCuda), opt_gpu, weighted);
              // Step 0 reads the same rows on both sides; later steps read
              // rows that may differ by one unit of a 16-bit storage type.
              const double wg_tol = step == 0 || dtype == torch::kFloat ? 1e-4 : 20 * tol;
              if (weighted) expect_close(wg_cpu, wg_gpu, wg_tol, "per-sample weight gradient");
            }
            for (size_t t = 0; t < dims.size(); ++t) {
              expect_close(cpu.plan.tables[t], gpu.plan.tables[t], tol, "table " + std::to_string(t));
              if (opt_cpu.states()[t].defined())
                expect_close(opt_cpu.states()[t], opt_gpu.states()[t], 1e-4, "state " + std::to_string(t));
            }
            check_fused_lookup_errors(kCuda);  // no id was out of range
          }
}

/// fp16 / bf16 tables with stochastic_rounding: the kernels round each
/// updated row with the CPU kernel's bits (seed, step, global row, global
/// column) and its arithmetic, so after several steps every table and state
/// is bit-identical to the CPU kernel's, shard offsets included (table 0 at
/// row 1000, column 4; the last table at row 5, column 3, which is not a
/// multiple of the 4 columns of a hash); table 1 rounds to nearest.
TEST(CudaTbe, StochasticRoundingIsBitIdenticalToTheCpuKernel) {
  REQUIRE_CUDA();
  ASSERT_TRUE(cuda::tbe_available()) << "a CUDA device but no CUDA kernels in this build";
  const std::vector<std::vector<int64_t>> widths = {
      {16, 64, 8},  // 16-byte loads, one pass
      {3, 16, 5},   // scalar loads
      {300, 128},   // 16-byte loads, three passes of a warp
  };
  int cases = 0;
  for (auto dtype : {torch::kHalf, torch::kBFloat16})
    for (const auto& dims : widths)
      for (int mode = 0; mode < 3; ++mode)
        for (const std::string type : {"sgd", "adagrad", "rowwise_adagrad"}) {
          const bool weighted = mode == 2;
          const PoolingType pooling = mode == 1 ? PoolingType::MEAN : PoolingType::SUM;
          const auto id_type = cases % 2 == 0 ? torch::kLong : torch::kInt;
          const std::string what = std::string(c10::toString(dtype)) + " dims " + c10::str(c10::IntArrayRef(dims)) +
                                   (weighted ? " weighted" : mode == 1 ? " mean" : " sum") + " " +
                                   c10::toString(id_type) + " " + type;
          SCOPED_TRACE(what);
          Lookup cpu = make_lookup(dims, static_cast<int64_t>(dims.size()) + 1, 33, dtype, pooling, weighted, id_type,
                                   500 + cases++);
          Lookup gpu = to_cuda(cpu), nearest = to_cuda(cpu);
          const size_t n = dims.size();
          std::vector<bool> stochastic(n, true);
          stochastic[1] = false;
          std::vector<optim::ShardOffsets> offsets(n);
          offsets[0] = {1000, 4};
          offsets[n - 1] = {5, 3};
          FusedEmbeddingOptimizer opt_cpu(cpu.plan.tables, optimizer(type), stochastic, offsets);
          FusedEmbeddingOptimizer opt_gpu(gpu.plan.tables, optimizer(type), stochastic, offsets);
          FusedEmbeddingOptimizer opt_nearest(nearest.plan.tables, optimizer(type));
          ASSERT_TRUE(opt_cpu.rounding_state().defined());
          opt_gpu.rounding_state() = optim::RoundingState::given(opt_cpu.rounding_state().seed(), 0);
          for (int step = 0; step < 3; ++step) {
            const torch::Tensor grad = torch::randn({33, cpu.plan.output_dim});
            fused_backward_update(cpu.plan, cpu.input, grad, opt_cpu, false);
            fused_backward_update(gpu.plan, gpu.input, grad.to(kCuda), opt_gpu, false);
            fused_backward_update(nearest.plan, nearest.input, grad.to(kCuda), opt_nearest, false);
          }
          EXPECT_EQ(opt_gpu.rounding_state().step(), 3u);
          for (size_t t = 0; t < n; ++t) {
            const torch::Tensor got = gpu.plan.tables[t].cpu();
            EXPECT_TRUE(torch::equal(cpu.plan.tables[t], got))
                << "table " << t << ": " << (cpu.plan.tables[t] != got).sum().item<int64_t>() << " of "
                << got.numel() << " values differ, max diff "
                << (cpu.plan.tables[t].to(torch::kFloat) - got.to(torch::kFloat)).abs().max().item<double>();
            if (opt_cpu.states()[t].defined()) {
              EXPECT_TRUE(torch::equal(opt_cpu.states()[t], opt_gpu.states()[t].cpu())) << "state " << t;
            }
          }
          // The rounding is in effect: rounding to nearest stores other values.
          EXPECT_FALSE(torch::equal(gpu.plan.tables[0], nearest.plan.tables[0]));
          check_fused_lookup_errors(kCuda);
        }
}

/// Sets the forward variant for a scope (the process-wide setting is restored).
struct ForwardVariant {
  explicit ForwardVariant(cuda::TbeForward v) : saved(cuda::tbe_forward_variant()) { cuda::tbe_set_forward_variant(v); }
  ~ForwardVariant() { cuda::tbe_set_forward_variant(saved); }
  cuda::TbeForward saved;
};

/// Every forward variant against the CPU kernel: unrolled adds the same
/// products in the same order as the CPU kernel (bit-identical for every
/// dtype, pooling and weighting); baseline and split (a bag's ids split over
/// up to 8 groups here, partial sums added as a tree) within float
/// tolerance. Bags of 0-40 ids (several rounds of 8 rows in flight, and
/// tails); an out-of-range id is reported by each variant.
TEST(CudaTbe, EveryForwardVariantMatchesTheCpuKernel) {
  REQUIRE_CUDA();
  ASSERT_TRUE(cuda::tbe_available()) << "a CUDA device but no CUDA kernels in this build";
  const std::vector<std::vector<int64_t>> widths = {
      {16, 64, 8},  // 16-byte loads, groups of 16: split in 2
      {16, 8},      // 16-byte loads, groups of 4: split in 8
      {3, 16, 5},   // scalar loads, groups of 16
      {3, 5},       // scalar loads, groups of 8: split in 4
      {300, 128},   // three passes of a warp: not split
  };
  for (auto variant : {cuda::TbeForward::baseline, cuda::TbeForward::unrolled, cuda::TbeForward::split}) {
    ForwardVariant scoped(variant);
    int cases = 0;
    for (auto dtype : {torch::kFloat, torch::kHalf, torch::kBFloat16})
      for (const auto& dims : widths)
        for (int mode = 0; mode < 3; ++mode) {
          const bool weighted = mode == 2;
          const PoolingType pooling = mode == 1 ? PoolingType::MEAN : PoolingType::SUM;
          const auto id_type = cases % 2 == 0 ? torch::kLong : torch::kInt;
          const std::string what = std::string(cuda::tbe_forward_variant_name(variant)) + " " +
                                   c10::toString(dtype) + " dims " + c10::str(c10::IntArrayRef(dims)) +
                                   (weighted ? " weighted" : mode == 1 ? " mean" : " sum") + " " +
                                   c10::toString(id_type);
          SCOPED_TRACE(what);
          const Lookup cpu = make_lookup(dims, static_cast<int64_t>(dims.size()) + 1, 37, dtype, pooling, weighted,
                                         id_type, 900 + cases++, /*max_bag=*/40);
          const Lookup gpu = to_cuda(cpu);
          const torch::Tensor out_cpu = fused_pooled_forward(cpu.plan, cpu.input);
          const torch::Tensor out_gpu = fused_pooled_forward(gpu.plan, gpu.input).cpu();
          if (variant == cuda::TbeForward::unrolled) {
            EXPECT_TRUE(torch::equal(out_cpu, out_gpu))
                << "max diff " << (out_cpu - out_gpu).abs().max().item<double>();
          } else {
            expect_close(out_cpu, out_gpu, 1e-5, "forward");
          }
        }
    Lookup bad = to_cuda(make_lookup({16, 64}, 3, 40, torch::kFloat, PoolingType::SUM, false, torch::kLong, 9, 40));
    ASSERT_GT(bad.input.ids.numel(), 30);
    bad.input.ids = bad.input.ids.clone();
    bad.input.ids[29] = -3;
    fused_pooled_forward(bad.plan, bad.input);
    const std::string error = test::error_of<InputError>([&] { check_fused_lookup_errors(kCuda); });
    EXPECT_THAT(error, HasSubstr("id -3 (input key 0, position 29)"))
        << cuda::tbe_forward_variant_name(variant);
  }
}

/// Many ids of few rows (every row's gradient sums hundreds of terms): two
/// runs from the same state give bitwise the same tables.
TEST(CudaTbe, TheUpdateIsDeterministic) {
  REQUIRE_CUDA();
  std::vector<torch::Tensor> results;
  for (int run = 0; run < 2; ++run) {
    Lookup l = to_cuda(make_lookup({64}, 2, 2048, torch::kFloat, PoolingType::SUM, false, torch::kLong, 7));
    FusedEmbeddingOptimizer opt(l.plan.tables, optimizer("rowwise_adagrad"));
    torch::manual_seed(3);
    const torch::Tensor grad = torch::randn({2048, l.plan.output_dim}).to(kCuda);
    fused_backward_update(l.plan, l.input, grad, opt, false);
    results.push_back(l.plan.tables[0].cpu());
  }
  EXPECT_TRUE(torch::equal(results[0], results[1]));
}

/// The GPU does not stop at an id outside its table: the id contributes
/// nothing, and the error names it once the device is checked.
TEST(CudaTbe, AnOutOfRangeIdIsReportedAfterwards) {
  REQUIRE_CUDA();
  Lookup l = to_cuda(make_lookup({8}, 1, 4, torch::kFloat, PoolingType::SUM, false, torch::kLong, 9));
  ASSERT_GT(l.input.ids.numel(), 0);
  l.input.ids = l.input.ids.clone();
  l.input.ids[0] = 1000;
  const torch::Tensor out = fused_pooled_forward(l.plan, l.input);
  const std::string error = test::error_of<InputError>([&] { check_fused_lookup_errors(kCuda); });
  EXPECT_THAT(error, HasSubstr("id 1000"));
  EXPECT_THAT(error, HasSubstr("out of range for table 0"));
  // Reported once; the next lookup runs.
  EXPECT_EQ(test::error_of<InputError>([&] { check_fused_lookup_errors(kCuda); }), "no error");
  l.input.ids[0] = 0;
  fused_pooled_forward(l.plan, l.input);
  check_fused_lookup_errors(kCuda);
}

/// The process-wide forward variant (any build): set, read back, named.
TEST(CudaTbe, TheForwardVariantIsSetAndNamed) {
  for (auto v : {cuda::TbeForward::split, cuda::TbeForward::unrolled, cuda::TbeForward::baseline}) {
    ForwardVariant scoped(v);
    EXPECT_EQ(cuda::tbe_forward_variant(), v);
  }
  EXPECT_STREQ(cuda::tbe_forward_variant_name(cuda::TbeForward::baseline), "baseline");
  EXPECT_STREQ(cuda::tbe_forward_variant_name(cuda::TbeForward::unrolled), "unrolled");
  EXPECT_STREQ(cuda::tbe_forward_variant_name(cuda::TbeForward::split), "split");
}

TEST(CudaTbe, TheCpuBuildSaysTheKernelsAreAbsent) {
  EXPECT_TRUE(fused_lookup_has_kernel(torch::kCPU));
  if (cuda::tbe_available()) GTEST_SKIP() << "this build has the CUDA kernels";
  EXPECT_FALSE(fused_lookup_has_kernel(kCuda));
  EXPECT_THAT(test::error_of<UsageError>([] { cuda::tbe_forward(cuda::TbeLaunch{}, nullptr); }),
              HasSubstr("no CUDA embedding kernels"));
}

}  // namespace tbe_test
}  // namespace recmod
