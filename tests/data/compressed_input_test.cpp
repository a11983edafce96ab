// .gz and .zst input: the text readers read compressed files as their
// decompressed text (same rows, same bad-record line numbers), a damaged
// file is an InputError naming the file and the position (`recmod train` of
// a .tsv.gz: tests/cli/input_cli_test.cpp). The files are written here with
// zlib and libzstd.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <fstream>
#include <sstream>

#include "recmod/common/errors.h"
#include "recmod/data/compressed_stream.h"
#include "recmod/data/criteo_tsv.h"
#include "recmod/data/jsonl.h"
#include "recmod/data/open_reader.h"
#include "support/synthetic_data.h"
#include "support/test_util.h"

namespace recmod::data {
namespace compressed_input_test {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

const std::string kSample = RECMOD_SOURCE_DIR "/../shared/data/criteo_kaggle_head1000/train.txt";

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "recmod_compressed_" + std::to_string(::getpid()) + "_" + name;
}

using test::read_bytes;

std::string write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

/// One gzip member (header, deflate, CRC-32 and length), as gzip(1) writes.
std::string gzip(const std::string& text) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&z, text.size()) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  z.avail_in = static_cast<uInt>(text.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

/// One zstd frame with a content checksum, as zstd(1) writes.
std::string zstd(const std::string& text) {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
  std::string out(ZSTD_compressBound(text.size()), '\0');
  const size_t n = ZSTD_compress2(cctx, out.data(), out.size(), text.data(), text.size());
  EXPECT_FALSE(ZSTD_isError(n)) << ZSTD_getErrorName(n);
  ZSTD_freeCCtx(cctx);
  out.resize(n);
  return out;
}

/// `rows` Criteo rows (some with trimmed or empty fields), over 1 MiB for
/// 8000 rows, so that lines cross the readers' buffer boundaries.
std::string criteo_text(int rows, int bad_line = 0) {
  std::string text;
  for (int r = 1; r <= rows; ++r) {
    if (r == bad_line) {
      text += "x\t1\n";
      continue;
    }
    text += (r % 3 == 0) ? "1" : "0";
    for (int i = 1; i <= 13; ++i) text += "\t" + (r % 7 == i ? std::string() : std::to_string((r * i) % 1000 - 5));
    const int sparse = (r % 11 == 0) ? 20 : 26;  // trailing fields trimmed
    for (int k = 1; k <= sparse; ++k) {
      std::ostringstream os;
      os << std::hex << ((r * 2654435761u + k * 40503u) & 0xffffffffu);
      text += "\t" + (r % 13 == k ? std::string() : os.str());
    }
    text += (r % 5 == 0) ? "\r\n" : "\n";
    if (r % 1000 == 0) text += "\n";  // a blank line
  }
  return text;
}

std::string jsonl_text(int rows) {
  std::string text;
  for (int r = 1; r <= rows; ++r)
    text += "{\"label\": " + std::to_string(r % 2) + ", \"dense\": [" + std::to_string(r) + ", 0.5], \"sparse\": " +
            "{\"f1\": [" + std::to_string(r) + ", " + std::to_string(r * 7) + "], \"f2\": [" +
            std::to_string(r % 17) + "]}}\n";
  return text;
}

DataSchema jsonl_schema() { return DataSchema{2, {"f1", "f2"}, 1, false}; }

ExampleColumns read_all(ExampleReader& reader, int64_t chunk = 333) {
  ExampleColumns all(reader.schema());
  while (auto block = reader.read(chunk)) all.append(*block);
  return all;
}

void expect_same(const ExampleColumns& a, const ExampleColumns& b) {
  ASSERT_EQ(a.num_rows(), b.num_rows());
  EXPECT_EQ(a.labels, b.labels);
  EXPECT_EQ(a.dense, b.dense);
  ASSERT_EQ(a.sparse.size(), b.sparse.size());
  for (size_t f = 0; f < a.sparse.size(); ++f) {
    EXPECT_EQ(a.sparse[f].offsets, b.sparse[f].offsets) << "feature " << f;
    EXPECT_EQ(a.sparse[f].ids, b.sparse[f].ids) << "feature " << f;
  }
}

ExampleColumns read_file(const std::string& path, const std::optional<DataSchema>& schema = std::nullopt) {
  auto reader = open_reader(path, DataFormat::kAuto, schema);
  return read_all(*reader);
}

std::string error_reading(const std::string& path, const std::optional<DataSchema>& schema = std::nullopt) {
  try {
    read_file(path, schema);
  } catch (const InputError& e) {
    return e.what();
  }
  return "<no InputError>";
}

TEST(CompressedInput, CriteoTsvGzipAndZstdReadAsThePlainFile) {
  const std::string text = criteo_text(8000);
  ASSERT_GT(text.size(), size_t{1} << 20);
  const auto plain = write_bytes(temp_path("c.tsv"), text);
  const auto gz = write_bytes(temp_path("c.tsv.gz"), gzip(text));
  const auto zst = write_bytes(temp_path("c.tsv.zst"), zstd(text));
  EXPECT_EQ(detect_compression(gz), Compression::kGzip);
  EXPECT_EQ(detect_compression(zst), Compression::kZstd);
  EXPECT_EQ(detect_compression(plain), Compression::kNone);
  EXPECT_EQ(detect_format(gz), DataFormat::kCriteoTsv);
  EXPECT_EQ(detect_format(zst), DataFormat::kCriteoTsv);
  const auto expected = read_file(plain);
  ASSERT_EQ(expected.num_rows(), 8000);
  expect_same(read_file(gz), expected);
  expect_same(read_file(zst), expected);
  // The reader class itself, and block sizes that do not divide the rows.
  CriteoTsvReader reader(gz);
  expect_same(read_all(reader, 1), expected);
}

TEST(CompressedInput, RealCriteoSampleGzipped) {
  const auto gz = write_bytes(temp_path("sample.txt.gz"), gzip(read_bytes(kSample)));
  expect_same(read_file(gz), read_file(kSample));
}

TEST(CompressedInput, JsonlZstdAndGzipReadAsThePlainFile) {
  const std::string text = jsonl_text(3000);
  const auto plain = write_bytes(temp_path("j.jsonl"), text);
  const auto zst = write_bytes(temp_path("j.jsonl.zst"), zstd(text));
  const auto gz = write_bytes(temp_path("j.jsonl.gz"), gzip(text));
  EXPECT_EQ(detect_format(zst), DataFormat::kJsonl);
  EXPECT_EQ(detect_format(gz), DataFormat::kJsonl);
  const auto expected = read_file(plain, jsonl_schema());
  ASSERT_EQ(expected.num_rows(), 3000);
  expect_same(read_file(zst, jsonl_schema()), expected);
  expect_same(read_file(gz, jsonl_schema()), expected);
}

TEST(CompressedInput, SameBatchesThroughOpenBatches) {
  const std::string text = criteo_text(700);
  const auto plain = write_bytes(temp_path("b.tsv"), text);
  const auto gz = write_bytes(temp_path("b.tsv.gz"), gzip(text));
  ReadOptions options;
  options.batch_size = 128;
  options.shuffle = true;
  options.seed = 5;
  auto a = open_batches(plain, options, criteo_schema());
  auto b = open_batches(gz, options, criteo_schema());
  int batches = 0;
  while (auto x = a->next()) {
    auto y = b->next();
    ASSERT_TRUE(y.has_value());
    EXPECT_TRUE(torch::equal(x->dense, y->dense));
    EXPECT_TRUE(torch::equal(x->labels, y->labels));
    EXPECT_TRUE(torch::equal(x->sparse.values(), y->sparse.values()));
    EXPECT_TRUE(torch::equal(x->sparse.lengths(), y->sparse.lengths()));
    ++batches;
  }
  EXPECT_FALSE(b->next().has_value());
  EXPECT_EQ(batches, 6);
}

TEST(CompressedInput, ConcatenatedMembersAndFramesReadAsOneText) {
  const std::string first = criteo_text(300), second = criteo_text(200);
  const auto plain = write_bytes(temp_path("m.tsv"), first + second);
  const auto gz = write_bytes(temp_path("m.tsv.gz"), gzip(first) + gzip(second));
  const auto zst = write_bytes(temp_path("m.tsv.zst"), zstd(first) + zstd(second));
  const auto expected = read_file(plain);
  expect_same(read_file(gz), expected);
  expect_same(read_file(zst), expected);
}

TEST(CompressedInput, LineLongerThanTheBuffer) {
  // One JSON line of ~2.4 MB: the line buffer grows past its 1 MiB.
  std::string ids;
  for (int i = 0; i < 300000; ++i) ids += (i ? ", " : "") + std::to_string(i);
  const std::string text = "{\"label\": 1, \"dense\": [1, 2], \"sparse\": {\"f1\": [" + ids +
                           "]}}\n{\"label\": 0, \"dense\": [3, 4]}\n";
  const auto zst = write_bytes(temp_path("long.jsonl.zst"), zstd(text));
  const auto rows = read_file(zst, jsonl_schema());
  ASSERT_EQ(rows.num_rows(), 2);
  EXPECT_EQ(rows.sparse[0].ids.size(), 300000u);
  EXPECT_EQ(rows.sparse[0].ids.back(), 299999);
}

TEST(CompressedInput, BadRecordHasTheLineNumberOfTheDecompressedText) {
  const std::string text = criteo_text(9000, /*bad_line=*/8500);
  const auto plain = write_bytes(temp_path("bad.tsv"), text);
  const auto gz = write_bytes(temp_path("bad.tsv.gz"), gzip(text));
  const auto zst = write_bytes(temp_path("bad.tsv.zst"), zstd(text));
  // Lines, not rows: the blank lines after every 1000th row count.
  EXPECT_EQ(error_reading(plain), plain + ":8508: expected 40 tab-separated fields (at least 14 when trailing empty "
                                          "fields are trimmed), found 2");
  EXPECT_EQ(error_reading(gz), gz + error_reading(plain).substr(plain.size()));
  EXPECT_EQ(error_reading(zst), zst + error_reading(plain).substr(plain.size()));

  // Skipping: the same report.
  auto skip_plain = open_reader(plain, DataFormat::kAuto, std::nullopt, BadRecordPolicy::kSkip);
  auto skip_gz = open_reader(gz, DataFormat::kAuto, std::nullopt, BadRecordPolicy::kSkip);
  expect_same(read_all(*skip_gz), read_all(*skip_plain));
  EXPECT_EQ(skip_gz->report().rows_skipped, 1);
  EXPECT_THAT(skip_gz->report().first_errors.at(0), HasSubstr("bad.tsv.gz:8508: expected 40"));
}

TEST(CompressedInput, TruncatedFilesNameTheFileAndThePosition) {
  const std::string text = criteo_text(8000);
  const std::string gz_bytes = gzip(text), zst_bytes = zstd(text);
  const auto gz = write_bytes(temp_path("cut.tsv.gz"), gz_bytes.substr(0, gz_bytes.size() / 2));
  const auto zst = write_bytes(temp_path("cut.tsv.zst"), zst_bytes.substr(0, zst_bytes.size() / 2));
  EXPECT_THAT(error_reading(gz),
              MatchesRegex(".*cut\\.tsv\\.gz:[0-9]+: truncated gzip data: the file ends inside a compressed stream at "
                           "byte [0-9]+ \\([0-9]+ bytes of text decompressed\\)"));
  EXPECT_THAT(error_reading(zst),
              MatchesRegex(".*cut\\.tsv\\.zst:[0-9]+: truncated zstd data: the file ends inside a compressed frame at "
                           "byte [0-9]+ \\([0-9]+ bytes of text decompressed\\)"));
  // Half the file holds about half the lines: the line number is where the
  // data ran out, not 1.
  const std::string message = error_reading(gz);
  const int64_t line = std::stoll(message.substr(gz.size() + 1));
  EXPECT_GT(line, 1000);
  EXPECT_LT(line, 8000);
  // Cut inside the 10-byte gzip header: still a clear error.
  const auto header_only = write_bytes(temp_path("head.tsv.gz"), gz_bytes.substr(0, 5));
  EXPECT_THAT(error_reading(header_only), HasSubstr("head.tsv.gz: truncated gzip data"));
}

TEST(CompressedInput, CorruptFilesNameTheFileAndThePosition) {
  const std::string text = criteo_text(500);
  // The gzip trailer's CRC-32 and the zstd frame's checksum no longer match.
  std::string gz_bytes = gzip(text), zst_bytes = zstd(text);
  gz_bytes[gz_bytes.size() - 8] ^= 0x55;
  zst_bytes[zst_bytes.size() - 1] ^= 0x55;
  const auto gz = write_bytes(temp_path("crc.tsv.gz"), gz_bytes);
  const auto zst = write_bytes(temp_path("sum.tsv.zst"), zst_bytes);
  // Found at the end: the 500 lines before it were read (and would have
  // been checked) first, as in a plain file.
  const std::string size = std::to_string(text.size());
  EXPECT_THAT(error_reading(gz), MatchesRegex(".*crc\\.tsv\\.gz:501: corrupt gzip data at byte [0-9]+ of the file "
                                              "\\(incorrect data check; " + size + " bytes of text decompressed\\)"));
  // libzstd checks a frame whose text fits the output buffer in one pass:
  // the whole frame is refused, before any line.
  EXPECT_THAT(error_reading(zst), MatchesRegex(".*sum\\.tsv\\.zst:[0-9]+: corrupt zstd data within the first [0-9]+ "
                                               "bytes of the file \\(.*checksum; [0-9]+ bytes of text "
                                               "decompressed\\)"));
  // Reserved header flags: caught at the first read (format detection).
  std::string bad_header = gzip(text);
  bad_header[3] = static_cast<char>(0xe0);
  const auto flags = write_bytes(temp_path("flags.tsv.gz"), bad_header);
  EXPECT_THAT(error_reading(flags), HasSubstr("flags.tsv.gz: corrupt gzip data at byte"));
}

TEST(CompressedInput, NamedCompressedButNotCompressed) {
  const auto plain_gz = write_bytes(temp_path("plain.tsv.gz"), criteo_text(3));
  EXPECT_THAT(error_reading(plain_gz), HasSubstr("plain.tsv.gz: the name ends in .gz but the file is not gzip data "
                                                 "(it starts with bytes 30 09 "));
  const auto empty_zst = write_bytes(temp_path("empty.jsonl.zst"), "");
  EXPECT_THAT(error_reading(empty_zst, jsonl_schema()),
              HasSubstr("empty.jsonl.zst: the name ends in .zst but the file is not zstd data (it starts with "
                        "nothing: it is empty"));
  // By magic bytes, whatever the name.
  const auto misnamed = write_bytes(temp_path("data.txt"), gzip(criteo_text(40)));
  EXPECT_EQ(detect_compression(misnamed), Compression::kGzip);
  EXPECT_EQ(read_file(misnamed).num_rows(), 40);
  // An empty gzip member's text is empty: no rows, no error.
  const auto empty_text = write_bytes(temp_path("none.tsv.gz"), gzip(""));
  EXPECT_EQ(open_reader(empty_text)->read(10), std::nullopt);
}

TEST(CompressedInput, CompressedBinaryIsRefused) {
  const auto rmb = temp_path("x.rmb");
  recmod::testing::write_synthetic(rmb, "--rows 10 --dense 2 --sparse 3 --cardinality 50");
  const auto gz = write_bytes(rmb + ".gz", gzip(read_bytes(rmb)));
  EXPECT_THAT(error_reading(gz), HasSubstr("x.rmb.gz: a compressed recmod binary (.rmb) file"));
}

}  // namespace compressed_input_test
}  // namespace recmod::data
