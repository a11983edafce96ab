// fp32 Linear through oneDNN's GEMM: the same numbers as torch::linear and
// its autograd backward (within fp32 rounding of differently ordered sums),
// for every transpose the layer uses, 1 and 2 threads, and only the
// gradients autograd asks for.
#include "recmod/modules/onednn_linear.h"

#include <gtest/gtest.h>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "recmod/modules/mlp.h"

namespace recmod {
namespace onednn_linear_test {

/// |a - b| <= 1e-4 * (1 + |b|) everywhere, after a float64 look at both.
::testing::AssertionResult close(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.sizes() != b.sizes()) return ::testing::AssertionFailure() << "shapes " << a.sizes() << " vs " << b.sizes();
  const auto a64 = a.to(torch::kDouble), b64 = b.to(torch::kDouble);
  const double worst = ((a64 - b64).abs() / (1 + b64.abs())).max().item<double>();
  if (worst <= 1e-4) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "largest relative difference " << worst;
}

struct ThreadsGuard {
  explicit ThreadsGuard(int n) : saved(at::get_num_threads()) { at::set_num_threads(n); }
  ~ThreadsGuard() { at::set_num_threads(saved); }
  int saved;
};

#define SKIP_WITHOUT_ONEDNN() \
  if (!onednn_sgemm_enabled()) GTEST_SKIP() << "built without oneDNN's GEMM (or RECMOD_ONEDNN_SGEMM=0)"

TEST(OneDnnSgemm, EveryTransposeMatchesTorchMm) {
  SKIP_WITHOUT_ONEDNN();
  torch::manual_seed(3);
  const int64_t m = 37, n = 29, k = 300;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      // Stored so that op(A) is m x k and op(B) is k x n, with a padded row stride.
      const torch::Tensor a_store = torch::randn({ta ? k : m, (ta ? m : k) + 5});
      const torch::Tensor b_store = torch::randn({tb ? n : k, (tb ? k : n) + 3});
      const torch::Tensor a = a_store.narrow(1, 0, ta ? m : k), b = b_store.narrow(1, 0, tb ? k : n);
      const torch::Tensor c0 = torch::randn({m, n});
      torch::Tensor c = c0.clone();
      onednn_sgemm(ta, tb, m, n, k, 0.5f, a_store.data_ptr<float>(), a_store.size(1), b_store.data_ptr<float>(),
                   b_store.size(1), 2.f, c.data_ptr<float>(), n);
      const torch::Tensor want = 0.5 * torch::mm(ta ? a.t() : a, tb ? b.t() : b) + 2 * c0;
      EXPECT_TRUE(close(c, want)) << "transpose a " << ta << ", b " << tb;
    }
}

TEST(OneDnnSgemm, BetaZeroDoesNotReadTheOutput) {
  SKIP_WITHOUT_ONEDNN();
  const torch::Tensor a = torch::randn({4, 8}), b = torch::randn({8, 6});
  torch::Tensor c = torch::full({4, 6}, std::numeric_limits<float>::quiet_NaN());
  onednn_sgemm(false, false, 4, 6, 8, 1.f, a.data_ptr<float>(), 8, b.data_ptr<float>(), 6, 0.f, c.data_ptr<float>(),
               6);
  EXPECT_TRUE(close(c, torch::mm(a, b)));
}

TEST(OneDnnLinear, ForwardAndGradientsMatchTorchLinearOnOneAndTwoThreads) {
  SKIP_WITHOUT_ONEDNN();
  for (int threads : {1, 2}) {
    ThreadsGuard guard(threads);
    torch::manual_seed(7);
    // The Kaggle DLRM's widest layer at a batch of 2048 rows, and a ragged small one.
    for (auto [rows, in, out] : {std::tuple<int64_t, int64_t, int64_t>{2048, 367, 512}, {5, 13, 3}}) {
      const torch::Tensor x0 = torch::randn({rows, in}), w0 = torch::randn({out, in}) * 0.1, b0 = torch::randn({out});
      const torch::Tensor dy = torch::randn({rows, out});
      auto x = x0.clone().requires_grad_(), w = w0.clone().requires_grad_(), b = b0.clone().requires_grad_();
      const torch::Tensor y = onednn_linear(x, w, b);
      y.backward(dy);
      auto xr = x0.clone().requires_grad_(), wr = w0.clone().requires_grad_(), br = b0.clone().requires_grad_();
      const torch::Tensor yr = torch::linear(xr, wr, br);
      yr.backward(dy);
      SCOPED_TRACE(testing::Message() << threads << " threads, " << rows << " x " << in << " -> " << out);
      EXPECT_TRUE(close(y, yr));
      EXPECT_TRUE(close(x.grad(), xr.grad()));
      EXPECT_TRUE(close(w.grad(), wr.grad()));
      EXPECT_TRUE(close(b.grad(), br.grad()));
    }
  }
}

TEST(OneDnnLinear, OnlyTheGradientsAutogradAsksFor) {
  SKIP_WITHOUT_ONEDNN();
  // A first layer: the input (data) needs no gradient; a frozen bias neither.
  const torch::Tensor x = torch::randn({16, 8});
  auto w = torch::randn({4, 8}).requires_grad_();
  const torch::Tensor b = torch::randn({4});
  onednn_linear(x, w, b).sum().backward();
  ASSERT_TRUE(w.grad().defined());
  EXPECT_TRUE(close(w.grad(), torch::ones({16, 4}).t().mm(x)));
  EXPECT_FALSE(x.grad().defined());
  EXPECT_FALSE(b.grad().defined());
}

TEST(OneDnnLinear, AppliesOnlyToTwoDimensionalFloatCpuInputWithBias) {
  SKIP_WITHOUT_ONEDNN();
  const torch::Tensor x = torch::randn({3, 4}), w = torch::randn({2, 4}), b = torch::randn({2});
  EXPECT_TRUE(onednn_linear_applies(x, w, b));
  EXPECT_FALSE(onednn_linear_applies(x, w, torch::Tensor()));
  EXPECT_FALSE(onednn_linear_applies(x.to(torch::kDouble), w, b));
  EXPECT_FALSE(onednn_linear_applies(x.unsqueeze(0), w, b));
  EXPECT_FALSE(onednn_linear_applies(torch::randn({0, 4}), w, b));
  EXPECT_FALSE(onednn_linear_applies(torch::randn({3, 5}), w, b));
}

TEST(OneDnnLinear, LinearAnyRecordsOnlyWhileAutogradDoesAndFallsBackElsewhere) {
  // linear_any serves config Linear nodes: a graph while training, none under
  // no_grad, and torch::linear for what oneDNN does not take.
  const torch::Tensor x = torch::randn({6, 5}), b0 = torch::randn({3});
  auto w = torch::randn({3, 5}).requires_grad_();
  const torch::Tensor want = torch::linear(x, w.detach(), b0);
  const torch::Tensor trained = linear_any(x, w, b0);
  EXPECT_TRUE(close(trained, want));
  EXPECT_EQ(trained.requires_grad(), true);
  {
    torch::NoGradGuard no_grad;
    const torch::Tensor evaluated = linear_any(x, w, b0);
    EXPECT_FALSE(evaluated.requires_grad());
    EXPECT_TRUE(close(evaluated, want));
  }
  // No bias, double: torch::linear's own result.
  EXPECT_TRUE(torch::equal(linear_any(x, w.detach(), torch::Tensor()), torch::linear(x, w.detach())));
  const torch::Tensor xd = x.to(torch::kDouble), wd = w.detach().to(torch::kDouble), bd = b0.to(torch::kDouble);
  EXPECT_TRUE(torch::equal(linear_any(xd, wd, bd), torch::linear(xd, wd, bd)));
}

TEST(OneDnnLinear, AnMlpTrainsToTheSameWeightsAsWithLibtorchsProducts) {
  SKIP_WITHOUT_ONEDNN();
  // The Perceptron takes onednn_linear while training: five SGD steps of a
  // 3-layer ReLU MLP give the weights torch::linear gives.
  torch::manual_seed(11);
  MLP mlp(MLPOptions(12, {32, 16, 1}));
  std::vector<torch::Tensor> reference;
  for (const auto& p : mlp->parameters()) reference.push_back(p.detach().clone().requires_grad_());
  const torch::Tensor x = torch::randn({64, 12}), target = torch::randn({64, 1});
  torch::optim::SGD ours(mlp->parameters(), 0.05), theirs(reference, 0.05);
  for (int step = 0; step < 5; ++step) {
    ours.zero_grad();
    torch::mse_loss(mlp->forward(x), target).backward();
    ours.step();
    theirs.zero_grad();
    torch::Tensor h = x;
    for (size_t layer = 0; layer < 3; ++layer)
      h = torch::relu(torch::linear(h, reference[2 * layer], reference[2 * layer + 1]));
    torch::mse_loss(h, target).backward();
    theirs.step();
  }
  const auto ours_now = mlp->parameters();
  for (size_t i = 0; i < ours_now.size(); ++i) EXPECT_TRUE(close(ours_now[i], reference[i])) << "parameter " << i;
}

}  // namespace onednn_linear_test
}  // namespace recmod
