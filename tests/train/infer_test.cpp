// train::infer (what recmod eval runs per batch): the no-autograd paths of the
// modules (the EBC's fused lookup, the MLP's GEMM + bias/ReLU pass, the
// interaction's kernel) give the values of the autograd paths, and an
// evaluation in the middle of training leaves the model trainable.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "recmod/config/model_config.h"
#include "recmod/train/train_step.h"
#include "recmod/train/trainer.h"
#include "recmod/train/training_setup.h"

namespace recmod::train {
namespace infer_test {

const char* kDlrm = R"(
features: {dense: 3, sparse: [a, b, c]}
nodes:
  sparse_arch:
    type: EmbeddingBagCollection
    input: features.sparse
    tables:
      - {name: t_a, num_embeddings: 50, embedding_dim: 8, feature_names: [a]}
      - {name: t_bc, num_embeddings: 30, embedding_dim: 8, feature_names: [b, c], pooling: mean}
  dense_arch: {type: MLP, input: features.dense, layer_sizes: [16, 8]}
  inter: {type: DotInteraction, inputs: [dense_arch, sparse_arch]}
  over_arch: {type: MLP, input: inter, layer_sizes: [16, 4]}
  logit: {type: Linear, input: over_arch, out_features: 1}
output: logit
training:
  dense_optimizer: {type: adagrad, lr: 0.05}
  embedding_optimizer: {type: rowwise_adagrad, lr: 0.1}
  batch_size: 37
  seed: 3
)";

config::ModelConfig dlrm_config() {
  return config::parse_model_config(config::ConfigNode::load_string(kDlrm, "dlrm.yaml"));
}

data::Batch batch_of(int64_t b, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  data::Batch batch;
  batch.dense = torch::randn({b, 3}, gen);
  // 1-3 ids per bag, so the MEAN table pools more than one row
  const torch::Tensor lengths = torch::randint(1, 4, {3 * b}, gen, torch::kInt);
  const torch::Tensor ids = torch::randint(0, 30, {lengths.sum().item<int64_t>()}, gen, torch::kLong);
  batch.sparse = KeyedJaggedTensor::from_lengths({"a", "b", "c"}, ids, lengths);
  batch.labels = torch::randint(0, 2, {b, 1}, gen).to(torch::kFloat);
  return batch;
}

TEST(Infer, NoAutogradPathsGiveTheAutogradPathsValues) {
  seed_everything(3);
  config::ModelGraph model(dlrm_config());
  model->eval();
  for (int64_t b : {1, 37, 300}) {
    const data::Batch batch = batch_of(b, b);
    const torch::Tensor with_autograd = model->forward(batch);  // per-table lookup, linear + relu, autograd node
    ASSERT_TRUE(with_autograd.requires_grad());
    const torch::Tensor inferred = infer(model, batch);
    EXPECT_TRUE(inferred.is_inference());
    EXPECT_FALSE(inferred.requires_grad());
    EXPECT_TRUE(torch::allclose(inferred, with_autograd.detach(), 1e-5, 1e-5))
        << "batch " << b << " max diff " << (inferred - with_autograd).abs().max().item<double>();
  }
}

/// The trainer evaluates between steps: after infer() the fused training
/// path still steps, and gives the same losses as a twin that never ran
/// infer (so nothing of the inference pass stayed in the modules).
TEST(Infer, EvaluatingBetweenStepsLeavesTrainingUnchanged) {
  const config::ModelConfig config = dlrm_config();
  seed_everything(3);
  config::ModelGraph a(config);
  seed_everything(3);
  config::ModelGraph b(config);
  TrainingSetup setup_a(a, config.training, torch::kCPU), setup_b(b, config.training, torch::kCPU);
  a->train();
  b->train();
  for (int step = 0; step < 4; ++step) {
    const data::Batch batch = batch_of(37, 100 + step);
    const double loss_a = train_step(a, setup_a, batch).item<double>();
    const double loss_b = train_step(b, setup_b, batch).item<double>();
    EXPECT_EQ(loss_a, loss_b) << "step " << step;
    a->eval();
    (void)infer(a, batch_of(50, 200 + step));
    a->train();
  }
}

}  // namespace infer_test
}  // namespace recmod::train
