// The EmbeddingCollection's fused training path (fused_embedding_collection.h)
// on the CPU (its tensor-op implementation, which the CUDA kernels are
// compared with in tests/cuda): the output layout, and training that gives
// what autograd + the row-sparse optimizer give.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "recmod/common/errors.h"
#include "recmod/modules/embedding_modules.h"
#include "recmod/modules/fused_embedding_collection.h"
#include "recmod/optim/model_optimizer.h"
#include "support/embedding_batches.h"

namespace recmod {
namespace fused_embedding_collection_test {

TEST(FusedEmbeddingCollection, OutputRowsFollowTheSlotsInKjtOrderPerKey) {
  SequenceLookupPlan plan;
  plan.dim = 4;
  plan.tables = {torch::zeros({5, 4}), torch::zeros({3, 4})};
  // keys: 0 (3 ids), 1 (none), 2 (2 ids); key 0 used by both tables
  plan.slots = {{1, 2, 0}, {0, 0, 0}, {0, 1, 0}, {1, 0, 0}};
  SequenceLookupInput input{torch::tensor({0, 1, 2, 2, 0}, torch::kLong), {0, 3, 3, 5}};
  EXPECT_EQ(sequence_output_rows(plan, input), (std::vector<int64_t>{0, 2, 5, 5, 8}));
  for (int t = 0; t < 2; ++t) plan.tables[t] = torch::arange(plan.tables[t].size(0) * 4, torch::kFloat).view({-1, 4}) + 100 * t;
  const torch::Tensor out = fused_sequence_forward(plan, input);
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{8, 4}));
  const std::vector<std::pair<int64_t, int64_t>> expect = {{1, 2}, {1, 0}, {0, 0}, {0, 1}, {0, 2}, {1, 0}, {1, 1}, {1, 2}};
  for (size_t r = 0; r < expect.size(); ++r)
    EXPECT_TRUE(torch::equal(out[static_cast<int64_t>(r)], plan.tables[expect[r].first][expect[r].second])) << r;
  SequenceLookupInput bad{torch::tensor({0, 1, 7, 2, 0}, torch::kLong), {0, 3, 3, 5}};
  EXPECT_THROW(fused_sequence_forward(plan, bad), InputError);
}

std::vector<EmbeddingConfig> ec_tables(DataType dtype) {
  std::vector<EmbeddingConfig> t = {EmbeddingConfig(50, 8, "t1", {"a", "shared"}),
                                    EmbeddingConfig(20, 8, "t2", {"c", "shared"})};
  for (auto& c : t) c.data_type = dtype;
  return t;
}

torch::Tensor loss_of(const JaggedTensorDict& out) {
  torch::Tensor loss = torch::zeros({});
  for (size_t i = 0; i < out.size(); ++i) {
    const torch::Tensor& v = out[i].second.values();
    const torch::Tensor target = torch::linspace(-1, 1, v.numel()).view(v.sizes()) * static_cast<double>(i + 1);
    loss = loss + (v * target).sum() + 0.5 * v.pow(2).sum();
  }
  return loss;
}

/// Fused path vs autograd + ModelOptimizer's row-sparse update, for each
/// rule (with weight decay) and storage dtype: same outputs, same tables and
/// optimizer state after a few steps with duplicate ids.
TEST(FusedEmbeddingCollection, TrainsAsAutogradAndTheRowSparseOptimizer) {
  for (DataType dtype : {DataType::FP32, DataType::BF16}) {
    for (const char* type : {"sgd", "adagrad", "rowwise_adagrad"}) {
      torch::manual_seed(5);
      EmbeddingCollection fused(ec_tables(dtype), /*need_indices=*/true);
      EmbeddingCollection plain(ec_tables(dtype), /*need_indices=*/true);
      std::vector<std::pair<std::string, torch::Tensor>> params;
      {
        torch::NoGradGuard no_grad;
        for (const char* t : {"t1", "t2"}) {
          plain->table_weight(t).copy_(fused->table_weight(t));
          params.emplace_back(std::string("embeddings.") + t + ".weight", plain->table_weight(t));
        }
      }
      // bf16 tables: autograd's gradient is bf16 (rounded), the fused path's float32.
      const double tol = dtype == DataType::FP32 ? 1e-5 : 1e-2;
      const torch::Tensor initial = fused->table_weight("t1").to(torch::kFloat).clone();
      const auto o = test::optimizer_options(type, 0.05, 0.01);
      fused->enable_fused_optimizer(o);
      optim::ModelOptimizer opt({}, test::optimizer_options("sgd", 0.1), params, o);
      for (int step = 0; step < 3; ++step) {
        const KeyedJaggedTensor kjt = test::three_table_batch(12, 40 + step, false, step == 1 ? torch::kInt : torch::kLong);
        const auto out_f = fused->forward(kjt);
        opt.zero_grad();
        const auto out_p = plain->forward(kjt);
        ASSERT_EQ(out_f.size(), out_p.size());
        for (size_t i = 0; i < out_f.size(); ++i) {
          EXPECT_EQ(out_f[i].first, out_p[i].first);
          EXPECT_TRUE(torch::equal(out_f[i].second.lengths(), out_p[i].second.lengths()));
          EXPECT_TRUE(torch::equal(out_f[i].second.weights(), out_p[i].second.weights()));
          EXPECT_TRUE(torch::allclose(out_f[i].second.values(), out_p[i].second.values(), tol, tol))
              << type << " " << to_string(dtype) << " step " << step << " " << out_f[i].first;
        }
        loss_of(out_f).backward();
        loss_of(out_p).backward();
        opt.step();
        EXPECT_FALSE(fused->table_weight("t1").grad().defined());
      }
      for (const char* t : {"t1", "t2"}) {
        const torch::Tensor a = fused->table_weight(t).to(torch::kFloat), b = plain->table_weight(t).to(torch::kFloat);
        EXPECT_TRUE(torch::allclose(a, b, tol, tol)) << type << " " << t << " max diff " << (a - b).abs().max().item<float>();
      }
      EXPECT_FALSE(torch::allclose(fused->table_weight("t1").to(torch::kFloat), initial)) << "the table was updated";
      const StateDict s_f = fused->fused_optimizer_state_dict(), s_p = opt.state_dict();
      ASSERT_EQ(s_f.size(), std::string(type) == "sgd" ? 0u : 2u) << type;
      for (const auto& [key, value] : s_f) {
        const torch::Tensor* other = find_tensor(s_p, "embedding." + key);
        ASSERT_NE(other, nullptr) << key;
        // bf16: autograd's gradient is bf16 (a row's duplicates summed in
        // bf16), so the reference's adagrad sums drift by about 1% of their scale
        const double atol = dtype == DataType::FP32 ? 1e-5 : 0.02 * other->abs().max().item<double>();
        EXPECT_TRUE(torch::allclose(value, *other, dtype == DataType::FP32 ? 1e-4 : 1e-1, atol))
            << type << " " << to_string(dtype) << " " << key << " max diff " << (value - *other).abs().max().item<float>()
            << " of max " << other->abs().max().item<float>();
      }
    }
  }
}

TEST(FusedEmbeddingCollection, OptimizerStateLoadsStrictly) {
  EmbeddingCollection ec(ec_tables(DataType::FP32), false);
  ec->enable_fused_optimizer(test::optimizer_options("rowwise_adagrad", 0.1));
  StateDict state = ec->fused_optimizer_state_dict();
  ASSERT_EQ(state.size(), 2u);
  EXPECT_EQ(state[0].first, "embeddings.t1.weight.momentum1");
  StateDict copy;
  for (const auto& [k, v] : state) copy.emplace_back(k, torch::full_like(v, 3.0));
  ec->load_fused_optimizer_state_dict(copy, "ckpt");
  EXPECT_EQ(ec->fused_optimizer_state_dict()[1].second[0].item<float>(), 3.0f);
  copy.pop_back();
  EXPECT_THROW(ec->load_fused_optimizer_state_dict(copy, "ckpt"), CheckpointError);
}

}  // namespace fused_embedding_collection_test
}  // namespace recmod
