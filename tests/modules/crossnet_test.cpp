#include "recmod/modules/crossnet.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/test_util.h"
#include <torch/torch.h>

#include <cmath>

#include "recmod/common/state_dict.h"

namespace recmod {
namespace crossnet_test {

std::vector<std::string> keys(const torch::nn::Module& m) { return test::state_dict_keys(m); }
using test::max_gradient_error;
template <typename F>
std::string error_of(F&& f) { return test::error_of(f); }

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Vec = std::vector<double>;

torch::Tensor param(torch::nn::Module& m, const std::string& key) { return m.named_parameters()[key]; }

/// Gives every parameter random float64 values (biases too, so they matter).
void randomize(torch::nn::Module& m) {
  m.to(torch::kFloat64);
  torch::NoGradGuard no_grad;
  for (auto& p : m.parameters()) p.copy_(torch::randn_like(p) * 0.7);
}

Vec row(const torch::Tensor& t, int64_t b) {
  Vec out(t.size(1));
  for (int64_t i = 0; i < t.size(1); ++i) out[i] = t[b][i].item<double>();
  return out;
}
/// (M x v) for a 2-D tensor M.
Vec matvec(const torch::Tensor& m, const Vec& v) {
  Vec out(m.size(0), 0.0);
  for (int64_t i = 0; i < m.size(0); ++i)
    for (int64_t j = 0; j < m.size(1); ++j) out[i] += m[i][j].item<double>() * v[j];
  return out;
}
void expect_row_near(const torch::Tensor& y, int64_t b, const Vec& expected) {
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(y[b][i].item<double>(), expected[i], 1e-10) << b << "," << i;
}

TEST(CrossNetTest, MatchesHandComputedLayers) {
  torch::manual_seed(1);
  CrossNet net(CrossNetOptions(3, 2));
  randomize(*net);
  torch::Tensor x = torch::randn({2, 3}, torch::kFloat64);
  torch::Tensor y = net->forward(x);
  for (int64_t b = 0; b < 2; ++b) {
    const Vec x0 = row(x, b);
    Vec xl = x0;
    for (int l = 0; l < 2; ++l) {
      const Vec wx = matvec(param(*net, "kernels." + std::to_string(l)), xl);
      const torch::Tensor bias = param(*net, "bias." + std::to_string(l));
      for (size_t i = 0; i < 3; ++i) xl[i] = x0[i] * (wx[i] + bias[i][0].item<double>()) + xl[i];
    }
    expect_row_near(y, b, xl);
  }
}

TEST(LowRankCrossNetTest, MatchesHandComputedLayers) {
  torch::manual_seed(2);
  LowRankCrossNet net(LowRankCrossNetOptions(4, 2).low_rank(2));
  randomize(*net);
  torch::Tensor x = torch::randn({3, 4}, torch::kFloat64);
  torch::Tensor y = net->forward(x);
  for (int64_t b = 0; b < 3; ++b) {
    const Vec x0 = row(x, b);
    Vec xl = x0;
    for (int l = 0; l < 2; ++l) {
      const std::string s = std::to_string(l);
      const Vec wvx = matvec(param(*net, "W_kernels." + s), matvec(param(*net, "V_kernels." + s), xl));
      const torch::Tensor bias = param(*net, "bias." + s);
      for (size_t i = 0; i < 4; ++i) xl[i] = x0[i] * (wvx[i] + bias[i].item<double>()) + xl[i];
    }
    expect_row_near(y, b, xl);
  }
}

TEST(VectorCrossNetTest, MatchesHandComputedLayersWithBiasOutsideTheProduct) {
  torch::manual_seed(3);
  VectorCrossNet net(VectorCrossNetOptions(4, 3));
  randomize(*net);
  torch::Tensor x = torch::randn({2, 4}, torch::kFloat64);
  torch::Tensor y = net->forward(x);
  for (int64_t b = 0; b < 2; ++b) {
    const Vec x0 = row(x, b);
    Vec xl = x0;
    for (int l = 0; l < 3; ++l) {
      const std::string s = std::to_string(l);
      const double dot = matvec(param(*net, "kernels." + s).t(), xl)[0];
      const torch::Tensor bias = param(*net, "bias." + s);
      for (size_t i = 0; i < 4; ++i) xl[i] = x0[i] * dot + bias[i][0].item<double>() + xl[i];
    }
    expect_row_near(y, b, xl);
  }
}

Vec relu(Vec v) {
  for (auto& x : v) x = std::max(x, 0.0);
  return v;
}

/// One sample through LowRankMixtureCrossNet with relu, by hand.
Vec mixture_by_hand(LowRankMixtureCrossNetImpl& net, const Vec& x0, int64_t layers, int64_t experts) {
  Vec xl = x0;
  const size_t n = x0.size();
  for (int64_t l = 0; l < layers; ++l) {
    const std::string s = std::to_string(l);
    std::vector<Vec> e(experts);
    for (int64_t k = 0; k < experts; ++k) {
      Vec h = matvec(param(net, "C_kernels." + s)[k], relu(matvec(param(net, "V_kernels." + s)[k], xl)));
      h = matvec(param(net, "U_kernels." + s)[k], relu(h));
      e[k].resize(n);
      for (size_t i = 0; i < n; ++i) e[k][i] = x0[i] * (h[i] + param(net, "bias." + s)[i][0].item<double>());
    }
    Vec gate(experts, 1.0);
    if (experts > 1) {
      double total = 0.0;
      for (int64_t k = 0; k < experts; ++k) {
        gate[k] = std::exp(matvec(param(net, "gates." + std::to_string(k) + ".weight"), xl)[0]);
        total += gate[k];
      }
      for (auto& g : gate) g /= total;
    }
    for (size_t i = 0; i < n; ++i) {
      double moe = 0.0;
      for (int64_t k = 0; k < experts; ++k) moe += gate[k] * e[k][i];
      xl[i] += moe;
    }
  }
  return xl;
}

TEST(LowRankMixtureCrossNetTest, MatchesHandComputedExpertsAndGating) {
  for (int64_t experts : {1, 3}) {
    torch::manual_seed(4);
    LowRankMixtureCrossNet net(LowRankMixtureCrossNetOptions(5, 2).num_experts(experts).low_rank(2));
    randomize(*net);
    torch::Tensor x = torch::randn({3, 5}, torch::kFloat64);
    torch::Tensor y = net->forward(x);
    for (int64_t b = 0; b < 3; ++b) expect_row_near(y, b, mixture_by_hand(*net, row(x, b), 2, experts));
  }
}

TEST(LowRankMixtureCrossNetTest, KeysAndShapesAsTorchRec) {
  LowRankMixtureCrossNet one(LowRankMixtureCrossNetOptions(4, 1).low_rank(3));
  EXPECT_THAT(keys(*one), ElementsAre("U_kernels.0", "V_kernels.0", "bias.0", "C_kernels.0"));
  LowRankMixtureCrossNet four(LowRankMixtureCrossNetOptions(6, 1).num_experts(2).low_rank(2));
  EXPECT_THAT(keys(*four), ElementsAre("U_kernels.0", "V_kernels.0", "bias.0", "gates.0.weight", "gates.1.weight",
                                       "C_kernels.0"));
  EXPECT_EQ(param(*four, "U_kernels.0").sizes(), (std::vector<int64_t>{2, 6, 2}));
  EXPECT_EQ(param(*four, "V_kernels.0").sizes(), (std::vector<int64_t>{2, 2, 6}));
  EXPECT_EQ(param(*four, "C_kernels.0").sizes(), (std::vector<int64_t>{2, 2, 2}));
  EXPECT_EQ(param(*four, "gates.1.weight").sizes(), (std::vector<int64_t>{1, 6}));
}

TEST(CrossNetFamilyTest, KeysAndShapesAsTorchRec) {
  CrossNet full(CrossNetOptions(6, 2));
  EXPECT_THAT(keys(*full), ElementsAre("kernels.0", "kernels.1", "bias.0", "bias.1"));
  EXPECT_EQ(param(*full, "bias.1").sizes(), (std::vector<int64_t>{6, 1}));
  LowRankCrossNet low(LowRankCrossNetOptions(8, 1).low_rank(2));
  EXPECT_THAT(keys(*low), ElementsAre("W_kernels.0", "V_kernels.0", "bias.0"));
  EXPECT_EQ(param(*low, "W_kernels.0").sizes(), (std::vector<int64_t>{8, 2}));
  EXPECT_EQ(param(*low, "bias.0").sizes(), (std::vector<int64_t>{8}));
  VectorCrossNet vec(VectorCrossNetOptions(5, 1));
  EXPECT_EQ(param(*vec, "kernels.0").sizes(), (std::vector<int64_t>{5, 1}));
}

TEST(CrossNetFamilyTest, InitIsXavierNormalKernelsAndZeroBias) {
  torch::manual_seed(6);
  const int64_t n = 300;
  CrossNet net(CrossNetOptions(n, 2));
  LowRankMixtureCrossNet mix(LowRankMixtureCrossNetOptions(n, 1).num_experts(2).low_rank(50));
  for (int l = 0; l < 2; ++l) {
    torch::Tensor k = param(*net, "kernels." + std::to_string(l));
    EXPECT_NEAR(k.std().item<double>(), std::sqrt(2.0 / (n + n)), 0.05 * std::sqrt(2.0 / (n + n)));
    EXPECT_NEAR(k.mean().item<double>(), 0.0, 0.005);
    EXPECT_TRUE(torch::equal(param(*net, "bias." + std::to_string(l)), torch::zeros({n, 1})));
  }
  // 3-D kernels (K, N, r): fan_in = N * r, fan_out = K * r.
  const double expected = std::sqrt(2.0 / (n * 50 + 2 * 50));
  EXPECT_NEAR(param(*mix, "U_kernels.0").std().item<double>(), expected, 0.05 * expected);
  EXPECT_TRUE(param(*net, "kernels.0").requires_grad());
}

TEST(CrossNetFamilyTest, RejectsWrongInputShapes) {
  CrossNet full(CrossNetOptions(6, 2));
  EXPECT_THAT(error_of([&] { full->forward(torch::zeros({4, 5})); }),
              HasSubstr("CrossNet: expected input of shape (B, 6), got [4, 5]"));
  EXPECT_THAT(error_of([&] { full->forward(torch::zeros({6})); }),
              HasSubstr("CrossNet: expected input of shape (B, 6), got [6]"));
  LowRankCrossNet low(LowRankCrossNetOptions(8, 1));
  EXPECT_THAT(error_of([&] { low->forward(torch::zeros({2, 3, 8})); }),
              HasSubstr("LowRankCrossNet: expected input of shape (B, 8), got [2, 3, 8]"));
  EXPECT_THAT(error_of([] { LowRankCrossNet(LowRankCrossNetOptions(8, 1).low_rank(0)); }),
              HasSubstr("low_rank must be >= 1, got 0"));
  EXPECT_THAT(error_of([] { LowRankMixtureCrossNet(LowRankMixtureCrossNetOptions(8, 1).num_experts(0)); }),
              HasSubstr("num_experts must be >= 1, got 0"));
}

TEST(CrossNetFamilyTest, GradientsMatchFiniteDifferences) {
  torch::manual_seed(7);
  std::vector<std::shared_ptr<torch::nn::Module>> nets;
  std::vector<std::function<torch::Tensor(const torch::Tensor&)>> forwards;
  CrossNet full(CrossNetOptions(3, 2));
  LowRankCrossNet low(LowRankCrossNetOptions(3, 2).low_rank(2));
  VectorCrossNet vec(VectorCrossNetOptions(3, 2));
  LowRankMixtureCrossNet mix(LowRankMixtureCrossNetOptions(3, 2).num_experts(2).low_rank(2).activation(
      activation_by_name("sigmoid")));  // smooth, so finite differences are exact enough
  nets = {full.ptr(), low.ptr(), vec.ptr(), mix.ptr()};
  forwards = {[&](const torch::Tensor& x) { return full->forward(x); },
              [&](const torch::Tensor& x) { return low->forward(x); },
              [&](const torch::Tensor& x) { return vec->forward(x); },
              [&](const torch::Tensor& x) { return mix->forward(x); }};
  torch::Tensor x = torch::randn({4, 3}, torch::kFloat64);
  for (size_t i = 0; i < nets.size(); ++i) {
    randomize(*nets[i]);
    for (const auto& p : nets[i]->named_parameters())
      EXPECT_LT(max_gradient_error([&] { return forwards[i](x); }, p.value()), 1e-6) << nets[i]->name() << " " << p.key();
  }
}

}  // namespace crossnet_test
}  // namespace recmod
