#include "recmod/train/batch_memory.h"

#include "recmod/common/errors.h"
#include "recmod/common/memory.h"

namespace recmod::train {

int64_t min_bytes_per_example(const config::ModelGraphImpl& model) {
  const auto& features = model.spec().features;
  int64_t bytes = (features.num_dense + 1) * 4;                 // dense values and the label, float32
  bytes += static_cast<int64_t>(features.sparse.size()) * 4;      // one length per sparse feature
  for (const auto& node : model.nodes())
    if (node.shape.is_dense_like()) bytes += node.shape.width * 4;  // float32 (B, width)
  return bytes;
}

void check_batch_fits(const config::ModelGraphImpl& model, int64_t batch_size) {
  const auto available = available_memory_bytes();
  if (!available) return;
  const double per_example = static_cast<double>(min_bytes_per_example(model));
  const double needed = per_example * static_cast<double>(batch_size);
  if (needed <= static_cast<double>(*available)) return;
  throw ConfigError(str_cat(model.spec().file, ": training.batch_size ", batch_size, " needs at least ",
                            format_bytes(needed), " a step (", format_bytes(per_example),
                            " an example: its inputs and every node's output) but only ",
                            format_bytes(static_cast<double>(*available)),
                            " of memory is available (MemAvailable in /proc/meminfo); make training.batch_size smaller"));
}

}  // namespace recmod::train
