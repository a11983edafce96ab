// The CUDA sequence lookup of an EmbeddingCollection (recmod/cuda/
// tbe_sequence.h, with tbe.h's fused update as its backward) against the
// CPU path (fused_embedding_collection.h's tensor ops, which train as
// autograd + the row-sparse optimizer; tests/modules checks that): forward
// rows, tables and optimizer state, for every storage dtype, id type, rule,
// 16-byte and scalar row loads, duplicate ids, a key two tables share and an
// empty key; then the EmbeddingCollection module trained on CUDA against the
// CPU. Skipped without a CUDA device; scripts/gpu-check runs them on a GPU.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/run_recmod.h"

#include "recmod/common/errors.h"
#include "recmod/cuda/tbe.h"
#include "recmod/modules/embedding_modules.h"
#include "recmod/modules/fused_embedding_collection.h"
#include "recmod/optim/model_optimizer.h"
#include "support/embedding_batches.h"

namespace recmod {
namespace tbe_sequence_test {

using ::testing::HasSubstr;

#define REQUIRE_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"

const torch::Device kCuda(torch::kCUDA, 0);

struct Sequence {
  SequenceLookupPlan plan;
  SequenceLookupInput input;
};

/// Two tables of `dim` columns (few rows: ids repeat), keys 0..3 in the KJT:
/// key 0 (table 1), key 1 empty (table 0), key 2 used by both tables, key 3
/// (table 0); slots in table order, so the ids of the slots are not
/// consecutive in the KJT.
Sequence make_sequence(int64_t dim, torch::ScalarType dtype, torch::ScalarType id_type, uint64_t seed) {
  torch::manual_seed(seed);
  Sequence s;
  s.plan.dim = dim;
  s.plan.tables = {(torch::randn({13, dim}) * 0.1).to(dtype), (torch::randn({9, dim}) * 0.1).to(dtype)};
  const std::vector<int64_t> lengths = {17, 0, 23, 30};
  std::vector<torch::Tensor> ids;
  s.input.offset_per_key = {0};
  for (int64_t n : lengths) {
    ids.push_back(torch::randint(0, 9, {n}, torch::kLong));
    s.input.offset_per_key.push_back(s.input.offset_per_key.back() + n);
  }
  s.input.ids = torch::cat(ids).to(id_type);
  s.plan.slots = {{0, 1, 0}, {0, 2, 0}, {0, 3, 0}, {1, 0, 0}, {1, 2, 0}};
  return s;
}

Sequence to_cuda(const Sequence& cpu) {
  Sequence g = cpu;
  for (auto& w : g.plan.tables) w = w.to(kCuda);
  g.input.ids = cpu.input.ids.to(kCuda);
  return g;
}

optim::OptimizerOptions optimizer(const std::string& type) { return test::optimizer_options(type, 0.05, 0.01); }

double tolerance(torch::ScalarType dtype) {
  return dtype == torch::kFloat ? 1e-5 : dtype == torch::kHalf ? 2e-3 : 1.6e-2;
}

void expect_close(const torch::Tensor& cpu, const torch::Tensor& gpu, double tol, const std::string& what) {
  const torch::Tensor a = cpu.to(torch::kFloat), b = gpu.cpu().to(torch::kFloat);
  EXPECT_TRUE(torch::allclose(a, b, tol, tol)) << what << ": max diff " << (a - b).abs().max().item<double>();
}

TEST(CudaTbe, SequenceForwardAndFusedUpdateMatchTheCpu) {
  REQUIRE_CUDA();
  ASSERT_TRUE(cuda::tbe_available()) << "a CUDA device but no CUDA kernels in this build";
  int cases = 0;
  for (auto dtype : {torch::kFloat, torch::kHalf, torch::kBFloat16})
    for (int64_t dim : {8, 6, 200})  // 16-byte loads, scalar loads, two passes of a warp
      for (auto id_type : {torch::kLong, torch::kInt})
        for (const std::string type : {"sgd", "adagrad", "rowwise_adagrad"}) {
          const std::string what = std::string(c10::toString(dtype)) + " dim " + std::to_string(dim) + " " +
                                   c10::toString(id_type) + " " + type;
          SCOPED_TRACE(what);
          Sequence cpu = make_sequence(dim, dtype, id_type, 700 + cases++);
          Sequence gpu = to_cuda(cpu);
          ASSERT_TRUE(sequence_kernel_applies(gpu.plan, gpu.input));
          FusedEmbeddingOptimizer opt_cpu(cpu.plan.tables, optimizer(type));
          FusedEmbeddingOptimizer opt_gpu(gpu.plan.tables, optimizer(type));
          const double tol = tolerance(dtype);
          for (int step = 0; step < 3; ++step) {
            const torch::Tensor out_cpu = fused_sequence_forward(cpu.plan, cpu.input);
            const torch::Tensor out_gpu = fused_sequence_forward(gpu.plan, gpu.input);
            ASSERT_TRUE(out_gpu.is_cuda());
            ASSERT_EQ(out_cpu.sizes(), out_gpu.sizes());
            expect_close(out_cpu, out_gpu, tol, "forward step " + std::to_string(step));
            const torch::Tensor grad = torch::randn(out_cpu.sizes());
            fused_sequence_backward_update(cpu.plan, cpu.input, grad, opt_cpu);
            fused_sequence_backward_update(gpu.plan, gpu.input, grad.to(kCuda), opt_gpu);
          }
          for (size_t t = 0; t < 2; ++t) {
            expect_close(cpu.plan.tables[t], gpu.plan.tables[t], tol, "table " + std::to_string(t));
            if (opt_cpu.states()[t].defined())
              expect_close(opt_cpu.states()[t], opt_gpu.states()[t], 1e-4, "state " + std::to_string(t));
          }
          check_fused_sequence_errors(kCuda);  // no id was out of range
        }
}

/// The slots' ids already consecutive in the KJT (the common case: the
/// backward reads them in place) and every table's rows in one slot each.
TEST(CudaTbe, SequenceLookupOfConsecutiveKeysMatchesTheCpu) {
  REQUIRE_CUDA();
  Sequence cpu = make_sequence(16, torch::kFloat, torch::kLong, 3);
  cpu.plan.slots = {{1, 0, 0}, {0, 1, 0}, {0, 2, 0}};
  Sequence gpu = to_cuda(cpu);
  FusedEmbeddingOptimizer opt_cpu(cpu.plan.tables, optimizer("adagrad"));
  FusedEmbeddingOptimizer opt_gpu(gpu.plan.tables, optimizer("adagrad"));
  const torch::Tensor out_cpu = fused_sequence_forward(cpu.plan, cpu.input);
  expect_close(out_cpu, fused_sequence_forward(gpu.plan, gpu.input), 1e-6, "forward");
  const torch::Tensor grad = torch::randn(out_cpu.sizes());
  fused_sequence_backward_update(cpu.plan, cpu.input, grad, opt_cpu);
  fused_sequence_backward_update(gpu.plan, gpu.input, grad.to(kCuda), opt_gpu);
  for (size_t t = 0; t < 2; ++t) expect_close(cpu.plan.tables[t], gpu.plan.tables[t], 1e-5, "table");
}

TEST(CudaTbe, SequenceUpdateIsDeterministic) {
  REQUIRE_CUDA();
  const Sequence base = to_cuda(make_sequence(32, torch::kFloat, torch::kLong, 11));
  std::vector<torch::Tensor> results;
  for (int run = 0; run < 2; ++run) {
    Sequence s = base;
    for (auto& w : s.plan.tables) w = w.clone();
    FusedEmbeddingOptimizer opt(s.plan.tables, optimizer("rowwise_adagrad"));
    torch::manual_seed(1);
    const torch::Tensor grad = torch::randn({fused_sequence_forward(s.plan, s.input).size(0), 32}).to(kCuda);
    fused_sequence_backward_update(s.plan, s.input, grad, opt);
    results.push_back(torch::cat(s.plan.tables).cpu());
  }
  EXPECT_TRUE(torch::equal(results[0], results[1]));
}

TEST(CudaTbe, SequenceOutOfRangeIdIsReportedAfterwards) {
  REQUIRE_CUDA();
  Sequence s = to_cuda(make_sequence(8, torch::kFloat, torch::kLong, 5));
  s.input.ids = s.input.ids.clone();
  s.input.ids[20] = 12;  // key 2, in range for table 0 (13 rows), not table 1 (9)
  const torch::Tensor out = fused_sequence_forward(s.plan, s.input);
  // slots: key 1 (0 ids), key 2 (rows 0..22), key 3, key 0, key 2 for table 1 (rows 70..92)
  EXPECT_TRUE(torch::equal(out[70 + 3].cpu(), torch::zeros({8})));
  EXPECT_FALSE(torch::equal(out[3].cpu(), torch::zeros({8})));
  try {
    check_fused_sequence_errors(kCuda);
    ADD_FAILURE() << "no error";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("id 12"));
    EXPECT_THAT(e.what(), HasSubstr("table 1"));
  }
  check_fused_sequence_errors(kCuda);  // cleared
}

/// The EmbeddingCollection module: fused on CUDA (one kernel launch, the
/// update in backward) against autograd + ModelOptimizer's row-sparse
/// update on the CPU, over a few steps.
TEST(Cuda, FusedEmbeddingCollectionTrainsAsOnTheCpu) {
  REQUIRE_CUDA();
  for (const char* type : {"sgd", "adagrad", "rowwise_adagrad"}) {
    SCOPED_TRACE(type);
    torch::manual_seed(8);
    const std::vector<EmbeddingConfig> tables = {EmbeddingConfig(50, 8, "t1", {"a", "shared"}),
                                                 EmbeddingConfig(20, 8, "t2", {"c", "shared"})};
    EmbeddingCollection cpu(tables, /*need_indices=*/true);
    EmbeddingCollection gpu(tables, /*need_indices=*/true);
    std::vector<std::pair<std::string, torch::Tensor>> params;
    {
      torch::NoGradGuard no_grad;
      for (const char* t : {"t1", "t2"}) {
        gpu->table_weight(t).copy_(cpu->table_weight(t));
        params.emplace_back(std::string("embeddings.") + t + ".weight", cpu->table_weight(t));
      }
    }
    gpu->to(kCuda);
    const auto o = optimizer(type);
    gpu->enable_fused_optimizer(o);
    optim::ModelOptimizer opt({}, test::optimizer_options("sgd", 0.1), params, o);
    for (int step = 0; step < 3; ++step) {
      const KeyedJaggedTensor kjt = test::three_table_batch(16, 60 + step, false);
      opt.zero_grad();
      const auto out_cpu = cpu->forward(kjt);
      const auto out_gpu = gpu->forward(kjt.to(kCuda));
      ASSERT_EQ(out_cpu.size(), out_gpu.size());
      torch::Tensor loss_cpu = torch::zeros({}), loss_gpu = torch::zeros({}, kCuda);
      for (size_t i = 0; i < out_cpu.size(); ++i) {
        EXPECT_EQ(out_cpu[i].first, out_gpu[i].first);
        EXPECT_TRUE(torch::equal(out_cpu[i].second.weights(), out_gpu[i].second.weights().cpu()));
        expect_close(out_cpu[i].second.values(), out_gpu[i].second.values(), 1e-5, out_cpu[i].first);
        const torch::Tensor target = torch::linspace(-1, 1, out_cpu[i].second.values().numel());
        loss_cpu = loss_cpu + (out_cpu[i].second.values().reshape(-1) * target).sum();
        loss_gpu = loss_gpu + (out_gpu[i].second.values().reshape(-1) * target.to(kCuda)).sum();
      }
      loss_cpu.backward();
      loss_gpu.backward();
      opt.step();
    }
    for (const char* t : {"t1", "t2"}) {
      expect_close(cpu->table_weight(t), gpu->table_weight(t), 1e-5, t);
      EXPECT_FALSE(gpu->table_weight(t).grad().defined()) << "the fused path gives the tables no gradient";
    }
    const StateDict cpu_state = opt.state_dict();
    for (const auto& [key, value] : gpu->fused_optimizer_state_dict()) {
      const torch::Tensor* other = find_tensor(cpu_state, "embedding." + key);
      ASSERT_NE(other, nullptr) << key;
      expect_close(*other, value, 1e-5, key);
    }
    check_fused_sequence_errors(kCuda);
  }
}

/// An EmbeddingCollection model (a table serving two features, SequencePool
/// on top) trained by `recmod train --device cuda`, where its tables take
/// the fused kernels (training.fused_embeddings, on by default), against
/// the CPU run (autograd + the row-sparse optimizer): the same losses, and
/// the GPU checkpoint (same keys) evaluates on the CPU.
TEST(Cuda, TrainingAnEmbeddingCollectionModelOnCudaMatchesCpu) {
  REQUIRE_CUDA();
  using recmod::testing::run_recmod;
  const std::string dir = recmod::testing::fresh_dir("cuda_train_sequence");
  const std::string config = recmod::testing::write_file(dir + "/m.yaml", R"(features:
  dense: {count: 2}
  sparse: [C1, C2, C3]
nodes:
  seq_arch:
    type: EmbeddingCollection
    input: features.sparse
    tables:
      - {name: t1, num_embeddings: 50, embedding_dim: 4, feature_names: [C1, C3]}
      - {name: t2, num_embeddings: 50, embedding_dim: 4, feature_names: [C2]}
  pooled: {type: SequencePool, input: seq_arch, mode: mean}
  x0: {type: Concat, inputs: [features.dense, pooled]}
  logit: {type: Linear, input: x0, out_features: 1}
output: logit
training:
  dense_optimizer: {type: adagrad, lr: 0.05}
  embedding_optimizer: {type: rowwise_adagrad, lr: 0.1, weight_decay: 0.001}
  batch_size: 64
  epochs: 1
  seed: 3
  log_interval: 10
)");
  ASSERT_EQ(run_recmod("generate --rows 2000 --dense 2 --sparse 3 --cardinality 50 --seed 5 --out " + dir + "/d.rmb")
                .exit_code,
            0);
  auto gpu = run_recmod("train " + config + " --data " + dir + "/d.rmb --out " + dir + "/gpu --device cuda");
  ASSERT_EQ(gpu.exit_code, 0) << gpu.output;
  auto cpu = run_recmod("train " + config + " --data " + dir + "/d.rmb --out " + dir + "/cpu --device cpu --threads 1");
  ASSERT_EQ(cpu.exit_code, 0) << cpu.output;
  auto last_loss = [](const std::string& run) {
    std::ifstream in(run + "/metrics.jsonl");
    std::string line, last;
    while (std::getline(in, line))
      if (line.find("\"loss\"") != std::string::npos) last = line;
    EXPECT_FALSE(last.empty()) << "no loss in " << run;
    return last.empty() ? 0.0 : nlohmann::json::parse(last)["loss"].get<double>();
  };
  EXPECT_NEAR(last_loss(dir + "/gpu"), last_loss(dir + "/cpu"), 1e-4);
  auto eval = run_recmod("eval " + config + " --checkpoint " + dir + "/gpu/model.pt --data " + dir +
                         "/d.rmb --device cpu --json");
  ASSERT_EQ(eval.exit_code, 0) << eval.output;
}

}  // namespace tbe_sequence_test
}  // namespace recmod
