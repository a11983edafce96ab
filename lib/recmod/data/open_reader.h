#pragma once
// Opening a data file by format: the one place that maps a format name (or a
// file's first bytes) to a reader.
#include <memory>
#include <optional>
#include <string>

#include "recmod/data/example_reader.h"

namespace recmod::data {

enum class DataFormat { kAuto, kCriteoTsv, kJsonl, kBinary };

/// "auto", "criteo-tsv" (or "tsv"), "jsonl", "binary" (or "rmb"); throws
/// UsageError listing the valid names.
DataFormat parse_data_format(const std::string& name);
std::string format_name(DataFormat format);
/// By content: the binary magic -> kBinary; a first non-blank '{' -> kJsonl;
/// otherwise kCriteoTsv.
DataFormat detect_format(const std::string& path);

/// Opens `path`. JSON lines need `schema` (the other formats carry or imply
/// their own; a given schema must then agree with the file's).
std::unique_ptr<ExampleReader> open_reader(const std::string& path, DataFormat format = DataFormat::kAuto,
                                           const std::optional<DataSchema>& schema = std::nullopt,
                                           BadRecordPolicy policy = BadRecordPolicy::kFail);

}  // namespace recmod::data
