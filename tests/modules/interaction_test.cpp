#include "recmod/modules/interaction.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace recmod {
namespace interaction_test {

/// The direct CPU kernel against bmm + triu gather: outputs and both input
/// gradients, for DLRM's shape and for odd ones (1 sparse feature, D = 3,
/// a batch smaller than a parallel grain, a non-contiguous sparse input,
/// n past one row group and one column block), in each build of the
/// kernels this CPU runs (AVX-512, AVX2, baseline).
TEST(DotInteraction, DirectKernelMatchesTheBatchedProduct) {
  struct Shape {
    int64_t b, f, d;
  };
  for (const InteractionIsa isa : {InteractionIsa::kAvx512, InteractionIsa::kAvx2, InteractionIsa::kBaseline}) {
    if (!cpu_runs_interaction_isa(isa)) continue;
    const InteractionIsa before = use_interaction_isa(isa);
    SCOPED_TRACE("kernel build " + std::to_string(static_cast<int>(isa)));
    for (const Shape s : {Shape{256, 26, 16}, Shape{5, 1, 3}, Shape{70, 4, 7}, Shape{40, 8, 64}, Shape{9, 15, 65},
                          Shape{3, 40, 16}, Shape{4, 2, 33}}) {
      torch::manual_seed(s.b + s.f);
      const torch::Tensor dense = torch::randn({s.b, s.d});
      const torch::Tensor sparse_wide = torch::randn({s.b, 2 * s.f * s.d});
      const torch::Tensor sparse = sparse_wide.slice(1, 0, 2 * s.f * s.d, 2);  // every other column: not contiguous
      EXPECT_FALSE(sparse.is_contiguous());
      const torch::Tensor target = torch::randn({s.b, s.d + (s.f + 1) * s.f / 2});

      auto run = [&](bool direct) {
        torch::Tensor d = dense.clone().requires_grad_(true), x = sparse.clone().requires_grad_(true);
        torch::Tensor out = direct ? dot_interaction(d, x, s.f) : dot_interaction_reference(d, x, s.f);
        (out * target).sum().backward();
        return std::vector<torch::Tensor>{out.detach(), d.grad(), x.grad()};
      };
      const auto got = run(true), want = run(false);
      for (size_t i = 0; i < got.size(); ++i)
        EXPECT_TRUE(torch::allclose(got[i], want[i], 1e-5, 1e-5))
            << "b " << s.b << " f " << s.f << " d " << s.d << " item " << i << " max diff "
            << (got[i] - want[i]).abs().max().item<double>();
    }
    use_interaction_isa(before);
  }
}

/// Without autograd (no grad, and InferenceMode as `recmod eval` runs) the
/// kernel alone runs: the same values as with autograd, no graph attached.
TEST(DotInteraction, WithoutAutogradTheKernelGivesTheSameValues) {
  torch::manual_seed(3);
  const torch::Tensor dense = torch::randn({100, 16}), sparse = torch::randn({100, 26 * 16});
  const torch::Tensor want = dot_interaction_reference(dense, sparse, 26);
  torch::Tensor no_grad, inference;
  {
    torch::NoGradGuard guard;
    no_grad = dot_interaction(dense.requires_grad_(true), sparse, 26);
  }
  {
    c10::InferenceMode guard;
    inference = dot_interaction(dense, sparse, 26);
  }
  EXPECT_FALSE(no_grad.requires_grad());
  EXPECT_TRUE(inference.is_inference());
  EXPECT_TRUE(torch::allclose(no_grad, want, 1e-5, 1e-5));
  EXPECT_TRUE(torch::equal(no_grad, inference));
}

TEST(DotInteraction, PairwiseDotsAfterDense) {
  auto dense = torch::tensor({{1.f, 2.f}});
  auto sparse = torch::tensor({{3.f, 4.f, 5.f, 6.f}});
  auto out = dot_interaction(dense, sparse, 2);
  // C = [[1,2],[3,4],[5,6]]: <0,1> = 11, <0,2> = 17, <1,2> = 39.
  EXPECT_TRUE(torch::equal(out, torch::tensor({{1.f, 2.f, 11.f, 17.f, 39.f}})));
}

TEST(DotInteraction, GradientMatchesFiniteDifferences) {
  auto dense = torch::randn({2, 3}, torch::kDouble).requires_grad_(true);
  auto sparse = torch::randn({2, 6}, torch::kDouble).requires_grad_(true);
  dot_interaction(dense, sparse, 2).sum().backward();
  const double eps = 1e-6;
  auto d = dense.detach().clone();
  d[1][2] += eps;
  double plus = dot_interaction(d, sparse.detach(), 2).sum().item<double>();
  d[1][2] -= 2 * eps;
  double minus = dot_interaction(d, sparse.detach(), 2).sum().item<double>();
  EXPECT_NEAR(dense.grad()[1][2].item<double>(), (plus - minus) / (2 * eps), 1e-6);
}

TEST(DotInteraction, OtherDtypesTakeTheReferencePath) {
  const torch::Tensor dense = torch::randn({3, 2}, torch::kDouble), sparse = torch::randn({3, 4}, torch::kDouble);
  EXPECT_TRUE(torch::equal(dot_interaction(dense, sparse, 2), dot_interaction_reference(dense, sparse, 2)));
  EXPECT_EQ(dot_interaction(dense, sparse, 2).scalar_type(), torch::kDouble);
}

}  // namespace interaction_test
}  // namespace recmod
