#include "recmod/conformance/runner.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "recmod/common/errors.h"
#include "recmod/conformance/registry.h"
#include "support/test_util.h"

namespace recmod::conformance {
namespace runner_test {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

class RunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("recmod_runner_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { test::remove_tree(dir_.string()); }
  std::string write(const std::string& name, const std::string& text) {
    auto p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }
  fs::path dir_;
};

TEST_F(RunnerTest, UnknownModuleIsAFailNotASkip) {
  auto path = write("a.json", R"({"name":"a","module":"NoSuchModule","args":{},"state_dict":{},"calls":[],
                                   "train_step":null,"tolerance":{"rtol":0,"atol":0}})");
  auto r = run_case_file(path);
  EXPECT_FALSE(r.passed);
  EXPECT_FALSE(r.supported);
  EXPECT_EQ(r.message, "unsupported module NoSuchModule");
}

TEST_F(RunnerTest, BrokenFileIsAFailWithItsName) {
  auto path = write("broken.json", "{not json");
  auto r = run_case_file(path);
  EXPECT_FALSE(r.passed);
  EXPECT_EQ(r.name, "broken");
  EXPECT_THAT(r.message, HasSubstr("not valid JSON"));
}

TEST_F(RunnerTest, SummaryLineAndCollection) {
  write("b.json", R"({"name":"b","module":"X","args":{},"state_dict":{},"calls":[],"train_step":null,
                      "tolerance":{"rtol":0,"atol":0}})");
  write("a.json", "[]");
  write("notes.txt", "ignored");
  auto files = collect_case_files({dir_.string()});
  ASSERT_EQ(files.size(), 2u);
  EXPECT_THAT(files[0], HasSubstr("a.json"));  // sorted
  std::ostringstream out;
  auto s = run_conformance(files, out);
  EXPECT_EQ(s.failed, 2);
  EXPECT_EQ(s.passed, 0);
  EXPECT_THAT(out.str(), HasSubstr("b FAIL (X) unsupported module X\n"));
  EXPECT_THAT(out.str(), HasSubstr("\n0 passed, 2 failed\n"));
  EXPECT_THROW(collect_case_files({(dir_ / "missing").string()}), UsageError);
}

TEST(Registry, SupportedListMatchesRegistry) {
  const auto names = supported_modules();
  for (const auto& n : names) EXPECT_TRUE(is_supported(n));
  EXPECT_FALSE(is_supported("NoSuchModule"));
}

}  // namespace runner_test
}  // namespace recmod::conformance
