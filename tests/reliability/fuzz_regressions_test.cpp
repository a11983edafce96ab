// Inputs the fuzzers (fuzz/, scripts/fuzz) found, each fed through the same
// reader as its fuzz target: tests/reliability/fuzz-regressions/<target>/.
// Every one of them once crashed, tripped a sanitizer or escaped as an
// untyped exception; now each is read or refused with recmod's typed error.
// Under scripts/sanitize (CI) these also run with ASan + UBSan.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "recmod/common/errors.h"
#include "recmod/config/config_node.h"
#include "recmod/config/model_config.h"
#include "recmod/data/binary_format.h"
#include "support/test_util.h"

namespace recmod {
namespace fuzz_regressions_test {

using ::testing::HasSubstr;
using test::error_of;
namespace fs = std::filesystem;

std::string regression(const std::string& target, const std::string& name) {
  return std::string(RECMOD_SOURCE_DIR) + "/tests/reliability/fuzz-regressions/" + target + "/" + name;
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
  // The fuzzer's file also holds a backspace (0x08), refused first since
  // configs must be text (issue 18); without it the key is what is refused.
  const std::string path = regression("config", "complex_key.yaml");
  EXPECT_THAT(error_of<ConfigError>([&] { read_config(path); }),
              HasSubstr("complex_key.yaml:3:16: not a text file: byte 45 is 0x08"));
  const auto dir = fs::path(RECMOD_BINARY_DIR) / "fuzz_regressions";
  fs::create_directories(dir);
  std::ifstream original(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(original)), std::istreambuf_iterator<char>());
  ASSERT_EQ(text.at(45), '\x08');
  text[45] = ' ';
  const std::string as_text = (dir / "complex_key.yaml").string();
  std::ofstream(as_text, std::ios::binary) << text;
  EXPECT_THAT(error_of<ConfigError>([&] { read_config(as_text); }),
              HasSubstr("complex_key.yaml:7:3: expected a name as key, found a map"));
  // The same below the root names the path of the map holding the key.
  const std::string nested = (dir / "nested_key.yaml").string();
  std::ofstream(nested) << "features: {dense: 1, sparse: [a]}\nnodes:\n  ? [x, y]\n  : {type: MLP}\noutput: x\n";
  EXPECT_THAT(error_of<ConfigError>([&] { read_config(nested); }),
              HasSubstr("nested_key.yaml:3:5: nodes: expected a name as key, found a list"));
}

TEST(FuzzRegressionTest, BinaryBatchWithoutIdsReads) {
  // A valid weighted file of 3 rows: f1 has no ids, f2 has bags of 1, 2 and 0
  // ids. Read two rows at a time, the last batch has no ids at all, and
  // read_batch passed the null data pointer of its empty values tensor to
  // memcpy (UBSan: null pointer passed as argument declared nonnull).
  const std::string path = regression("binary", "batch_without_ids.rmb");
  EXPECT_EQ(read_binary(path), 3);
  data::BinaryReader reader(path);
  auto first = reader.read_batch(2);
  ASSERT_TRUE(first);
  EXPECT_TRUE(torch::equal(first->sparse.values(), torch::tensor(std::vector<int64_t>{0, 10, 11})));
  auto last = reader.read_batch(2);
  ASSERT_TRUE(last);
  EXPECT_EQ(last->size(), 1);
  EXPECT_EQ(last->sparse.values().numel(), 0);
  EXPECT_EQ(last->sparse.weights().numel(), 0);
  EXPECT_FALSE(reader.read_batch(2));
}

TEST(FuzzRegressionTest, BinaryRowsWithoutColumnsAreRefused) {
  // 34 billion rows of no labels, dense or sparse features: every block is
  // empty, so no size check bounded the count and reading never ended (a
  // libFuzzer timeout).
  EXPECT_THAT(error_of<InputError>([] { read_binary(regression("binary", "rows_without_columns.rmb")); }),
              HasSubstr("rows_without_columns.rmb: header says 34359748608 rows but no columns (no labels, dense or "
                        "sparse features)"));
}

}  // namespace fuzz_regressions_test
}  // namespace recmod
