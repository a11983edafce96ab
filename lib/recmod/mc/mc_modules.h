#pragma once
// Managed-collision (zero-collision hashing) modules, as
// torchrec.modules.mc_modules: ManagedCollisionModule maps raw feature ids
// to a bounded range of embedding rows; MCHManagedCollisionModule keeps the
// zch_size most valuable ids (by its eviction policy) each in a row of its
// own and sends every other id to a shared overflow row.
#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "recmod/mc/eviction_policies.h"
#include "recmod/sparse/jagged_tensor.h"

namespace recmod {

/// Dict[str, JaggedTensor] in insertion order (feature name -> ids).
using JtDict = std::vector<std::pair<std::string, JaggedTensor>>;

/// hash(ids, size) -> ids in [0, size). size may be 2**63 (TorchRec's
/// default input_hash_size), hence unsigned.
using HashFunc = std::function<torch::Tensor(const torch::Tensor& ids, uint64_t size)>;

/// torch.remainder(ids, size): non-negative for every int64 id.
torch::Tensor mod_hash(const torch::Tensor& ids, uint64_t size);
/// MurmurHash3's 64-bit finalizer (fmix64) on the id's bits, sign bit
/// cleared, then mod_hash:
/// spreads sequential or clustered ids uniformly over [0, size).
torch::Tensor murmur3_hash(const torch::Tensor& ids, uint64_t size);
/// "mod" or "murmur3"; throws InputError listing the names otherwise.
HashFunc hash_func_by_name(const std::string& name);
std::vector<std::string> hash_func_names();

constexpr uint64_t kDefaultInputHashSize = uint64_t{1} << 63;

/// Maps input ids to [0, output_size()). Interface of TorchRec's abstract
/// ManagedCollisionModule; ManagedCollisionCollection calls preprocess,
/// profile and remap in turn over all its tables.
class ManagedCollisionModuleImpl : public torch::nn::Module {
 public:
  /// Applies the input hash (if any) to the ids.
  virtual JtDict preprocess(const JtDict& features) = 0;
  /// Records the ids (training only) and runs evictions when due.
  virtual JtDict profile(const JtDict& features) = 0;
  /// Replaces every id by its output slot.
  virtual JtDict remap(const JtDict& features) = 0;
  /// profile, then remap (no preprocess).
  virtual JtDict forward(const JtDict& features) = 0;
  /// The output slots taken over by new ids since the last call (their
  /// embedding rows are stale), or nullopt when no eviction ran.
  virtual std::optional<torch::Tensor> evict() = 0;
  virtual int64_t output_size() const = 0;
  virtual uint64_t input_size() const = 0;
  /// A module of the same kind for the output ids [range.first, range.second)
  /// (TorchRec's hook for row-wise sharding).
  virtual std::shared_ptr<ManagedCollisionModuleImpl> rebuild_with_output_id_range(
      std::pair<int64_t, int64_t> output_id_range, std::optional<torch::Device> device = std::nullopt) const = 0;
  virtual torch::Device device() const = 0;
};

/// TorchRec's apply_mc_method_to_jt_dict: calls `method` (preprocess,
/// profile, remap or forward) of `mc_module` on `features_dict`; the result
/// keeps its ordering. Another method name is an InputError listing these.
JtDict apply_mc_method_to_jt_dict(ManagedCollisionModuleImpl& mc_module, const std::string& method,
                                  const JtDict& features_dict);

/// Options of MCHManagedCollisionModule; names and defaults as TorchRec's
/// constructor arguments.
struct MCHManagedCollisionModuleOptions {
  MCHManagedCollisionModuleOptions(int64_t zch_size, std::shared_ptr<MCHEvictionPolicy> eviction_policy,
                                   int64_t eviction_interval)
      : zch_size_(zch_size), eviction_policy_(std::move(eviction_policy)), eviction_interval_(eviction_interval) {}
  TORCH_ARG(int64_t, zch_size);  // rows with an id of their own; the last one is the overflow row
  TORCH_ARG(std::shared_ptr<MCHEvictionPolicy>, eviction_policy);
  TORCH_ARG(int64_t, eviction_interval);  // training iterations between evictions
  TORCH_ARG(torch::Device, device) = torch::kCPU;
  TORCH_ARG(uint64_t, input_hash_size) = kDefaultInputHashSize;
  TORCH_ARG(std::optional<HashFunc>, input_hash_func) = std::nullopt;  // applied by preprocess
  TORCH_ARG(std::optional<int64_t>, mch_size) = std::nullopt;          // residual hashed rows after the zch rows
  TORCH_ARG(std::optional<HashFunc>, mch_hash_func) = std::nullopt;    // required with mch_size
  TORCH_ARG(std::string, name) = "";
  TORCH_ARG(int64_t, output_global_offset) = 0;  // recorded for sharding; TorchRec does not add it
};

/// ZCH / MCH managed collision module.
///
/// State (TorchRec's state_dict names): `_current_iter_tensor` (int32 [1],
/// a non-trainable parameter: training iterations so far),
/// `_mch_sorted_raw_ids` (int64 [zch_size], ascending; int64 max = empty),
/// `_mch_remapped_ids_mapping` (int64 [zch_size], the output slot of each
/// sorted id) and per-slot policy metadata `_mch_counts` /
/// `_mch_last_access_iter`.
///
/// Training forward i appends its ids to a history of
/// int(first_batch_numel * eviction_interval * 1.25) entries (overflow is
/// dropped); every eviction_interval-th one merges the history into the
/// table by the policy's scores before remapping. remap: an id in the table
/// -> its slot, any other -> zch_size - 1 (or zch_size + mch_hash(id) with
/// mch_size). The history is not saved: a fresh module loaded from a
/// state_dict starts from `_current_iter_tensor` with an empty history, as
/// TorchRec (the iteration is read at the first training forward, so load
/// into a module that has not trained yet).
class MCHManagedCollisionModuleImpl : public ManagedCollisionModuleImpl {
 public:
  explicit MCHManagedCollisionModuleImpl(MCHManagedCollisionModuleOptions options);

  JtDict preprocess(const JtDict& features) override;
  JtDict profile(const JtDict& features) override;
  JtDict remap(const JtDict& features) override;
  JtDict forward(const JtDict& features) override;
  std::optional<torch::Tensor> evict() override;
  int64_t output_size() const override;
  uint64_t input_size() const override { return options.input_hash_size(); }
  std::shared_ptr<ManagedCollisionModuleImpl> rebuild_with_output_id_range(
      std::pair<int64_t, int64_t> output_id_range, std::optional<torch::Device> device = std::nullopt) const override;
  torch::Device device() const override { return mch_sorted_raw_ids_.device(); }

  /// History capacity; -1 until the first training batch sizes it.
  int64_t history_capacity() const { return input_history_buffer_size_; }
  /// Sizes the history as a first training batch of `numel` ids would
  /// (int(numel * eviction_interval * 1.25)), unless it is sized already. A
  /// row-wise shard is sized from the global batch's ids of its table, so it
  /// drops ids only where the unsharded module would.
  void size_history(int64_t numel);
  /// Ids recorded since the last eviction.
  int64_t history_size() const { return current_history_buffer_offset_; }

  MCHManagedCollisionModuleOptions options;

 private:
  void append_to_history(const torch::Tensor& values);
  void coalesce_history();
  void update_and_evict(const torch::Tensor& uniq_ids, const torch::Tensor& uniq_ids_counts,
                        MetadataDict& uniq_ids_metadata);
  void sort_mch_buffers();
  /// (matching mask, matched positions) of `search_values` in the sorted
  /// table (its last, pinned entry excluded from the search).
  std::pair<torch::Tensor, torch::Tensor> match_indices(const torch::Tensor& search_values) const;

  torch::Tensor current_iter_tensor_;
  torch::Tensor mch_sorted_raw_ids_;
  torch::Tensor mch_remapped_ids_mapping_;
  MetadataDict mch_metadata_;  // registered buffers `_mch_<name>`

  // Not checkpointed (TorchRec: plain attributes and non-persistent buffers).
  int64_t current_iter_ = -1;
  int64_t last_eviction_iter_ = -1;
  int64_t input_history_buffer_size_ = -1;
  int64_t current_history_buffer_offset_ = 0;
  torch::Tensor history_accumulator_;
  MetadataDict history_metadata_;
  bool evicted_ = false;
  torch::Tensor evicted_emb_indices_;
};
TORCH_MODULE(MCHManagedCollisionModule);

}  // namespace recmod
