// TorchRec's preprocessed Criteo format (<prefix>_dense/_sparse/_labels.npy):
// written and read back, checked against numpy both ways (skipped without a
// python3 that imports numpy), detected by name, and refused with the file
// and what was expected when a file is wrong.
#include "recmod/data/criteo_npy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "recmod/common/errors.h"
#include "recmod/data/open_reader.h"
#include "support/test_util.h"

namespace recmod::data {
namespace criteo_npy_test {

using ::testing::HasSubstr;
using test::error_of;

std::string temp_prefix(const std::string& name) {
  return ::testing::TempDir() + "recmod_npy_" + std::to_string(::getpid()) + "_" + name;
}

// Three rows, 2 dense, 3 sparse features.
ExampleColumns sample() {
  DataSchema schema;
  schema.num_dense = 2;
  schema.sparse_features = {"C1", "C2", "C3"};
  ExampleColumns c(schema);
  const float labels[] = {1, 0, 1};
  const float dense[] = {1.0986123f, 0.5f, 2.25f, -1.5f, 0.0f, 7.0f};
  const int64_t ids[3][3] = {{7, -3, 2147483647}, {0, 12, -2147483648LL}, {5, 5, 5}};
  for (int r = 0; r < 3; ++r) {
    c.labels.push_back(labels[r]);
    c.dense.push_back(dense[2 * r]);
    c.dense.push_back(dense[2 * r + 1]);
    for (size_t f = 0; f < 3; ++f) {
      c.sparse[f].ids.push_back(ids[r][f]);
      c.close_bag(f);
    }
    c.finish_row();
  }
  return c;
}

std::string python_with_numpy() {
  for (const char* p : {"python3", "/usr/bin/python3"})
    if (std::system((std::string(p) + " -c 'import numpy' >/dev/null 2>&1").c_str()) == 0) return p;
  return "";
}

std::string run(const std::string& command) {
  std::string out;
  FILE* pipe = popen(command.c_str(), "r");
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) out.append(buffer, n);
  pclose(pipe);
  return out;
}

TEST(CriteoNpy, WritesAndReadsBackEveryValue) {
  const std::string prefix = temp_prefix("roundtrip");
  const ExampleColumns in = sample();
  write_criteo_npy(prefix, in);
  CriteoNpyReader reader(prefix + "_sparse.npy");  // any of the three names, or the prefix
  EXPECT_EQ(reader.schema().num_dense, 2);
  EXPECT_EQ(reader.schema().sparse_features, (std::vector<std::string>{"C1", "C2", "C3"}));
  auto first = reader.read(2);
  auto second = reader.read(2);
  ASSERT_TRUE(first && second);
  EXPECT_FALSE(reader.read(2));
  first->append(*second);
  EXPECT_EQ(first->labels, in.labels);
  EXPECT_EQ(first->dense, in.dense);
  for (size_t f = 0; f < 3; ++f) {
    EXPECT_EQ(first->sparse[f].ids, in.sparse[f].ids) << f;
    EXPECT_EQ(first->sparse[f].offsets, in.sparse[f].offsets) << f;
  }
  EXPECT_EQ(detect_format(prefix), DataFormat::kCriteoNpy);
  EXPECT_EQ(detect_format(prefix + "_dense.npy"), DataFormat::kCriteoNpy);
  EXPECT_EQ(reader.report().rows_read, 3);
}

TEST(CriteoNpy, NumpyReadsWhatRecmodWritesAndTheReverse) {
  const std::string python = python_with_numpy();
  if (python.empty()) GTEST_SKIP() << "no python3 with numpy";
  const std::string ours = temp_prefix("ours");
  write_criteo_npy(ours, sample());
  const std::string seen = run(python + " -c \"import numpy as np; p='" + ours + "'\n"
                               "for s in ('dense', 'sparse', 'labels'):\n"
                               "    a = np.load(p + '_' + s + '.npy')\n"
                               "    print(s, a.dtype, a.shape, a.ravel().tolist())\"");
  EXPECT_THAT(seen, HasSubstr("dense float32 (3, 2) [1.0986123085021973, 0.5, 2.25, -1.5, 0.0, 7.0]"));
  EXPECT_THAT(seen, HasSubstr("sparse int32 (3, 3) [7, -3, 2147483647, 0, 12, -2147483648, 5, 5, 5]"));
  EXPECT_THAT(seen, HasSubstr("labels int32 (3, 1) [1, 0, 1]"));

  // As tsv_to_npys writes a day: dense log(x + 3) float32, int32 hex ids, int32 (N, 1) labels.
  const std::string theirs = temp_prefix("theirs");
  run(python + " -c \"import numpy as np; p='" + theirs + "'\n"
      "d = np.log(np.array([[0, 5], [1, 2]], dtype=np.int32) + 3, dtype=np.float32)\n"
      "np.save(p + '_dense.npy', d)\n"
      "np.save(p + '_sparse.npy', np.array([[int('68fd1e64', 16), 3], [int('05db9164', 16), 0]], dtype=np.int32))\n"
      "np.save(p + '_labels.npy', np.array([0, 1], dtype=np.int32).reshape((-1, 1)))\"");
  auto source = open_reader(theirs);  // detected by the prefix
  auto block = source->read(10);
  ASSERT_TRUE(block);
  EXPECT_EQ(block->labels, (std::vector<float>{0, 1}));
  EXPECT_FLOAT_EQ(block->dense[0], std::log(3.0f));
  EXPECT_FLOAT_EQ(block->dense[1], std::log(8.0f));
  EXPECT_EQ(block->sparse[0].ids, (std::vector<int64_t>{0x68fd1e64, 0x05db9164}));
  EXPECT_EQ(block->sparse[1].ids, (std::vector<int64_t>{3, 0}));
}

void write_raw(const std::string& path, const std::string& dict, size_t data_bytes) {
  std::string header = dict;
  header.append((64 - (10 + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  const uint16_t len = static_cast<uint16_t>(header.size());
  out.write("\x93NUMPY\x01\x00", 8);
  out.write(reinterpret_cast<const char*>(&len), 2);
  out << header << std::string(data_bytes, '\0');
}

TEST(CriteoNpy, WrongFilesAreRefusedNamingTheFileAndWhatWasExpected) {
  const std::string prefix = temp_prefix("bad");
  write_criteo_npy(prefix, sample());
  // A labels file with other rows than the dense one.
  write_raw(prefix + "_labels.npy", "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 1), }", 8);
  EXPECT_THAT(error_of<InputError>([&] { CriteoNpyReader r(prefix); }),
              HasSubstr("bad_labels.npy: 2 rows, but " + prefix + "_dense.npy has 3; the three files of a day must have the same rows"));
  // Cut short: the header promises more than the file holds.
  write_raw(prefix + "_labels.npy", "{'descr': '<i4', 'fortran_order': False, 'shape': (3, 1), }", 4);
  EXPECT_THAT(error_of<InputError>([&] { CriteoNpyReader r(prefix); }), HasSubstr("is it cut short?"));
  write_raw(prefix + "_labels.npy", "{'descr': '<i4', 'fortran_order': True, 'shape': (3, 1), }", 12);
  EXPECT_THAT(error_of<InputError>([&] { CriteoNpyReader r(prefix); }), HasSubstr("a Fortran-order .npy array"));
  write_raw(prefix + "_labels.npy", "{'descr': '>i4', 'fortran_order': False, 'shape': (3, 1), }", 12);
  EXPECT_THAT(error_of<InputError>([&] { CriteoNpyReader r(prefix); }), HasSubstr("expected a little-endian number type"));
  write_raw(prefix + "_labels.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 1), }", 24);
  EXPECT_THAT(error_of<InputError>([&] { CriteoNpyReader r(prefix); }),
              HasSubstr("the labels of type <f8; expected one of [<i4, <i8, <f4]"));
  // A label the loss cannot take.
  write_raw(prefix + "_labels.npy", "{'descr': '<i4', 'fortran_order': False, 'shape': (3, 1), }", 12);
  {
    std::fstream f(prefix + "_labels.npy", std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(static_cast<std::streamoff>(std::filesystem::file_size(prefix + "_labels.npy")) - 12 + 4);  // row 1
    const int32_t two = 2;
    f.write(reinterpret_cast<const char*>(&two), 4);
  }
  CriteoNpyReader reader(prefix);
  EXPECT_THAT(error_of<InputError>([&] { reader.read(10); }),
              HasSubstr("bad_labels.npy: row 1 (0-based): expected label 0 or 1 (the loss is binary cross-entropy), found 2"));
  std::remove((prefix + "_sparse.npy").c_str());
  EXPECT_THAT(error_of<InputError>([&] { CriteoNpyReader r(prefix); }),
              HasSubstr("bad_sparse.npy: no such file; TorchRec's Criteo .npy format is three files"));
}

TEST(CriteoNpy, WriterRefusesWhatTheFormatCannotHold) {
  ExampleColumns c = sample();
  c.sparse[1].ids.push_back(9);  // a second id in the last row's bag
  c.sparse[1].offsets.back() += 1;
  EXPECT_THAT(error_of<InputError>([&] { write_criteo_npy(temp_prefix("multi"), c); }),
              HasSubstr("row 2 (0-based) has 2 ids of feature 'C2'; TorchRec's Criteo .npy holds exactly one per feature"));
}

}  // namespace criteo_npy_test
}  // namespace recmod::data
