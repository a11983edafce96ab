#include "commands/data_io.h"

#include <torch/torch.h>

#include <algorithm>

#include "recmod/data/batcher.h"
#include "recmod/data/open_reader.h"
#include "recmod/metrics/binary_metrics.h"

namespace recmod::app {

namespace {
// Configs write criteo_tsv; the data library's names use '-'.
data::DataFormat to_data_format(std::string format) {
  if (format.empty()) return data::DataFormat::kAuto;
  std::replace(format.begin(), format.end(), '_', '-');
  return data::parse_data_format(format);
}
}  // namespace

std::unique_ptr<data::BatchSource> open_data(const std::string& path, const std::string& format,
                                             const data::DataSchema& schema, int64_t batch_size, bool shuffle,
                                             uint64_t seed) {
  auto data_format = to_data_format(format);
  if (data_format == data::DataFormat::kAuto) data_format = data::detect_format(path);
  std::optional<data::DataSchema> given;
  if (data_format == data::DataFormat::kJsonl) given = schema;
  data::BatcherOptions options;
  options.batch_size = batch_size;
  options.shuffle_buffer = shuffle ? std::max<int64_t>(16384, batch_size) : 0;
  options.seed = seed;
  return std::make_unique<data::Batcher>(data::open_reader(path, data_format, given), options);
}

nlohmann::json compute_metrics(const torch::Tensor& logits, const torch::Tensor& labels) {
  metrics::BinaryMetrics m;
  m.update(torch::sigmoid(logits.to(torch::kFloat)), labels);
  auto v = m.compute();
  return {{"auc", v.auc}, {"ne", v.ne}, {"log_loss", v.log_loss}, {"accuracy", v.accuracy},
          {"calibration", v.calibration}, {"count", v.count}};
}

}  // namespace recmod::app
