#include "recmod/data/binary_format.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include "recmod/common/errors.h"
#include "recmod/data/convert.h"
#include "recmod/data/criteo_tsv.h"
#include "recmod/data/open_reader.h"
#include "support/test_util.h"

namespace recmod::data {
namespace binary_format_test {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "recmod_binary_" + std::to_string(::getpid()) + "_" + name;
}

/// 3 rows, 2 dense, features a (weighted) and b; row 1 has an empty bag of a.
ExampleColumns small_columns(bool weighted) {
  DataSchema schema{2, {"a", "b"}, 1, weighted};
  ExampleColumns c(schema);
  c.labels = {1, 0, 1};
  c.dense = {0.5f, -1, 2, 3, 4.25f, 5};
  c.sparse[0].ids = {10, 11, 12};
  c.sparse[0].offsets = {0, 2, 2, 3};
  c.sparse[1].ids = {7, 8, 9};
  c.sparse[1].offsets = {0, 1, 2, 3};
  if (weighted) {
    c.sparse[0].weights = {0.1f, 0.2f, 0.3f};
    c.sparse[1].weights = {1, 2, 3};
  }
  for (int i = 0; i < 3; ++i) c.finish_row();
  return c;
}

void expect_equal(const ExampleColumns& a, const ExampleColumns& b) {
  ASSERT_EQ(a.num_rows(), b.num_rows());
  EXPECT_EQ(a.schema().sparse_features, b.schema().sparse_features);
  EXPECT_EQ(a.schema().num_dense, b.schema().num_dense);
  EXPECT_EQ(a.schema().weighted, b.schema().weighted);
  EXPECT_EQ(a.labels, b.labels);
  EXPECT_EQ(a.dense, b.dense);
  for (size_t f = 0; f < a.sparse.size(); ++f) {
    EXPECT_EQ(a.sparse[f].offsets, b.sparse[f].offsets) << "feature " << f;
    EXPECT_EQ(a.sparse[f].ids, b.sparse[f].ids) << "feature " << f;
    EXPECT_EQ(a.sparse[f].weights, b.sparse[f].weights) << "feature " << f;
  }
}

ExampleColumns read_all(ExampleReader& reader, int64_t chunk) {
  ExampleColumns all(reader.schema());
  while (auto block = reader.read(chunk)) all.append(*block);
  return all;
}

using test::read_bytes;
void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string open_error(const std::string& path) {
  try {
    BinaryReader reader(path);
  } catch (const InputError& e) {
    return e.what();
  }
  return "<no InputError>";
}

// Labels are checked against the loss as JSON lines' are: 0/1 where a
// binary cross-entropy task reads them, any finite number elsewhere.
TEST(BinaryFormat, LabelsAreCheckedAgainstTheLoss) {
  const auto path = temp_path("labels.rmb");
  ExampleColumns data = small_columns(false);
  data.labels = {1, 0, 4};  // record 3 is not a 0/1 label
  write_binary(path, data);
  JsonlOptions bce;
  bce.binary_labels = true;
  for (const int64_t chunk : {1, 3}) {
    auto reader = open_reader(path, DataFormat::kBinary, std::nullopt, BadRecordPolicy::kFail, nullptr, bce);
    try {
      read_all(*reader, chunk);
      FAIL() << "no error";
    } catch (const InputError& e) {
      EXPECT_THAT(e.what(), HasSubstr(path + ": record 3 (row 2): label is 4 (expected 0 or 1: the loss is binary "
                                             "cross-entropy)"));
    }
  }
  // The batch path (read_batch) checks it too.
  {
    auto reader = open_reader(path, DataFormat::kBinary, std::nullopt, BadRecordPolicy::kFail, nullptr, bce);
    EXPECT_NO_THROW(reader->read_batch(2));
    EXPECT_THROW(reader->read_batch(2), InputError);
  }
  // A regression label (no requirement) reads as it is.
  auto plain = open_reader(path, DataFormat::kBinary);
  EXPECT_EQ(read_all(*plain, 2).labels, (std::vector<float>{1, 0, 4}));
  // Per label: a second label column that a regression task reads may hold 4.
  DataSchema two{2, {"a", "b"}, 2, false};
  ExampleColumns multi(two);
  multi.labels = {1, 2.5f, 0, 4, 1, 0};
  multi.dense = data.dense;
  multi.sparse = data.sparse;
  for (int i = 0; i < 3; ++i) multi.finish_row();
  write_binary(path, multi);
  JsonlOptions first_only;
  first_only.binary_per_label = {true, false};
  auto reader = open_reader(path, DataFormat::kBinary, std::nullopt, BadRecordPolicy::kFail, nullptr, first_only);
  EXPECT_EQ(read_all(*reader, 3).num_rows(), 3);
  first_only.binary_per_label = {false, true};
  reader = open_reader(path, DataFormat::kBinary, std::nullopt, BadRecordPolicy::kFail, nullptr, first_only);
  try {
    read_all(*reader, 3);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr(": record 1 (row 0): label[1] is 2.5"));
  }
  ::unlink(path.c_str());
}

TEST(BinaryFormat, RoundTripUnweighted) {
  const auto path = temp_path("rt.rmb");
  const auto data = small_columns(false);
  write_binary(path, data);
  BinaryReader reader(path);
  EXPECT_EQ(reader.num_rows(), 3);
  expect_equal(read_all(reader, 2), data);  // slices across a bag boundary
  std::remove(path.c_str());
}

TEST(BinaryFormat, TextFormatAskedForABinaryFileSaysSo) {
  const auto path = temp_path("asked_tsv.rmb");
  write_binary(path, small_columns(false));
  try {
    open_reader(path, DataFormat::kCriteoTsv, std::nullopt, BadRecordPolicy::kFail);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr(path + ": this is a recmod binary (.rmb) file, but the data format asked for is "
                                           "criteo_tsv; use --format binary (or auto)"));
  }
  EXPECT_EQ(open_reader(path, DataFormat::kAuto, std::nullopt, BadRecordPolicy::kFail)->schema().num_dense,
            small_columns(false).schema().num_dense);
  std::remove(path.c_str());
}

TEST(BinaryFormat, RoundTripWeightedInSeveralWrites) {
  const auto path = temp_path("rtw.rmb");
  const auto data = small_columns(true);
  {
    BinaryWriter writer(path, data.schema());
    writer.write(data.slice(0, 1));
    writer.write(data.slice(1, 3));
    writer.close();
  }
  BinaryReader reader(path);
  expect_equal(read_all(reader, 1), data);
  reader.reset();
  expect_equal(read_all(reader, 100), data);
  std::remove(path.c_str());
}

TEST(BinaryFormat, ReadBatchEqualsColumnsToBatch) {
  const auto path = temp_path("batch.rmb");
  const auto data = small_columns(true);
  write_binary(path, data);
  BinaryReader reader(path);
  const auto first = *reader.read_batch(2), second = *reader.read_batch(2);
  EXPECT_FALSE(reader.read_batch(2).has_value());
  for (const auto& [got, want] : {std::pair{first, data.slice(0, 2).to_batch()},
                                  std::pair{second, data.slice(2, 3).to_batch()}}) {
    EXPECT_TRUE(torch::equal(got.labels, want.labels));
    EXPECT_TRUE(torch::equal(got.dense, want.dense));
    EXPECT_TRUE(torch::equal(got.sparse.lengths(), want.sparse.lengths()));
    EXPECT_TRUE(torch::equal(got.sparse.values(), want.sparse.values()));
    EXPECT_TRUE(torch::equal(got.sparse.weights(), want.sparse.weights()));
  }
  EXPECT_EQ(second.size(), 1);
  std::remove(path.c_str());
}

TEST(BinaryFormat, HeaderLayoutIsAsDocumented) {
  const auto path = temp_path("layout.rmb");
  write_binary(path, small_columns(false));
  const std::string bytes = read_bytes(path);
  ASSERT_GE(bytes.size(), 64u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("RECMODB\0", 8));
  auto u32 = [&](size_t at) { uint32_t v; std::memcpy(&v, bytes.data() + at, 4); return v; };
  auto u64 = [&](size_t at) { uint64_t v; std::memcpy(&v, bytes.data() + at, 8); return v; };
  EXPECT_EQ(u32(8), 1u);   // version
  EXPECT_EQ(u64(16), 3u);  // rows
  EXPECT_EQ(u32(28), 2u);  // dense
  EXPECT_EQ(u32(32), 2u);  // sparse features
  EXPECT_EQ(bytes.substr(64, u32(36)), std::string("a\0b\0", 4));
  EXPECT_EQ(u64(56), bytes.size());
  float labels[3];
  std::memcpy(labels, bytes.data() + u64(40), sizeof(labels));
  EXPECT_THAT(labels, ElementsAre(1, 0, 1));
  // Feature table of "a" at align8(64 + 4) = 72: num_ids, lengths_offset, ids_offset, weights_offset.
  EXPECT_EQ(u64(72), 3u);
  int32_t lengths[3];
  std::memcpy(lengths, bytes.data() + u64(80), sizeof(lengths));
  EXPECT_THAT(lengths, ElementsAre(2, 0, 1));
  int64_t ids[3];
  std::memcpy(ids, bytes.data() + u64(88), sizeof(ids));
  EXPECT_THAT(ids, ElementsAre(10, 11, 12));
  std::remove(path.c_str());
}

TEST(BinaryFormat, TruncatedFileIsReported) {
  const auto path = temp_path("trunc.rmb");
  write_binary(path, small_columns(false));
  const std::string bytes = read_bytes(path);
  write_bytes(path, bytes.substr(0, bytes.size() - 8));
  EXPECT_EQ(open_error(path), path + ": header says the file is " + std::to_string(bytes.size()) +
                                  " bytes but it is " + std::to_string(bytes.size() - 8) +
                                  " bytes (truncated or appended to?)");
  write_bytes(path, bytes.substr(0, 20));
  EXPECT_EQ(open_error(path), path + ": file is 20 bytes, shorter than the 64-byte header (truncated?)");
  std::remove(path.c_str());
}

TEST(BinaryFormat, BadHeadersAreReported) {
  const auto path = temp_path("bad.rmb");
  write_binary(path, small_columns(false));
  const std::string good = read_bytes(path);

  std::string bytes = good;
  bytes[0] = 'X';
  write_bytes(path, bytes);
  EXPECT_THAT(open_error(path), HasSubstr("not a recmod binary data file"));

  bytes = good;
  bytes[8] = 7;  // version 7
  write_bytes(path, bytes);
  EXPECT_THAT(open_error(path), HasSubstr("unsupported format version 7 (this build reads version 1)"));

  bytes = good;
  const uint64_t huge = uint64_t{1} << 50;  // ids of "a" claimed far past the end
  std::memcpy(&bytes[72], &huge, 8);
  write_bytes(path, bytes);
  EXPECT_THAT(open_error(path), HasSubstr("ids of a block"));
  EXPECT_THAT(open_error(path), HasSubstr("does not fit in the"));

  bytes = good;
  uint64_t lengths_offset;
  std::memcpy(&lengths_offset, &good[80], 8);
  const int32_t negative = -1;
  std::memcpy(&bytes[lengths_offset + 4], &negative, 4);
  write_bytes(path, bytes);
  EXPECT_THAT(open_error(path), HasSubstr("feature a: row 1 has length -1 (expected >= 0)"));

  bytes = good;
  const int32_t five = 5;
  std::memcpy(&bytes[lengths_offset], &five, 4);
  write_bytes(path, bytes);
  EXPECT_THAT(open_error(path), HasSubstr("feature a: lengths sum to 6 but the header says 3 ids"));
  std::remove(path.c_str());
}

TEST(BinaryFormat, EveryTruncationIsAnErrorNotACrash) {
  const auto path = temp_path("everycut.rmb");
  write_binary(path, small_columns(true));
  const std::string good = read_bytes(path);
  for (size_t size = 0; size < good.size(); ++size) {
    write_bytes(path, good.substr(0, size));
    EXPECT_THAT(open_error(path), HasSubstr(path + ": ")) << "cut at " << size;
  }
  std::remove(path.c_str());
}

TEST(BinaryFormat, CorruptHeaderBytesNeverReadOutOfBounds) {
  // Every byte of the header, names and feature table set to 0xFF in turn:
  // opening either fails with an InputError or yields readable rows.
  const auto path = temp_path("corrupt.rmb");
  write_binary(path, small_columns(true));
  const std::string good = read_bytes(path);
  uint64_t labels_offset;
  std::memcpy(&labels_offset, &good[40], 8);
  int opened = 0;
  for (size_t at = 0; at < labels_offset; ++at) {
    std::string bytes = good;
    bytes[at] = static_cast<char>(0xFF);
    write_bytes(path, bytes);
    try {
      BinaryReader reader(path);
      int64_t rows = 0;
      while (auto batch = reader.read_batch(2)) rows += batch->size();
      EXPECT_EQ(rows, reader.num_rows());
      ++opened;
    } catch (const InputError&) {
    }
  }
  EXPECT_GT(opened, 0);  // padding bytes and names do not matter to the reader
  std::remove(path.c_str());
}

TEST(BinaryFormat, ConvertCriteoSampleEqualsTsvReader) {
  const std::string tsv = RECMOD_SOURCE_DIR "/../shared/data/criteo_kaggle_head1000/train.txt";
  const auto path = temp_path("criteo.rmb");
  ConvertOptions options;
  options.block_rows = 300;
  const auto report = convert_to_binary(tsv, path, options);
  EXPECT_EQ(report.rows_read, 1000);
  CriteoTsvReader text(tsv);
  BinaryReader binary(path);
  EXPECT_EQ(binary.schema().sparse_features, criteo_schema().sparse_features);
  expect_equal(read_all(binary, 77), read_all(text, 1000));
  std::remove(path.c_str());
}

TEST(BinaryFormat, WriterRejectsOtherSchema) {
  const auto path = temp_path("schema.rmb");
  BinaryWriter writer(path, DataSchema{1, {"x"}, 1, false});
  try {
    writer.write(small_columns(false));
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("block schema (features [a, b], 2 dense) differs from the file's (features [x], 1 dense)"));
  }
}

}  // namespace binary_format_test
}  // namespace recmod::data
