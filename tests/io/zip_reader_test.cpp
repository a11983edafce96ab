// Issue 18: the zip container of checkpoints read strictly: CRC-32 of every
// record, sizes against the file before allocating, legacy and newer formats
// named as such.
#include "recmod/io/zip_reader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <caffe2/serialize/inline_container.h>
#include <torch/torch.h>
#include <zlib.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <random>

#include "recmod/common/errors.h"
#include "recmod/io/crc32.h"
#include "recmod/io/mapped_tensors.h"
#include "recmod/io/tensor_file.h"
#include "recmod/io/torch_pickle.h"
#include "support/test_util.h"

namespace recmod::io {
namespace zip_reader_test {

using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string scratch(const std::string& name) {
  return std::string(::testing::TempDir()) + "recmod_zip_" + std::to_string(::getpid()) + "_" + name;
}

void write_bytes(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string load_error(const std::string& path) {
  try {
    load_tensors(path);
  } catch (const CheckpointError& e) {
    return e.what();
  }
  return "<no CheckpointError>";
}

StateDict small_state() {
  return {{"w", torch::arange(40, torch::kFloat).reshape({10, 4})}, {"b", torch::ones({4}, torch::kDouble)}};
}

/// The central directory header of the record whose name ends with `suffix`.
size_t central_header(const std::vector<char>& bytes, const std::string& suffix) {
  for (size_t at = 0; at + 46 <= bytes.size(); ++at) {
    if (std::memcmp(&bytes[at], "PK\x01\x02", 4) != 0) continue;
    const size_t name_len = static_cast<unsigned char>(bytes[at + 28]) | static_cast<unsigned char>(bytes[at + 29]) << 8;
    const std::string name(&bytes[at + 46], name_len);
    if (name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) return at;
  }
  ADD_FAILURE() << "no record " << suffix;
  return 0;
}

void put_u32(std::vector<char>& bytes, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) bytes[at + i] = static_cast<char>(v >> (8 * i));
}

void put_u64(std::vector<char>& bytes, size_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) bytes[at + i] = static_cast<char>(v >> (8 * i));
}

uint64_t get_u64(const std::vector<char>& bytes, size_t at) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = v << 8 | static_cast<unsigned char>(bytes[at + i]);
  return v;
}

/// The archive with the directory entry of `suffix` written as for a file
/// over 4 GiB: its sizes and offset 0xFFFFFFFF in the header, the real values
/// in a zip64 extra field (as miniz writes them past 4 GiB).
std::vector<char> with_zip64_entry(const std::vector<char>& bytes, const std::string& suffix) {
  const size_t zip64_end = bytes.size() - 22 - 20 - 56;
  const size_t directory_at = get_u64(bytes, zip64_end + 48), directory_size = get_u64(bytes, zip64_end + 40);
  const size_t header = central_header(bytes, suffix);
  const size_t name_len = static_cast<unsigned char>(bytes[header + 28]) | static_cast<unsigned char>(bytes[header + 29]) << 8;
  const size_t extra_len = static_cast<unsigned char>(bytes[header + 30]) | static_cast<unsigned char>(bytes[header + 31]) << 8;
  EXPECT_EQ(extra_len, 0u);
  std::vector<char> entry(bytes.begin() + header, bytes.begin() + header + 46 + name_len);
  const uint64_t size = static_cast<unsigned char>(entry[24]) | static_cast<unsigned char>(entry[25]) << 8 |
                        static_cast<unsigned char>(entry[26]) << 16 | static_cast<uint64_t>(static_cast<unsigned char>(entry[27])) << 24;
  const uint64_t local = static_cast<unsigned char>(entry[42]) | static_cast<unsigned char>(entry[43]) << 8 |
                         static_cast<unsigned char>(entry[44]) << 16 | static_cast<uint64_t>(static_cast<unsigned char>(entry[45])) << 24;
  put_u32(entry, 20, 0xFFFFFFFFu);
  put_u32(entry, 24, 0xFFFFFFFFu);
  put_u32(entry, 42, 0xFFFFFFFFu);
  entry[30] = 28;  // extra length
  std::vector<char> extra(28, 0);
  extra[0] = 1;  // id 1: zip64
  extra[2] = 24;
  put_u64(extra, 4, size);   // uncompressed
  put_u64(extra, 12, size);  // compressed
  put_u64(extra, 20, local);
  entry.insert(entry.end(), extra.begin(), extra.end());

  std::vector<char> out(bytes.begin(), bytes.begin() + header);
  out.insert(out.end(), entry.begin(), entry.end());
  out.insert(out.end(), bytes.begin() + header + 46 + name_len, bytes.begin() + directory_at + directory_size);
  std::vector<char> tail(bytes.begin() + zip64_end, bytes.end());  // zip64 end, locator, end
  const size_t new_size = directory_size + 28;
  put_u64(tail, 40, new_size);
  put_u64(tail, 56 + 8, directory_at + new_size);  // the locator: where the zip64 end record now is
  put_u32(tail, 56 + 20 + 12, static_cast<uint32_t>(new_size));
  out.insert(out.end(), tail.begin(), tail.end());
  return out;
}

TEST(Crc32, MatchesZlibForEveryLengthAndAlignment) {
  std::mt19937 gen(7);
  std::vector<unsigned char> data(300000);
  for (auto& c : data) c = static_cast<unsigned char>(gen());
  for (size_t n = 0; n < 300; ++n)
    for (size_t offset = 0; offset < 4; ++offset) {
      const uint32_t start = n % 3 == 0 ? 0 : static_cast<uint32_t>(gen());
      ASSERT_EQ(io::crc32(start, data.data() + offset, n), ::crc32(start, data.data() + offset, static_cast<uInt>(n)))
          << "length " << n << " offset " << offset;
    }
  for (size_t n : {size_t{1} << 16, size_t{1} << 16 | 13, data.size() - 5})
    EXPECT_EQ(io::crc32(0, data.data() + 5, n), ::crc32(0, data.data() + 5, static_cast<uInt>(n)));
  // Pieces chain like zlib's.
  const uint32_t whole = io::crc32(0, data.data(), 100000);
  EXPECT_EQ(io::crc32(io::crc32(0, data.data(), 33333), data.data() + 33333, 66667), whole);
}

TEST(ZipArchive, ReadsWhatSaveTensorsWrites) {
  const std::string path = scratch("good.pt");
  save_tensors(path, small_state());
  const ZipArchive archive(path);
  EXPECT_EQ(archive.format_version(), 3u);
  ASSERT_NE(archive.find("data.pkl"), nullptr);
  ASSERT_NE(archive.find("data/0"), nullptr);
  EXPECT_EQ(archive.find("data/0")->size, 160u);
  EXPECT_EQ(archive.find("data/0")->offset % 64, 0u);  // torch.save aligns records
  EXPECT_EQ(archive.find("nope"), nullptr);
  const StateDict loaded = load_tensors(path);
  ASSERT_EQ(loaded.size(), 2u);
  EXPECT_TRUE(torch::equal(loaded[0].second, small_state()[0].second));
  std::remove(path.c_str());
}

TEST(ZipArchive, ChangedTensorByteIsACrcError) {
  const std::string path = scratch("crc.pt");
  save_tensors(path, small_state());
  const uint64_t at = ZipArchive(path).find("data/0")->offset + 37;
  std::vector<char> bytes = tensors_to_bytes(small_state());
  bytes[at] ^= 0x01;  // one bit of one float: still a valid float, so only the CRC can tell
  write_bytes(path, bytes);
  EXPECT_THAT(load_error(path), StartsWith(path + ": record 'data/0' is corrupt: its bytes have CRC-32 0x"));
  EXPECT_THAT(load_error(path), HasSubstr(", the zip directory says 0x"));
  std::remove(path.c_str());
}

TEST(ZipArchive, RecordDeclaringFourGiBInASmallFileIsRefusedBeforeAllocating) {
  const std::string path = scratch("huge.pt");
  std::vector<char> bytes = tensors_to_bytes(small_state());
  const size_t header = central_header(bytes, "/data/0");
  put_u32(bytes, header + 20, 0xFFFFFFFEu);  // compressed size
  put_u32(bytes, header + 24, 0xFFFFFFFEu);  // size
  write_bytes(path, bytes);
  EXPECT_THAT(load_error(path), HasSubstr("/data/0' declares 4294967294 bytes at byte "));
  EXPECT_THAT(load_error(path), HasSubstr(" bytes before its zip directory"));
  // A directory claiming more entries than its bytes can hold.
  bytes = tensors_to_bytes(small_state());
  // libtorch's writer always adds a zip64 end record (56 bytes, then a
  // 20-byte locator, then the 22-byte end record); its counts are the ones read.
  const size_t zip64_end = bytes.size() - 22 - 20 - 56;
  ASSERT_EQ(std::memcmp(&bytes[zip64_end], "PK\x06\x06", 4), 0);
  put_u32(bytes, zip64_end + 24, 65520);  // entries on this disk
  put_u32(bytes, zip64_end + 32, 65520);  // entries in all
  put_u32(bytes, bytes.size() - 22 + 8, 0xFFFFFFFFu);  // the end record's 16-bit counts: "see zip64"
  write_bytes(path, bytes);
  EXPECT_THAT(load_error(path), HasSubstr("the zip directory says 65520 records, but its "));
  // The end record's own count must agree with the zip64 one.
  put_u32(bytes, bytes.size() - 22 + 8, 0x00050005u);
  write_bytes(path, bytes);
  EXPECT_THAT(load_error(path), HasSubstr("the zip end record and the zip64 end record disagree"));
  std::remove(path.c_str());
}

TEST(ZipArchive, TwoRecordsSharingBytesAreRefused) {
  // Records that overlap could make a small file allocate many times its size.
  const std::string path = scratch("overlap.pt");
  std::vector<char> bytes = tensors_to_bytes(small_state());
  const size_t first = central_header(bytes, "/data/0"), second = central_header(bytes, "/data/1");
  // data/1 now claims data/0's local header (names differ, so the local header check fires first)
  std::memcpy(&bytes[second + 42], &bytes[first + 42], 4);
  write_bytes(path, bytes);
  EXPECT_THAT(load_error(path), HasSubstr("does not match the zip directory"));
  std::remove(path.c_str());
}

TEST(ZipArchive, ReadsZip64ExtraFieldsAsWrittenPastFourGiB) {
  const std::string path = scratch("zip64.pt");
  const std::vector<char> original = tensors_to_bytes(small_state());
  write_bytes(path, with_zip64_entry(with_zip64_entry(original, "/data/0"), "/data.pkl"));
  const StateDict loaded = load_tensors(path);
  ASSERT_EQ(loaded.size(), 2u);
  EXPECT_TRUE(torch::equal(loaded[0].second, small_state()[0].second));
  EXPECT_TRUE(torch::equal(loaded[1].second, small_state()[1].second));
  // A zip64 field cut short is refused, not read past.
  std::vector<char> bytes = with_zip64_entry(original, "/data/0");
  const size_t header = central_header(bytes, "/data/0");
  const size_t name_len = static_cast<unsigned char>(bytes[header + 28]);
  bytes[header + 46 + name_len + 2] = 8;  // the field says 8 bytes: only the size fits
  write_bytes(path, bytes);
  EXPECT_THAT(load_error(path), HasSubstr("/data/0' has a short zip64 field"));
  std::remove(path.c_str());
}

TEST(ZipArchive, LegacyTorchSaveFileSaysSo) {
  // torch.save(..., _use_new_zipfile_serialization=False), PyTorch 1.13.
  const std::string path = std::string(RECMOD_SOURCE_DIR) + "/tests/reliability/inputs/legacy_torch_save.pt";
  EXPECT_EQ(load_error(path), path + ": legacy torch.save format (PyTorch < 1.6, or _use_new_zipfile_serialization=False); "
                                     "re-save it with torch.save's default (zip) format: torch.save(torch.load(path), path)");
}

TEST(ZipArchive, NewerFormatVersionLeadsWithTheVersion) {
  const std::string path = scratch("v99.pt");
  std::vector<char> bytes;
  {
    caffe2::serialize::PyTorchStreamWriter writer([&](const void* data, size_t n) {
      bytes.insert(bytes.end(), static_cast<const char*>(data), static_cast<const char*>(data) + n);
      return n;
    });
    writer.setMinVersion(99);
    const std::string pickle = pickle_tensor_dict({{"w", torch::ones({2})}});
    writer.writeRecord("data.pkl", pickle.data(), pickle.size());
    const float ones[2] = {1, 1};
    writer.writeRecord("data/0", ones, sizeof ones);
    writer.writeEndOfFile();
  }
  write_bytes(path, bytes);
  EXPECT_THAT(load_error(path), StartsWith(path + ": torch.save file format version 99, but recmod reads versions 1 to 10 "
                                                  "(libtorch 1.13's range); written by a newer PyTorch?"));
  std::remove(path.c_str());
}

TEST(ZipArchive, NotAZipFileShowsItsFirstBytes) {
  const std::string path = scratch("text.pt");
  write_bytes(path, {'h', 'e', 'l', 'l', 'o', '\n'});
  EXPECT_EQ(load_error(path), path + ": not a readable torch.save file: expected a zip archive (bytes 50 4b 03 04), found 68 65 6c 6c 6f 0a");
  std::remove(path.c_str());
}


// Mapped tensors (issue 18): the file's pages in place, the same checks.

std::string map_error(const std::string& path) {
  try {
    map_tensors(path);
  } catch (const CheckpointError& e) {
    return e.what();
  }
  return "<no CheckpointError>";
}

TEST(MapTensors, GivesTheHeapLoadedTensorsInTheFilesPages) {
  const std::string path = scratch("map.pt");
  save_tensors(path, small_state());
  const StateDict mapped = map_tensors(path), heap = load_tensors(path);
  ASSERT_EQ(mapped.size(), heap.size());
  for (size_t i = 0; i < heap.size(); ++i) {
    EXPECT_EQ(mapped[i].first, heap[i].first);
    EXPECT_TRUE(is_mapped(mapped[i].second)) << mapped[i].first;
    EXPECT_FALSE(is_mapped(heap[i].second));
    ASSERT_EQ(mapped[i].second.dtype(), heap[i].second.dtype());
    EXPECT_TRUE(torch::equal(mapped[i].second, heap[i].second)) << mapped[i].first;
  }
  EXPECT_NO_THROW(check_mapped_unchanged(mapped));
  std::remove(path.c_str());
}

TEST(MapTensors, AWriteChangesThisProcessesCopyNotTheFile) {
  const std::string path = scratch("cow.pt");
  save_tensors(path, small_state());
  {
    StateDict mapped = map_tensors(path);
    mapped[0].second.fill_(7.0);  // copy-on-write
    EXPECT_EQ(mapped[0].second[3][2].item<float>(), 7.0f);
    EXPECT_NO_THROW(check_mapped_unchanged(mapped));
  }
  EXPECT_TRUE(torch::equal(load_tensors(path)[0].second, small_state()[0].second));
  std::remove(path.c_str());
}

TEST(MapTensors, ReleasedPagesReadBackFromTheFile) {
  const std::string path = scratch("release.pt");
  const StateDict big{{"w", torch::arange(1 << 16, torch::kFloat)}};  // 64 pages
  save_tensors(path, big);
  const StateDict mapped = map_tensors(path);
  release_mapped_pages(mapped);
  EXPECT_TRUE(torch::equal(mapped[0].second, big[0].second));
  std::remove(path.c_str());
}

TEST(MapTensors, ChangedTensorByteIsACrcError) {
  const std::string path = scratch("map_crc.pt");
  save_tensors(path, small_state());
  const uint64_t at = ZipArchive(path).find("data/0")->offset + 37;
  std::vector<char> bytes = tensors_to_bytes(small_state());
  bytes[at] ^= 0x01;
  write_bytes(path, bytes);
  EXPECT_THAT(map_error(path), StartsWith(path + ": record 'data/0' is corrupt: its bytes have CRC-32 0x"));
  std::remove(path.c_str());
}

TEST(MapTensors, FileCutWhileBeingVerifiedIsAnErrorNotASigbus) {
  const std::string path = scratch("cut.pt");
  const StateDict big{{"w", torch::arange(1 << 16, torch::kFloat)}};
  save_tensors(path, big);
  const ZipArchive archive(path);
  const ZipArchive::Record* record = archive.find("data/0");
  ASSERT_NE(record, nullptr);
  archive.mapping();
  ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(record->offset + 1000)), 0);
  const std::string error = test::error_of<CheckpointError>([&] { archive.map_record("data/0", *record); });
  EXPECT_THAT(error, StartsWith(path + ": the file was cut short while reading record 'data/0'"));
  EXPECT_THAT(error, HasSubstr(", now " + std::to_string(record->offset + 1000)));
  std::remove(path.c_str());
}

TEST(MapTensors, FileCutOrRewrittenWhileInUseIsReportedAfterwards) {
  const std::string path = scratch("in_use.pt");
  const StateDict big{{"w", torch::arange(1 << 16, torch::kFloat)}};
  save_tensors(path, big);
  {
    const StateDict mapped = map_tensors(path);
    release_mapped_pages(mapped);
    ASSERT_EQ(::truncate(path.c_str(), 4096), 0);
    EXPECT_EQ(mapped[0].second[(1 << 16) - 1].item<float>(), 0.0f);  // past the cut: zeros, not SIGBUS
    EXPECT_THAT(test::error_of<CheckpointError>([&] { check_mapped_unchanged(mapped); }),
                StartsWith(path + ": the checkpoint was cut short while in use ("));
  }
  save_tensors(path, big);
  const timespec old[2] = {{1000000000, 0}, {1000000000, 0}};  // a modification time the write below must change
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), old, 0), 0);
  const StateDict mapped = map_tensors(path);
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(ZipArchive(path).find("data/0")->offset));
    f.write("\x01\x02\x03\x04", 4);
  }
  EXPECT_THAT(test::error_of<CheckpointError>([&] { check_mapped_unchanged(mapped); }),
              StartsWith(path + ": the checkpoint was written in place while in use"));
  std::remove(path.c_str());
}

}  // namespace zip_reader_test
}  // namespace recmod::io
