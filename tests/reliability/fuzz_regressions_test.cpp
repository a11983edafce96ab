// Inputs the fuzzers (fuzz/, scripts/fuzz) found, each fed through the same
// reader as its fuzz target: tests/reliability/fuzz-regressions/<target>/.
// Every one of them once crashed, tripped a sanitizer or escaped as an
// untyped exception; now each is read or refused with recmod's typed error.
// Under scripts/sanitize (CI) these also run with ASan + UBSan.
#include <c10/core/CPUAllocator.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "recmod/common/errors.h"
#include "recmod/config/config_node.h"
#include "recmod/config/model_config.h"
#include "recmod/data/binary_format.h"
#include "recmod/data/criteo_tsv.h"
#include "recmod/data/jsonl.h"
#include "recmod/train/checkpoint.h"
#include "recmod/train/torch_pickle.h"
#include "support/test_util.h"

namespace recmod {
namespace {

using ::testing::HasSubstr;
using test::error_of;
namespace fs = std::filesystem;

std::string regression(const std::string& target, const std::string& name) {
  return std::string(RECMOD_SOURCE_DIR) + "/tests/reliability/fuzz-regressions/" + target + "/" + name;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << "cannot open " << path;
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// What fuzz/config_fuzz.cpp does.
void read_config(const std::string& path) {
  (void)config::parse_model_config(config::ConfigNode::load_file(path));
}

// What fuzz/binary_fuzz.cpp does; returns the rows read.
int64_t read_binary(const std::string& path) {
  data::BinaryReader a(path);
  int64_t rows = 0;
  while (auto block = a.read(3)) rows += block->to_batch().labels.size(0);
  data::BinaryReader b(path);
  int64_t batch_rows = 0;
  while (auto batch = b.read_batch(2)) batch_rows += batch->labels.size(0);
  EXPECT_EQ(batch_rows, rows);
  return rows;
}

TEST(FuzzRegressionTest, ConfigKeyThatIsAMapIsAConfigError) {
  // "? sParse_arch:\n    type: ..." makes the key itself a map; reading it as
  // a name threw yaml-cpp's TypedBadConversion out of allow_keys.
  const std::string path = regression("config", "complex_key.yaml");
  EXPECT_THAT(error_of<ConfigError>([&] { read_config(path); }),
              HasSubstr("complex_key.yaml:7:3: expected a name as key, found a map"));
  // The same below the root names the path of the map holding the key.
  const auto dir = fs::path(RECMOD_BINARY_DIR) / "fuzz_regressions";
  fs::create_directories(dir);
  const std::string nested = (dir / "nested_key.yaml").string();
  std::ofstream(nested) << "features: {dense: 1, sparse: [a]}\nnodes:\n  ? [x, y]\n  : {type: MLP}\noutput: x\n";
  EXPECT_THAT(error_of<ConfigError>([&] { read_config(nested); }),
              HasSubstr("nested_key.yaml:3:5: nodes: expected a name as key, found a list"));
}

TEST(FuzzRegressionTest, BinaryFileWithoutIdsReads) {
  // A valid file whose bags are all empty: read_batch passed the null data
  // pointer of an empty values tensor to memcpy (UBSan: nonnull attribute).
  EXPECT_EQ(read_binary(regression("binary", "no_ids.rmb")), 3);
  data::BinaryReader reader(regression("binary", "no_ids.rmb"));
  auto batch = reader.read_batch(10);
  ASSERT_TRUE(batch);
  EXPECT_EQ(batch->sparse.values().numel(), 0);
  EXPECT_EQ(batch->sparse.lengths().sum().item<int64_t>(), 0);
}

TEST(FuzzRegressionTest, BinaryRowsWithoutColumnsAreRefused) {
  // 34 billion rows of no labels, dense or sparse features: every block is
  // empty, so no size check bounded the count and reading never ended (a
  // libFuzzer timeout).
  EXPECT_THAT(error_of<InputError>([] { read_binary(regression("binary", "rows_without_columns.rmb")); }),
              HasSubstr("rows_without_columns.rmb: header says 34359748608 rows but no columns (no labels, dense or "
                        "sparse features)"));
}

}  // namespace
}  // namespace recmod
