// Every config shipped in configs/ validates and trains a few steps: a config
// that a release ships but no test runs drifts away from the code.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>

#include "cli/run_recmod.h"

namespace recmod::testing {
namespace shipped_configs_cli_test {

using ::testing::HasSubstr;

std::vector<std::filesystem::path> shipped_configs() {
  std::vector<std::filesystem::path> out;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(RECMOD_SOURCE_DIR) + "/configs"))
    if (entry.is_regular_file() && entry.path().extension() == ".yaml") out.push_back(entry.path());
  std::sort(out.begin(), out.end());
  return out;
}

/// The embedding parameter count `recmod validate` prints last.
int64_t embedding_parameters(const std::string& validate_output) {
  std::smatch m;
  static const std::regex line(R"(embedding (\d+)\))");
  return std::regex_search(validate_output, m, line) ? std::stoll(m[1]) : -1;
}

TEST(ShippedConfigsTest, EveryConfigValidatesAndTrainsAFewSteps) {
  const auto configs = shipped_configs();
  ASSERT_GE(configs.size(), 8u);
  const auto dir = fresh_dir("shipped_configs");
  for (const auto& config : configs) {
    const std::string name = config.stem().string();
    auto v = run_recmod("validate " + config.string());
    ASSERT_EQ(v.exit_code, 0) << name << ": " << v.output;
    EXPECT_THAT(v.output, HasSubstr("output: ")) << name;
    const int64_t embedding = embedding_parameters(v.output);
    ASSERT_GT(embedding, 0) << name << ": " << v.output;
    // The Kaggle-size DLRM (2.16 GB of tables) is validated, not trained:
    // drawing its tables would dominate the suite's time and memory.
    if (embedding * 4 > (int64_t{512} << 20)) continue;
    const std::string report = dir + "/" + name + ".json";
    auto p = run_recmod("profile " + config.string() + " --synthetic --steps 2 --warmup 1 --batch-size 32 --threads 1 " +
                        "--trace '' --json " + report);
    ASSERT_EQ(p.exit_code, 0) << name << ": " << p.output;
    nlohmann::json r;
    std::ifstream(report) >> r;
    EXPECT_FALSE(r["nodes"].empty()) << name;
    EXPECT_GT(r["examples_per_s"].get<double>(), 0) << name;
  }
}

}  // namespace shipped_configs_cli_test
}  // namespace recmod::testing
