// Issue 18: a data file cut short while recmod has it memory-mapped (another
// program truncates it, or rewrites it in place) is reported as such; it
// used to kill the process with SIGBUS at the first read past the new end.
#include "recmod/data/mapped_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "recmod/common/errors.h"
#include "recmod/data/binary_format.h"
#include "recmod/data/generate.h"
#include "recmod/data/text_lines.h"

namespace recmod::data {
namespace mapped_file_cut_test {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

std::string scratch(const std::string& name) {
  return std::string(::testing::TempDir()) + "recmod_cut_" + std::to_string(::getpid()) + "_" + name;
}

TEST(MappedFileCut, ReadPastTheNewEndIsZerosAndReported) {
  const std::string path = scratch("plain.bin");
  std::ofstream(path, std::ios::binary) << std::string(1 << 20, 'x');
  MappedFile file(path);
  EXPECT_FALSE(file.cut());
  EXPECT_NO_THROW(file.check_not_cut());
  fs::resize_file(path, 5000);
  EXPECT_EQ(file.data()[100], 'x');                    // before the new end: the file
  EXPECT_EQ(file.data()[(1 << 20) - 1], '\0');         // past it: a zero page, not SIGBUS
  EXPECT_EQ(file.data()[500000], '\0');
  EXPECT_TRUE(file.cut());
  try {
    file.check_not_cut(":7");
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr(path + ":7: the file was cut short while being read (1048576 bytes when opened, now 5000)"));
  }
  // Other mappings are not affected.
  const std::string other = scratch("other.bin");
  std::ofstream(other, std::ios::binary) << std::string(10000, 'y');
  MappedFile second(other);
  EXPECT_EQ(second.data()[9999], 'y');
  EXPECT_FALSE(second.cut());
  fs::remove(path);
  fs::remove(other);
}

TEST(MappedFileCut, TextLinesReportTheLine) {
  const std::string path = scratch("lines.tsv");
  {
    std::ofstream out(path);
    for (int i = 0; i < 100000; ++i) out << "1\t" << i << "\n";
  }
  TextLines lines(path);
  std::string_view line;
  ASSERT_TRUE(lines.next(line));
  fs::resize_file(path, 4096);
  try {
    while (lines.next(line)) {
    }
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr(path + ":"));
    EXPECT_THAT(e.what(), HasSubstr(": the file was cut short while being read ("));
  }
  fs::remove(path);
}

TEST(MappedFileCut, BinaryReaderReportsTheFile) {
  const std::string path = scratch("data.rmb");
  GenerateOptions options;
  options.num_rows = 50000;
  options.sparse = {{"C1", 100, 1, 3}};
  SyntheticReader source(options);
  write_binary(path, *source.read(options.num_rows));
  BinaryReader reader(path);
  ASSERT_TRUE(reader.read_batch(100));
  fs::resize_file(path, 8192);
  try {
    while (reader.read_batch(1000)) {
    }
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr(path + ": the file was cut short while being read ("));
  }
  fs::remove(path);
}

}  // namespace mapped_file_cut_test
}  // namespace recmod::data
