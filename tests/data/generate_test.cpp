#include "recmod/data/generate.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <map>

#include "recmod/common/errors.h"
#include "recmod/data/binary_format.h"
#include "recmod/data/jsonl.h"
#include "recmod/data/open_reader.h"
#include "recmod/metrics/auc.h"

namespace recmod::data {
namespace generate_test {

GenerateOptions options(uint64_t seed = 7, int64_t rows = 20000) {
  GenerateOptions o;
  o.num_rows = rows;
  o.num_dense = 3;
  o.sparse = {{"user", 500, 1, 1}, {"items", 2000, 0, 4}, {"noise", 100, 1, 2}};
  o.num_signal_features = 2;
  o.signal_strength = 1.5;
  o.seed = seed;
  return o;
}

ExampleColumns read_all(ExampleReader& reader, int64_t chunk) {
  ExampleColumns all(reader.schema());
  while (auto block = reader.read(chunk)) all.append(*block);
  return all;
}

TEST(Generate, DeterministicPerSeedAndIndependentOfChunking) {
  SyntheticReader a(options(7)), b(options(7)), c(options(8));
  const auto x = read_all(a, 20000), y = read_all(b, 333), z = read_all(c, 20000);
  EXPECT_EQ(x.labels, y.labels);
  EXPECT_EQ(x.dense, y.dense);
  EXPECT_EQ(x.sparse[1].ids, y.sparse[1].ids);
  EXPECT_EQ(x.sparse[1].offsets, y.sparse[1].offsets);
  EXPECT_NE(x.sparse[1].ids, z.sparse[1].ids);
  EXPECT_NE(x.labels, z.labels);
}

TEST(Generate, ShapesRangesAndZipfSkew) {
  SyntheticReader reader(options());
  const auto data = read_all(reader, 4096);
  ASSERT_EQ(data.num_rows(), 20000);
  EXPECT_EQ(data.dense.size(), 60000u);
  int64_t id0 = 0, id_high = 0;
  for (int64_t r = 0; r < data.num_rows(); ++r) {
    EXPECT_EQ(data.sparse[0].length(r), 1);
    EXPECT_LE(data.sparse[1].length(r), 4);
  }
  for (int64_t id : data.sparse[0].ids) {
    ASSERT_GE(id, 0);
    ASSERT_LT(id, 500);
    id0 += id == 0;
    id_high += id >= 250;
  }
  // Zipf: the most frequent id alone outnumbers the whole upper half of the range.
  EXPECT_GT(id0, id_high);
}

TEST(Generate, PlantedSignalShowsInLabelRates) {
  const auto o = options();
  SyntheticReader reader(o);
  const auto data = read_all(reader, 4096);
  // Split rows by the sign of the hidden weight of their "user" id: the
  // positive side must have a clearly higher label rate.
  double pos[2] = {0, 0}, rows[2] = {0, 0};
  double noise_pos[2] = {0, 0}, noise_rows[2] = {0, 0};
  for (int64_t r = 0; r < data.num_rows(); ++r) {
    const int side = planted_weight(o, 0, data.sparse[0].ids[r]) > 0;
    pos[side] += data.labels[r];
    rows[side] += 1;
    // The noise feature's (unused) hidden weight must not matter.
    const int noise_side = planted_weight(o, 2, data.sparse[2].ids[data.sparse[2].offsets[r]]) > 0;
    noise_pos[noise_side] += data.labels[r];
    noise_rows[noise_side] += 1;
  }
  const double low = pos[0] / rows[0], high = pos[1] / rows[1];
  EXPECT_GT(high - low, 0.15) << "label rate " << low << " vs " << high;
  EXPECT_LT(std::abs(noise_pos[1] / noise_rows[1] - noise_pos[0] / noise_rows[0]), 0.05);
}

TEST(Generate, PerIdLabelRatesBeatChanceOnHeldOutRows) {
  // The simplest "model": the smoothed label rate of each user id, learnt on
  // the first half, scored on the second half with the exact AUC.
  SyntheticReader reader(options(5, 40000));
  const auto data = read_all(reader, 8192);
  const int64_t half = data.num_rows() / 2;
  std::map<int64_t, std::pair<double, double>> seen;  // id -> (positives, rows)
  for (int64_t r = 0; r < half; ++r) {
    auto& s = seen[data.sparse[0].ids[r]];
    s.first += data.labels[r];
    s.second += 1;
  }
  std::vector<float> predictions, labels;
  for (int64_t r = half; r < data.num_rows(); ++r) {
    const auto s = seen[data.sparse[0].ids[r]];
    predictions.push_back(static_cast<float>((s.first + 1) / (s.second + 4)));
    labels.push_back(data.labels[r]);
  }
  EXPECT_GT(metrics::auc(predictions, labels), 0.62);
}

TEST(Generate, WritesBinaryAndJsonlWithSameContent) {
  auto o = options(3, 500);
  o.weighted = true;
  const std::string base = ::testing::TempDir() + "recmod_gen_" + std::to_string(::getpid());
  generate_to_file(o, base + ".rmb", GenerateFormat::kBinary);
  generate_to_file(o, base + ".jsonl", GenerateFormat::kJsonl);
  auto bin = open_reader(base + ".rmb");
  auto text = open_reader(base + ".jsonl", DataFormat::kAuto, synthetic_schema(o));
  const auto a = read_all(*bin, 100), b = read_all(*text, 100);
  EXPECT_EQ(a.num_rows(), 500);
  EXPECT_EQ(a.labels, b.labels);
  EXPECT_EQ(a.dense, b.dense);
  EXPECT_EQ(a.sparse[1].ids, b.sparse[1].ids);
  EXPECT_EQ(a.sparse[1].weights, b.sparse[1].weights);
  std::remove((base + ".rmb").c_str());
  std::remove((base + ".jsonl").c_str());
}

TEST(Generate, SkippedRowsContinueTheStream) {
  // Rows [120, 300) written alone are the last 180 rows of a 300-row file.
  auto o = options(2, 300);
  const std::string base = ::testing::TempDir() + "recmod_gen_skip_" + std::to_string(::getpid());
  generate_to_file(o, base + "_all.rmb", GenerateFormat::kBinary);
  o.num_rows = 180;
  generate_to_file(o, base + "_tail.rmb", GenerateFormat::kBinary, 120);
  auto all_reader = open_reader(base + "_all.rmb");
  auto tail_reader = open_reader(base + "_tail.rmb");
  const auto all = read_all(*all_reader, 64), tail = read_all(*tail_reader, 64);
  ASSERT_EQ(tail.num_rows(), 180);
  EXPECT_EQ(tail.labels, std::vector<float>(all.labels.begin() + 120, all.labels.end()));
  const int64_t dense = o.num_dense;
  EXPECT_EQ(tail.dense, std::vector<float>(all.dense.begin() + 120 * dense, all.dense.end()));
  const auto& ids = all.sparse[1].ids;
  const auto first = ids.begin() + all.sparse[1].offsets[120];
  EXPECT_EQ(tail.sparse[1].ids, std::vector<int64_t>(first, ids.end()));
  EXPECT_THROW(generate_to_file(o, base + "_bad.rmb", GenerateFormat::kBinary, -1), UsageError);
  std::remove((base + "_all.rmb").c_str());
  std::remove((base + "_tail.rmb").c_str());
}

TEST(Generate, NumberedFeaturesAreWhatTheCommandNames) {
  const auto f = numbered_features(3, 40, 2);
  ASSERT_EQ(f.size(), 3u);
  EXPECT_EQ(f[0].name, "C1");
  EXPECT_EQ(f[2].name, "C3");
  EXPECT_EQ(f[1].cardinality, 40);
  EXPECT_EQ(f[1].min_ids, 1);
  EXPECT_EQ(f[1].max_ids, 2);
}

TEST(Generate, ParsesFeatureSpecs) {
  const auto a = parse_synthetic_feature("user:100000");
  EXPECT_EQ(a.name, "user");
  EXPECT_EQ(a.cardinality, 100000);
  EXPECT_EQ(a.min_ids, 1);
  EXPECT_EQ(a.max_ids, 1);
  const auto b = parse_synthetic_feature("tags:5000:0-4");
  EXPECT_EQ(b.min_ids, 0);
  EXPECT_EQ(b.max_ids, 4);
  EXPECT_EQ(parse_synthetic_feature("hist:50:3").max_ids, 3);
  try {
    parse_synthetic_feature("tags:lots");
    FAIL() << "no error";
  } catch (const UsageError& e) {
    EXPECT_STREQ(e.what(),
                 "sparse feature 'tags:lots': expected name:cardinality[:ids or min-max], e.g. user:100000 or "
                 "tags:5000:1-4 (cardinality 'lots' is not an integer)");
  }
  EXPECT_THROW(parse_synthetic_feature("tags:10:4-1"), UsageError);
  EXPECT_THROW(parse_synthetic_feature(":10"), UsageError);
}

TEST(Generate, RejectsBadOptions) {
  auto o = options();
  o.sparse[1].max_ids = -1;
  EXPECT_THROW(SyntheticReader{o}, InputError);
  try {
    SyntheticReader reader(o);
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("feature items: expected 0 <= min_ids <= max_ids, got 0 and -1"));
  }
}

}  // namespace generate_test
}  // namespace recmod::data
