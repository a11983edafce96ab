// Multi-task training and sample weights end to end (issue 14): the shipped
// two-task MovieLens config trains on the real sample (skipped when
// ../shared/data is absent) and evaluates per task; sample weights of JSON
// lines weigh the evaluation exactly as repeating (or dropping) rows would.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "cli/run_recmod.h"

namespace recmod::testing {
namespace multi_task_cli_test {

using ::testing::HasSubstr;

const std::string kMovieLens = RECMOD_SOURCE_DIR "/../shared/data/movielens-100k/u.data";

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

nlohmann::json last_json_line(const std::string& output) {
  std::istringstream in(output);
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty() && line[0] == '{') last = line;
  return last.empty() ? nlohmann::json() : nlohmann::json::parse(last);
}

TEST(MultiTaskCliTest, ShippedMovieLensTwoTaskConfigTrainsAndEvaluatesPerTask) {
  if (!exists(kMovieLens)) GTEST_SKIP() << "no " << kMovieLens;
  const auto dir = fresh_dir("multi_task_movielens");
  const std::string config = std::string(RECMOD_SOURCE_DIR) + "/configs/movielens_multitask.yaml";
  auto t = run_recmod("train " + config + " --data " + kMovieLens + " --out " + dir + "/run --steps 150 --threads 1");
  ASSERT_EQ(t.exit_code, 0) << t.output;
  EXPECT_THAT(t.output, HasSubstr("like.auc"));  // the window's per-task metrics on the console
  // metrics.jsonl: per-task keys in each train window.
  std::ifstream metrics(dir + "/run/metrics.jsonl");
  std::string line, last;
  while (std::getline(metrics, line)) last = line;
  const auto window = nlohmann::json::parse(last);
  EXPECT_TRUE(window.contains("like.auc") && window.contains("rating.rmse")) << last;

  auto e = run_recmod("eval --checkpoint " + dir + "/run/model.pt --data " + kMovieLens + " --json --threads 1 " +
                      "--predictions " + dir + "/p.tsv --with-labels");
  ASSERT_EQ(e.exit_code, 0) << e.output;
  const auto m = last_json_line(e.output);
  EXPECT_EQ(m["count"].get<int64_t>(), 100000);
  EXPECT_GT(m["like.auc"].get<double>(), 0.65);   // 0.73 after 150 steps when written
  EXPECT_LT(m["rating.rmse"].get<double>(), 1.3);  // ratings 1-5; predicting the mean gives about 1.13
  std::ifstream predictions(dir + "/p.tsv");
  std::string header, first;
  std::getline(predictions, header);
  std::getline(predictions, first);
  EXPECT_EQ(header, "row\tlabel.like\tlabel.rating\tlike\trating");
  // u.data's first row: user 196, item 242, rating 3: like 0, rating 3.
  EXPECT_THAT(first, ::testing::StartsWith("0\t0\t3\t"));
}

// Evaluating with sample weights 0/1 gives the metrics of the rows of weight
// 1 alone; weight 2 gives those of the row written twice.
TEST(MultiTaskCliTest, JsonLinesSampleWeightsWeighTheMetricsLikeRepeatedRows) {
  const auto dir = fresh_dir("multi_task_weights");
  write_synthetic(dir + "/all.jsonl", "--rows 600 --dense 2 --sparse 3 --cardinality 50 --seed 5 --format jsonl");
  const std::string config = write_file(dir + "/m.yaml", tiny_model_yaml());
  auto t = run_recmod("train " + config + " --data " + dir + "/all.jsonl --out " + dir + "/run --steps 12 --threads 1");
  ASSERT_EQ(t.exit_code, 0) << t.output;
  // weighted.jsonl: row i gets weight i % 3 (0, 1, 2); repeated.jsonl: row i
  // written i % 3 times, without weights.
  std::ifstream all(dir + "/all.jsonl");
  std::ofstream weighted(dir + "/weighted.jsonl"), repeated(dir + "/repeated.jsonl");
  std::string line;
  for (int i = 0; std::getline(all, line); ++i) {
    auto j = nlohmann::json::parse(line);
    for (int k = 0; k < i % 3; ++k) repeated << line << "\n";
    j["weight"] = i % 3;
    weighted << j.dump() << "\n";
  }
  weighted.close();
  repeated.close();
  const std::string model = " --checkpoint " + dir + "/run/model.pt --json --threads 1";
  auto w = run_recmod("eval " + config + " --set data.sample_weights=true --data " + dir + "/weighted.jsonl" + model);
  ASSERT_EQ(w.exit_code, 0) << w.output;
  auto r = run_recmod("eval " + config + " --data " + dir + "/repeated.jsonl" + model);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto mw = last_json_line(w.output), mr = last_json_line(r.output);
  for (const char* key : {"auc", "ne", "log_loss", "accuracy", "calibration"})
    EXPECT_NEAR(mw[key].get<double>(), mr[key].get<double>(), 1e-6) << key;
  EXPECT_EQ(mw["count"].get<int64_t>(), 600);
  EXPECT_EQ(mr["count"].get<int64_t>(), 600);  // 200 * 0 + 200 * 1 + 200 * 2
  // Without data.sample_weights a "weight" key is a bad record that says how to declare it.
  auto bad = run_recmod("eval " + config + " --data " + dir + "/weighted.jsonl" + model);
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.output, HasSubstr("weighted.jsonl:1: expected keys \"label\", \"dense\", \"sparse\", found \"weight\" "
                                    "(sample weights: set data.sample_weights: true)"));
}

}  // namespace multi_task_cli_test
}  // namespace recmod::testing
