#include "recmod/train/checkpoint.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/serialize.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "recmod/common/errors.h"
#include "recmod/train/atomic_file.h"

namespace recmod::train {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

/// A fresh, empty directory per test.
class Checkpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / (std::string("recmod_checkpoint_") + info->name() + "_" +
                                        std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::vector<std::string> files() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  fs::path dir_;
};

std::string checkpoint_error(const std::string& path) {
  try {
    load_tensors(path);
  } catch (const CheckpointError& e) {
    return e.what();
  }
  return "<no CheckpointError>";
}

void write_bytes(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// The tensors torch_interop.py expects (keep the two in step).
StateDict interop_tensors() {
  return {{"embedding_bags.t1.weight", torch::arange(12, torch::kFloat).reshape({3, 4}) / 4},
          {"steps", torch::tensor({5, -7}, torch::kLong)},
          {"half_ones", torch::full({2, 2}, 0.5, torch::kDouble)},
          {"flags", torch::tensor({true, false})},
          {"scalar", torch::tensor(3.25f)},
          {"column_view", torch::arange(6, torch::kFloat).reshape({2, 3}).select(1, 1)}};
}

void expect_same_tensors(const StateDict& got, const StateDict& want) {
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [key, tensor] : want) {
    const torch::Tensor* t = find_tensor(got, key);
    ASSERT_NE(t, nullptr) << key;
    EXPECT_EQ(t->scalar_type(), tensor.scalar_type()) << key;
    EXPECT_EQ(t->sizes(), tensor.sizes()) << key;
    EXPECT_TRUE(torch::equal(*t, tensor)) << key;
  }
}

TEST_F(Checkpoint, RoundTripKeepsDtypesShapesAndValues) {
  const StateDict tensors = interop_tensors();
  save_tensors(path("a.pt"), tensors);
  expect_same_tensors(load_tensors(path("a.pt")), tensors);
  EXPECT_EQ(files(), std::vector<std::string>{"a.pt"});  // no temp file left
}

TEST_F(Checkpoint, ViewIsSavedWithoutItsWholeStorage) {
  const torch::Tensor big = torch::randn({1000, 100});
  save_tensors(path("row.pt"), {{"row", big[3]}});
  const StateDict loaded = load_tensors(path("row.pt"));
  EXPECT_TRUE(torch::equal(loaded[0].second, big[3]));
  EXPECT_LT(fs::file_size(path("row.pt")), 10000u);
}

TEST_F(Checkpoint, OverwritesAnExistingCheckpoint) {
  save_tensors(path("c.pt"), {{"x", torch::ones({2})}});
  save_tensors(path("c.pt"), {{"y", torch::zeros({3})}});
  const StateDict loaded = load_tensors(path("c.pt"));
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_EQ(loaded[0].first, "y");
  EXPECT_EQ(files(), std::vector<std::string>{"c.pt"});
}

TEST_F(Checkpoint, ReadsAStateDictSavedByPythonTorch) {
  // tests/train/data/torch_1_13_state_dict.pt: torch.save(dict(model.state_dict())) from Debian's python3-torch
  // 1.13 of Sequential(Linear(3, 2), BatchNorm1d(2)) with weight arange(6).reshape(2, 3), bias [-1, 1]
  // (the script is write_state_dict() in tests/train/torch_interop.py).
  const StateDict loaded = load_tensors(RECMOD_SOURCE_DIR "/tests/train/data/torch_1_13_state_dict.pt");
  std::vector<std::string> keys;
  for (const auto& [k, _] : loaded) keys.push_back(k);
  EXPECT_THAT(keys, ::testing::ElementsAre("0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                                           "1.running_var", "1.num_batches_tracked"));
  EXPECT_TRUE(torch::equal(loaded[0].second, torch::arange(6, torch::kFloat).reshape({2, 3})));
  EXPECT_TRUE(torch::equal(loaded[1].second, torch::tensor({-1.0f, 1.0f})));
  EXPECT_TRUE(torch::equal(loaded[5].second, torch::ones({2})));  // BatchNorm's running_var starts at 1
  EXPECT_EQ(loaded[6].second.scalar_type(), torch::kLong);
  EXPECT_EQ(loaded[6].second.dim(), 0);
}

TEST_F(Checkpoint, MissingFile) {
  EXPECT_THAT(checkpoint_error(path("nope.pt")), HasSubstr(path("nope.pt") + ": cannot open the checkpoint"));
}

TEST_F(Checkpoint, GarbageAndEmptyFiles) {
  std::ofstream(path("garbage.pt")) << "this is not a zip archive, just some text that goes on for a while";
  EXPECT_THAT(checkpoint_error(path("garbage.pt")),
              HasSubstr(path("garbage.pt") + ": not a readable torch.save file"));
  std::ofstream(path("empty.pt")).flush();
  EXPECT_THAT(checkpoint_error(path("empty.pt")), HasSubstr(path("empty.pt") + ": the checkpoint is empty"));
}

TEST_F(Checkpoint, TruncatedFile) {
  save_tensors(path("full.pt"), {{"w", torch::randn({64, 64})}});
  std::ifstream in(path("full.pt"), std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (size_t keep : {bytes.size() / 2, bytes.size() - 30, bytes.size() - 1, size_t{100}}) {
    write_bytes(path("cut.pt"), std::vector<char>(bytes.begin(), bytes.begin() + static_cast<long>(keep)));
    EXPECT_THAT(checkpoint_error(path("cut.pt")), HasSubstr(path("cut.pt") + ": not a readable torch.save file"))
        << keep;
  }
}

TEST_F(Checkpoint, NotADictOfTensors) {
  write_bytes(path("tensor.pt"), torch::pickle_save(torch::ones({2})));
  EXPECT_THAT(checkpoint_error(path("tensor.pt")),
              HasSubstr(path("tensor.pt") + ": expected a dict of tensors, found a Tensor"));
  c10::Dict<std::string, int64_t> ints;
  ints.insert("epoch", 3);
  write_bytes(path("ints.pt"), torch::pickle_save(c10::IValue(ints)));
  EXPECT_THAT(checkpoint_error(path("ints.pt")),
              HasSubstr(path("ints.pt") + ": expected a dict of tensors, key 'epoch' holds a Int"));
}

TEST_F(Checkpoint, FailedSaveLeavesTheOldFileAndNoTempFile) {
  save_tensors(path("keep.pt"), {{"x", torch::ones({2})}});
  // Renaming a file over a non-empty directory fails after the temp file is complete.
  fs::create_directories(dir_ / "taken.pt" / "inside");
  EXPECT_THROW(save_tensors(path("taken.pt"), {{"x", torch::zeros({2})}}), FileWriteError);
  EXPECT_EQ(files(), (std::vector<std::string>{"keep.pt", "taken.pt"}));
  // A directory that does not exist.
  try {
    save_tensors(path("missing/dir/x.pt"), {{"x", torch::zeros({2})}});
    FAIL() << "no error";
  } catch (const FileWriteError& e) {
    EXPECT_THAT(e.what(), HasSubstr(path("missing/dir/x.pt") + ": cannot create a temp file in its directory"));
  }
  expect_same_tensors(load_tensors(path("keep.pt")), {{"x", torch::ones({2})}});
}

TEST_F(Checkpoint, InjectedFailureBeforeCommitLeavesTheOldFile) {
  write_file_atomically(path("run.json"), "{\"step\": 1}\n");
  std::string seen_temp;
  EXPECT_THROW(write_file_atomically(path("run.json"), "{\"step\": 2}\n",
                                     [&](const std::string& temp) {
                                       seen_temp = temp;
                                       ASSERT_TRUE(fs::exists(temp));  // complete, not yet renamed
                                       throw std::runtime_error("injected failure");
                                     }),
               std::runtime_error);
  EXPECT_THAT(seen_temp, HasSubstr(dir_.string() + "/.run.json.tmp."));
  EXPECT_FALSE(fs::exists(seen_temp));
  EXPECT_EQ(files(), std::vector<std::string>{"run.json"});
  std::ifstream in(path("run.json"));
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()), "{\"step\": 1}\n");
}

TEST_F(Checkpoint, AtomicWriteReplacesContentsAndSetsReadablePermissions) {
  write_file_atomically(path("m.json"), "old");
  write_file_atomically(path("m.json"), std::string(100000, 'x'));
  EXPECT_EQ(fs::file_size(path("m.json")), 100000u);
  EXPECT_NE(fs::status(path("m.json")).permissions() & fs::perms::others_read, fs::perms::none);
  EXPECT_EQ(files(), std::vector<std::string>{"m.json"});
}

/// The python3 that can import torch: $RECMOD_PYTHON, else python3, else Debian's /usr/bin/python3.
std::string python_with_torch() {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("RECMOD_PYTHON")) candidates.emplace_back(env);
  candidates.insert(candidates.end(), {"python3", "/usr/bin/python3"});
  for (const auto& python : candidates)
    if (std::system((python + " -c 'import torch' >/dev/null 2>&1").c_str()) == 0) return python;
  return "";
}

TEST_F(Checkpoint, InteropWithPythonTorch) {
  const std::string python = python_with_torch();
  if (python.empty()) GTEST_SKIP() << "no python3 with torch (apt-get install python3-torch)";
  save_tensors(path("recmod.pt"), interop_tensors());
  const std::string command = python + " " RECMOD_SOURCE_DIR "/tests/train/torch_interop.py " + path("recmod.pt") +
                              " " + path("python.pt");
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  const StateDict loaded = load_tensors(path("python.pt"));
  ASSERT_EQ(loaded.size(), 7u);
  EXPECT_EQ(loaded[0].first, "0.weight");
  EXPECT_TRUE(torch::equal(loaded[0].second, torch::arange(6, torch::kFloat).reshape({2, 3})));
  EXPECT_TRUE(torch::equal(loaded[1].second, torch::tensor({-1.0f, 1.0f})));
}

}  // namespace
}  // namespace recmod::train
