#pragma once
// TorchRec's preprocessed Criteo format: three NumPy .npy files per day, as
// torchrec.datasets.criteo.BinaryCriteoUtils.tsv_to_npys writes them
// (docs/data.md "TorchRec's Criteo .npy"):
//   <prefix>_dense.npy   float32 (N, 13)  log(x + 3) of the integer features
//   <prefix>_sparse.npy  int32   (N, 26)  the categorical ids (hex parsed, or made contiguous)
//   <prefix>_labels.npy  int32   (N, 1)   0 / 1
// read memory-mapped, no converter. Any C-order .npy (format 1.0-3.0) of a
// little-endian float32/float64 (dense), int32/int64 (sparse) or
// int32/int64/float32 (labels) array is accepted. Schema: criteo_schema()'s
// names with the files' column counts (dense I1.., features C1..).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "recmod/data/example_reader.h"
#include "recmod/data/mapped_file.h"

namespace recmod::data {

/// The header of an .npy file: element type (NumPy's descr, e.g. "<f4"),
/// shape, and where the data starts. parse_npy_header throws InputError
/// "<path>: ..." naming what was expected and found.
struct NpyHeader {
  std::string descr;
  std::vector<int64_t> shape;
  size_t data_offset = 0;
  size_t item_size() const { return static_cast<size_t>(std::stoi(descr.substr(2))); }
};
NpyHeader parse_npy_header(const char* data, size_t size, const std::string& path);

/// The three file names of a day given any one of them or their common
/// prefix ("data/day_0", "data/day_0_dense.npy", ...); {dense, sparse, labels}.
std::vector<std::string> criteo_npy_paths(const std::string& path);
/// Whether `path` names TorchRec Criteo .npy files (one of the three, or a
/// prefix whose _dense.npy exists).
bool is_criteo_npy(const std::string& path);

class CriteoNpyReader : public ExampleReader {
 public:
  explicit CriteoNpyReader(const std::string& path);
  const DataSchema& schema() const override { return schema_; }
  std::optional<ExampleColumns> read(int64_t max_rows) override;
  int64_t read_into(int64_t max_rows, ExampleColumns& out) override;
  /// Moves the cursor (rows have a fixed size).
  int64_t skip(int64_t n) override;
  std::optional<int64_t> num_records() const override { return num_rows_; }
  ReadReport report() const override { return report_; }

 private:
  struct Array {
    std::unique_ptr<MappedFile> file;
    NpyHeader header;
    int64_t columns = 0;
    const char* at(int64_t row) const {
      return file->data() + header.data_offset + static_cast<size_t>(row * columns) * header.item_size();
    }
  };
  Array open_array(const std::string& path, const std::vector<std::string>& descrs, const char* what);
  Array dense_, sparse_, labels_;
  DataSchema schema_;
  int64_t num_rows_ = 0;
  int64_t next_row_ = 0;
  ReadReport report_;
};

/// Writes examples as TorchRec Criteo .npy files (`prefix`_dense.npy
/// float32, _sparse.npy int32, _labels.npy int32 (N, 1)): each example must
/// have exactly one id per sparse feature that fits in int32 and one 0/1
/// label (InputError naming the row otherwise). What `recmod convert --to npy`
/// writes; numpy.load reads it.
void write_criteo_npy(const std::string& prefix, const ExampleColumns& data);

}  // namespace recmod::data
