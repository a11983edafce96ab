#include "recmod/mc/mc_modules.h"

#include <torch/torch.h>

#include <limits>

#include "recmod/common/check.h"
#include "recmod/common/errors.h"
#include "recmod/common/hash.h"

namespace recmod {

namespace {

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

/// The same JaggedTensor with other values (lengths, offsets, weights kept).
JaggedTensor with_values(const JaggedTensor& jt, torch::Tensor values) {
  return JaggedTensor::unchecked(std::move(values), jt.lengths(), jt.offsets(), jt.weights_or_none());
}

}  // namespace

torch::Tensor mod_hash(const torch::Tensor& ids, uint64_t size) {
  TORCH_CHECK(size > 0, "mod_hash: expected a positive size, got 0");
  // remainder by 2**63 clears the sign bit; int64 cannot hold 2**63 itself.
  if (size > static_cast<uint64_t>(kInt64Max)) return torch::bitwise_and(ids, kInt64Max);
  return torch::remainder(ids, static_cast<int64_t>(size));
}

torch::Tensor murmur3_hash(const torch::Tensor& ids, uint64_t size) {
  const torch::Tensor k = murmur3_fmix64(ids);
  // Keep 63 bits so that the result does not depend on the sign convention
  // of the remainder.
  return mod_hash(torch::bitwise_and(k, kInt64Max), size);
}

std::vector<std::string> hash_func_names() {
  return {"mod", "murmur3"};
}

HashFunc hash_func_by_name(const std::string& name) {
  if (name == "mod") return mod_hash;
  if (name == "murmur3") return murmur3_hash;
  throw_input_error("unknown hash function '", name, "'; expected one of ", join_names(hash_func_names()));
}

MCHManagedCollisionModuleImpl::MCHManagedCollisionModuleImpl(MCHManagedCollisionModuleOptions options_)
    : options(std::move(options_)) {
  RECMOD_CHECK_INPUT(options.zch_size() > 0, "MCHManagedCollisionModule: zch_size must be > 0, got ",
                     options.zch_size());
  RECMOD_CHECK_INPUT(options.eviction_interval() > 0, "MCHManagedCollisionModule: eviction_interval must be > 0, got ",
                     options.eviction_interval());
  RECMOD_CHECK_INPUT(options.eviction_policy() != nullptr, "MCHManagedCollisionModule: an eviction_policy is required");
  RECMOD_CHECK_INPUT(!options.mch_size() || options.mch_hash_func(),
                     "MCHManagedCollisionModule: mch_hash_func must be provided if mch_size is provided");
  RECMOD_CHECK_INPUT(!options.mch_size() || *options.mch_size() >= 0,
                     "MCHManagedCollisionModule: mch_size must be >= 0, got ", *options.mch_size());
  const auto long_opts = torch::TensorOptions().dtype(torch::kLong).device(options.device());
  const int64_t n = options.zch_size();
  current_iter_tensor_ = register_parameter(
      "_current_iter_tensor", torch::zeros({1}, torch::TensorOptions().dtype(torch::kInt).device(options.device())),
      /*requires_grad=*/false);
  mch_sorted_raw_ids_ = register_buffer("_mch_sorted_raw_ids", torch::full({n}, kInt64Max, long_opts));
  mch_remapped_ids_mapping_ = register_buffer("_mch_remapped_ids_mapping", torch::arange(n, long_opts));
  for (const auto& info : options.eviction_policy()->metadata_info())
    if (info.is_mch_metadata)
      mch_metadata_[info.metadata_name] = register_buffer("_mch_" + info.metadata_name, torch::zeros({n}, long_opts));
}

JtDict MCHManagedCollisionModuleImpl::preprocess(const JtDict& features) {
  if (!options.input_hash_func()) return features;
  torch::NoGradGuard no_grad;
  JtDict out;
  out.reserve(features.size());
  for (const auto& [name, jt] : features)
    out.emplace_back(name, with_values(jt, (*options.input_hash_func())(jt.values(), options.input_hash_size())));
  return out;
}

void MCHManagedCollisionModuleImpl::size_history(int64_t numel) {
  if (input_history_buffer_size_ != -1) return;
  // int(numel * eviction_interval * 1.25), as TorchRec rounds it.
  input_history_buffer_size_ = static_cast<int64_t>(static_cast<double>(numel * options.eviction_interval()) * 1.25);
  const auto long_opts = torch::TensorOptions().dtype(torch::kLong).device(device());
  history_accumulator_ = torch::empty({input_history_buffer_size_}, long_opts);
  for (const auto& info : options.eviction_policy()->metadata_info())
    if (info.is_history_metadata)
      history_metadata_[info.metadata_name] = torch::zeros({input_history_buffer_size_}, long_opts);
}

void MCHManagedCollisionModuleImpl::append_to_history(const torch::Tensor& all_values) {
  // Ids beyond the capacity are dropped (TorchRec does the same).
  const int64_t free = input_history_buffer_size_ - current_history_buffer_offset_;
  const torch::Tensor values = all_values.slice(0, 0, std::min(free, all_values.size(0)));
  const int64_t begin = current_history_buffer_offset_;
  const int64_t end = begin + values.size(0);
  history_accumulator_.slice(0, begin, end).copy_(values);
  MetadataDict slices;
  for (const auto& [name, buffer] : history_metadata_) slices[name] = buffer.slice(0, begin, end);
  options.eviction_policy()->record_history_metadata(current_iter_, values, slices);
  current_history_buffer_offset_ = end;
}

JtDict MCHManagedCollisionModuleImpl::profile(const JtDict& features) {
  if (!is_training()) return features;
  torch::NoGradGuard no_grad;
  if (current_iter_ == -1) {
    // First training step since construction: continue from the iteration
    // of a loaded checkpoint (TorchRec reads it here, once, too).
    current_iter_ = current_iter_tensor_.item<int32_t>();
    last_eviction_iter_ = current_iter_;
  }
  ++current_iter_;
  current_iter_tensor_.add_(1);
  if (input_history_buffer_size_ == -1) {
    int64_t numel = 0;
    for (const auto& kv : features) numel += kv.second.values().numel();
    size_history(numel);
  }
  for (const auto& kv : features) append_to_history(kv.second.values());
  if (current_iter_ - last_eviction_iter_ == options.eviction_interval()) {
    coalesce_history();
    last_eviction_iter_ = current_iter_;
  }
  return features;
}

void MCHManagedCollisionModuleImpl::coalesce_history() {
  const torch::Tensor history = history_accumulator_.slice(0, 0, current_history_buffer_offset_);
  auto [uniq_ids, inverse, counts] =
      torch::_unique2(history, /*sorted=*/true, /*return_inverse=*/true, /*return_counts=*/true);
  const auto& policy = *options.eviction_policy();
  std::optional<torch::Tensor> mask;
  if (policy.threshold_filtering_func()) {
    // An empty window (all batches empty) has nothing to filter; TorchRec's
    // dynamic filter would divide by zero there.
    mask = counts.numel() == 0 ? torch::zeros({0}, counts.options().dtype(torch::kBool))
                               : (*policy.threshold_filtering_func())(counts).mask;
  }
  MetadataDict history_slices;
  for (const auto& [name, buffer] : history_metadata_)
    history_slices[name] = buffer.slice(0, 0, current_history_buffer_offset_);
  MetadataDict coalesced = policy.coalesce_history_metadata(current_iter_, history_slices, counts, inverse, std::nullopt, mask);
  if (mask) {
    uniq_ids = uniq_ids.index({*mask});
    counts = counts.index({*mask});
  }
  update_and_evict(uniq_ids, counts, coalesced);
  current_history_buffer_offset_ = 0;
}

std::pair<torch::Tensor, torch::Tensor> MCHManagedCollisionModuleImpl::match_indices(
    const torch::Tensor& search_values) const {
  const torch::Tensor searched = torch::searchsorted(mch_sorted_raw_ids_.slice(0, 0, -1), search_values);
  const torch::Tensor matching = mch_sorted_raw_ids_.index({searched}) == search_values;
  return {matching, searched.index({matching})};
}

void MCHManagedCollisionModuleImpl::update_and_evict(const torch::Tensor& uniq_ids,
                                                     const torch::Tensor& uniq_ids_counts,
                                                     MetadataDict& uniq_ids_metadata) {
  const torch::Tensor order =
      std::get<1>(torch::sort(uniq_ids_counts, /*stable=*/c10::optional<bool>(true), /*dim=*/0, /*descending=*/true));
  const torch::Tensor frequency_sorted_ids = uniq_ids.index({order});
  const torch::Tensor frequency_sorted_counts = uniq_ids_counts.index({order});
  auto [matching, matched] = match_indices(frequency_sorted_ids);
  const torch::Tensor new_ids = frequency_sorted_ids.index({~matching});

  const EvictionDecision d = options.eviction_policy()->update_metadata_and_generate_eviction_scores(
      current_iter_, options.zch_size(), order, frequency_sorted_counts, matching, matched, mch_metadata_,
      uniq_ids_metadata);
  mch_sorted_raw_ids_.index_put_({d.evicted_indices}, new_ids.index({d.selected_new_indices}));

  // Slots taken over; accumulate (sorted, unique) until evict() reports them.
  const torch::Tensor slots = mch_remapped_ids_mapping_.index({d.evicted_indices});
  evicted_emb_indices_ = evicted_ ? std::get<0>(torch::_unique2(torch::cat({evicted_emb_indices_, slots}))) : slots;
  evicted_ = true;
  sort_mch_buffers();
}

void MCHManagedCollisionModuleImpl::sort_mch_buffers() {
  const torch::Tensor order =
      std::get<1>(torch::sort(mch_sorted_raw_ids_, /*stable=*/c10::optional<bool>(true), /*dim=*/0));
  mch_sorted_raw_ids_.copy_(mch_sorted_raw_ids_.index({order}));
  mch_remapped_ids_mapping_.copy_(mch_remapped_ids_mapping_.index({order}));
  for (auto& kv : mch_metadata_) kv.second.copy_(kv.second.index({order}));
}

JtDict MCHManagedCollisionModuleImpl::remap(const JtDict& features) {
  torch::NoGradGuard no_grad;
  JtDict out;
  out.reserve(features.size());
  for (const auto& [name, jt] : features) {
    const torch::Tensor& values = jt.values();
    RECMOD_CHECK_INPUT(values.dim() == 1, "MCHManagedCollisionModule: expected 1-D ids for feature '", name, "', got ",
                       values.sizes());
    const torch::Tensor ids = values.to(torch::kLong);
    const torch::Tensor searched = torch::searchsorted(mch_sorted_raw_ids_.slice(0, 0, -1), ids);
    const torch::Tensor matching = mch_sorted_raw_ids_.index({searched}) == ids;
    torch::Tensor unmatched;
    if (options.mch_size().value_or(0) > 0)
      unmatched = (*options.mch_hash_func())(ids, static_cast<uint64_t>(*options.mch_size())) + options.zch_size();
    else
      unmatched = torch::full_like(ids, options.zch_size() - 1);
    torch::Tensor remapped = torch::where(matching, mch_remapped_ids_mapping_.index({searched}), unmatched);
    out.emplace_back(name, with_values(jt, remapped.to(values.scalar_type())));
  }
  return out;
}

JtDict MCHManagedCollisionModuleImpl::forward(const JtDict& features) {
  return remap(profile(features));
}

std::optional<torch::Tensor> MCHManagedCollisionModuleImpl::evict() {
  if (!evicted_) return std::nullopt;
  evicted_ = false;
  return evicted_emb_indices_;
}

int64_t MCHManagedCollisionModuleImpl::output_size() const {
  return options.zch_size() + options.mch_size().value_or(0);
}

std::shared_ptr<ManagedCollisionModuleImpl> MCHManagedCollisionModuleImpl::rebuild_with_output_id_range(
    std::pair<int64_t, int64_t> output_id_range, std::optional<torch::Device> device) const {
  const int64_t new_output_size = output_id_range.second - output_id_range.first;
  // int(zch_size * new_output_size / output_size) as TorchRec's v0.7 wrote
  // it, in integers: the float form can land one below an exact quotient
  // (a whole row range without mch_size then gets zch_size = rows - 1).
  const auto new_zch_size = static_cast<int64_t>(static_cast<__int128>(options.zch_size()) * new_output_size /
                                                 output_size());
  const int64_t new_mch_size = new_output_size - new_zch_size;
  MCHManagedCollisionModuleOptions o = options;
  o.zch_size(new_zch_size)
      .device(device.value_or(this->device()))
      .mch_size(new_mch_size > 0 ? std::optional<int64_t>(new_mch_size) : std::nullopt)
      .output_global_offset(output_id_range.first);
  return std::make_shared<MCHManagedCollisionModuleImpl>(o);
}

JtDict apply_mc_method_to_jt_dict(ManagedCollisionModuleImpl& mc_module, const std::string& method,
                                  const JtDict& features_dict) {
  if (method == "preprocess") return mc_module.preprocess(features_dict);
  if (method == "profile") return mc_module.profile(features_dict);
  if (method == "remap") return mc_module.remap(features_dict);
  if (method == "forward") return mc_module.forward(features_dict);
  throw_input_error("apply_mc_method_to_jt_dict: unknown method '", method, "'; expected one of ",
                    join_names({"preprocess", "profile", "remap", "forward"}));
}

}  // namespace recmod
