#pragma once
// recmod's binary data format (".rmb"): columns laid out so a reader maps the
// file and copies slices, with no per-row parsing. Layout (little-endian) in
// docs/data.md, with a numpy reader.
//
//   0   char[8] magic "RECMODB\0"      36  u32 names_size
//   8   u32 version (1)                40  u64 labels_offset
//   12  u32 flags (bit 0: weighted)    48  u64 dense_offset
//   16  u64 num_rows                   56  u64 file_size
//   24  u32 num_labels                 64  feature names, each '\0'-terminated
//   28  u32 num_dense                  align8(64 + names_size): per feature
//   32  u32 num_sparse                     u64 num_ids, lengths_offset, ids_offset, weights_offset
// Blocks (64-byte aligned): labels f32 [N, num_labels], dense f32 [N, num_dense],
// per feature lengths i32 [N], ids i64 [num_ids], weights f32 [num_ids] (weighted only).
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "recmod/data/example_reader.h"
#include "recmod/data/mapped_file.h"

namespace recmod::data {

inline constexpr char kBinaryMagic[8] = {'R', 'E', 'C', 'M', 'O', 'D', 'B', '\0'};
inline constexpr uint32_t kBinaryVersion = 1;
inline constexpr uint64_t kBinaryHeaderSize = 64;

/// Streams blocks of examples into a binary file. Columns go to temporary
/// files next to `path` until close() assembles the final file (so memory
/// stays bounded by one block); the file appears under `path` only when
/// close() succeeds.
class BinaryWriter {
 public:
  BinaryWriter(std::string path, DataSchema schema);
  ~BinaryWriter();  // removes the temporaries if close() was not reached
  BinaryWriter(const BinaryWriter&) = delete;
  BinaryWriter& operator=(const BinaryWriter&) = delete;

  void write(const ExampleColumns& block);
  void close();
  int64_t rows_written() const { return num_rows_; }

 private:
  std::FILE* column(size_t i) { return columns_[i].file; }
  void discard();
  struct TempColumn {
    std::string path;
    std::FILE* file = nullptr;
  };
  std::string path_;
  DataSchema schema_;
  std::vector<TempColumn> columns_;  // labels, dense, then per feature: lengths, ids (, weights)
  std::vector<uint64_t> num_ids_;
  int64_t num_rows_ = 0;
  bool closed_ = false;
};

/// Writes all of `data` to `path`.
void write_binary(const std::string& path, const ExampleColumns& data);

/// Maps a binary file and hands out consecutive row slices. The header and
/// every block's bounds are checked on open, and each feature's lengths are
/// checked to be >= 0 and to sum to its id count, so reads never leave the file.
class BinaryReader : public ExampleReader {
 public:
  explicit BinaryReader(std::string path);

  const DataSchema& schema() const override { return schema_; }
  std::optional<ExampleColumns> read(int64_t max_rows) override;
  int64_t read_into(int64_t max_rows, ExampleColumns& out) override;
  /// Copies the rows' column slices straight from the mapping into the
  /// Batch's tensors (one copy; lengths widened to int64).
  std::optional<Batch> read_batch(int64_t max_rows) override;
  /// Moves the cursor: sums the passed rows' bag lengths, copies nothing.
  int64_t skip(int64_t n) override;
  std::optional<int64_t> num_records() const override { return num_rows_; }
  ReadReport report() const override { return report_; }
  int64_t num_rows() const { return num_rows_; }
  /// Rewinds to the first row (for another epoch).
  void reset();
  /// Per label column: whether its values must be 0 or 1 (a binary
  /// cross-entropy task reads it); checked per block read, a violation an
  /// InputError naming the file, the record and the label.
  void require_binary_labels(std::vector<bool> per_label) { binary_labels_ = std::move(per_label); }

 private:
  struct FeatureBlock {
    uint64_t num_ids = 0, lengths_offset = 0, ids_offset = 0, weights_offset = 0;
  };
  void parse_header();
  /// InputError naming the row and column of the first NaN/inf.
  void check_finite(const char* what, const float* values, int64_t rows, int64_t width, int64_t first_row) const;
  void check_binary_labels(const float* labels, int64_t rows, int64_t width, int64_t first_row) const;
  template <typename T>
  const T* block(uint64_t offset) const {
    return reinterpret_cast<const T*>(file_->data() + offset);
  }
  std::unique_ptr<MappedFile> file_;
  DataSchema schema_;
  int64_t num_rows_ = 0;
  uint64_t labels_offset_ = 0, dense_offset_ = 0;
  std::vector<bool> binary_labels_;
  std::vector<FeatureBlock> features_;
  int64_t row_ = 0;
  std::vector<uint64_t> id_cursor_;  // per feature: first id of row_
  ReadReport report_;
};

}  // namespace recmod::data
