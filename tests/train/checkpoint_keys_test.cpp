// Checkpoint keys across naming schemes (issue 14): TorchRec DLRM key maps
// round-tripped on a model built by recmod, --rename prefixes, the
// diagnosis of a checkpoint/config mismatch, and warm starts.
#include "recmod/train/checkpoint_keys.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/config/model_config.h"
#include "recmod/train/trainer.h"

namespace recmod::train {
namespace checkpoint_keys_test {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// recmod's DLRM node names, as configs/dlrm_criteo.yaml has them.
const char* kDlrm = R"(
features: {dense: 3, sparse: [a, b]}
nodes:
  sparse_arch:
    type: EmbeddingBagCollection
    input: features.sparse
    tables:
      - {name: t_a, num_embeddings: 10, embedding_dim: 4, feature_names: [a]}
      - {name: t_b, num_embeddings: 7, embedding_dim: 4, feature_names: [b]}
  dense_arch: {type: MLP, input: features.dense, layer_sizes: [8, 4]}
  inter: {type: DotInteraction, inputs: [dense_arch, sparse_arch]}
  over_arch: {type: MLP, input: inter, layer_sizes: [6]}
  logit: {type: Linear, input: over_arch, out_features: 1}
output: logit
)";

config::ModelGraph dlrm(uint64_t seed) {
  seed_everything(seed);
  return config::ModelGraph(config::parse_model_config(config::ConfigNode::load_string(kDlrm, "dlrm.yaml")));
}

std::vector<std::string> keys(const StateDict& s) {
  std::vector<std::string> out;
  for (const auto& [k, _] : s) out.push_back(k);
  return out;
}

template <typename E, typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "<no error of the expected type>";
}

TEST(CheckpointKeysTest, TorchRecDlrmMapRoundTripsARecmodModel) {
  auto model = dlrm(1);
  const StateDict ours = state_dict(*model);
  RenameReport report;
  const StateDict theirs = rename_keys(ours, builtin_key_map("torchrec-dlrm", /*to_torchrec=*/true), &report);
  // torchrec.models.dlrm.DLRM's names (SparseArch, DenseArch, OverArch = Sequential(MLP, Linear))
  EXPECT_THAT(keys(theirs),
              ElementsAre("dense_arch.model._mlp.0._linear.weight", "dense_arch.model._mlp.0._linear.bias",
                          "dense_arch.model._mlp.1._linear.weight", "dense_arch.model._mlp.1._linear.bias",
                          "sparse_arch.embedding_bag_collection.embedding_bags.t_a.weight",
                          "sparse_arch.embedding_bag_collection.embedding_bags.t_b.weight",
                          "over_arch.model.0._mlp.0._linear.weight", "over_arch.model.0._mlp.0._linear.bias",
                          "over_arch.model.1.weight", "over_arch.model.1.bias"));
  EXPECT_THAT(report.renamed_per_rule, ElementsAre(2, 4, 2, 2));
  EXPECT_EQ(report.unchanged, 0);
  const StateDict back = rename_keys(theirs, builtin_key_map("torchrec-dlrm", /*to_torchrec=*/false));
  ASSERT_EQ(keys(back), keys(ours));
  for (size_t i = 0; i < ours.size(); ++i) EXPECT_TRUE(torch::equal(back[i].second, ours[i].second)) << ours[i].first;
  // and it loads into another model of the config, which then predicts the same
  auto other = dlrm(2);
  EXPECT_FALSE(torch::equal(state_dict(*other)[0].second, ours[0].second));
  load_state_dict(*other, back, "back.pt");
  for (size_t i = 0; i < ours.size(); ++i) EXPECT_TRUE(torch::equal(state_dict(*other)[i].second, ours[i].second));
}

TEST(CheckpointKeysTest, MismatchNamesTheLikelyCause) {
  auto model = dlrm(1);
  const StateDict ours = state_dict(*model);
  const StateDict theirs = rename_keys(ours, recmod_to_torchrec_dlrm());
  const std::string torchrec = error_of<CheckpointError>([&] { check_checkpoint_keys(theirs, model_keys(model), "tr.pt"); });
  EXPECT_THAT(torchrec, HasSubstr("tr.pt: 10 of the checkpoint's 10 keys are not the model's"));
  EXPECT_THAT(torchrec, HasSubstr("it looks like a TorchRec DLRM state_dict"));
  EXPECT_THAT(torchrec, HasSubstr("recmod convert-checkpoint tr.pt OUT.pt --from torchrec-dlrm"));
  EXPECT_THAT(torchrec, ::testing::Not(HasSubstr("dense_arch._mlp.1._linear.bias")));  // no list of all keys
  // DistributedDataParallel's "module." prefix
  const StateDict ddp = rename_keys(ours, {{"", "module."}});
  EXPECT_THAT(error_of<CheckpointError>([&] { check_checkpoint_keys(ddp, model_keys(model), "ddp.pt"); }),
              HasSubstr("--rename module.="));
  // and the model nested one level deeper than the checkpoint
  const StateDict shallow = rename_keys(ours, {{"sparse_arch.", ""}});
  EXPECT_THAT(error_of<CheckpointError>([&] { check_checkpoint_keys(shallow, model_keys(model), "s.pt"); }),
              HasSubstr("--rename =sparse_arch."));
  // another model altogether
  StateDict foreign{{"encoder.layer.0.weight", torch::zeros({2})}};
  EXPECT_THAT(error_of<CheckpointError>([&] { check_checkpoint_keys(foreign, model_keys(model), "x.pt"); }),
              HasSubstr("the model's keys start with [dense_arch, logit, over_arch, sparse_arch]"));
  // only keys missing: load_state_dict names the first
  check_checkpoint_keys(StateDict(ours.begin(), ours.begin() + 3), model_keys(model), "part.pt");
}

TEST(CheckpointKeysTest, RenamesAndTheirErrors) {
  EXPECT_EQ(parse_rename("module.=").from, "module.");
  EXPECT_EQ(parse_rename("=net.").to, "net.");
  EXPECT_THAT(error_of<UsageError>([] { parse_rename("module."); }), HasSubstr("--rename expects FROM=TO"));
  EXPECT_THAT(error_of<UsageError>([] { parse_rename("="); }), HasSubstr("--rename expects FROM=TO"));
  EXPECT_THAT(error_of<UsageError>([] { builtin_key_map("hugectr", true); }), HasSubstr("torchrec-dlrm"));
  const StateDict two{{"a.w", torch::zeros({1})}, {"b.w", torch::zeros({1})}};
  EXPECT_THAT(error_of<CheckpointError>([&] { rename_keys(two, {{"a.", "c."}, {"b.", "c."}}); }),
              HasSubstr("renaming gives two keys the name 'c.w': 'a.w' and 'b.w'"));
  // first matching rule wins
  EXPECT_THAT(keys(rename_keys(two, {{"a.", "x."}, {"a.w", "never"}})), ElementsAre("x.w", "b.w"));
}

TEST(CheckpointKeysTest, WarmStartLoadsTheSelectedNodesAndReports) {
  auto source = dlrm(1);
  const StateDict trained = state_dict(*source);
  auto model = dlrm(2);
  const StateDict before = state_dict(*model);
  std::vector<torch::Tensor> initial;
  for (const auto& [_, t] : before) initial.push_back(t.clone());
  const WarmStartReport report = warm_start(model, trained, {"sparse_arch"}, "a.pt");
  EXPECT_EQ(report.loaded(), 2);
  const StateDict after = state_dict(*model);
  for (size_t i = 0; i < after.size(); ++i) {
    const bool embedding = after[i].first.rfind("sparse_arch.", 0) == 0;
    EXPECT_TRUE(torch::equal(after[i].second, embedding ? trained[i].second : initial[i])) << after[i].first;
  }
  const std::string text = report.describe("a.pt");
  EXPECT_THAT(text, HasSubstr("init-from a.pt: 2 keys loaded"));
  EXPECT_THAT(text, HasSubstr("sparse_arch: 2 of 2 keys loaded"));
  EXPECT_THAT(text, HasSubstr("dense_arch: not selected (--init-only), kept its initialisation"));
  EXPECT_THAT(text, HasSubstr("checkpoint keys not used: 8"));

  // every node: a checkpoint that lacks the over arch loads the rest and says so
  StateDict partial;
  for (const auto& [k, v] : trained)
    if (k.rfind("over_arch.", 0) != 0) partial.emplace_back(k, v);
  auto third = dlrm(3);
  const std::string all = warm_start(third, partial, {}, "p.pt").describe("p.pt");
  EXPECT_THAT(all, HasSubstr("over_arch: 0 of 2 keys loaded; not in the checkpoint, kept their initialisation: "
                             "[over_arch._mlp.0._linear.weight, over_arch._mlp.0._linear.bias]"));
  EXPECT_THAT(all, HasSubstr("logit: 2 of 2 keys loaded"));

  EXPECT_THAT(error_of<UsageError>([&] { warm_start(third, trained, {"inter"}, "a.pt"); }),
              HasSubstr("--init-only inter: the model has no node with parameters of that name"));
  StateDict wrong = trained;
  wrong[0].second = torch::zeros({3, 4});
  EXPECT_THAT(error_of<CheckpointError>([&] { warm_start(third, wrong, {}, "w.pt"); }),
              HasSubstr("w.pt: key 'dense_arch._mlp.0._linear.weight' has shape [3, 4], the model expects [8, 3]"));
  // a TorchRec checkpoint: nothing to load, and the diagnosis says why
  EXPECT_THAT(error_of<CheckpointError>([&] { warm_start(third, rename_keys(trained, recmod_to_torchrec_dlrm()), {}, "t.pt"); }),
              HasSubstr("TorchRec DLRM state_dict"));
}

}  // namespace checkpoint_keys_test
}  // namespace recmod::train
