// recmod train/eval on delimited text described by data.columns, with the
// shipped configs: a generated Avazu-style CSV with a planted signal (always
// runs), and the real MovieLens-100k and Avazu samples in ../shared/data
// (skipped when absent).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include <fstream>
#include <random>
#include <sstream>

#include "cli/run_recmod.h"

namespace recmod::testing {
namespace delimited_cli_test {

using ::testing::HasSubstr;
using ::testing::Not;

const std::string kShared = RECMOD_SOURCE_DIR "/../shared/data/";
const std::string kMovieLens = RECMOD_SOURCE_DIR "/configs/movielens_100k.yaml";
const std::string kAvazu = RECMOD_SOURCE_DIR "/configs/avazu_csv.yaml";

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

nlohmann::json eval_json(const std::string& config, const std::string& run, const std::string& data) {
  auto r = run_recmod("eval " + config + " --checkpoint " + run + "/model.pt --data " + data + " --json --threads 1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const auto brace = r.output.rfind('{');
  if (brace == std::string::npos) return nlohmann::json::object();
  return nlohmann::json::parse(r.output.substr(brace));
}

/// An Avazu-layout CSV (header, 24 columns) whose clicks depend on site_id
/// and app_id: half the sites click 80% of the time, the others 10%.
std::string avazu_style_csv(int rows, uint32_t seed) {
  std::mt19937 rng(seed);
  auto hex = [&](int n, int which) {
    std::ostringstream s;
    s << std::hex << (0x1000000u + static_cast<uint32_t>(which) * 2654435761u % 0xf000000u + static_cast<uint32_t>(n));
    return s.str();
  };
  std::ostringstream out;
  out << "id,click,hour,C1,banner_pos,site_id,site_domain,site_category,app_id,app_domain,app_category,device_id,"
         "device_ip,device_model,device_type,device_conn_type,C14,C15,C16,C17,C18,C19,C20,C21\n";
  std::uniform_int_distribution<int> site(0, 19), small(0, 4), noise(0, 999);
  std::uniform_real_distribution<double> u(0, 1);
  for (int r = 0; r < rows; ++r) {
    const int s = site(rng);
    const bool click = u(rng) < (s % 2 == 0 ? 0.8 : 0.1);
    out << (1000000000000000000ULL + static_cast<uint64_t>(r)) << "," << click << ",141021" << small(rng) << ",1005,"
        << small(rng) << "," << hex(s, 1) << "," << hex(s, 2) << "," << hex(small(rng), 3) << "," << hex(small(rng), 4)
        << "," << hex(small(rng), 5) << "," << hex(small(rng), 6) << "," << hex(noise(rng), 7) << ","
        << hex(noise(rng), 8) << "," << hex(small(rng), 9) << ",1," << small(rng) << "," << 15000 + small(rng)
        << ",320,50," << 1700 + small(rng) << ",0,35,-1," << 79 + small(rng) << "\n";
  }
  return out.str();
}

TEST(DelimitedCliTest, ShippedConfigsValidate) {
  for (const auto& config : {kMovieLens, kAvazu}) {
    auto r = run_recmod("validate " + config);
    EXPECT_EQ(r.exit_code, 0) << config << "\n" << r.output;
  }
}

TEST(DelimitedCliTest, AvazuStyleCsvLearnsThePlantedSignal) {
  const auto dir = fresh_dir("delimited_avazu_style");
  const auto train = write_file(dir + "/train.csv", avazu_style_csv(4000, 5));
  const auto eval = write_file(dir + "/eval.csv", avazu_style_csv(1000, 6));
  auto r = run_recmod("train " + kAvazu + " --data " + train + " --out " + dir + "/run --steps 60 --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto m = eval_json(kAvazu, dir + "/run", eval);
  EXPECT_EQ(m.value("count", int64_t{0}), 1000) << m.dump();
  EXPECT_GT(m.value("auc", 0.0), 0.75) << m.dump();  // the planted site effect alone gives ~0.85
}

TEST(DelimitedCliTest, InspectAndConvertReadTheColumnsOfTheConfig) {
  const auto dir = fresh_dir("delimited_inspect");
  const auto csv = write_file(dir + "/train.csv", avazu_style_csv(500, 7));
  auto r = run_recmod("inspect " + csv + " --config " + kAvazu + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  EXPECT_EQ(j["format"], "delimited");
  EXPECT_EQ(j["rows"], 500);
  EXPECT_EQ(j["bad_records"], 0);
  ASSERT_EQ(j["sparse"].size(), 22u);
  for (const auto& f : j["sparse"]) {
    EXPECT_EQ(f["ids_per_row"], 1.0) << f.dump();
    EXPECT_EQ(f["ids_outside_table"], 0) << f.dump();
    EXPECT_LT(f["max_id"].get<int64_t>(), 100000) << f.dump();  // hashed into the shared table's rows
  }
  EXPECT_EQ(j["sparse"][3]["name"], "site_id");
  EXPECT_EQ(j["sparse"][3]["distinct_ids"], 20);  // the generator's 20 sites
  const auto csv_sparse = j["sparse"];

  // Without the config the CSV is taken for Criteo TSV: every line bad, and the first says why.
  r = run_recmod("inspect " + csv + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  j = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  EXPECT_EQ(j["format"], "criteo_tsv");
  EXPECT_EQ(j["rows"], 0);
  EXPECT_EQ(j["bad_records"], 501);
  EXPECT_THAT(j["first_bad_records"][0].get<std::string>(), HasSubstr("data.columns"));

  // convert --config writes the same rows as .rmb, which trains with the same config.
  r = run_recmod("convert " + csv + " " + dir + "/train.rmb --config " + kAvazu);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("500 rows read"));
  r = run_recmod("inspect " + dir + "/train.rmb --config " + kAvazu + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto rmb = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  EXPECT_EQ(rmb["format"], "binary");
  EXPECT_EQ(rmb["sparse"], csv_sparse);  // the same ids, feature by feature
  r = run_recmod("train " + kAvazu + " --data " + dir + "/train.rmb --out " + dir + "/run --steps 2 --threads 1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(DelimitedCliTest, BadRecordsFailOrAreSkippedWithinABudget) {
  const auto dir = fresh_dir("delimited_bad_records");
  std::string text = avazu_style_csv(400, 8);
  // Lines 11 and 201 get a click of 'x' (line 1 is the header).
  for (int line : {201, 11}) {
    size_t at = 0;
    for (int i = 1; i < line; ++i) at = text.find('\n', at) + 1;
    at = text.find(',', at) + 1;
    text[at] = 'x';
  }
  const auto csv = write_file(dir + "/train.csv", text);
  auto r = run_recmod("train " + kAvazu + " --data " + csv + " --out " + dir + "/fail --steps 2 --threads 1");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("train.csv:11: column 'click': expected a number as the label, found 'x'"));

  r = run_recmod("train " + kAvazu + " --data " + csv + " --out " + dir + "/skip --threads 1 --bad-records skip");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("epoch 0: 398 rows read, 2 bad records skipped (first: "));
  std::ifstream metrics(dir + "/skip/metrics.jsonl");
  std::string line;
  nlohmann::json bad;
  while (std::getline(metrics, line))
    if (line.find("\"bad_records\"") != std::string::npos) bad = nlohmann::json::parse(line);
  ASSERT_FALSE(bad.is_null());
  EXPECT_EQ(bad["skipped"], 2);
  EXPECT_EQ(bad["rows_read"], 398);
  EXPECT_THAT(bad["first"][1].get<std::string>(), HasSubstr("train.csv:201: column 'click'"));

  r = run_recmod("train " + kAvazu + " --data " + csv + " --out " + dir + "/budget --threads 1 --bad-records skip " +
                 "--max-bad-fraction 0.001");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("2 bad records of 400 read (0.5%) exceed --max-bad-fraction 0.001"));
}

TEST(DelimitedCliTest, MovieLens100kTrainsFromTheRawFiles) {
  const std::string data = kShared + "movielens-100k/u.data";
  if (!exists(data)) GTEST_SKIP() << data << " is absent";
  const auto dir = fresh_dir("delimited_movielens");
  auto r = run_recmod("train " + kMovieLens + " --data " + data + " --out " + dir + "/run --steps 150 --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto m = eval_json(kMovieLens, dir + "/run", data);
  EXPECT_EQ(m.value("count", int64_t{0}), 100000) << m.dump();
  EXPECT_GT(m.value("auc", 0.0), 0.68) << m.dump();  // 0.75 when written
}

TEST(DelimitedCliTest, AvazuSampleTrains) {
  const std::string data = kShared + "deepctr_samples/avazu_sample.txt";
  if (!exists(data)) GTEST_SKIP() << data << " is absent";
  const auto dir = fresh_dir("delimited_avazu_sample");
  auto r = run_recmod("train " + kAvazu + " --data " + data + " --out " + dir + "/run --steps 3 --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(eval_json(kAvazu, dir + "/run", data).value("count", int64_t{0}), 100);
}

TEST(DelimitedCliTest, TaobaoAndAlimamaSamplesTrainFromTheirShippedConfigs) {
  const std::string taobao = kShared + "taobao_ad_fuxictr/";
  const std::string alimama = kShared + "alimama_dmr/alimama_sampled_train.txt";
  if (!exists(taobao + "train_sample.csv") || !exists(alimama)) GTEST_SKIP() << "no Taobao or Alimama sample";
  const auto dir = fresh_dir("delimited_taobao_alimama");
  const std::string taobao_config = RECMOD_SOURCE_DIR "/configs/taobao_ad.yaml";
  auto t = run_recmod("train " + taobao_config + " --data " + taobao + "train_sample.csv --out " + dir +
                      "/taobao --threads 1");
  ASSERT_EQ(t.exit_code, 0) << t.output;
  // A run shorter than log_interval logs no line: no page, and no warning.
  EXPECT_THAT(t.output, HasSubstr("report: none (nothing logged"));
  EXPECT_THAT(t.output, Not(HasSubstr("warning")));
  EXPECT_EQ(eval_json(taobao_config, dir + "/taobao", taobao + "test_sample.csv").value("count", int64_t{0}), 100);

  // 267 columns: three masked 50-cell histories; trained on its 500 rows it fits them.
  const std::string alimama_config = RECMOD_SOURCE_DIR "/configs/alimama_dmr.yaml";
  auto a = run_recmod("train " + alimama_config + " --data " + alimama + " --out " + dir + "/alimama --threads 1");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  const auto m = eval_json(alimama_config, dir + "/alimama", alimama);
  EXPECT_EQ(m.value("count", int64_t{0}), 500) << m.dump();
  EXPECT_GT(m.value("auc", 0.0), 0.9) << m.dump();
}

TEST(DelimitedCliTest, CsvWithoutColumnsSaysHowToDescribeIt) {
  const auto dir = fresh_dir("delimited_no_columns");
  const auto config = write_file(dir + "/tiny.yaml", tiny_model_yaml());
  const auto data = write_file(dir + "/d.csv", "label,a,b\n1,2,3\n");
  auto r = run_recmod("train " + config + " --data " + data + " --out " + dir + "/run --threads 1");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  // The tiny model's 2 dense features already differ from Criteo's 13.
  EXPECT_THAT(r.output, HasSubstr("d.csv: the data has 13 dense features"));
  EXPECT_THAT(r.output, HasSubstr("read as Criteo TSV"));
  EXPECT_THAT(r.output, HasSubstr("delimited text such as CSV whose columns the config describes in data.columns"));
}

}  // namespace delimited_cli_test
}  // namespace recmod::testing
