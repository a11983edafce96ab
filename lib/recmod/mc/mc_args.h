#pragma once
// MCHManagedCollisionModule's options read once from its arguments, for a
// config's `managed_collision:` map (config/mc_nodes.cpp) and a golden
// case's recorded args (conformance/cases_mc.cpp). The numbers have
// TorchRec's names in both. The eviction policy and the hash functions are
// objects in TorchRec (golden: {"type": ..., "args": {...}}) and flat names in
// a config (`eviction: lfu`, `input_hash: murmur3`); each front end reads
// those its way and builds them with the mc factories (make_eviction_policy,
// threshold_filter_by_name, hash_func_by_name).
#include <memory>
#include <optional>
#include <string>

#include "recmod/common/args.h"
#include "recmod/mc/mc_modules.h"

namespace recmod {

/// What a front end built from its own spelling.
struct MchFunctions {
  std::shared_ptr<MCHEvictionPolicy> eviction_policy;
  std::optional<HashFunc> input_hash_func;
  /// Required with mch_size (the residual rows' hash).
  std::optional<HashFunc> mch_hash_func;
};

/// zch_size (> 0), eviction_interval (> 0, 1), input_hash_size (> 0), mch_size
/// (> 0, needs an mch hash function), output_global_offset (>= 0). For a
/// table of `num_embeddings` rows, zch_size defaults to num_embeddings -
/// mch_size and zch_size + mch_size must equal num_embeddings.
MCHManagedCollisionModuleOptions mch_options_from(const ModuleArgs& args, MchFunctions functions,
                                                  std::optional<int64_t> num_embeddings = std::nullopt);

}  // namespace recmod
