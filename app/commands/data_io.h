#pragma once
// The commands' side of the data library: opening data files as batch
// streams and computing metrics of predictions.
#include <nlohmann/json.hpp>
#include <torch/types.h>

#include <memory>
#include <string>

#include "recmod/data/batch.h"

namespace recmod::app {

/// A batch stream over `path`. `format` is criteo_tsv | jsonl | binary or ""
/// (detected from the file). JSON lines are read with the model's `schema`.
/// `shuffle` mixes rows in a buffer, in an order fixed by `seed`.
std::unique_ptr<data::BatchSource> open_data(const std::string& path, const std::string& format,
                                             const data::DataSchema& schema, int64_t batch_size, bool shuffle,
                                             uint64_t seed);

/// AUC, NE, log loss, accuracy, calibration and count of logits vs 0/1 labels.
nlohmann::json compute_metrics(const torch::Tensor& logits, const torch::Tensor& labels);

}  // namespace recmod::app
