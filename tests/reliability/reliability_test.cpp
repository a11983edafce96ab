// Hostile input end to end: broken data files, broken checkpoints, ids outside
// a table, tables that cannot fit, and runs killed while checkpointing. Every
// case runs the real binary and checks the message and the exit code.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <fstream>
#include <thread>

#include "cli/run_recmod.h"
#include "recmod/common/errors.h"
#include "recmod/io/tensor_file.h"
#include "recmod/train/trainer.h"

namespace recmod::testing {
namespace reliability_test {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

std::string input(const std::string& name) { return std::string(RECMOD_SOURCE_DIR) + "/tests/reliability/inputs/" + name; }

// Dense 2, one sparse feature C1 looked up in a table of `rows` rows.
std::string model(const std::string& dir, int64_t rows, const std::string& hash = "none", int interval = 0) {
  return write_file(dir + "/model.yaml", str_cat(R"(features: {dense: 2, sparse: [C1], hash: )", hash, R"(, range: )", rows, R"(}
nodes:
  s: {type: EmbeddingBagCollection, input: features.sparse, tables: [{name: t, num_embeddings: )", rows,
                                                 R"(, embedding_dim: 4, feature_names: [C1]}]}
  d: {type: MLP, input: features.dense, layer_sizes: [4]}
  c: {type: Concat, inputs: [d, s]}
  logit: {type: Linear, input: c, out_features: 1}
output: logit
training: {batch_size: 16, steps: 400, log_interval: 1, checkpoint_interval: )", interval, R"(, seed: 1, shuffle: false}
)"));
}

std::string generate(const std::string& dir, int rows = 200) {
  return write_synthetic(dir + "/train.rmb", str_cat("--rows ", rows, " --dense 2 --sparse 1 --cardinality 50 --seed 3"));
}

TEST(ReliabilityTest, EmptyDataFileIsARuntimeError) {
  auto dir = fresh_dir("rel_empty");
  auto r = run_recmod("train " + model(dir, 50) + " --data " + input("empty.tsv") + " --format criteo-tsv --out " + dir + "/run");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("recmod: "));
}

TEST(ReliabilityTest, ShortTsvRowNamesFileAndLine) {
  auto dir = fresh_dir("rel_short");
  auto r = run_recmod("convert " + input("short_row.tsv") + " " + dir + "/x.rmb");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("short_row.tsv:1: expected 40 tab-separated fields"));
}

TEST(ReliabilityTest, InfInJsonlDenseIsABadRecord) {
  auto dir = fresh_dir("rel_inf");
  auto r = run_recmod("train " + model(dir, 50) + " --data " + input("inf_dense.jsonl") + " --format jsonl --out " + dir + "/run");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("inf_dense.jsonl:1: expected finite numbers, found one out of range (number overflow parsing '1e999')"));
  // 1e300 is a valid double but overflows float32.
  r = run_recmod("train " + model(dir, 50) + " --data " + input("f32_overflow_dense.jsonl") + " --format jsonl --out " +
                 dir + "/run2");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("f32_overflow_dense.jsonl:1: expected \"dense\" to hold finite float32 numbers"));
}

TEST(ReliabilityTest, IdBeyondInt64AndCutLineAreBadRecords) {
  auto dir = fresh_dir("rel_jsonl");
  auto r = run_recmod("train " + model(dir, 50) + " --data " + input("huge_id.jsonl") + " --format jsonl --out " + dir + "/a");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("huge_id.jsonl:1: expected ids of \"C1\" to fit in int64"));
  r = run_recmod("train " + model(dir, 50) + " --data " + input("cut_line.jsonl") + " --format jsonl --out " + dir + "/b");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("cut_line.jsonl:1: expected a JSON object, found invalid JSON"));
}

TEST(ReliabilityTest, BinaryFileCutInTheMiddle) {
  auto dir = fresh_dir("rel_cut_rmb");
  const auto data = generate(dir);
  fs::resize_file(data, fs::file_size(data) / 2);
  auto r = run_recmod("train " + model(dir, 50) + " --data " + data + " --out " + dir + "/run");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("(truncated or appended to?)"));
}

TEST(ReliabilityTest, NanInBinaryDenseNamesTheRow) {
  auto dir = fresh_dir("rel_nan_rmb");
  const auto data = generate(dir, 20);
  // Header: dense_offset at byte 48; put a NaN in row 0, column 1.
  std::fstream f(data, std::ios::in | std::ios::out | std::ios::binary);
  uint64_t dense_offset = 0;
  f.seekg(48);
  f.read(reinterpret_cast<char*>(&dense_offset), 8);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  f.seekp(static_cast<std::streamoff>(dense_offset + 4));
  f.write(reinterpret_cast<const char*>(&nan), 4);
  f.close();
  auto r = run_recmod("train " + model(dir, 50) + " --data " + data + " --out " + dir + "/run");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("train.rmb: row 0: dense[1] is nan (expected finite numbers)"));
}

TEST(ReliabilityTest, IdOutsideAnUnhashedTableIsAnInputError) {
  auto dir = fresh_dir("rel_id_range");
  const auto data = generate(dir);  // ids in [0, 50)
  auto r = run_recmod("train " + model(dir, 10) + " --data " + data + " --out " + dir + "/run");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("nodes.s: feature 'C1' has id "));
  EXPECT_THAT(r.output, HasSubstr("outside table 't' (num_embeddings 10, ids must be in [0, 10))"));
  // The same ids hashed into range train fine.
  r = run_recmod("train " + model(dir, 10, "mod") + " --data " + data + " --steps 2 --out " + dir + "/run2");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(ReliabilityTest, TableThatCannotFitIsRefusedUpFront) {
  auto r = run_recmod("validate " + input("huge_table.yaml"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("huge_table.yaml:3:"));
  EXPECT_THAT(r.output, HasSubstr("the tables need 3.6 PiB of weights (t 1000000000000x1024) but only "));
  EXPECT_THAT(r.output, HasSubstr("of memory is available (MemAvailable in /proc/meminfo)"));
  r = run_recmod("validate " + input("negative_size.yaml"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("num_embeddings"));
}

TEST(ReliabilityTest, BatchThatCannotFitIsRefusedBeforeTheRunDirectoryExists) {
  auto dir = fresh_dir("rel_huge_batch");
  const auto data = generate(dir);
  std::string config = model(dir, 50);
  // 2^50 examples of at least 40 bytes each: far beyond any machine's memory.
  std::ifstream in(config);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  text.replace(text.find("batch_size: 16"), 14, "batch_size: 1125899906842624");
  write_file(config, text);
  auto r = run_recmod("train " + config + " --data " + data + " --out " + dir + "/run");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  // inputs (2 dense + label + 1 length) x 4 = 16; outputs d 4 + s 4 + c 8 + logit 1 = 17 floats = 68.
  EXPECT_THAT(r.output, HasSubstr(config + ": training.batch_size 1125899906842624 needs at least 84.0 PiB a step "
                                           "(84 bytes an example: its inputs and every node's output) but only "));
  EXPECT_THAT(r.output, HasSubstr("make training.batch_size smaller"));
  EXPECT_FALSE(fs::exists(dir + "/run")) << "the refused run left a directory behind";
}

// A checkpoint from a short run, then edited.
struct Trained {
  std::string dir, config, data, run;
};
Trained train_briefly(const std::string& name) {
  Trained t;
  t.dir = fresh_dir(name);
  t.config = model(t.dir, 50);
  t.data = generate(t.dir);
  t.run = t.dir + "/run";
  auto r = run_recmod("train " + t.config + " --data " + t.data + " --steps 3 --out " + t.run);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return t;
}

TEST(ReliabilityTest, CheckpointWithMissingKeyWrongShapeWrongDtype) {
  auto t = train_briefly("rel_ckpt");
  const StateDict good = io::load_tensors(t.run + "/model.pt");
  auto edited = [&](const std::string& name, const std::function<void(StateDict&)>& edit) {
    StateDict s = good;
    edit(s);
    const std::string path = t.dir + "/" + name + ".pt";
    io::save_tensors(path, s);
    return run_recmod("eval " + t.config + " --checkpoint " + path + " --data " + t.data);
  };
  auto r = edited("missing", [](StateDict& s) { s.erase(s.begin()); });
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("missing.pt: missing key '" + good.front().first + "'"));
  r = edited("shape", [](StateDict& s) { s.front().second = torch::zeros({3, 3}); });
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("shape.pt: key '" + good.front().first + "' has shape [3, 3], the model expects"));
  r = edited("dtype", [](StateDict& s) { s.front().second = s.front().second.to(torch::kLong); });
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("dtype.pt: key '" + good.front().first + "' has dtype Long"));
  // A file cut short, and one that is not a checkpoint at all.
  const std::string cut = t.dir + "/cut.pt";
  fs::copy_file(t.run + "/model.pt", cut);
  fs::resize_file(cut, fs::file_size(cut) - 100);
  r = run_recmod("eval " + t.config + " --checkpoint " + cut + " --data " + t.data);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("cut.pt: not a readable torch.save file (truncated or corrupt?)"));
  r = run_recmod("eval " + t.config + " --checkpoint " + t.config + " --data " + t.data);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("model.yaml: not a readable torch.save file"));
}

TEST(ReliabilityTest, ModelNotMatchingTrainerStateIsRefusedOnResume) {
  auto t = train_briefly("rel_mismatch");
  auto other = train_briefly("rel_mismatch_other");
  auto r = run_recmod("train " + other.config + " --data " + other.data + " --steps 5 --out " + other.run + " --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  fs::copy_file(other.run + "/model.pt", t.run + "/model.pt", fs::copy_options::overwrite_existing);
  r = run_recmod("train " + t.config + " --data " + t.data + " --steps 6 --out " + t.run + " --resume");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("model.pt is not the model "));
}

// Starts `recmod args` without waiting; returns its pid.
pid_t spawn_recmod(const std::string& args, const std::string& log) {
  const pid_t pid = fork();
  if (pid == 0) {
    const std::string command = "exec " + std::string(RECMOD_BIN) + " " + args + " >" + log + " 2>&1";
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

TEST(ReliabilityTest, SigkillWhileCheckpointingLeavesAResumableRun) {
  auto dir = fresh_dir("rel_sigkill");
  const auto config = model(dir, 50, "none", /*interval=*/1);
  const auto data = generate(dir, 2000);
  const std::string run = dir + "/run";
  // Kill at several moments after the first checkpoint appeared; each round
  // resumes the previous one. Every kill must leave a loadable, resumable run.
  for (int round = 0; round < 4; ++round) {
    const std::string resume = round == 0 ? "" : " --resume";
    const pid_t pid = spawn_recmod("train " + config + " --data " + data + " --out " + run + resume, dir + "/log.txt");
    ASSERT_GT(pid, 0);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (!fs::exists(run + "/trainer_state.pt") && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::this_thread::sleep_for(std::chrono::milliseconds(37 * round + 3));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    // The files on disk load as they are.
    EXPECT_NO_THROW(io::load_tensors(run + "/model.pt"));
    EXPECT_NO_THROW(io::load_tensors(run + "/trainer_state.pt"));
  }
  // A torn last metrics line (a kill mid-append) does not break the next run.
  { std::ofstream(run + "/metrics.jsonl", std::ios::app) << "{\"step\": 12, \"lo"; }
  auto r = run_recmod("train " + config + " --data " + data + " --steps 420 --out " + run + " --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("steps 420"));
  std::ifstream metrics(run + "/metrics.jsonl");
  std::string line;
  int lines = 0;
  while (std::getline(metrics, line)) {
    ++lines;
    EXPECT_TRUE(nlohmann::json::accept(line)) << "line " << lines << ": " << line;
  }
  EXPECT_GT(lines, 0);
}

TEST(ReliabilityTest, SigintStopsAtAStepAndSavesACheckpoint) {
  auto dir = fresh_dir("rel_sigint");
  const auto config = model(dir, 50);
  const auto data = generate(dir, 2000);
  const std::string run = dir + "/run";
  const pid_t pid = spawn_recmod("train " + config + " --data " + data + " --steps 100000 --out " + run, dir + "/log.txt");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!fs::exists(run + "/metrics.jsonl") && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  kill(pid, SIGINT);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 130);
  std::ifstream log(dir + "/log.txt");
  const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_THAT(text, HasSubstr("interrupted: checkpoint at step "));
  auto r = run_recmod("train " + config + " --data " + data + " --steps 1 --out " + run + " --resume");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// Issue 18: one NaN weight made eval's AUC loop forever. The checkpoint is
// refused at load, naming the key and the first bad index; the binary runs
// under `timeout 60`, so a regression fails instead of hanging the suite.
RunResult run_recmod_bounded(const std::string& args) {
  return run_command("timeout 60 " + std::string(RECMOD_BIN) + " " + args + " 2>&1");
}

TEST(ReliabilityTest, NonFiniteCheckpointWeightIsRefusedNotAHang) {
  auto t = train_briefly("rel_nan_ckpt");
  const StateDict good = io::load_tensors(t.run + "/model.pt");
  for (const auto& [name, value] : {std::pair<std::string, float>{"nan", std::nanf("")},
                                    {"inf", std::numeric_limits<float>::infinity()}}) {
    StateDict s = good;
    // The table: its row 7, column 2, then a later row too.
    auto it = std::find_if(s.begin(), s.end(), [](const auto& kv) { return kv.second.dim() == 2 && kv.second.size(0) == 50; });
    ASSERT_NE(it, s.end());
    it->second = it->second.clone();
    it->second[7][2] = value;
    it->second[9][0] = value;
    const std::string path = t.dir + "/" + name + ".pt";
    io::save_tensors(path, s);
    auto r = run_recmod_bounded("eval " + t.config + " --checkpoint " + path + " --data " + t.data);
    EXPECT_EQ(r.exit_code, 1) << r.output;  // 124 would be the hang
    EXPECT_THAT(r.output, HasSubstr("recmod: " + path + ": key '" + it->first + "' has " + name +
                                    " at index [7, 2] (2 of " + std::to_string(it->second.numel()) +
                                    " values are nan or inf)"));
  }
}

// The same guard behind the loader: predictions that are not finite (from
// weights or inputs) are an error naming the rows, before any metric.
TEST(ReliabilityTest, NonFinitePredictionsNameTheRows) {
  auto logits = torch::zeros({10});
  EXPECT_NO_THROW(train::check_finite_predictions(logits));
  logits[3] = std::nanf("");
  logits[8] = -std::numeric_limits<float>::infinity();
  try {
    train::check_finite_predictions(logits);
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("predictions are not finite (nan or inf) for 2 of 10 rows (0-based, in data order: 3, 8)"));
  }
}

}  // namespace reliability_test
}  // namespace recmod::testing
