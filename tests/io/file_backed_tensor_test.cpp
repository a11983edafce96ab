// Tensors in a nameless file (io::file_backed_zeros): zero-filled, written
// and read like any tensor, nothing left in the directory, and a directory
// that cannot hold one is a FileWriteError naming it.
#include "recmod/io/file_backed_tensor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "recmod/io/atomic_file.h"
#include "support/test_util.h"

namespace recmod::io {
namespace file_backed_tensor_test {

namespace fs = std::filesystem;

std::string fresh(const std::string& name) {
  const auto dir = fs::temp_directory_path() / ("recmod_file_backed_" + name + "_" + std::to_string(::getpid()));
  test::remove_tree(dir.string());
  fs::create_directories(dir);
  return dir.string();
}

TEST(FileBackedTensor, ZeroFilledWritableAndLeavesNoFile) {
  const std::string dir = fresh("zeros");
  {
    torch::Tensor t = file_backed_zeros({1000, 33}, torch::kFloat, dir);
    EXPECT_TRUE(is_file_backed(t));
    EXPECT_EQ(t.sizes(), torch::IntArrayRef({1000, 33}));
    EXPECT_EQ(t.scalar_type(), torch::kFloat);
    EXPECT_TRUE(t.is_contiguous());
    EXPECT_EQ(t.abs().sum().item<double>(), 0.0);
    const torch::Tensor values = torch::randn({1000, 33});
    t.copy_(values);
    EXPECT_TRUE(torch::equal(t, values));
    t.narrow(0, 10, 5).fill_(2.5);  // a view writes through
    EXPECT_EQ(t[12][7].item<float>(), 2.5f);
    EXPECT_TRUE(fs::is_empty(dir)) << "the file has no name";
    const torch::Tensor half = file_backed_zeros({7}, torch::kHalf, dir);
    EXPECT_EQ(half.scalar_type(), torch::kHalf);
    EXPECT_EQ(half.sum().item<float>(), 0.0f);
  }
  EXPECT_TRUE(fs::is_empty(dir));
  EXPECT_FALSE(is_file_backed(torch::zeros({3})));
  EXPECT_FALSE(is_file_backed(torch::Tensor()));
  // nothing to map: an ordinary empty tensor
  EXPECT_EQ(file_backed_zeros({0, 4}, torch::kFloat, dir).numel(), 0);
  test::remove_tree(dir);
}

TEST(FileBackedTensor, ADirectoryThatCannotHoldItIsNamed) {
  const std::string missing = fresh("missing") + "/not-there";
  try {
    file_backed_zeros({4, 4}, torch::kFloat, missing);
    FAIL() << "no error";
  } catch (const FileWriteError& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr(missing + ": cannot hold a 64 bytes tensor in a file there"));
  }
}

}  // namespace file_backed_tensor_test
}  // namespace recmod::io
