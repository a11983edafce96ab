#pragma once
// Maps raw sparse ids into a table's range, per feature, as the config's
// `hash:` says: none (ids used as they are), mod (id mod range, made
// non-negative) or murmur (MurmurHash3's 64-bit finalizer of the id's 64
// bits, then that unsigned 64-bit value mod range; docs/data.md has a Python
// reference and test vectors). Runs with tensor ops on the ids' device.
#include <torch/types.h>

#include <vector>

#include "recmod/config/model_config.h"
#include "recmod/sparse/keyed_jagged_tensor.h"

namespace recmod::config {

torch::Tensor hash_ids(const torch::Tensor& ids, const std::string& hash, int64_t range);

/// Hashes each key of `kjt` by its spec; keys without a spec pass through.
KeyedJaggedTensor hash_features(const KeyedJaggedTensor& kjt, const std::vector<SparseFeatureSpec>& specs);

}  // namespace recmod::config
