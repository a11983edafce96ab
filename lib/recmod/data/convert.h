#pragma once
// convert: any readable format -> the binary format (what `recmod convert` runs).
#include <optional>
#include <string>

#include "recmod/data/open_reader.h"

namespace recmod::data {

struct ConvertOptions {
  DataFormat input_format = DataFormat::kAuto;
  std::optional<DataSchema> schema;  // required for JSON lines
  std::shared_ptr<const DelimitedSpec> columns;  // a config's data.columns (delimited text)
  JsonlOptions jsonl;
  BadRecordPolicy on_bad_record = BadRecordPolicy::kFail;
  int64_t block_rows = 65536;  // rows held in memory at a time
};

/// Streams `input` into a binary file at `output`; returns the reader's
/// report (rows read, bad records skipped).
ReadReport convert_to_binary(const std::string& input, const std::string& output, const ConvertOptions& options = {});
/// `input` as TorchRec's Criteo .npy files `output`_dense.npy, _sparse.npy,
/// _labels.npy (write_criteo_npy; the rows are held in memory).
ReadReport convert_to_criteo_npy(const std::string& input, const std::string& output, const ConvertOptions& options = {});

}  // namespace recmod::data
