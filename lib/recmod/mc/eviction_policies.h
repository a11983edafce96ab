#pragma once
// Eviction policies of torchrec.modules.mc_modules (MCHEvictionPolicy and
// its LFU / LRU / DistanceLFU implementations). A policy owns no tensors: the
// MCH module keeps the metadata buffers the policy's metadata_info asks for
// (`_mch_<name>` per table slot, `_history_<name>` per history entry) and
// passes them in.
#include <torch/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "recmod/mc/threshold_filters.h"

namespace recmod {

/// One metadata field a policy tracks: per table slot (is_mch_metadata)
/// and/or per history entry (is_history_metadata).
struct MCHEvictionPolicyMetadataInfo {
  std::string metadata_name;
  bool is_mch_metadata;
  bool is_history_metadata;
};

using MetadataDict = std::map<std::string, torch::Tensor>;

/// Which table slots to give up and which incoming ids take them.
struct EvictionDecision {
  torch::Tensor evicted_indices;       // positions in the (sorted) table
  torch::Tensor selected_new_indices;  // positions among the non-matching incoming ids
};

/// Scores the table's ids and the incoming ones; the zch_size best (highest
/// score, ties by position: table first, then incoming by frequency) stay.
class MCHEvictionPolicy {
 public:
  MCHEvictionPolicy(std::vector<MCHEvictionPolicyMetadataInfo> metadata_info,
                    std::optional<ThresholdFilter> threshold_filtering_func);
  virtual ~MCHEvictionPolicy() = default;

  const std::vector<MCHEvictionPolicyMetadataInfo>& metadata_info() const { return metadata_info_; }
  const std::optional<ThresholdFilter>& threshold_filtering_func() const { return threshold_filtering_func_; }
  /// "LFU_EvictionPolicy", ... (for messages).
  virtual std::string name() const = 0;

  /// Fills the history metadata slices for the ids just appended.
  virtual void record_history_metadata(int64_t current_iter, const torch::Tensor& incoming_ids,
                                       MetadataDict& history_metadata) const = 0;
  /// Per unique id (torch::unique of the history) metadata, reduced from
  /// the per-entry history; restricted to threshold_mask when given.
  /// additional_ids (TorchRec's argument): ids taken as part of the history,
  /// seen at current_iter; unique_inverse_mapping then covers
  /// cat(history, additional_ids).
  virtual MetadataDict coalesce_history_metadata(int64_t current_iter, const MetadataDict& history_metadata,
                                                 const torch::Tensor& unique_ids_counts,
                                                 const torch::Tensor& unique_inverse_mapping,
                                                 const std::optional<torch::Tensor>& additional_ids,
                                                 const std::optional<torch::Tensor>& threshold_mask) const = 0;
  /// Updates the slots' metadata in place (matching ids, then the evicted
  /// slots with their new ids) and returns the eviction decision.
  /// Incoming ids are in frequency order: `argsort_mapping` maps that order
  /// to the coalesced (sorted-id) order.
  virtual EvictionDecision update_metadata_and_generate_eviction_scores(
      int64_t current_iter, int64_t zch_size, const torch::Tensor& argsort_mapping,
      const torch::Tensor& sorted_unique_ids_counts, const torch::Tensor& mch_matching_elements_mask,
      const torch::Tensor& mch_matching_indices, MetadataDict& mch_metadata,
      MetadataDict& coalesced_history_metadata) const = 0;

 protected:
  /// Stable descending argsort of the merged scores [table | incoming]: the
  /// incoming ids in the top `pivot` enter, table ids outside it leave.
  static EvictionDecision select_evictions(int64_t pivot, const torch::Tensor& eviction_scores);

 private:
  std::vector<MCHEvictionPolicyMetadataInfo> metadata_info_;
  std::optional<ThresholdFilter> threshold_filtering_func_;
};

/// Least frequently used: score = accumulated count of the id while in the
/// table (an incoming id: its count in this history window).
class LFU_EvictionPolicy : public MCHEvictionPolicy {
 public:
  explicit LFU_EvictionPolicy(std::optional<ThresholdFilter> threshold_filtering_func = std::nullopt);
  std::string name() const override { return "LFU_EvictionPolicy"; }
  void record_history_metadata(int64_t current_iter, const torch::Tensor& incoming_ids,
                               MetadataDict& history_metadata) const override;
  MetadataDict coalesce_history_metadata(int64_t current_iter, const MetadataDict& history_metadata,
                                         const torch::Tensor& unique_ids_counts,
                                         const torch::Tensor& unique_inverse_mapping,
                                         const std::optional<torch::Tensor>& additional_ids,
                                         const std::optional<torch::Tensor>& threshold_mask) const override;
  EvictionDecision update_metadata_and_generate_eviction_scores(
      int64_t current_iter, int64_t zch_size, const torch::Tensor& argsort_mapping,
      const torch::Tensor& sorted_unique_ids_counts, const torch::Tensor& mch_matching_elements_mask,
      const torch::Tensor& mch_matching_indices, MetadataDict& mch_metadata,
      MetadataDict& coalesced_history_metadata) const override;
};

/// Least recently used: score = -(current_iter - last_access_iter + 1)^decay_exponent.
class LRU_EvictionPolicy : public MCHEvictionPolicy {
 public:
  explicit LRU_EvictionPolicy(double decay_exponent = 1.0,
                              std::optional<ThresholdFilter> threshold_filtering_func = std::nullopt);
  std::string name() const override { return "LRU_EvictionPolicy"; }
  double decay_exponent() const { return decay_exponent_; }
  void record_history_metadata(int64_t current_iter, const torch::Tensor& incoming_ids,
                               MetadataDict& history_metadata) const override;
  MetadataDict coalesce_history_metadata(int64_t current_iter, const MetadataDict& history_metadata,
                                         const torch::Tensor& unique_ids_counts,
                                         const torch::Tensor& unique_inverse_mapping,
                                         const std::optional<torch::Tensor>& additional_ids,
                                         const std::optional<torch::Tensor>& threshold_mask) const override;
  EvictionDecision update_metadata_and_generate_eviction_scores(
      int64_t current_iter, int64_t zch_size, const torch::Tensor& argsort_mapping,
      const torch::Tensor& sorted_unique_ids_counts, const torch::Tensor& mch_matching_elements_mask,
      const torch::Tensor& mch_matching_indices, MetadataDict& mch_metadata,
      MetadataDict& coalesced_history_metadata) const override;

 private:
  double decay_exponent_;
};

/// Frequency discounted by recency:
/// score = counts / (current_iter - last_access_iter + 1)^decay_exponent.
class DistanceLFU_EvictionPolicy : public MCHEvictionPolicy {
 public:
  explicit DistanceLFU_EvictionPolicy(double decay_exponent = 1.0,
                                      std::optional<ThresholdFilter> threshold_filtering_func = std::nullopt);
  std::string name() const override { return "DistanceLFU_EvictionPolicy"; }
  double decay_exponent() const { return decay_exponent_; }
  void record_history_metadata(int64_t current_iter, const torch::Tensor& incoming_ids,
                               MetadataDict& history_metadata) const override;
  MetadataDict coalesce_history_metadata(int64_t current_iter, const MetadataDict& history_metadata,
                                         const torch::Tensor& unique_ids_counts,
                                         const torch::Tensor& unique_inverse_mapping,
                                         const std::optional<torch::Tensor>& additional_ids,
                                         const std::optional<torch::Tensor>& threshold_mask) const override;
  EvictionDecision update_metadata_and_generate_eviction_scores(
      int64_t current_iter, int64_t zch_size, const torch::Tensor& argsort_mapping,
      const torch::Tensor& sorted_unique_ids_counts, const torch::Tensor& mch_matching_elements_mask,
      const torch::Tensor& mch_matching_indices, MetadataDict& mch_metadata,
      MetadataDict& coalesced_history_metadata) const override;

 private:
  double decay_exponent_;
};

/// "LFU_EvictionPolicy", "LRU_EvictionPolicy", "DistanceLFU_EvictionPolicy".
std::vector<std::string> eviction_policy_names();
/// A policy by its TorchRec class name (decay_exponent is ignored by LFU);
/// throws InputError listing the names otherwise.
std::shared_ptr<MCHEvictionPolicy> make_eviction_policy(
    const std::string& type, double decay_exponent = 1.0,
    std::optional<ThresholdFilter> threshold_filtering_func = std::nullopt);

}  // namespace recmod
