#include "recmod/mc/eviction_policies.h"

#include <torch/torch.h>

#include <limits>

#include "recmod/common/errors.h"

namespace recmod {

namespace {

const std::string kCounts = "counts";
const std::string kLastAccessIter = "last_access_iter";

/// Stable argsort, descending (TorchRec: torch.argsort(x, descending=True, stable=True)).
torch::Tensor stable_argsort_descending(const torch::Tensor& x) {
  return std::get<1>(torch::sort(x, /*stable=*/c10::optional<bool>(true), /*dim=*/0, /*descending=*/true));
}

/// history[:] = current_iter for the ids just appended.
void record_access_iter(int64_t current_iter, MetadataDict& history_metadata) {
  history_metadata.at(kLastAccessIter).fill_(current_iter);
}

/// Latest access iteration per unique id: TorchRec's scatter_reduce "amax"
/// (include_self=False), done with a sort instead, because libtorch 1.13
/// prints "scatter_reduce() is in beta" on every run that evicts. Sorting
/// the keys (id slot, iteration) puts each slot's latest iteration at the
/// end of its group; slots without history entries stay 0.
MetadataDict coalesce_access_iter(int64_t current_iter, const MetadataDict& history_metadata,
                                  const torch::Tensor& unique_ids_counts, const torch::Tensor& unique_inverse_mapping,
                                  const std::optional<torch::Tensor>& additional_ids,
                                  const std::optional<torch::Tensor>& threshold_mask) {
  torch::Tensor iters = history_metadata.at(kLastAccessIter).to(torch::kLong);
  // Additional ids count as seen now.
  if (additional_ids) iters = torch::cat({iters, torch::full({additional_ids->numel()}, current_iter, iters.options())});
  if (unique_inverse_mapping.numel() != iters.numel())
    throw_input_error("coalesce_history_metadata: unique_inverse_mapping has ", unique_inverse_mapping.numel(),
                      " entries for ", iters.numel(), " history entries (with additional_ids)");
  const torch::Tensor slots = unique_inverse_mapping.to(torch::kLong);
  torch::Tensor last = torch::zeros_like(unique_ids_counts);
  if (iters.numel() > 0) {
    const int64_t low = iters.min().item<int64_t>();
    const int64_t span = iters.max().item<int64_t>() - low + 1;
    const torch::Tensor keys = std::get<0>(torch::sort(slots * span + (iters - low)));
    const torch::Tensor per_slot = torch::bincount(slots, {}, last.size(0));
    const torch::Tensor present = per_slot.gt(0);
    const torch::Tensor ends = per_slot.cumsum(0).sub(1).index({present});
    last.index_put_({present}, keys.index_select(0, ends).remainder(span).add(low).to(last.scalar_type()));
  }
  if (threshold_mask) last = last.index({*threshold_mask});
  return {{kLastAccessIter, last}};
}

/// Puts the coalesced last-access iterations in frequency order (in place,
/// as TorchRec does) and returns them.
torch::Tensor frequency_sorted_access_iter(MetadataDict& coalesced_history_metadata,
                                           const torch::Tensor& argsort_mapping) {
  torch::Tensor& last = coalesced_history_metadata.at(kLastAccessIter);
  last.copy_(last.index({argsort_mapping}));
  return last;
}

/// (current_iter - access_iter + 1)^decay_exponent; float32 like TorchRec's
/// int tensor ** Python float.
torch::Tensor weighted_distance(int64_t current_iter, const torch::Tensor& access_iter, double decay_exponent) {
  return torch::pow(torch::rsub(access_iter, current_iter).add(1), decay_exponent);
}

}  // namespace

MCHEvictionPolicy::MCHEvictionPolicy(std::vector<MCHEvictionPolicyMetadataInfo> metadata_info,
                                     std::optional<ThresholdFilter> threshold_filtering_func)
    : metadata_info_(std::move(metadata_info)), threshold_filtering_func_(std::move(threshold_filtering_func)) {}

EvictionDecision MCHEvictionPolicy::select_evictions(int64_t pivot, const torch::Tensor& eviction_scores) {
  const torch::Tensor order = stable_argsort_descending(eviction_scores);
  const torch::Tensor top = order.slice(0, 0, pivot);
  const torch::Tensor rest = order.slice(0, pivot);
  // Incoming ids (positions >= pivot) among the top pivot scores enter;
  // table ids (positions < pivot) outside them leave.
  torch::Tensor evicted = rest.index({rest < pivot});
  torch::Tensor selected_new = top.index({top >= pivot}) - pivot;
  return {evicted, selected_new};
}

// ---- LFU ----

LFU_EvictionPolicy::LFU_EvictionPolicy(std::optional<ThresholdFilter> threshold_filtering_func)
    : MCHEvictionPolicy({{kCounts, true, false}}, std::move(threshold_filtering_func)) {}

void LFU_EvictionPolicy::record_history_metadata(int64_t /*current_iter*/, const torch::Tensor& /*incoming_ids*/,
                                                 MetadataDict& /*history_metadata*/) const {}

MetadataDict LFU_EvictionPolicy::coalesce_history_metadata(int64_t /*current_iter*/,
                                                           const MetadataDict& /*history_metadata*/,
                                                           const torch::Tensor& /*unique_ids_counts*/,
                                                           const torch::Tensor& /*unique_inverse_mapping*/,
                                                           const std::optional<torch::Tensor>& /*additional_ids*/,
                                                           const std::optional<torch::Tensor>& /*mask*/) const {
  return {};
}

EvictionDecision LFU_EvictionPolicy::update_metadata_and_generate_eviction_scores(
    int64_t /*current_iter*/, int64_t zch_size, const torch::Tensor& /*argsort_mapping*/,
    const torch::Tensor& sorted_unique_ids_counts, const torch::Tensor& mch_matching_elements_mask,
    const torch::Tensor& mch_matching_indices, MetadataDict& mch_metadata,
    MetadataDict& /*coalesced_history_metadata*/) const {
  torch::Tensor& mch_counts = mch_metadata.at(kCounts);
  mch_counts.index_put_({mch_matching_indices}, mch_counts.index({mch_matching_indices}) +
                                                    sorted_unique_ids_counts.index({mch_matching_elements_mask}));
  const torch::Tensor new_counts = sorted_unique_ids_counts.index({~mch_matching_elements_mask});
  // The last sorted slot is the pinned "unmatched" slot: it always stays.
  mch_counts[zch_size - 1].fill_(std::numeric_limits<int64_t>::max());
  EvictionDecision d = select_evictions(zch_size, torch::cat({mch_counts, new_counts}));
  mch_counts.index_put_({d.evicted_indices}, new_counts.index({d.selected_new_indices}));
  return d;
}

// ---- LRU ----

LRU_EvictionPolicy::LRU_EvictionPolicy(double decay_exponent, std::optional<ThresholdFilter> threshold_filtering_func)
    : MCHEvictionPolicy({{kLastAccessIter, true, true}}, std::move(threshold_filtering_func)),
      decay_exponent_(decay_exponent) {}

void LRU_EvictionPolicy::record_history_metadata(int64_t current_iter, const torch::Tensor& /*incoming_ids*/,
                                                 MetadataDict& history_metadata) const {
  record_access_iter(current_iter, history_metadata);
}

MetadataDict LRU_EvictionPolicy::coalesce_history_metadata(int64_t current_iter,
                                                           const MetadataDict& history_metadata,
                                                           const torch::Tensor& unique_ids_counts,
                                                           const torch::Tensor& unique_inverse_mapping,
                                                           const std::optional<torch::Tensor>& additional_ids,
                                                           const std::optional<torch::Tensor>& threshold_mask) const {
  return coalesce_access_iter(current_iter, history_metadata, unique_ids_counts, unique_inverse_mapping, additional_ids,
                              threshold_mask);
}

EvictionDecision LRU_EvictionPolicy::update_metadata_and_generate_eviction_scores(
    int64_t current_iter, int64_t zch_size, const torch::Tensor& argsort_mapping,
    const torch::Tensor& /*sorted_unique_ids_counts*/, const torch::Tensor& mch_matching_elements_mask,
    const torch::Tensor& mch_matching_indices, MetadataDict& mch_metadata,
    MetadataDict& coalesced_history_metadata) const {
  torch::Tensor& mch_last = mch_metadata.at(kLastAccessIter);
  const torch::Tensor history_last = frequency_sorted_access_iter(coalesced_history_metadata, argsort_mapping);
  mch_last.index_put_({mch_matching_indices}, history_last.index({mch_matching_elements_mask}));
  const torch::Tensor new_last = history_last.index({~mch_matching_elements_mask});
  mch_last[zch_size - 1].fill_(current_iter);
  const torch::Tensor merged = torch::cat({mch_last, new_last});
  // Lower scores are evicted first.
  EvictionDecision d = select_evictions(zch_size, torch::neg(weighted_distance(current_iter, merged, decay_exponent_)));
  mch_last.index_put_({d.evicted_indices}, new_last.index({d.selected_new_indices}));
  return d;
}

// ---- DistanceLFU ----

DistanceLFU_EvictionPolicy::DistanceLFU_EvictionPolicy(double decay_exponent,
                                                       std::optional<ThresholdFilter> threshold_filtering_func)
    : MCHEvictionPolicy({{kCounts, true, false}, {kLastAccessIter, true, true}}, std::move(threshold_filtering_func)),
      decay_exponent_(decay_exponent) {}

void DistanceLFU_EvictionPolicy::record_history_metadata(int64_t current_iter, const torch::Tensor& /*incoming_ids*/,
                                                         MetadataDict& history_metadata) const {
  record_access_iter(current_iter, history_metadata);
}

MetadataDict DistanceLFU_EvictionPolicy::coalesce_history_metadata(
    int64_t current_iter, const MetadataDict& history_metadata, const torch::Tensor& unique_ids_counts,
    const torch::Tensor& unique_inverse_mapping, const std::optional<torch::Tensor>& additional_ids,
    const std::optional<torch::Tensor>& threshold_mask) const {
  return coalesce_access_iter(current_iter, history_metadata, unique_ids_counts, unique_inverse_mapping, additional_ids,
                              threshold_mask);
}

EvictionDecision DistanceLFU_EvictionPolicy::update_metadata_and_generate_eviction_scores(
    int64_t current_iter, int64_t zch_size, const torch::Tensor& argsort_mapping,
    const torch::Tensor& sorted_unique_ids_counts, const torch::Tensor& mch_matching_elements_mask,
    const torch::Tensor& mch_matching_indices, MetadataDict& mch_metadata,
    MetadataDict& coalesced_history_metadata) const {
  torch::Tensor& mch_counts = mch_metadata.at(kCounts);
  torch::Tensor& mch_last = mch_metadata.at(kLastAccessIter);
  const torch::Tensor history_last = frequency_sorted_access_iter(coalesced_history_metadata, argsort_mapping);

  mch_counts.index_put_({mch_matching_indices}, mch_counts.index({mch_matching_indices}) +
                                                    sorted_unique_ids_counts.index({mch_matching_elements_mask}));
  mch_last.index_put_({mch_matching_indices}, history_last.index({mch_matching_elements_mask}));

  const torch::Tensor new_counts = sorted_unique_ids_counts.index({~mch_matching_elements_mask});
  const torch::Tensor new_last = history_last.index({~mch_matching_elements_mask});

  mch_counts[zch_size - 1].fill_(std::numeric_limits<int64_t>::max());
  mch_last[zch_size - 1].fill_(current_iter);

  const torch::Tensor merged_counts = torch::cat({mch_counts, new_counts});
  const torch::Tensor merged_last = torch::cat({mch_last, new_last});
  const torch::Tensor scores = torch::div(merged_counts, weighted_distance(current_iter, merged_last, decay_exponent_));
  EvictionDecision d = select_evictions(zch_size, scores);

  mch_counts.index_put_({d.evicted_indices}, new_counts.index({d.selected_new_indices}));
  mch_last.index_put_({d.evicted_indices}, new_last.index({d.selected_new_indices}));
  return d;
}

// ---- by name ----

std::vector<std::string> eviction_policy_names() {
  return {"LFU_EvictionPolicy", "LRU_EvictionPolicy", "DistanceLFU_EvictionPolicy"};
}

std::shared_ptr<MCHEvictionPolicy> make_eviction_policy(const std::string& type, double decay_exponent,
                                                        std::optional<ThresholdFilter> threshold_filtering_func) {
  if (type == "LFU_EvictionPolicy") return std::make_shared<LFU_EvictionPolicy>(std::move(threshold_filtering_func));
  if (type == "LRU_EvictionPolicy")
    return std::make_shared<LRU_EvictionPolicy>(decay_exponent, std::move(threshold_filtering_func));
  if (type == "DistanceLFU_EvictionPolicy")
    return std::make_shared<DistanceLFU_EvictionPolicy>(decay_exponent, std::move(threshold_filtering_func));
  throw_input_error("unknown eviction policy '", type, "'; expected one of ", join_names(eviction_policy_names()));
}

}  // namespace recmod
