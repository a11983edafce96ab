#include "recmod/optim/sparse_optimizer.h"

#include <ATen/Parallel.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

namespace recmod::optim {
namespace sparse_optimizer_test {

OptimizerOptions options_of(const std::string& type, double weight_decay = 0.0) {
  OptimizerOptions o;
  o.type(type);
  o.lr(0.1);
  o.eps(1e-8);
  o.weight_decay(weight_decay);
  return o;
}

torch::Tensor leaf(const torch::Tensor& t) { return t.clone().set_requires_grad(true); }

/// ids [1, 3, 1] with gradient rows [1, 2], [3, 4], [1, 0]: row 1 gets [2, 2], row 3 gets [3, 4].
torch::Tensor duplicate_id_gradient() {
  return torch::sparse_coo_tensor(torch::tensor({{1, 3, 1}}, torch::kLong),
                                  torch::tensor({{1.0f, 2.0f}, {3.0f, 4.0f}, {1.0f, 0.0f}}), {4, 2});
}

TEST(TouchedRows, SumsDuplicateIdsAndFindsNonzeroDenseRows) {
  const RowGradients sparse = touched_rows(duplicate_id_gradient());
  EXPECT_TRUE(torch::equal(sparse.rows, torch::tensor({1, 3}, torch::kLong)));
  EXPECT_TRUE(torch::equal(sparse.values, torch::tensor({{2.0f, 2.0f}, {3.0f, 4.0f}})));
  const RowGradients dense = touched_rows(duplicate_id_gradient().to_dense());
  EXPECT_TRUE(torch::equal(dense.rows, sparse.rows));
  EXPECT_TRUE(torch::equal(dense.values, sparse.values));
}

TEST(SparseOptimizer, RowwiseAdagradByHand) {
  const torch::Tensor w0 = torch::arange(8, torch::kFloat).reshape({4, 2});
  torch::Tensor w = leaf(w0);
  SparseOptimizer opt({{"t", w}}, options_of("rowwise_adagrad"));
  w.mutable_grad() = duplicate_id_gradient();
  opt.step();
  // Row 1: G = (2^2 + 2^2) / 2 = 4, w -= 0.1 * [2, 2] / (2 + eps).
  // Row 3: G = (9 + 16) / 2 = 12.5, w -= 0.1 * [3, 4] / (sqrt(12.5) + eps).
  const double m3 = 0.1 / (std::sqrt(12.5) + 1e-8);
  const torch::Tensor expected =
      torch::tensor({{0.0, 1.0}, {2.0 - 0.1, 3.0 - 0.1}, {4.0, 5.0}, {6.0 - 3 * m3, 7.0 - 4 * m3}}, torch::kFloat);
  EXPECT_TRUE(torch::allclose(w, expected)) << w;
  EXPECT_TRUE(torch::equal(w[0], w0[0]));  // untouched rows bit-identical
  EXPECT_TRUE(torch::equal(w[2], w0[2]));
  EXPECT_TRUE(torch::allclose(opt.state_dict()[0].second, torch::tensor({0.0f, 4.0f, 0.0f, 12.5f})));

  // Second step on row 1 only: G = 4 + (1 + 0) / 2.
  w.mutable_grad() = torch::sparse_coo_tensor(torch::tensor({{1}}, torch::kLong), torch::tensor({{1.0f, 0.0f}}), {4, 2});
  const torch::Tensor before = w.detach().clone();
  opt.step();
  EXPECT_NEAR(w[1][0].item<double>(), before[1][0].item<double>() - 0.1 / std::sqrt(4.5), 1e-6);
  EXPECT_EQ(w[1][1].item<float>(), before[1][1].item<float>());
}

TEST(SparseOptimizer, AdagradAndSgdByHand) {
  torch::Tensor a = leaf(torch::ones({4, 2})), s = leaf(torch::ones({4, 2}));
  SparseOptimizer adagrad({{"a", a}}, options_of("adagrad"));
  SparseOptimizer sgd({{"s", s}}, options_of("sgd", /*weight_decay=*/0.5));
  a.mutable_grad() = duplicate_id_gradient();
  s.mutable_grad() = duplicate_id_gradient();
  adagrad.step();
  sgd.step();
  // Adagrad, per element: s = g^2, w -= 0.1 g / |g| = 0.1 sign(g) where g != 0.
  EXPECT_TRUE(torch::allclose(a, torch::tensor({{1.0f, 1.0f}, {0.9f, 0.9f}, {1.0f, 1.0f}, {0.9f, 0.9f}})));
  // SGD with weight decay on touched rows only: w -= 0.1 (g + 0.5 w).
  EXPECT_TRUE(torch::allclose(s, torch::tensor({{1.0f, 1.0f}, {0.75f, 0.75f}, {1.0f, 1.0f}, {0.65f, 0.55f}})));
}

class EachAlgorithm : public ::testing::TestWithParam<std::string> {};

TEST_P(EachAlgorithm, SparseAndDenseGradientsAgree) {
  torch::manual_seed(3);
  const torch::Tensor w0 = torch::randn({50, 8});
  torch::Tensor ws = leaf(w0), wd = leaf(w0);
  SparseOptimizer sparse({{"t", ws}}, options_of(GetParam(), 0.01));
  SparseOptimizer dense({{"t", wd}}, options_of(GetParam(), 0.01));
  for (int step = 0; step < 3; ++step) {
    const torch::Tensor ids = torch::randint(50, {1, 30}, torch::kLong);  // with duplicates
    const torch::Tensor g = torch::sparse_coo_tensor(ids, torch::randn({30, 8}), {50, 8});
    ws.mutable_grad() = g;
    wd.mutable_grad() = g.to_dense();
    sparse.step();
    dense.step();
  }
  EXPECT_TRUE(torch::allclose(ws, wd, 1e-6, 1e-7));
  if (!sparse.state_dict().empty()) {
    EXPECT_TRUE(torch::allclose(sparse.state_dict()[0].second, dense.state_dict()[0].second, 1e-6, 1e-7));
  }
}

TEST_P(EachAlgorithm, CpuKernelAndTensorOpsAgree) {
  torch::manual_seed(4);
  const OptimizerOptions o = options_of(GetParam(), 0.02);
  torch::Tensor w1 = torch::randn({40, 16}), w2 = w1.clone();
  torch::Tensor s1 = GetParam() == "adagrad" ? torch::rand({40, 16})
                     : GetParam() == "rowwise_adagrad" ? torch::rand({40}) : torch::Tensor();
  torch::Tensor s2 = s1.defined() ? s1.clone() : s1;
  const RowGradients g = touched_rows(
      torch::sparse_coo_tensor(torch::randint(40, {1, 25}, torch::kLong), torch::randn({25, 16}), {40, 16}));
  update_rows(o, w1, s1, g);
  update_rows(o, w2, s2, g, /*use_tensor_ops=*/true);
  EXPECT_TRUE(torch::allclose(w1, w2, 1e-6, 1e-7));
  if (s1.defined()) {
    EXPECT_TRUE(torch::allclose(s1, s2, 1e-6, 1e-7));
  }
}

TEST_P(EachAlgorithm, UntouchedRowsStayBitIdenticalWithWeightDecay) {
  torch::manual_seed(5);
  const torch::Tensor w0 = torch::randn({10, 4});
  torch::Tensor w = leaf(w0);
  SparseOptimizer opt({{"t", w}}, options_of(GetParam(), 0.1));
  torch::Tensor grad = torch::zeros({10, 4});
  grad[2] = torch::randn({4});
  grad[7][1] = 0.5;
  w.mutable_grad() = grad;  // dense: rows 2 and 7 touched
  opt.step();
  for (int64_t r = 0; r < 10; ++r) {
    if (r == 2 || r == 7)
      EXPECT_FALSE(torch::equal(w[r], w0[r])) << r;
    else
      EXPECT_TRUE(torch::equal(w[r], w0[r])) << r;
  }
}

TEST_P(EachAlgorithm, SameResultForAnyThreadCount) {
  const int threads = at::get_num_threads();
  auto run = [&](int n) {
    at::set_num_threads(n);
    torch::manual_seed(6);
    torch::Tensor w = torch::randn({5000, 32}), state = torch::zeros({5000});
    if (GetParam() == "adagrad") state = torch::zeros({5000, 32});
    if (GetParam() == "sgd") state = torch::Tensor();
    const RowGradients g = touched_rows(torch::sparse_coo_tensor(torch::randint(5000, {1, 20000}, torch::kLong),
                                                                  torch::randn({20000, 32}), {5000, 32}));
    update_rows(options_of(GetParam()), w, state, g);
    return w;
  };
  const torch::Tensor one = run(1), four = run(4);
  at::set_num_threads(threads);
  EXPECT_TRUE(torch::equal(one, four));
}

INSTANTIATE_TEST_SUITE_P(Types, EachAlgorithm, ::testing::Values("sgd", "adagrad", "rowwise_adagrad"));

TEST(SparseOptimizer, AdagradMatchesTorchOptimOnEmbeddingBagSparseGradients) {
  torch::manual_seed(7);
  const torch::Tensor w0 = torch::randn({30, 6});
  torch::Tensor ours = leaf(w0), theirs = leaf(w0);
  SparseOptimizer opt({{"t", ours}}, options_of("adagrad"));
  torch::optim::Adagrad torch_opt({theirs}, torch::optim::AdagradOptions(0.1).eps(1e-8));
  for (int step = 0; step < 3; ++step) {
    const torch::Tensor ids = torch::randint(30, {12}, torch::kLong);
    const torch::Tensor offsets = torch::tensor({0, 3, 7}, torch::kLong);
    const torch::Tensor target = torch::randn({3, 6});
    for (auto* w : {&ours, &theirs}) {
      auto out = torch::embedding_bag(*w, ids, offsets, /*scale_grad_by_freq=*/false, /*mode=*/0,
                                      /*sparse=*/true);
      (std::get<0>(out) - target).square().sum().backward();
    }
    ASSERT_TRUE(ours.grad().is_sparse());
    opt.step();
    torch_opt.step();
    ours.mutable_grad().reset();
    theirs.mutable_grad().reset();
  }
  EXPECT_TRUE(torch::allclose(ours, theirs, 1e-6, 1e-7));
}

TEST(SparseOptimizer, RejectsRowsOutsideTheTable) {
  torch::Tensor w = torch::zeros({3, 2}), state;
  const RowGradients g{torch::tensor({0, 3}, torch::kLong), torch::ones({2, 2})};
  try {
    update_rows(options_of("sgd"), w, state, g);
    FAIL() << "no error";
  } catch (const c10::Error& e) {
    EXPECT_THAT(e.what_without_backtrace(), ::testing::HasSubstr("gradient rows span [0, 3], the table has 3 rows"));
  }
}

}  // namespace sparse_optimizer_test
}  // namespace recmod::optim
