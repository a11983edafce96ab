// recmod train as practitioners run it (issue 14): learning-rate schedules,
// early stopping with a best checkpoint, one process and --nproc 2.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "cli/run_recmod.h"
#include "recmod/common/state_dict.h"
#include "recmod/io/tensor_file.h"

namespace recmod::testing {
namespace train_practice_cli_test {

using ::testing::HasSubstr;

struct Data {
  std::string dir, train, eval;
};

Data make_data(const std::string& name) {
  Data d;
  d.dir = fresh_dir(name);
  d.train = write_synthetic(d.dir + "/train.rmb", "--rows 3000 --dense 2 --sparse 3 --cardinality 50 --seed 11");
  d.eval = write_synthetic(d.dir + "/eval.rmb", "--rows 1000 --skip 3000 --dense 2 --sparse 3 --cardinality 50 --seed 11");
  return d;
}

std::vector<nlohmann::json> metrics_lines(const std::string& run, const std::string& split) {
  std::vector<nlohmann::json> out;
  std::ifstream in(run + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j["split"] == split) out.push_back(j);
  }
  return out;
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

// A learning rate far too large (plain SGD at 3.0 on the tiny model): AUC
// rises, then degrades, and early stopping ends the run.
const std::string kHugeLr = tiny_model_yaml("{type: sgd, lr: 3.0}", 5) +
                            "  eval_interval: 5\n  early_stopping: {metric: auc, patience: 2}\n";

// What every early-stopped run must satisfy, read from its files: the best
// evaluation in metrics.jsonl is best.json's, the run stopped `patience`
// evaluations after it, and best/model.pt evaluates to that AUC.
void expect_consistent_best(const std::string& config, const Data& d, const std::string& run, int patience) {
  const auto evals = metrics_lines(run, "eval");
  ASSERT_GE(evals.size(), static_cast<size_t>(patience + 1));
  size_t best = 0;
  for (size_t i = 1; i < evals.size(); ++i)
    if (evals[i]["auc"].get<double>() > evals[best]["auc"].get<double>()) best = i;
  const auto record = read_json(run + "/best/best.json");
  EXPECT_EQ(record["metric"], "auc");
  EXPECT_EQ(record["step"], evals[best]["step"]);
  EXPECT_EQ(record["value"].get<double>(), evals[best]["auc"].get<double>());
  EXPECT_EQ(best + patience + 1, evals.size()) << "stopped `patience` evaluations after the best";
  auto r = run_recmod("eval " + config + " --checkpoint " + run + "/best/model.pt --data " + d.eval + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto m = nlohmann::json::parse(r.output.substr(r.output.rfind('{')));
  EXPECT_NEAR(m["auc"].get<double>(), record["value"].get<double>(), 1e-9);
}

TEST(TrainPracticeCli, EarlyStoppingOnADegradingRunKeepsTheBestModel) {
  auto d = make_data("train_early_stop");
  const auto config = write_file(d.dir + "/huge_lr.yaml", kHugeLr);
  const std::string run = d.dir + "/run";
  auto r = run_recmod("train " + config + " --data " + d.train + " --eval-data " + d.eval + " --out " + run + " --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("early stopping at step"));
  EXPECT_THAT(r.output, HasSubstr("best: " + run + "/best/model.pt"));
  expect_consistent_best(config, d, run, 2);
  const int64_t stopped = metrics_lines(run, "eval").back()["step"];
  EXPECT_LT(stopped, 5 * (3000 / 64 + 1)) << "stopped before its 5 epochs";

  // Resuming a run that stopped early trains no further.
  auto again = run_recmod("train " + config + " --data " + d.train + " --eval-data " + d.eval + " --out " + run +
                          " --threads 1 --resume");
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_THAT(again.output, HasSubstr("steps " + std::to_string(stopped)));

  // Without evaluation data it is refused before the run directory exists.
  auto refused = run_recmod("train " + config + " --data " + d.train + " --out " + d.dir + "/no_eval --threads 1");
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_THAT(refused.output, HasSubstr("training.early_stopping needs evaluation data"));
  EXPECT_FALSE(std::filesystem::exists(d.dir + "/no_eval"));
}

// Schedules and early stopping with two ranks: rank 0 writes best/ and the
// checkpoints, every rank takes the same decisions; the rates logged are
// the hand-computed ones.
TEST(TrainPracticeCli, SchedulesAndEarlyStoppingWithTwoRanks) {
  auto d = make_data("train_early_stop_nproc");
  std::string yaml = kHugeLr;
  const std::string plain = "{type: sgd, lr: 3.0}";
  yaml.replace(yaml.find(plain), plain.size(), "{type: sgd, lr: 3.0, schedule: {warmup_steps: 20}}");
  const std::string emb = "{type: rowwise_adagrad, lr: 0.1}";
  yaml.replace(yaml.find(emb), emb.size(),
               "{type: rowwise_adagrad, lr: 0.1, schedule: {type: step, step_size: 10, gamma: 0.5}}");
  const auto config = write_file(d.dir + "/scheduled.yaml", yaml);
  const std::string run = d.dir + "/run";
  auto r = run_recmod("train " + config + " --data " + d.train + " --eval-data " + d.eval + " --out " + run +
                      " --nproc 2 --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("early stopping at step"));
  expect_consistent_best(config, d, run, 2);
  // log_interval 10: the rate of step k (0-based) = 3.0 * (k + 1) / 20 in
  // warmup; the embedding rate halves every 10 steps. Line "step s" logs the
  // rate of the step just done, k = s - 1.
  const auto train_lines = metrics_lines(run, "train");
  ASSERT_GE(train_lines.size(), 3u);
  // the window's metrics cover both ranks' rows: 10 steps of 2 x 64
  EXPECT_EQ(train_lines[0]["count"], 10 * 2 * 64);
  EXPECT_TRUE(train_lines[0].contains("auc"));
  for (const auto& line : train_lines) {
    const int64_t k = line["step"].get<int64_t>() - 1;
    EXPECT_DOUBLE_EQ(line["dense_lr"].get<double>(), k < 20 ? 3.0 * static_cast<double>(k + 1) / 20 : 3.0) << line;
    EXPECT_DOUBLE_EQ(line["embedding_lr"].get<double>(), 0.1 * std::pow(0.5, static_cast<double>(k / 10))) << line;
  }
}

// Dropout draws from the generator the checkpoint saves: a resumed run
// ends with the same model as an uninterrupted one, and it is not the
// model trained without dropout.
TEST(TrainPracticeCli, DropoutIsExactAcrossResume) {
  auto d = make_data("train_dropout");
  std::string yaml = tiny_model_yaml();
  const std::string mlp = "layer_sizes: [4]}";
  yaml.replace(yaml.find(mlp), mlp.size(), "layer_sizes: [4], dropout: 0.3}");
  const auto config = write_file(d.dir + "/dropout.yaml", yaml);
  const auto plain = write_file(d.dir + "/plain.yaml", tiny_model_yaml());
  const std::string train = "train " + config + " --data " + d.train + " --threads 1 --out ";
  ASSERT_EQ(run_recmod(train + d.dir + "/whole --steps 40").exit_code, 0);
  ASSERT_EQ(run_recmod(train + d.dir + "/split --steps 25").exit_code, 0);
  auto resumed = run_recmod(train + d.dir + "/split --steps 40 --resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  ASSERT_EQ(run_recmod("train " + plain + " --data " + d.train + " --threads 1 --steps 40 --out " + d.dir + "/plain")
                .exit_code,
            0);
  const StateDict whole = io::load_tensors(d.dir + "/whole/model.pt");
  const StateDict split = io::load_tensors(d.dir + "/split/model.pt");
  const StateDict without = io::load_tensors(d.dir + "/plain/model.pt");
  ASSERT_EQ(whole.size(), split.size());
  ASSERT_EQ(whole.size(), without.size());  // the same keys
  bool differs_from_plain = false;
  for (size_t i = 0; i < whole.size(); ++i) {
    EXPECT_EQ(whole[i].first, without[i].first);
    EXPECT_TRUE(torch::equal(whole[i].second, split[i].second)) << whole[i].first;
    differs_from_plain = differs_from_plain || !torch::equal(whole[i].second, without[i].second);
  }
  EXPECT_TRUE(differs_from_plain);
}

// eval without a config reads the run's config.yaml (beside model.pt, or
// in RUN for RUN/best/model.pt) and reports the same metrics.
TEST(TrainPracticeCli, EvalFindsTheRunsConfig) {
  auto d = make_data("eval_run_config");
  const auto config = write_file(d.dir + "/tiny.yaml", tiny_model_yaml() + "  eval_interval: 20\n  keep_best: auc\n");
  const std::string run = d.dir + "/run";
  ASSERT_EQ(run_recmod("train " + config + " --data " + d.train + " --eval-data " + d.eval + " --out " + run +
                       " --steps 40 --threads 1")
                .exit_code,
            0);
  auto last_json = [](const std::string& output) { return nlohmann::json::parse(output.substr(output.rfind('{'))); };
  for (const auto& checkpoint : std::vector<std::string>{run + "/model.pt", run + "/best/model.pt"}) {
    auto with = run_recmod("eval " + config + " --checkpoint " + checkpoint + " --data " + d.eval + " --json");
    auto without = run_recmod("eval --checkpoint " + checkpoint + " --data " + d.eval + " --json");
    ASSERT_EQ(without.exit_code, 0) << without.output;
    EXPECT_THAT(without.output, HasSubstr("config: " + run + "/config.yaml"));
    EXPECT_EQ(last_json(with.output), last_json(without.output)) << checkpoint;
  }
  // a checkpoint outside a run directory: a usage error that says what to pass
  ASSERT_TRUE(std::filesystem::copy_file(run + "/model.pt", d.dir + "/loose.pt"));
  auto loose = run_recmod("eval --checkpoint " + d.dir + "/loose.pt --data " + d.eval);
  EXPECT_EQ(loose.exit_code, 2);
  EXPECT_THAT(loose.output, HasSubstr("no config given, and none in the checkpoint's run directory"));
  EXPECT_THAT(loose.output, HasSubstr(d.dir + "/config.yaml"));
}

// A DLRM with recmod's DLRM node names (configs/dlrm_criteo.yaml) over the
// generated data.
std::string dlrm_yaml() {
  std::string yaml = tiny_model_yaml();
  const std::string logit = "  logit: {type: Linear, input: inter, out_features: 1}";
  yaml.replace(yaml.find(logit), logit.size(),
               "  over_arch: {type: MLP, input: inter, layer_sizes: [8]}\n"
               "  logit: {type: Linear, input: over_arch, out_features: 1}");
  return yaml;
}

// recmod -> TorchRec DLRM -> recmod round-trips (same predictions); the
// TorchRec file given to eval is refused with the conversion to run.
TEST(TrainPracticeCli, ConvertCheckpointRoundTripsTorchRecDlrmKeys) {
  auto d = make_data("convert_checkpoint");
  const auto config = write_file(d.dir + "/dlrm.yaml", dlrm_yaml());
  const std::string run = d.dir + "/run";
  ASSERT_EQ(run_recmod("train " + config + " --data " + d.train + " --out " + run + " --steps 20 --threads 1").exit_code, 0);
  const std::string torchrec = d.dir + "/torchrec_dlrm.pt", back = d.dir + "/back.pt";
  auto to = run_recmod("convert-checkpoint " + run + "/model.pt " + torchrec + " --to torchrec-dlrm --config " + config);
  ASSERT_EQ(to.exit_code, 0) << to.output;
  EXPECT_THAT(to.output, HasSubstr("logit.* -> over_arch.model.1.*: 2 keys"));
  const StateDict converted = io::load_tensors(torchrec);
  EXPECT_NE(find_tensor(converted, "sparse_arch.embedding_bag_collection.embedding_bags.t1.weight"), nullptr);
  EXPECT_NE(find_tensor(converted, "over_arch.model.0._mlp.0._linear.weight"), nullptr);

  auto refused = run_recmod("eval " + config + " --checkpoint " + torchrec + " --data " + d.eval);
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.output, HasSubstr("it looks like a TorchRec DLRM state_dict"));
  EXPECT_THAT(refused.output, HasSubstr("recmod convert-checkpoint " + torchrec + " OUT.pt --from torchrec-dlrm"));

  auto from = run_recmod("convert-checkpoint " + torchrec + " " + back + " --from torchrec-dlrm --config " + config);
  ASSERT_EQ(from.exit_code, 0) << from.output;
  const StateDict original = io::load_tensors(run + "/model.pt"), again = io::load_tensors(back);
  ASSERT_EQ(original.size(), again.size());
  for (size_t i = 0; i < original.size(); ++i) {
    EXPECT_EQ(original[i].first, again[i].first);
    EXPECT_TRUE(torch::equal(original[i].second, again[i].second)) << original[i].first;
  }
  // a generic prefix map, and a map that matches nothing
  auto renamed = run_recmod("convert-checkpoint " + back + " " + d.dir + "/ddp.pt --rename =module.");
  ASSERT_EQ(renamed.exit_code, 0) << renamed.output;
  auto hint = run_recmod("eval " + config + " --checkpoint " + d.dir + "/ddp.pt --data " + d.eval);
  EXPECT_THAT(hint.output, HasSubstr("--rename module.="));
  auto nothing = run_recmod("convert-checkpoint " + back + " " + d.dir + "/none.pt --rename zzz.=a.");
  EXPECT_EQ(nothing.exit_code, 1);
  EXPECT_THAT(nothing.output, HasSubstr("no key starts with any of the prefixes"));
  EXPECT_FALSE(std::filesystem::exists(d.dir + "/none.pt"));
}

// train --init-from: a warm start of the embeddings, reported per node.
TEST(TrainPracticeCli, InitFromWarmStartsSelectedNodes) {
  auto d = make_data("init_from");
  const auto config = write_file(d.dir + "/dlrm.yaml", dlrm_yaml());
  const std::string source = d.dir + "/source";
  ASSERT_EQ(run_recmod("train " + config + " --data " + d.train + " --out " + source + " --steps 30 --threads 1").exit_code, 0);
  const std::string train = "train " + config + " --data " + d.train + " --threads 1 --steps 1 --init-from " + source + "/model.pt";
  auto warm = run_recmod(train + " --init-only sparse_arch --out " + d.dir + "/warm");
  ASSERT_EQ(warm.exit_code, 0) << warm.output;
  EXPECT_THAT(warm.output, HasSubstr("init-from " + source + "/model.pt: 3 keys loaded"));
  EXPECT_THAT(warm.output, HasSubstr("sparse_arch: 3 of 3 keys loaded"));
  EXPECT_THAT(warm.output, HasSubstr("dense_arch: not selected (--init-only), kept its initialisation"));
  auto bad = run_recmod(train + " --init-only inter --out " + d.dir + "/bad");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.output, HasSubstr("--init-only inter: the model has no node with parameters of that name"));
  auto both = run_recmod(train + " --resume --out " + d.dir + "/warm");
  EXPECT_EQ(both.exit_code, 2);
  EXPECT_THAT(both.output, HasSubstr("drop one"));
}

}  // namespace train_practice_cli_test
}  // namespace recmod::testing
