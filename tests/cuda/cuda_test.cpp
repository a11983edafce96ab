// CUDA parity: every module family, the sparse types, both embedding
// training paths and the CLI give on a CUDA device what they give on the CPU.
// Each test skips where no CUDA device is present (Debian's libtorch is
// CPU-only); scripts/gpu-check runs them on a GPU machine.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/run_recmod.h"
#include "recmod/conformance/runner.h"
#include "recmod/mc/mc_modules.h"
#include "recmod/modules/embedding_modules.h"
#include "recmod/sparse/keyed_jagged_tensor.h"
#include "recmod/optim/model_optimizer.h"
#include "support/embedding_batches.h"

namespace recmod {
namespace cuda_test {

using ::testing::HasSubstr;

#define REQUIRE_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"

const torch::Device kCuda(torch::kCUDA);

/// Every golden case (TorchRec's recorded outputs, gradients and SGD step)
/// replayed with the module and its inputs on the GPU.
TEST(Cuda, EveryGoldenCasePassesOnCuda) {
  REQUIRE_CUDA();
  const auto files = conformance::collect_case_files({RECMOD_GOLDEN_DIR});
  ASSERT_FALSE(files.empty()) << "no golden cases in " << RECMOD_GOLDEN_DIR;
  std::ostringstream out;
  const auto summary = conformance::run_conformance(files, out, kCuda);
  EXPECT_EQ(summary.failed, 0) << out.str();
  EXPECT_EQ(summary.passed, static_cast<int>(files.size()));
}

std::vector<EmbeddingBagConfig> tables(bool weighted) { return test::three_tables(weighted); }

KeyedJaggedTensor batch(int64_t b, uint64_t seed, bool weighted) { return test::three_table_batch(b, seed, weighted); }

torch::Tensor loss_of(const torch::Tensor& out, int64_t step) {
  torch::manual_seed(1000 + step);
  const torch::Tensor target = torch::randn(out.sizes()).to(out.device());
  return (out * target).sum() + 0.5 * out.square().sum();
}

std::pair<EmbeddingBagCollection, EmbeddingBagCollection> cpu_and_cuda(bool weighted) {
  torch::manual_seed(7);
  EmbeddingBagCollection cpu(tables(weighted), weighted);
  EmbeddingBagCollection gpu(tables(weighted), weighted);
  {
    torch::NoGradGuard no_grad;
    for (const auto& t : cpu->embedding_bag_configs()) gpu->table_weight(t.name).copy_(cpu->table_weight(t.name));
  }
  gpu->to(kCuda);
  return {cpu, gpu};
}

void expect_tables_close(EmbeddingBagCollection& cpu, EmbeddingBagCollection& gpu, const std::string& what) {
  for (const auto& t : cpu->embedding_bag_configs()) {
    const torch::Tensor a = cpu->table_weight(t.name), b = gpu->table_weight(t.name).cpu();
    EXPECT_TRUE(torch::allclose(a, b, 1e-5, 1e-6))
        << what << " " << t.name << " max diff " << (a - b).abs().max().item<double>();
  }
}

optim::OptimizerOptions opts(const std::string& type, double lr, double weight_decay) {
  return test::optimizer_options(type, lr, weight_decay);
}

/// The fused path on CUDA runs its tensor-op version of the update; it must
/// match the CPU kernel step for step, for every optimizer.
TEST(Cuda, FusedEmbeddingTrainingMatchesCpu) {
  REQUIRE_CUDA();
  for (const char* type : {"sgd", "adagrad", "rowwise_adagrad"}) {
    for (bool weighted : {false, true}) {
      auto [cpu, gpu] = cpu_and_cuda(weighted);
      cpu->enable_fused_optimizer(opts(type, 0.05, 0.01));
      gpu->enable_fused_optimizer(opts(type, 0.05, 0.01));
      for (int step = 0; step < 4; ++step) {
        const KeyedJaggedTensor kjt = batch(64, 300 + step, weighted);
        const KeyedTensor out_cpu = cpu->forward(kjt);
        const KeyedTensor out_gpu = gpu->forward(kjt.to(kCuda));
        ASSERT_TRUE(out_gpu.values().is_cuda());
        EXPECT_TRUE(torch::allclose(out_cpu.values(), out_gpu.values().cpu(), 1e-5, 1e-6)) << type << " step " << step;
        loss_of(out_cpu.values(), step).backward();
        loss_of(out_gpu.values(), step).backward();
      }
      expect_tables_close(cpu, gpu, std::string(type) + (weighted ? " weighted" : ""));
      const StateDict s_cpu = cpu->fused_optimizer_state_dict(), s_gpu = gpu->fused_optimizer_state_dict();
      ASSERT_EQ(s_cpu.size(), s_gpu.size()) << type;
      for (size_t i = 0; i < s_cpu.size(); ++i) {
        EXPECT_EQ(s_cpu[i].first, s_gpu[i].first);
        EXPECT_TRUE(s_gpu[i].second.is_cuda()) << s_gpu[i].first;
        EXPECT_TRUE(torch::allclose(s_cpu[i].second, s_gpu[i].second.cpu(), 1e-5, 1e-6)) << s_cpu[i].first;
      }
    }
  }
}

/// The default path: autograd gradients (dense and sparse) and ModelOptimizer's
/// row-sparse update on the GPU.
TEST(Cuda, AutogradEmbeddingTrainingMatchesCpu) {
  REQUIRE_CUDA();
  for (bool sparse : {false, true}) {
    auto [cpu, gpu] = cpu_and_cuda(/*weighted=*/false);
    cpu->set_sparse(sparse);
    gpu->set_sparse(sparse);
    std::vector<std::pair<std::string, torch::Tensor>> p_cpu, p_gpu;
    for (const auto& t : cpu->embedding_bag_configs()) {
      p_cpu.emplace_back("embedding_bags." + t.name + ".weight", cpu->table_weight(t.name));
      p_gpu.emplace_back("embedding_bags." + t.name + ".weight", gpu->table_weight(t.name));
    }
    const auto o = opts("rowwise_adagrad", 0.1, 0.01);
    optim::ModelOptimizer opt_cpu({}, opts("sgd", 0.1, 0), p_cpu, o);
    optim::ModelOptimizer opt_gpu({}, opts("sgd", 0.1, 0), p_gpu, o);
    for (int step = 0; step < 3; ++step) {
      const KeyedJaggedTensor kjt = batch(48, 500 + step, false);
      opt_cpu.zero_grad();
      opt_gpu.zero_grad();
      loss_of(cpu->forward(kjt).values(), step).backward();
      loss_of(gpu->forward(kjt.to(kCuda)).values(), step).backward();
      EXPECT_EQ(gpu->table_weight("t_sum").grad().is_sparse(), sparse);
      opt_cpu.step();
      opt_gpu.step();
    }
    expect_tables_close(cpu, gpu, sparse ? "sparse grads" : "dense grads");
  }
}

TEST(Cuda, EmbeddingCollectionMatchesCpu) {
  REQUIRE_CUDA();
  torch::manual_seed(3);
  EmbeddingCollection cpu({EmbeddingConfig(50, 4, "t1", {"a", "shared"}), EmbeddingConfig(20, 4, "t2", {"c", "shared"})},
                          /*need_indices=*/true);
  EmbeddingCollection gpu({EmbeddingConfig(50, 4, "t1", {"a", "shared"}), EmbeddingConfig(20, 4, "t2", {"c", "shared"})},
                          /*need_indices=*/true);
  {
    torch::NoGradGuard no_grad;
    for (const char* t : {"t1", "t2"}) gpu->table_weight(t).copy_(cpu->table_weight(t));
  }
  gpu->to(kCuda);
  const KeyedJaggedTensor kjt = batch(16, 9, false).select({"a", "c", "shared"});
  const auto out_cpu = cpu->forward(kjt);
  const auto out_gpu = gpu->forward(kjt.to(kCuda));
  ASSERT_EQ(out_cpu.size(), out_gpu.size());
  torch::Tensor loss_cpu = torch::zeros({}), loss_gpu = torch::zeros({}, kCuda);
  for (size_t i = 0; i < out_cpu.size(); ++i) {
    EXPECT_EQ(out_cpu[i].first, out_gpu[i].first);
    EXPECT_TRUE(out_gpu[i].second.values().is_cuda());
    EXPECT_TRUE(torch::equal(out_cpu[i].second.lengths(), out_gpu[i].second.lengths().cpu()));
    EXPECT_TRUE(torch::allclose(out_cpu[i].second.values(), out_gpu[i].second.values().cpu()));
    EXPECT_TRUE(torch::equal(out_cpu[i].second.weights(), out_gpu[i].second.weights().cpu()));  // the indices
    loss_cpu = loss_cpu + loss_of(out_cpu[i].second.values(), static_cast<int64_t>(i));
    loss_gpu = loss_gpu + loss_of(out_gpu[i].second.values(), static_cast<int64_t>(i));
  }
  loss_cpu.backward();
  loss_gpu.backward();
  for (const char* t : {"t1", "t2"})
    EXPECT_TRUE(torch::allclose(cpu->table_weight(t).grad(), gpu->table_weight(t).grad().cpu(), 1e-5, 1e-6)) << t;
}

TEST(Cuda, KeyedJaggedTensorOpsMatchCpu) {
  REQUIRE_CUDA();
  const KeyedJaggedTensor cpu = batch(8, 21, /*weighted=*/true);
  const KeyedJaggedTensor gpu = cpu.to(kCuda);
  ASSERT_TRUE(gpu.values().is_cuda());
  ASSERT_TRUE(gpu.lengths().is_cuda());
  const auto same = [](const KeyedJaggedTensor& a, const KeyedJaggedTensor& b) {
    EXPECT_EQ(a.keys(), b.keys());
    EXPECT_TRUE(torch::equal(a.values(), b.values().cpu()));
    EXPECT_TRUE(torch::equal(a.lengths(), b.lengths().cpu()));
    EXPECT_TRUE(torch::equal(a.offsets(), b.offsets().cpu()));
    EXPECT_TRUE(torch::equal(a.weights(), b.weights().cpu()));
  };
  same(cpu.permute({4, 2, 0, 3, 1}), gpu.permute({4, 2, 0, 3, 1}));
  same(cpu.select({"c", "a"}), gpu.select({"c", "a"}));
  const auto split_cpu = cpu.split({2, 0, 3}), split_gpu = gpu.split({2, 0, 3});
  ASSERT_EQ(split_cpu.size(), split_gpu.size());
  for (size_t i = 0; i < split_cpu.size(); ++i) same(split_cpu[i], split_gpu[i]);
  same(KeyedJaggedTensor::concat(split_cpu), KeyedJaggedTensor::concat(split_gpu));
  const auto jt_cpu = cpu.to_dict(), jt_gpu = gpu.to_dict();
  ASSERT_EQ(jt_cpu.size(), jt_gpu.size());
  for (size_t i = 0; i < jt_cpu.size(); ++i) {
    EXPECT_TRUE(torch::equal(jt_cpu[i].second.values(), jt_gpu[i].second.values().cpu()));
    EXPECT_TRUE(torch::equal(jt_cpu[i].second.weights(), jt_gpu[i].second.weights().cpu()));
  }
}

/// Managed-collision remapping and eviction run as tensor ops on the
/// module's device: on CUDA they remap, evict and keep their state exactly
/// as on the CPU (integer work: equal, not close).
TEST(Cuda, ManagedCollisionRemapAndEvictionMatchCpu) {
  REQUIRE_CUDA();
  for (const bool use_lru : {false, true}) {
    SCOPED_TRACE(use_lru ? "LRU" : "LFU");
    const auto make = [&](torch::Device device) {
      std::shared_ptr<MCHEvictionPolicy> policy;
      if (use_lru)
        policy = std::make_shared<LRU_EvictionPolicy>();
      else
        policy = std::make_shared<LFU_EvictionPolicy>();
      return MCHManagedCollisionModule(MCHManagedCollisionModuleOptions(64, policy, 3).device(device));
    };
    MCHManagedCollisionModule cpu = make(torch::kCPU), gpu = make(kCuda);
    cpu->train();
    gpu->train();
    for (int step = 0; step < 20; ++step) {
      torch::manual_seed(40 + step);
      // Skewed ids: many repeats of few, some of many.
      const torch::Tensor ids = (torch::rand({200}).pow(3) * 500).to(torch::kLong);
      const torch::Tensor lengths = torch::full({20}, 10, torch::kLong);
      const JtDict in_cpu{{"f", JaggedTensor::from_lengths(ids, lengths)}};
      const JtDict in_gpu{{"f", JaggedTensor::from_lengths(ids.to(kCuda), lengths.to(kCuda))}};
      const JtDict out_cpu = cpu->forward(in_cpu), out_gpu = gpu->forward(in_gpu);
      ASSERT_TRUE(out_gpu.front().second.values().is_cuda());
      EXPECT_TRUE(torch::equal(out_cpu.front().second.values(), out_gpu.front().second.values().cpu())) << step;
      const auto ev_cpu = cpu->evict(), ev_gpu = gpu->evict();
      ASSERT_EQ(ev_cpu.has_value(), ev_gpu.has_value()) << step;
      if (ev_cpu) {
        EXPECT_TRUE(torch::equal(*ev_cpu, ev_gpu->cpu())) << step;
      }
    }
    const StateDict s_cpu = state_dict(*cpu), s_gpu = state_dict(*gpu);
    ASSERT_EQ(s_cpu.size(), s_gpu.size());
    for (size_t i = 0; i < s_cpu.size(); ++i)
      EXPECT_TRUE(torch::equal(s_cpu[i].second, s_gpu[i].second.cpu())) << s_cpu[i].first;
  }
}

// ---- the CLI on a GPU ----

const std::string kModel = recmod::testing::tiny_model_yaml("{type: adagrad, lr: 0.05}", /*epochs=*/1);

double final_loss(const std::string& run) {
  std::ifstream in(run + "/metrics.jsonl");
  std::string line, last;
  while (std::getline(in, line))
    if (line.find("\"loss\"") != std::string::npos) last = line;
  EXPECT_FALSE(last.empty()) << "no loss in " << run << "/metrics.jsonl";
  return last.empty() ? 0.0 : nlohmann::json::parse(last)["loss"].get<double>();
}

/// `recmod train --device cuda` learns what the CPU run learns (same seed,
/// same data: the losses agree to float tolerance), its checkpoint evaluates
/// on the CPU, and `recmod profile --device cuda` reports the modules.
TEST(Cuda, TrainOnCudaMatchesCpuAndItsCheckpointEvaluatesOnCpu) {
  REQUIRE_CUDA();
  using recmod::testing::run_recmod;
  const std::string dir = recmod::testing::fresh_dir("cuda_train");
  const std::string config = recmod::testing::write_file(dir + "/m.yaml", kModel);
  ASSERT_EQ(run_recmod("generate --rows 2000 --dense 2 --sparse 3 --cardinality 50 --seed 5 --out " + dir + "/d.rmb")
                .exit_code,
            0);
  auto gpu = run_recmod("train " + config + " --data " + dir + "/d.rmb --out " + dir + "/gpu --device cuda");
  ASSERT_EQ(gpu.exit_code, 0) << gpu.output;
  auto cpu = run_recmod("train " + config + " --data " + dir + "/d.rmb --out " + dir + "/cpu --device cpu --threads 1");
  ASSERT_EQ(cpu.exit_code, 0) << cpu.output;
  EXPECT_NEAR(final_loss(dir + "/gpu"), final_loss(dir + "/cpu"), 1e-4);

  auto eval = run_recmod("eval " + config + " --checkpoint " + dir + "/gpu/model.pt --data " + dir +
                         "/d.rmb --device cpu --json");
  ASSERT_EQ(eval.exit_code, 0) << eval.output;
  auto eval_gpu = run_recmod("eval " + config + " --checkpoint " + dir + "/cpu/model.pt --data " + dir +
                             "/d.rmb --device cuda --json");
  ASSERT_EQ(eval_gpu.exit_code, 0) << eval_gpu.output;
  const auto m_cpu = nlohmann::json::parse(eval.output.substr(eval.output.rfind('{')));
  const auto m_gpu = nlohmann::json::parse(eval_gpu.output.substr(eval_gpu.output.rfind('{')));
  EXPECT_NEAR(m_cpu["auc"].get<double>(), m_gpu["auc"].get<double>(), 2e-3);

  auto profile = run_recmod("profile " + config + " --synthetic --device cuda --batch-size 256 --steps 3 --warmup 1 --trace ''");
  ASSERT_EQ(profile.exit_code, 0) << profile.output;
  EXPECT_THAT(profile.output, HasSubstr("sparse_arch"));
}

}  // namespace cuda_test
}  // namespace recmod
