#include "recmod/optim/model_optimizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "recmod/common/errors.h"

namespace recmod::optim {
namespace model_optimizer_test {

using ::testing::HasSubstr;
using Named = std::vector<std::pair<std::string, torch::Tensor>>;

template <typename E, typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "<no error of the expected type>";
}

OptimizerOptions options_of(const std::string& type) {
  OptimizerOptions o;
  o.type(type);
  o.lr(0.05);
  o.weight_decay(0.01);
  o.initial_accumulator_value(0.1);
  o.eps(1e-8);
  o.beta1(0.8);
  o.beta2(0.99);
  return o;
}

std::unique_ptr<torch::optim::Optimizer> torch_optimizer(const OptimizerOptions& o, std::vector<torch::Tensor> p) {
  if (o.type() == "sgd")
    return std::make_unique<torch::optim::SGD>(p, torch::optim::SGDOptions(o.lr()).weight_decay(o.weight_decay()));
  if (o.type() == "adagrad")
    return std::make_unique<torch::optim::Adagrad>(p, torch::optim::AdagradOptions(o.lr())
                                                          .weight_decay(o.weight_decay())
                                                          .eps(o.eps())
                                                          .initial_accumulator_value(o.initial_accumulator_value()));
  return std::make_unique<torch::optim::Adam>(
      p, torch::optim::AdamOptions(o.lr()).betas({o.beta1(), o.beta2()}).eps(o.eps()).weight_decay(o.weight_decay()));
}

torch::Tensor leaf(const torch::Tensor& t) { return t.clone().set_requires_grad(true); }

class DenseMatchesTorchOptim : public ::testing::TestWithParam<std::string> {};

TEST_P(DenseMatchesTorchOptim, OverSeveralSteps) {
  torch::manual_seed(0);
  const OptimizerOptions o = options_of(GetParam());
  const torch::Tensor w0 = torch::randn({4, 3}), b0 = torch::randn({3});
  torch::Tensor w = leaf(w0), b = leaf(b0), tw = leaf(w0), tb = leaf(b0);
  ModelOptimizer ours({{"layer.weight", w}, {"layer.bias", b}}, o, {}, OptimizerOptions{});
  auto theirs = torch_optimizer(o, {tw, tb});
  for (int step = 0; step < 4; ++step) {
    const torch::Tensor gw = torch::randn({4, 3}), gb = torch::randn({3});
    w.mutable_grad() = gw.clone();
    b.mutable_grad() = gb.clone();
    tw.mutable_grad() = gw.clone();
    tb.mutable_grad() = gb.clone();
    ours.step();
    theirs->step();
    ASSERT_TRUE(torch::allclose(w, tw, 1e-6, 1e-7)) << GetParam() << " step " << step << "\n" << w - tw;
    ASSERT_TRUE(torch::allclose(b, tb, 1e-6, 1e-7)) << GetParam() << " step " << step;
  }
  EXPECT_FALSE(torch::equal(w, w0));
}

INSTANTIATE_TEST_SUITE_P(Types, DenseMatchesTorchOptim, ::testing::Values("sgd", "adagrad", "adam"));

TEST(ModelOptimizer, SgdByHand) {
  OptimizerOptions o;
  o.lr(0.5);
  o.weight_decay(0.1);
  torch::Tensor p = leaf(torch::tensor({1.0, -2.0}));
  ModelOptimizer opt({{"p", p}}, o, {}, OptimizerOptions{});
  p.mutable_grad() = torch::tensor({0.2, 0.4});
  opt.step();
  // p - 0.5 * (g + 0.1 p)
  EXPECT_TRUE(torch::allclose(p, torch::tensor({1.0 - 0.5 * (0.2 + 0.1), -2.0 - 0.5 * (0.4 - 0.2)})));
}

TEST(ModelOptimizer, SkipsParametersWithoutGradAndZeroGradDropsGrads) {
  torch::Tensor a = leaf(torch::ones({2})), b = leaf(torch::ones({2}));
  ModelOptimizer opt({{"a", a}, {"b", b}}, options_of("adam"), {}, OptimizerOptions{});
  a.mutable_grad() = torch::ones({2});
  opt.step();
  EXPECT_FALSE(torch::equal(a, torch::ones({2})));
  EXPECT_TRUE(torch::equal(b, torch::ones({2})));
  opt.zero_grad();
  EXPECT_FALSE(a.grad().defined());
  // The skipped parameter's Adam step count did not advance.
  const StateDict state = opt.state_dict();
  EXPECT_EQ(find_tensor(state, "dense.a.step")->item<int64_t>(), 1);
  EXPECT_EQ(find_tensor(state, "dense.b.step")->item<int64_t>(), 0);
}

TEST(ModelOptimizer, StateDictNames) {
  torch::Tensor d = leaf(torch::ones({2, 2})), e = leaf(torch::ones({5, 2})), f = leaf(torch::ones({3, 2}));
  auto keys = [](const StateDict& s) {
    std::vector<std::string> k;
    for (const auto& [name, t] : s) k.push_back(name + ":" + c10::str(t.sizes()));
    return k;
  };
  EXPECT_THAT(keys(ModelOptimizer({{"mlp.w", d}}, options_of("adam"), {{"ebc.t1.weight", e}},
                                  options_of("rowwise_adagrad"))
                       .state_dict()),
              ::testing::ElementsAre("dense.mlp.w.step:[]", "dense.mlp.w.exp_avg:[2, 2]",
                                     "dense.mlp.w.exp_avg_sq:[2, 2]", "embedding.ebc.t1.weight.momentum1:[5]"));
  EXPECT_THAT(keys(ModelOptimizer({{"mlp.w", d}}, options_of("adagrad"), {{"t1", e}, {"t2", f}},
                                  options_of("adagrad"))
                       .state_dict()),
              ::testing::ElementsAre("dense.mlp.w.step:[]", "dense.mlp.w.sum:[2, 2]", "embedding.t1.sum:[5, 2]",
                                     "embedding.t2.sum:[3, 2]"));
  EXPECT_TRUE(
      ModelOptimizer({{"mlp.w", d}}, options_of("sgd"), {{"t1", e}}, options_of("sgd")).state_dict().empty());
}

/// Runs `steps` steps with seeded gradients from `first_step` on, dense grads for `w`, sparse for `table`.
void run_steps(ModelOptimizer& opt, torch::Tensor& w, torch::Tensor& table, int first_step, int steps) {
  for (int s = first_step; s < first_step + steps; ++s) {
    torch::manual_seed(100 + s);
    w.mutable_grad() = torch::randn(w.sizes());
    const torch::Tensor ids = torch::randint(table.size(0), {1, 6}, torch::kLong);
    table.mutable_grad() = torch::sparse_coo_tensor(ids, torch::randn({6, table.size(1)}), table.sizes());
    opt.step();
    opt.zero_grad();
  }
}

TEST(ModelOptimizer, StateDictRoundTripContinuesIdentically) {
  for (const auto& [dense_type, emb_type] : std::vector<std::pair<std::string, std::string>>{
           {"adam", "rowwise_adagrad"}, {"adagrad", "adagrad"}}) {
    torch::manual_seed(1);
    torch::Tensor w = leaf(torch::randn({3, 3})), table = leaf(torch::randn({8, 4}));
    ModelOptimizer a({{"w", w}}, options_of(dense_type), {{"t", table}}, options_of(emb_type));
    run_steps(a, w, table, 0, 3);

    // A fresh optimizer on copies of the parameters, restored from a deep copy of the state.
    torch::Tensor w2 = leaf(w.detach()), table2 = leaf(table.detach());
    ModelOptimizer b({{"w", w2}}, options_of(dense_type), {{"t", table2}}, options_of(emb_type));
    StateDict saved;
    for (const auto& [k, v] : a.state_dict()) saved.emplace_back(k, v.clone());
    b.load_state_dict(saved, "saved");

    run_steps(a, w, table, 3, 2);
    run_steps(b, w2, table2, 3, 2);
    EXPECT_TRUE(torch::equal(w, w2)) << dense_type;
    EXPECT_TRUE(torch::equal(table, table2)) << emb_type;
  }
}

TEST(ModelOptimizer, LoadStateDictErrorsNameKeyAndOrigin) {
  torch::Tensor w = leaf(torch::ones({2, 2})), t = leaf(torch::ones({4, 3}));
  ModelOptimizer opt({{"w", w}}, options_of("adagrad"), {{"t", t}}, options_of("rowwise_adagrad"));
  StateDict good = opt.state_dict();

  StateDict missing(good.begin(), good.end() - 1);
  EXPECT_THAT(error_of<CheckpointError>([&] { opt.load_state_dict(missing, "ckpt/opt.pt"); }),
              HasSubstr("ckpt/opt.pt: missing optimizer state key 'embedding.t.momentum1' (shape [4])"));

  StateDict wrong_shape = good;
  wrong_shape.back().second = torch::zeros({5});
  EXPECT_THAT(error_of<CheckpointError>([&] { opt.load_state_dict(wrong_shape, "ckpt/opt.pt"); }),
              HasSubstr("ckpt/opt.pt: optimizer state key 'embedding.t.momentum1' has shape [5], the optimizer "
                        "expects [4]"));

  StateDict extra = good;
  extra.emplace_back("dense.w.exp_avg", torch::zeros({2, 2}));
  EXPECT_THAT(error_of<CheckpointError>([&] { opt.load_state_dict(extra, "ckpt/opt.pt"); }),
              HasSubstr("unexpected optimizer state key 'dense.w.exp_avg'"));

  // A failed load changes nothing.
  StateDict partly_bad = good;
  partly_bad[0].second = torch::full({}, 7, torch::kLong);
  partly_bad.back().second = torch::zeros({5});
  EXPECT_THROW(opt.load_state_dict(partly_bad, "x"), CheckpointError);
  EXPECT_EQ(find_tensor(opt.state_dict(), "dense.w.step")->item<int64_t>(), 0);
}

TEST(ModelOptimizer, RejectsUnknownTypesAndBadValues) {
  torch::Tensor w = leaf(torch::ones({2}));
  EXPECT_THAT(error_of<InputError>([&] { ModelOptimizer({{"w", w}}, options_of("rmsprop"), {}, OptimizerOptions{}); }),
              HasSubstr("dense optimizer: unknown type 'rmsprop'; valid types are [sgd, adagrad, adam]"));
  EXPECT_THAT(error_of<InputError>([&] { ModelOptimizer({}, OptimizerOptions{}, {}, options_of("adam")); }),
              HasSubstr("embedding optimizer: unknown type 'adam'; valid types are [sgd, adagrad, rowwise_adagrad]"));
  OptimizerOptions bad = options_of("adam");
  bad.beta2(1.0);
  EXPECT_THAT(error_of<InputError>([&] { validate(bad, OptimizerRole::dense); }),
              HasSubstr("dense optimizer: beta2 must be in [0, 1), got 1"));
  bad = options_of("sgd");
  bad.lr(std::nan(""));
  EXPECT_THAT(error_of<InputError>([&] { validate(bad, OptimizerRole::dense); }), HasSubstr("dense optimizer: lr must be >= 0, got nan"));
}

}  // namespace model_optimizer_test
}  // namespace recmod::optim
