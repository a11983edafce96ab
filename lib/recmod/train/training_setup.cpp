#include "recmod/train/training_setup.h"

#include <torch/torch.h>

#include <set>

#include "recmod/common/errors.h"
#include "recmod/dist/sharded_embedding.h"  // sharded EmbeddingCollection
#include "recmod/dist/sharded_embedding_bag.h"
#include "recmod/modules/embedding_modules.h"
#include "recmod/modules/fused_embedding_bag.h"
#include "recmod/modules/mlp.h"

namespace recmod::train {

namespace {

FusedCollections enable_fused_collections(config::ModelGraph& model, const config::TrainingSpec& cfg,
                                          const torch::Device& device, bool distributed) {
  FusedCollections out;
  // The fused path needs a lookup kernel on the device: the CPU's, or the
  // CUDA kernels of a CUDA build (elsewhere its tensor-op fallback would be
  // slower than autograd + the row-sparse optimizer).
  if (!cfg.fused_embeddings || !fused_lookup_has_kernel(device)) return out;
  for (const auto& item : model->named_modules(/*name_prefix=*/"", /*include_self=*/false))
    if (auto ebc = std::dynamic_pointer_cast<EmbeddingBagCollectionImpl>(item.value())) {
      // In a distributed run an unsharded collection is replicated: its
      // gradients must be all-reduced before the update, so no fused update.
      if (distributed && !std::dynamic_pointer_cast<dist::ShardedEmbeddingBagCollectionImpl>(ebc)) continue;
      ebc->enable_fused_optimizer(cfg.embedding_optimizer);
      out.emplace_back(item.key(), ebc);
    }
  return out;
}

/// The model's embedding parameters minus the fused tables.
std::vector<std::pair<std::string, torch::Tensor>> unfused_embedding_parameters(config::ModelGraph& model,
                                                                                const FusedCollections& fused) {
  std::set<const void*> fused_tensors;
  for (const auto& [_, ebc] : fused)
    for (const auto& p : ebc->parameters()) fused_tensors.insert(p.unsafeGetTensorImpl());
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (auto& [name, p] : model->embedding_parameters())
    if (!fused_tensors.count(p.unsafeGetTensorImpl())) out.emplace_back(name, p);
  return out;
}

/// Per parameter of `params`: whether its table rounds stochastically (a
/// table of an EmbeddingBagCollection or EmbeddingCollection anywhere in the
/// model, FP / MC / tower wrappers included, with `stochastic_rounding: true`).
std::vector<bool> stochastic_rounding_of(config::ModelGraph& model,
                                         const std::vector<std::pair<std::string, torch::Tensor>>& params) {
  std::set<const void*> stochastic;
  for (const auto& item : model->named_modules(/*name_prefix=*/"", /*include_self=*/false)) {
    if (auto ebc = std::dynamic_pointer_cast<EmbeddingBagCollectionImpl>(item.value())) {
      if (std::dynamic_pointer_cast<dist::ShardedEmbeddingBagCollectionImpl>(ebc)) continue;
      for (const auto& c : ebc->embedding_bag_configs())
        if (c.stochastic_rounding) stochastic.insert(ebc->table_weight(c.name).unsafeGetTensorImpl());
    } else if (auto ec = std::dynamic_pointer_cast<EmbeddingCollectionImpl>(item.value())) {
      if (std::dynamic_pointer_cast<dist::ShardedEmbeddingCollectionImpl>(ec)) continue;
      for (const auto& c : ec->embedding_configs())
        if (c.stochastic_rounding) stochastic.insert(ec->table_weight(c.name).unsafeGetTensorImpl());
    }
  }
  std::vector<bool> out;
  out.reserve(params.size());
  for (const auto& [_, p] : params) out.push_back(stochastic.count(p.unsafeGetTensorImpl()) > 0);
  return out;
}

std::string fused_state_prefix(const std::string& path) { return "embedding." + path + "."; }

/// A fused collection's stochastic-rounding state (its own key
/// "stochastic_rounding") is saved as "stochastic_rounding.<path>": outside
/// "embedding.<path>.", whose keys a distributed run gathers as table rows.
constexpr char kRoundingKey[] = "stochastic_rounding";
std::string fused_rounding_key(const std::string& path) {
  return std::string(kRoundingKey) + "." + path;
}

}  // namespace

TrainingSetup::TrainingSetup(config::ModelGraph& model, const config::TrainingSpec& training,
                             const torch::Device& device)
    : TrainingSetup(model, training, device, dist::single_process()) {}

TrainingSetup::TrainingSetup(config::ModelGraph& model, const config::TrainingSpec& training,
                             const torch::Device& device, std::shared_ptr<dist::Communicator> comm)
    : fused_(enable_fused_collections(model, training, device, comm->world_size() > 1)),
      optimizer_(model->dense_parameters(), training.dense_optimizer, unfused_embedding_parameters(model, fused_),
                 training.embedding_optimizer,
                 stochastic_rounding_of(model, unfused_embedding_parameters(model, fused_))),
      dense_options_(training.dense_optimizer),
      embedding_options_(training.embedding_optimizer),
      dense_lr_(training.dense_optimizer.lr()),
      embedding_lr_(training.embedding_optimizer.lr()),
      comm_(std::move(comm)),
      tasks_(training.tasks) {
  // training.dense_precision: bf16 products in the MLPs' training steps.
  set_dense_compute_dtype(
      *model, training.dense_precision == "bf16" ? std::optional<torch::Dtype>(torch::kBFloat16) : std::nullopt);
  if (!distributed()) return;
  std::set<const void*> sharded;
  for (const auto& item : model->named_modules(/*name_prefix=*/"", /*include_self=*/false))
    if (std::dynamic_pointer_cast<dist::ShardedEmbeddingBagCollectionImpl>(item.value()))
      for (const auto& p : item.value()->parameters()) sharded.insert(p.unsafeGetTensorImpl());
  // sharded EmbeddingCollection: its data_parallel tables stay replicated
  for (const auto& item : model->named_modules(/*name_prefix=*/"", /*include_self=*/false))
    if (auto ec = std::dynamic_pointer_cast<dist::ShardedEmbeddingCollectionImpl>(item.value()))
      for (const auto& p : ec->sharded_parameters()) sharded.insert(p.unsafeGetTensorImpl());
  // Counters kept as parameters without gradients (an MC module's
  // iteration) are not all-reduced.
  for (const auto& p : model->parameters())
    if (!sharded.count(p.unsafeGetTensorImpl()) && p.requires_grad()) replicated_.push_back(p);
}

void TrainingSetup::schedule_lr(int64_t step) {
  dense_lr_ = optim::scheduled_lr(dense_options_, step);
  embedding_lr_ = optim::scheduled_lr(embedding_options_, step);
  optimizer_.set_lr(dense_lr_, embedding_lr_);
  for (auto& [_, ebc] : fused_) ebc->set_fused_lr(embedding_lr_);
}

std::vector<double> TrainingSetup::all_reduce_gradients(const std::vector<double>& extras) {
  if (!distributed() || (replicated_.empty() && extras.empty())) return extras;
  std::vector<torch::Tensor> flat;
  for (auto& p : replicated_) flat.push_back(p.grad().defined() ? p.grad().reshape(-1) : torch::zeros({p.numel()}, p.options()));
  const auto dtype = flat.empty() ? torch::kFloat : flat[0].scalar_type();
  flat.push_back(torch::tensor(extras, torch::kDouble).to(dtype));
  std::vector<torch::Tensor> buffer{torch::cat(flat)};
  comm_->all_reduce_sum(buffer);
  const torch::Tensor summed = buffer[0].narrow(0, buffer[0].numel() - static_cast<int64_t>(extras.size()),
                                                static_cast<int64_t>(extras.size())).to(torch::kDouble);
  std::vector<double> out(summed.data_ptr<double>(), summed.data_ptr<double>() + summed.numel());
  int64_t at = 0;
  for (auto& p : replicated_) {
    const torch::Tensor part = buffer[0].narrow(0, at, p.numel()).view(p.sizes());
    if (p.grad().defined()) {
      p.mutable_grad().copy_(part);
    } else {
      p.mutable_grad() = part.clone();
    }
    at += p.numel();
  }
  return out;
}

StateDict TrainingSetup::state_dict() const {
  StateDict out = optimizer_.state_dict();
  for (const auto& [path, ebc] : fused_)
    for (const auto& [key, value] : ebc->fused_optimizer_state_dict())
      out.emplace_back(key == kRoundingKey ? fused_rounding_key(path) : fused_state_prefix(path) + key, value);
  return out;
}

void TrainingSetup::load_state_dict(const StateDict& state, const std::string& origin) {
  StateDict optimizer_state;
  std::vector<StateDict> fused_state(fused_.size());
  for (const auto& [name, value] : state) {
    bool taken = false;
    for (size_t i = 0; i < fused_.size() && !taken; ++i) {
      if (name == fused_rounding_key(fused_[i].first)) {
        fused_state[i].emplace_back(kRoundingKey, value);
        taken = true;
        continue;
      }
      const std::string prefix = fused_state_prefix(fused_[i].first);
      if (name.rfind(prefix, 0) == 0) {
        fused_state[i].emplace_back(name.substr(prefix.size()), value);
        taken = true;
      }
    }
    if (!taken) optimizer_state.emplace_back(name, value);
  }
  optimizer_.load_state_dict(optimizer_state, origin);
  for (size_t i = 0; i < fused_.size(); ++i) fused_[i].second->load_fused_optimizer_state_dict(fused_state[i], origin);
}

}  // namespace recmod::train
