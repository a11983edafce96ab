#include "recmod/optim/dense_optimizer.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "support/op_counter.h"

namespace recmod::optim {
namespace dense_optimizer_test {

OptimizerOptions options_of(const std::string& type, double weight_decay) {
  OptimizerOptions o(type, 0.03);
  o.weight_decay(weight_decay);
  o.initial_accumulator_value(0.1);
  o.beta1(0.8);
  o.beta2(0.99);
  return o;
}

struct Trained {
  std::vector<torch::Tensor> params;
  StateDict state;
};

/// `steps` steps over three parameters (an odd-sized matrix, a vector
/// shorter than one AVX register, and a transposed view, which is not
/// contiguous and takes the per-op path), with gradients drawn from one
/// seed, on the fused loop or the per-op path.
Trained run(const std::string& type, double weight_decay, bool tensor_ops, int steps, int64_t rows = 37) {
  torch::manual_seed(11);
  std::vector<torch::Tensor> params{torch::randn({rows, 53}), torch::randn({5}), torch::randn({6, 9}).t()};
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (size_t i = 0; i < params.size(); ++i) {
    params[i].set_requires_grad(true);
    named.emplace_back("p" + std::to_string(i), params[i]);
  }
  DenseOptimizer opt(named, options_of(type, weight_decay));
  opt.use_tensor_ops(tensor_ops);
  for (int s = 0; s < steps; ++s) {
    for (auto& p : params) p.mutable_grad() = torch::randn(p.sizes()) * (s % 3 + 0.5);
    opt.step();
  }
  return {params, opt.state_dict()};
}

void expect_close(const Trained& a, const Trained& b, const std::string& what) {
  for (size_t i = 0; i < a.params.size(); ++i)
    EXPECT_TRUE(torch::allclose(a.params[i], b.params[i], 1e-6, 1e-7))
        << what << " p" << i << " max diff " << (a.params[i] - b.params[i]).abs().max().item<double>();
  ASSERT_EQ(a.state.size(), b.state.size());
  for (size_t i = 0; i < a.state.size(); ++i) {
    EXPECT_EQ(a.state[i].first, b.state[i].first);
    EXPECT_TRUE(torch::allclose(a.state[i].second, b.state[i].second, 1e-6, 1e-7)) << what << " " << a.state[i].first;
  }
}

// The fused per-parameter loop (issue 17) gives the per-op path's values
// within float rounding (1e-6 relative) over 25 steps, with and without
// weight decay, and moves the parameters (so the comparison is not vacuous).
TEST(DenseOptimizerFused, MatchesThePerOpPathOverManySteps) {
  for (const std::string type : {"sgd", "adagrad", "adam"})
    for (double wd : {0.0, 0.01}) {
      const Trained fused = run(type, wd, false, 25), ops = run(type, wd, true, 25), start = run(type, wd, true, 0);
      expect_close(fused, ops, type + " wd " + std::to_string(wd));
      for (size_t i = 0; i < start.params.size(); ++i)
        EXPECT_FALSE(torch::allclose(fused.params[i], start.params[i], 1e-3, 1e-3)) << type << " p" << i;
    }
}

// Elementwise and split only over elements: the same bytes at 1 and 2
// threads (a parameter big enough to be split).
TEST(DenseOptimizerFused, SameBytesAtOneAndTwoThreads) {
  const int threads = at::get_num_threads();
  for (const std::string type : {"sgd", "adagrad", "adam"}) {
    at::set_num_threads(1);
    const Trained one = run(type, 0.01, false, 3, 2000);
    at::set_num_threads(2);
    const Trained two = run(type, 0.01, false, 3, 2000);
    for (size_t i = 0; i < one.params.size(); ++i) EXPECT_TRUE(torch::equal(one.params[i], two.params[i])) << type;
    for (size_t i = 0; i < one.state.size(); ++i)
      EXPECT_TRUE(torch::equal(one.state[i].second, two.state[i].second)) << type << " " << one.state[i].first;
  }
  at::set_num_threads(threads);
}

// The per-op path takes all its parameters at once as _foreach_ ops (issue
// 19: one multi-tensor kernel per operation on a GPU); on the CPU they are
// the same bytes as each parameter updated alone, and after a step that
// leaves one parameter without a gradient (its step count falls behind:
// updated one by one again) too.
TEST(DenseOptimizerForeach, SameBytesAsOneParameterAtATime) {
  for (const std::string type : {"sgd", "adagrad", "adam"})
    for (double wd : {0.0, 0.01}) {
      torch::manual_seed(5);
      std::vector<torch::Tensor> start{torch::randn({7, 3}), torch::randn({4}), torch::randn({3, 5}).t()};
      std::vector<std::vector<torch::Tensor>> grads;
      for (int s = 0; s < 6; ++s) {
        grads.emplace_back();
        for (const auto& p : start) grads.back().push_back(torch::randn(p.sizes()));
      }
      auto train = [&](std::vector<size_t> together) {
        std::vector<torch::Tensor> params;
        std::vector<std::pair<std::string, torch::Tensor>> named;
        for (size_t i : together) {
          params.push_back(start[i].clone().set_requires_grad(true));
          named.emplace_back("p" + std::to_string(i), params.back());
        }
        DenseOptimizer opt(named, options_of(type, wd));
        opt.use_tensor_ops(true);
        for (int s = 0; s < 6; ++s) {
          for (size_t j = 0; j < together.size(); ++j)
            params[j].mutable_grad() = s == 3 && together[j] == 1 ? torch::Tensor() : grads[s][together[j]];
          opt.step();
        }
        return std::make_pair(params, opt.state_dict());
      };
      const auto [all, all_state] = train({0, 1, 2});
      size_t k = 0;
      for (size_t i = 0; i < start.size(); ++i) {
        const auto [alone, alone_state] = train({i});
        EXPECT_TRUE(torch::equal(all[i], alone[0])) << type << " wd " << wd << " p" << i;
        EXPECT_FALSE(torch::equal(all[i], start[i])) << type << " p" << i;
        for (const auto& [key, tensor] : alone_state) {
          ASSERT_LT(k, all_state.size());
          EXPECT_EQ(all_state[k].first, key);
          EXPECT_TRUE(torch::equal(all_state[k++].second, tensor)) << type << " wd " << wd << " " << key;
        }
      }
      EXPECT_EQ(k, all_state.size());
    }
  // One operation for all three parameters, not one each.
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (int i = 0; i < 3; ++i) named.emplace_back("p" + std::to_string(i), torch::randn({4, 3}).set_requires_grad(true));
  DenseOptimizer opt(named, options_of("adam", 0.0));
  opt.use_tensor_ops(true);
  for (auto& [_, p] : named) p.mutable_grad() = torch::randn({4, 3});
  testing::OpCounter ops;
  ops.region("step");
  opt.step();
  EXPECT_EQ(ops.of_op("aten::_foreach_addcdiv_"), 1) << ops.report();
  EXPECT_EQ(ops.of_op("aten::addcdiv_"), 0) << ops.report();
}

}  // namespace dense_optimizer_test
}  // namespace recmod::optim
