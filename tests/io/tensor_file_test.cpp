#include "recmod/io/tensor_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <caffe2/serialize/inline_container.h>
#include <torch/serialize.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

#include "recmod/common/errors.h"
#include "recmod/io/atomic_file.h"
#include "recmod/io/torch_pickle.h"
#include "support/test_util.h"

namespace recmod::io {
namespace tensor_file_test {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using namespace std::string_literals;

/// A fresh, empty directory per test.
class Checkpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / (std::string("recmod_checkpoint_") + info->name() + "_" +
                                        std::to_string(::getpid()));
    test::remove_tree(dir_.string());
    fs::create_directories(dir_);
  }
  void TearDown() override { test::remove_tree(dir_.string()); }
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
  // tests/io/data/torch_1_13_state_dict.pt: torch.save(dict(model.state_dict())) from Debian's python3-torch
  // 1.13 of Sequential(Linear(3, 2), BatchNorm1d(2)) with weight arange(6).reshape(2, 3), bias [-1, 1]
  // (the script is write_state_dict() in tests/io/torch_interop.py).
  const StateDict loaded = load_tensors(RECMOD_SOURCE_DIR "/tests/io/data/torch_1_13_state_dict.pt");
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

std::string fixture(const std::string& name) { return RECMOD_SOURCE_DIR "/tests/io/data/" + name; }

std::vector<std::string> keys_of(const StateDict& dict) {
  std::vector<std::string> keys;
  for (const auto& [k, _] : dict) keys.push_back(k);
  return keys;
}

/// The tensor under `key`, or a test failure.
torch::Tensor at_key(const StateDict& dict, const std::string& key) {
  const torch::Tensor* t = find_tensor(dict, key);
  EXPECT_NE(t, nullptr) << key;
  return t ? *t : torch::Tensor();
}

void expect_tensor(const StateDict& dict, const std::string& key, const torch::Tensor& want) {
  const torch::Tensor got = at_key(dict, key);
  if (!got.defined()) return;
  EXPECT_EQ(got.scalar_type(), want.scalar_type()) << key;
  EXPECT_EQ(got.sizes(), want.sizes()) << key;
  EXPECT_TRUE(got.sizes() == want.sizes() && torch::equal(got, want)) << key << ": " << got << " vs " << want;
}

// The three checks below match Tiny, Views and Dtypes in tests/io/torch_interop.py
// (--fixtures), keep them in step.

/// torch.save(Tiny().state_dict()): an OrderedDict with _metadata.
void check_module_state_dict(const StateDict& loaded) {
  EXPECT_THAT(keys_of(loaded),
              ::testing::ElementsAre("embedding.weight", "linear.weight", "linear.bias", "norm.weight", "norm.bias",
                                     "norm.running_mean", "norm.running_var", "norm.num_batches_tracked"));
  expect_tensor(loaded, "embedding.weight", torch::arange(12, torch::kFloat).reshape({4, 3}) / 8 - 0.5);
  expect_tensor(loaded, "linear.weight", torch::arange(6, torch::kFloat).reshape({2, 3}) * 0.25);
  expect_tensor(loaded, "linear.bias", torch::tensor({-1.0f, 1.0f}));
  expect_tensor(loaded, "norm.weight", torch::tensor({2.0f, 3.0f}));
  expect_tensor(loaded, "norm.bias", torch::tensor({0.5f, -0.5f}));
  expect_tensor(loaded, "norm.running_mean", torch::tensor({0.25f, -0.75f}));
  expect_tensor(loaded, "norm.running_var", torch::tensor({1.5f, 2.0f}));
  expect_tensor(loaded, "norm.num_batches_tracked", torch::tensor(int64_t{7}));
}

/// torch.save(Views().state_dict()): buffers that are views of one storage.
void check_views(const StateDict& loaded) {
  ASSERT_EQ(loaded.size(), 105u);
  const torch::Tensor base = torch::arange(20, torch::kFloat).reshape({4, 5});
  expect_tensor(loaded, "base", base);
  expect_tensor(loaded, "block", base.slice(0, 1, 3).slice(1, 1, 4));
  expect_tensor(loaded, "column", base.select(1, 2));
  expect_tensor(loaded, "transposed", base.t());
  expect_tensor(loaded, "tail", torch::arange(6, 10, torch::kLong));
  const torch::Tensor block = at_key(loaded, "block");
  const torch::Tensor transposed = at_key(loaded, "transposed");
  const torch::Tensor tail = at_key(loaded, "tail");
  ASSERT_TRUE(block.defined() && transposed.defined() && tail.defined());
  // Views come back as views of one shared storage, as torch.load gives them.
  EXPECT_EQ(block.storage_offset(), 6);
  EXPECT_EQ(block.strides(), (std::vector<int64_t>{5, 1}));
  EXPECT_EQ(transposed.strides(), (std::vector<int64_t>{1, 5}));
  EXPECT_TRUE(block.storage().is_alias_of(at_key(loaded, "base").storage()));
  EXPECT_TRUE(at_key(loaded, "column").storage().is_alias_of(transposed.storage()));
  EXPECT_EQ(tail.storage_offset(), 6);  // the whole 10-element storage was saved
  for (int i = 0; i < 100; ++i) expect_tensor(loaded, "many_" + std::to_string(i), torch::tensor(int16_t(3 * i)));
}

/// torch.save(Dtypes().state_dict(keep_vars=True)): a Parameter and buffers of ten dtypes.
void check_dtypes(const StateDict& loaded) {
  EXPECT_THAT(keys_of(loaded), ::testing::ElementsAre("param", "f64", "f16", "bf16", "i64", "i32", "i16", "i8", "u8",
                                                      "flags", "empty"));
  expect_tensor(loaded, "param", torch::tensor({1.5f, -2.0f}));
  expect_tensor(loaded, "f64", torch::tensor({0.1, -2.5, 1e300}, torch::kDouble));
  expect_tensor(loaded, "f16", torch::tensor({0.5, -1.25, 65504.0}).to(torch::kHalf));
  expect_tensor(loaded, "bf16", torch::tensor({1.0, -3.0, 256.0}).to(torch::kBFloat16));
  expect_tensor(loaded, "i64", torch::tensor(-(int64_t{1} << 40)));
  expect_tensor(loaded, "i32", torch::tensor({2147483647, -2147483647 - 1, 0}, torch::kInt));
  expect_tensor(loaded, "i16", torch::tensor({-32768, 32767}).to(torch::kShort));
  expect_tensor(loaded, "i8", torch::tensor({-128, 127}).to(torch::kChar));
  expect_tensor(loaded, "u8", torch::tensor({0, 255}).to(torch::kByte));
  expect_tensor(loaded, "flags", torch::tensor({true, false, true}));
  expect_tensor(loaded, "empty", torch::zeros({0, 3}));
}

TEST_F(Checkpoint, ReadsTorchSaveOfAModuleStateDict) {
  check_module_state_dict(load_tensors(fixture("state_dict_module.pt")));
}

TEST_F(Checkpoint, ReadsViewsThatShareAStorage) { check_views(load_tensors(fixture("state_dict_views.pt"))); }

TEST_F(Checkpoint, ReadsTenDtypesAndParameters) { check_dtypes(load_tensors(fixture("state_dict_dtypes.pt"))); }

// The same three files written by PyTorch 2.11 (torch_interop.py --fixtures on
// the GPU machine's torch 2.11.0+cu130): .format_version, .storage_alignment,
// byteorder and .data/serialization_id records, storages aligned to 64 bytes.
TEST_F(Checkpoint, ReadsTheSameFilesWrittenByPyTorch2) {
  check_module_state_dict(load_tensors(fixture("torch_2_11/state_dict_module.pt")));
  check_views(load_tensors(fixture("torch_2_11/state_dict_views.pt")));
  check_dtypes(load_tensors(fixture("torch_2_11/state_dict_dtypes.pt")));
}

TEST_F(Checkpoint, PythonStateDictSurvivesARecmodRoundTrip) {
  const StateDict loaded = load_tensors(fixture("state_dict_dtypes.pt"));
  save_tensors(path("again.pt"), loaded);
  check_dtypes(load_tensors(path("again.pt")));
}

/// Builds pickles opcode by opcode, for malformed-input tests.
class PickleBuilder {
 public:
  PickleBuilder() : bytes_("\x80\x02", 2) {}
  PickleBuilder& op(std::string_view raw) {
    bytes_ += raw;
    return *this;
  }
  PickleBuilder& str(const std::string& s) {
    bytes_ += 'X';
    le32(static_cast<uint32_t>(s.size()));
    bytes_ += s;
    return *this;
  }
  PickleBuilder& integer(int64_t v) {
    if (v >= INT32_MIN && v <= INT32_MAX) {
      bytes_ += 'J';
      le32(static_cast<uint32_t>(v));
    } else {
      bytes_ += "\x8a\x08";
      for (int i = 0; i < 8; ++i) bytes_ += static_cast<char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff);
    }
    return *this;
  }
  PickleBuilder& global(const std::string& module, const std::string& name) {
    bytes_ += "c" + module + "\n" + name + "\n";
    return *this;
  }
  /// _rebuild_tensor_v2(('storage', torch.<type>, key, 'cpu', numel), offset, sizes, strides, False, OrderedDict())
  PickleBuilder& tensor(const std::string& storage_type, const std::string& key, int64_t numel, int64_t offset,
                        const std::vector<int64_t>& sizes, const std::vector<int64_t>& strides) {
    global("torch._utils", "_rebuild_tensor_v2").op("((").str("storage").global("torch", storage_type);
    str(key).str("cpu").integer(numel).op("tQ").integer(offset).op("(");
    for (int64_t s : sizes) integer(s);
    op("t(");
    for (int64_t s : strides) integer(s);
    return op("t\x89").global("collections", "OrderedDict").op(")Rt").op("R");
  }
  std::string done() const { return bytes_ + "."; }
  std::string unfinished() const { return bytes_; }

 private:
  void le32(uint32_t v) {
    for (int i = 0; i < 4; ++i) bytes_ += static_cast<char>((v >> (8 * i)) & 0xff);
  }
  std::string bytes_;
};

/// A dict {"w": tensor(...)} over a FloatStorage "0" of `numel` elements.
std::string one_tensor_pickle(int64_t numel, int64_t offset, const std::vector<int64_t>& sizes,
                              const std::vector<int64_t>& strides) {
  return PickleBuilder().op("}(").str("w").tensor("FloatStorage", "0", numel, offset, sizes, strides).op("u").done();
}

/// Storage records for the unpickler, from bytes in memory.
class FakeRecords {
 public:
  void add(const std::string& key, const std::string& bytes) { records_[key] = bytes; }
  void add_floats(const std::string& key, const torch::Tensor& t) {
    const torch::Tensor c = t.to(torch::kFloat).contiguous();
    add(key, std::string(static_cast<const char*>(c.data_ptr()), static_cast<size_t>(c.nbytes())));
  }
  StorageRecordReader reader() const {
    return [this](const std::string& key) {
      const auto it = records_.find(key);
      if (it == records_.end()) throw CheckpointError("x.pt: no record data/" + key);
      c10::Storage storage(c10::Storage::use_byte_size_t(), it->second.size(), at::getCPUAllocator());
      if (!it->second.empty()) std::memcpy(storage.data_ptr().get(), it->second.data(), it->second.size());
      return storage;
    };
  }

 private:
  std::map<std::string, std::string> records_;
};

std::string unpickle_error(const std::string& pickle, const FakeRecords& records) {
  try {
    unpickle_tensor_dict(pickle, records.reader(), "x.pt");
  } catch (const CheckpointError& e) {
    return e.what();
  }
  return "<no CheckpointError>";
}

TEST(CheckpointPickle, HandBuiltViewOfAStorage) {
  FakeRecords records;
  records.add_floats("0", torch::arange(6, torch::kFloat));
  const StateDict loaded = unpickle_tensor_dict(one_tensor_pickle(6, 1, {2, 2}, {3, 1}), records.reader(), "x.pt");
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_TRUE(torch::equal(loaded[0].second, torch::tensor({{1.0f, 2.0f}, {4.0f, 5.0f}})));
}

TEST(CheckpointPickle, TensorsOutsideTheirStorage) {
  FakeRecords records;
  records.add_floats("0", torch::arange(6, torch::kFloat));
  EXPECT_THAT(unpickle_error(one_tensor_pickle(6, 1, {2, 3}, {3, 1}), records),
              HasSubstr("x.pt: data.pkl: tensor of size [2, 3], stride [3, 1] at offset 1 reaches past its storage "
                        "of 6 Float elements"));
  EXPECT_THAT(unpickle_error(one_tensor_pickle(6, 7, {0}, {1}), records), HasSubstr("reaches past its storage"));
  EXPECT_THAT(unpickle_error(one_tensor_pickle(6, -1, {2}, {1}), records), HasSubstr("negative storage offset -1"));
  EXPECT_THAT(unpickle_error(one_tensor_pickle(6, 0, {2}, {-1}), records), HasSubstr("negative size or stride"));
  EXPECT_THAT(unpickle_error(one_tensor_pickle(6, 0, {4, 4}, {int64_t{1} << 62, 1}), records),
              HasSubstr("overflows"));
  EXPECT_THAT(unpickle_error(one_tensor_pickle(6, 0, {2, 3}, {3}), records), HasSubstr("2 sizes but 1 strides"));
  EXPECT_THAT(unpickle_error(one_tensor_pickle(7, 0, {2}, {1}), records),
              HasSubstr("storage record data/0 holds 24 bytes, the pickle expects 7 x 4 = 28"));
  EXPECT_THAT(unpickle_error(one_tensor_pickle(int64_t{1} << 62, 0, {2}, {1}), records),
              HasSubstr("impossible size"));
  EXPECT_THAT(unpickle_error(PickleBuilder().op("}(").str("w").tensor("FloatStorage", "5", 6, 0, {1}, {1}).op("u").done(),
                             records),
              HasSubstr("x.pt: no record data/5"));
}

TEST(CheckpointPickle, MalformedPickles) {
  const FakeRecords none;
  const std::string proto("\x80\x02", 2);
  EXPECT_THAT(unpickle_error(proto + "\xff.", none), HasSubstr("x.pt: data.pkl: unsupported pickle opcode 0xff (at byte 2)"));
  EXPECT_THAT(unpickle_error(proto + "I12\n.", none), HasSubstr("unsupported pickle opcode 0x49 'I'"));
  EXPECT_THAT(unpickle_error("\x80\x09}.", none), HasSubstr("unsupported pickle protocol 9"));
  EXPECT_THAT(unpickle_error(proto + "}", none), HasSubstr("truncated pickle"));
  EXPECT_THAT(unpickle_error("", none), HasSubstr("truncated pickle"));
  EXPECT_THAT(unpickle_error(proto + "X\x10\x00\x00\x00" "abc"s, none), HasSubstr("truncated pickle: needs 16 more bytes"));
  EXPECT_THAT(unpickle_error(proto + "X\xff\xff\xff\xff", none), HasSubstr("truncated pickle"));
  EXPECT_THAT(unpickle_error(proto + "\x8d\xff\xff\xff\xff\xff\xff\xff\xff", none), HasSubstr("truncated pickle"));
  EXPECT_THAT(unpickle_error(proto + "ctorch\n_utils", none), HasSubstr("GLOBAL without its newline"));
  EXPECT_THAT(unpickle_error(proto + "R.", none), HasSubstr("pickle stack underflow"));
  EXPECT_THAT(unpickle_error(proto + ".", none), HasSubstr("pickle stack underflow"));
  EXPECT_THAT(unpickle_error(proto + "}(K\x01.", none), HasSubstr("open MARK"));
  EXPECT_THAT(unpickle_error(proto + "}(K\x01u.", none), HasSubstr("SETITEMS with an odd number of items"));
  EXPECT_THAT(unpickle_error(proto + "u.", none), HasSubstr("needs a MARK"));
  EXPECT_THAT(unpickle_error(proto + "}(0.", none), HasSubstr("pickle stack underflow"));  // a MARK hides the dict
  EXPECT_THAT(unpickle_error(proto + "h\x05.", none), HasSubstr("memo entry 5 was never stored"));
  EXPECT_THAT(unpickle_error(proto + "j\x00\x00\x00\x80."s, none), HasSubstr("memo entry 2147483648 was never stored"));
  EXPECT_THAT(unpickle_error(proto + "cos\nsystem\n(X\x02\x00\x00\x00lstR."s, none),
              HasSubstr("unsupported object 'os.system'"));
  EXPECT_THAT(unpickle_error(proto + "\x8c\x08" "builtins\x8c\x04" "eval\x93."s, none),
              HasSubstr("unsupported object 'builtins.eval'"));
  EXPECT_THAT(unpickle_error(proto + "ctorch\nFloatStorage\n)R.", none), HasSubstr("'torch.FloatStorage' cannot be called"));
  EXPECT_THAT(unpickle_error(proto + "K\x01)R.", none), HasSubstr("REDUCE on an int, not a callable"));
  EXPECT_THAT(unpickle_error(proto + "K\x01K\x02s.", none), HasSubstr("pickle stack underflow"));
  EXPECT_THAT(unpickle_error(proto + "]K\x01K\x02s.", none), HasSubstr("SETITEM(S) on a list, not a dict"));
  EXPECT_THAT(unpickle_error(proto + "K\x01Q.", none), HasSubstr("unsupported persistent id"));
  EXPECT_THAT(unpickle_error(proto + "K\x01}b.", none), HasSubstr("BUILD on an int is not supported"));
  EXPECT_THAT(unpickle_error(proto + "\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01."s, none),
              HasSubstr("does not fit in 64 bits"));
}

TEST(CheckpointPickle, NotADictOfTensors) {
  const FakeRecords none;
  const std::string proto("\x80\x02", 2);
  EXPECT_THAT(unpickle_error(proto + "].", none), HasSubstr("x.pt: expected a dict of tensors, found a list"));
  EXPECT_THAT(unpickle_error(proto + "}(X\x05\x00\x00\x00model}u."s, none),
              HasSubstr("x.pt: expected a dict of tensors, key 'model' holds a dict (a checkpoint holding several dicts?"));
  EXPECT_THAT(unpickle_error(proto + "}(K\x01K\x02u.", none),
              HasSubstr("x.pt: expected a dict of tensors, found a key that is an int"));
}

TEST(CheckpointPickle, PickleDetailsPythonMayUse) {
  FakeRecords records;
  records.add_floats("0", torch::arange(4, torch::kFloat));
  // Protocol 4 framing, MEMOIZE, STACK_GLOBAL, SHORT_BINUNICODE, a repeated key (the last value wins, in the
  // first key's place), and an int key-order check.
  const std::string pickle =
      PickleBuilder()
          .op("\x95\x00\x00\x00\x00\x00\x00\x00\x00"s)  // FRAME
          .op("\x8c\x0b" "collections\x94\x8c\x0bOrderedDict\x94\x93\x94)R\x94(")
          .op("\x8c\x01" "a").tensor("FloatStorage", "0", 4, 0, {2}, {1})
          .op("\x8c\x01" "b").tensor("FloatStorage", "0", 4, 2, {2}, {1})
          .op("\x8c\x01" "a").tensor("FloatStorage", "0", 4, 1, {1}, {1})
          .op("u}\x8c\x09_metadata}sb")
          .done();
  const StateDict loaded = unpickle_tensor_dict(pickle, records.reader(), "x.pt");
  EXPECT_THAT(keys_of(loaded), ::testing::ElementsAre("a", "b"));
  expect_tensor(loaded, "a", torch::tensor({1.0f}));
  expect_tensor(loaded, "b", torch::tensor({2.0f, 3.0f}));
}

/// A zip as torch.save writes it: data.pkl, data/<key> records, version.
void write_archive(const std::string& path, const std::string& pickle,
                   const std::map<std::string, std::string>& records) {
  caffe2::serialize::PyTorchStreamWriter writer(path);
  if (!pickle.empty()) writer.writeRecord("data.pkl", pickle.data(), pickle.size());
  for (const auto& [name, bytes] : records) writer.writeRecord(name, bytes.data(), bytes.size());
  writer.writeEndOfFile();
}

TEST_F(Checkpoint, MalformedArchives) {
  const std::string floats(24, '\0');
  write_archive(path("ok.pt"), one_tensor_pickle(6, 0, {6}, {1}), {{"data/0", floats}});
  expect_same_tensors(load_tensors(path("ok.pt")), {{"w", torch::zeros({6})}});

  write_archive(path("missing.pt"), one_tensor_pickle(6, 0, {6}, {1}), {{"data/1", floats}});
  EXPECT_THAT(checkpoint_error(path("missing.pt")),
              HasSubstr(path("missing.pt") + ": data.pkl names storage '0', but the archive has no data/0"));

  write_archive(path("short.pt"), one_tensor_pickle(6, 0, {6}, {1}), {{"data/0", std::string(20, '\0')}});
  EXPECT_THAT(checkpoint_error(path("short.pt")),
              HasSubstr(path("short.pt") + ": data.pkl: storage record data/0 holds 20 bytes"));

  write_archive(path("nopickle.pt"), "", {{"data/0", floats}});
  EXPECT_THAT(checkpoint_error(path("nopickle.pt")),
              HasSubstr(path("nopickle.pt") + ": not a torch.save file: the archive has no data.pkl"));

  write_archive(path("big.pt"), one_tensor_pickle(6, 0, {6}, {1}), {{"data/0", floats}, {"byteorder", "big"}});
  EXPECT_THAT(checkpoint_error(path("big.pt")),
              HasSubstr(path("big.pt") + ": saved with byte order 'big', only 'little' is supported"));
  write_archive(path("little.pt"), one_tensor_pickle(6, 0, {6}, {1}), {{"data/0", floats}, {"byteorder", "little"}});
  EXPECT_EQ(load_tensors(path("little.pt")).size(), 1u);
}

/// Cuts and single-byte changes of a real torch.save file either
/// loads or throws CheckpointError (run under the sanitizer build to catch
/// out-of-bounds reads).
TEST_F(Checkpoint, CorruptedCopiesOfAPythonFileFailCleanly) {
  std::ifstream in(fixture("state_dict_module.pt"), std::ios::binary);
  const std::vector<char> good((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(good.size(), 1000u);
  int failures = 0;
  auto try_load = [&](const std::vector<char>& bytes, const std::string& what) {
    write_bytes(path("bad.pt"), bytes);
    try {
      load_tensors(path("bad.pt"));
    } catch (const CheckpointError& e) {
      ++failures;
      EXPECT_THAT(e.what(), HasSubstr(path("bad.pt") + ": ")) << what;
    } catch (const std::exception& e) {
      ADD_FAILURE() << what << ": not a CheckpointError: " << e.what();
    }
  };
  for (size_t i = 0; i < good.size(); i += 3) {  // every third byte: ~1 s here instead of ~4
    std::vector<char> bytes = good;
    bytes[i] = static_cast<char>(bytes[i] ^ 0x5a);
    try_load(bytes, "byte " + std::to_string(i) + " changed");
  }
  for (size_t keep = 0; keep < good.size(); keep += 7)
    try_load(std::vector<char>(good.begin(), good.begin() + static_cast<long>(keep)), "cut at " + std::to_string(keep));
  EXPECT_GT(failures, 0);
  std::cout << "[ info     ] " << failures << " of " << (good.size() + 2) / 3 + (good.size() + 6) / 7
            << " corrupted copies refused with a CheckpointError, the rest loaded\n";
}

/// The same for the pickle alone: every change of every byte of data.pkl to a few values.
TEST(CheckpointPickle, CorruptedPicklesFailCleanly) {
  caffe2::serialize::PyTorchStreamReader reader(fixture("state_dict_module.pt"));
  auto [data, size] = reader.getRecord("data.pkl");
  const std::string good(static_cast<const char*>(data.get()), size);
  FakeRecords records;
  for (int i = 0; i < 8; ++i) {
    auto [bytes, n] = reader.getRecord("data/" + std::to_string(i));
    records.add(std::to_string(i), std::string(static_cast<const char*>(bytes.get()), n));
  }
  check_module_state_dict(unpickle_tensor_dict(good, records.reader(), "x.pt"));
  for (size_t i = 0; i < good.size(); ++i) {
    for (int v : std::vector<int>{0x00, 0xff, 0x01, 'h', 'q', 'R', 'b', '(', 't', 'Q', 'K', 0x8a, '.'}) {
      std::string bad = good;
      bad[i] = static_cast<char>(v);
      try {
        unpickle_tensor_dict(bad, records.reader(), "x.pt");
      } catch (const CheckpointError& e) {
        EXPECT_THAT(e.what(), HasSubstr("x.pt: ")) << i;
      } catch (const std::exception& e) {
        ADD_FAILURE() << "byte " << i << " = " << v << ": not a CheckpointError: " << e.what();
      }
    }
  }
  for (size_t keep = 0; keep < good.size(); ++keep)
    EXPECT_THROW(unpickle_tensor_dict(good.substr(0, keep), records.reader(), "x.pt"), CheckpointError) << keep;
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
              HasSubstr(path("ints.pt") + ": expected a dict of tensors, key 'epoch' holds an int"));
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

TEST_F(Checkpoint, StreamedSaveEqualsInMemoryBytesAndAFailingProducerLeavesTheOldFile) {
  const StateDict tensors = {{"w", torch::arange(12, torch::kFloat).reshape({3, 4}).t()}, {"n", torch::tensor(7)}};
  save_tensors(path("a.pt"), tensors);
  const std::vector<char> in_memory = tensors_to_bytes(tensors);
  std::ifstream in(path("a.pt"), std::ios::binary);
  const std::vector<char> on_disk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(on_disk, in_memory);
  expect_same_tensors(load_tensors(path("a.pt")), tensors);  // the transposed view comes back by value
  // A producer that fails half-way (a tensor it cannot convert, a full disk).
  EXPECT_THROW(write_file_atomically(path("a.pt"),
                                     [](const ByteSink& sink) {
                                       sink("PK", 2);
                                       throw FileWriteError("disk full");
                                     }),
               FileWriteError);
  EXPECT_EQ(files(), std::vector<std::string>{"a.pt"});
  expect_same_tensors(load_tensors(path("a.pt")), tensors);
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
  const std::string command = python + " " RECMOD_SOURCE_DIR "/tests/io/torch_interop.py " + path("recmod.pt") +
                              " " + path("python.pt");
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  const StateDict loaded = load_tensors(path("python.pt"));
  ASSERT_EQ(loaded.size(), 7u);
  EXPECT_EQ(loaded[0].first, "0.weight");
  EXPECT_TRUE(torch::equal(loaded[0].second, torch::arange(6, torch::kFloat).reshape({2, 3})));
  EXPECT_TRUE(torch::equal(loaded[1].second, torch::tensor({-1.0f, 1.0f})));
}

TEST_F(Checkpoint, ReadsStateDictsFromThisMachinesPythonTorch) {
  const std::string python = python_with_torch();
  if (python.empty()) GTEST_SKIP() << "no python3 with torch (apt-get install python3-torch)";
  const std::string command = python + " " RECMOD_SOURCE_DIR "/tests/io/torch_interop.py --fixtures " + dir_.string();
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  check_module_state_dict(load_tensors(path("state_dict_module.pt")));
  check_views(load_tensors(path("state_dict_views.pt")));
  check_dtypes(load_tensors(path("state_dict_dtypes.pt")));
}

}  // namespace tensor_file_test
}  // namespace recmod::io
