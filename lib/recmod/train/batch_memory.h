#pragma once
// Refusing a batch size that cannot fit in memory before the first step, with
// the numbers, instead of meeting the OOM killer mid-run.
#include <cstdint>

#include "recmod/config/graph.h"

namespace recmod::train {

/// Bytes one example needs at the end of a forward pass, at least: its
/// inputs (dense values, label, one length per sparse feature) and every
/// node's output, all alive together then. A lower bound: a layer's inner
/// activations and the gradients come on top.
int64_t min_bytes_per_example(const config::ModelGraphImpl& model);

/// ConfigError ("<config>: training.batch_size N needs at least ... but only
/// ... is available (MemAvailable in /proc/meminfo) ...") when batch_size
/// examples cannot fit in the memory left; nothing where MemAvailable cannot
/// be read.
void check_batch_fits(const config::ModelGraphImpl& model, int64_t batch_size);

}  // namespace recmod::train
