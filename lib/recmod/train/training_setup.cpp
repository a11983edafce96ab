#include "recmod/train/training_setup.h"

#include <torch/torch.h>

#include <map>
#include <set>

#include "recmod/common/errors.h"
#include "recmod/cuda/cuda_graph.h"
#include "recmod/cuda/tbe.h"
#include "recmod/cuda/cuda_graph.h"
#include "recmod/dist/sharded_embedding.h"  // sharded EmbeddingCollection
#include "recmod/dist/sharded_embedding_bag.h"
#include "recmod/dist/table_state.h"  // holds_rows
#include "recmod/modules/embedding_modules.h"
#include "recmod/modules/fused_embedding_bag.h"
#include "recmod/modules/mlp.h"
#include "recmod/train/graph_step.h"

namespace recmod::train {

namespace {

/// Per table tensor of a sharded collection (by TensorImpl): where this
/// rank's shard sits in its full table, from `plan` (the shard of `rank`
/// under the collection's node name). Parameters "<node>.[...]
/// .embedding_bags|embeddings.<table>.weight" of tables the plan places;
/// every other table is whole ((0, 0)). Stochastic rounding draws its
/// random bits by global row and column with these.
std::map<const void*, optim::ShardOffsets> shard_offsets_of(config::ModelGraph& model,
                                                            const dist::ShardingPlan& plan, int64_t rank) {
  std::map<const void*, optim::ShardOffsets> out;
  if (plan.tables.empty()) return out;
  const std::string suffix = ".weight";
  for (const auto& item : model->named_parameters(/*recurse=*/true)) {
    const std::string& key = item.key();
    if (key.size() <= suffix.size() || key.compare(key.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
    const std::string path = key.substr(0, key.size() - suffix.size());  // <node>...<dict>.<table>
    const auto table_dot = path.rfind('.');
    if (table_dot == std::string::npos) continue;
    const std::string table = path.substr(table_dot + 1);
    const std::string head = path.substr(0, table_dot);
    const auto dict_dot = head.rfind('.');
    const std::string dict = dict_dot == std::string::npos ? head : head.substr(dict_dot + 1);
    if (dict != "embedding_bags" && dict != "embeddings") continue;
    const dist::TablePlan* p = plan.find(key.substr(0, key.find('.')), table);
    if (p == nullptr) continue;
    for (const auto& s : p->shards)
      if (s.rank == rank && dist::holds_rows(s))
        out[item.value().unsafeGetTensorImpl()] = {static_cast<uint64_t>(s.row_offset),
                                                   static_cast<uint64_t>(s.col_offset)};
  }
  return out;
}

optim::ShardOffsets offsets_of(const std::map<const void*, optim::ShardOffsets>& offsets, const torch::Tensor& t) {
  const auto it = offsets.find(t.unsafeGetTensorImpl());
  return it == offsets.end() ? optim::ShardOffsets{} : it->second;
}

FusedCollections enable_fused_collections(config::ModelGraph& model, const config::TrainingSpec& cfg,
                                          const torch::Device& device, bool distributed,
                                          const std::map<const void*, optim::ShardOffsets>& offsets) {
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
      std::vector<optim::ShardOffsets> table_offsets;
      for (const auto& c : ebc->embedding_bag_configs())
        table_offsets.push_back(offsets_of(offsets, ebc->table_weight(c.name)));
      ebc->enable_fused_optimizer(cfg.embedding_optimizer, std::move(table_offsets));
      out.emplace_back(item.key(), ebc);
    }
  return out;
}

/// Whether an EmbeddingCollection's training takes the CUDA kernels: the
/// same conditions as sequence_kernel_applies, checked on the module's
/// tables (rows no wider than the kernels take, float32 / float16 /
/// bfloat16 storage), none rounding stochastically (the kernels round to
/// nearest) and a row update the kernels have.
bool sequence_kernels_train(const EmbeddingCollectionImpl& ec, const config::TrainingSpec& cfg,
                            const torch::Device& device) {
  if (ec.embedding_configs().empty() || ec.embedding_dim() <= 0) return false;
  bool vec4 = ec.embedding_dim() % 4 == 0;
  const std::string& type = cfg.embedding_optimizer.type();
  if (type != "sgd" && type != "adagrad" && type != "rowwise_adagrad") return false;
  for (const auto& c : ec.embedding_configs()) {
    if (c.stochastic_rounding) return false;
    const torch::Tensor& w = ec.table_weight(c.name);
    if (!w.defined() || w.device() != device || !w.is_contiguous()) return false;
    const auto st = w.scalar_type();
    if (st != torch::kFloat && st != torch::kHalf && st != torch::kBFloat16) return false;
    vec4 = vec4 && reinterpret_cast<uintptr_t>(w.data_ptr()) % 16 == 0;
  }
  return ec.embedding_dim() <= cuda::tbe_max_dim(vec4);
}

FusedSequenceCollections enable_fused_sequence_collections(config::ModelGraph& model, const config::TrainingSpec& cfg,
                                                           const torch::Device& device, bool distributed) {
  FusedSequenceCollections out;
  // Only the CUDA kernels: on the CPU the EmbeddingCollection keeps autograd
  // and the row-sparse optimizer (what its fused path's tensor ops would do).
  if (!cfg.fused_embeddings || distributed || !device.is_cuda() || !cuda::tbe_available()) return out;
  for (const auto& item : model->named_modules(/*name_prefix=*/"", /*include_self=*/false))
    if (auto ec = std::dynamic_pointer_cast<EmbeddingCollectionImpl>(item.value())) {
      if (std::dynamic_pointer_cast<dist::ShardedEmbeddingCollectionImpl>(ec)) continue;
      if (!sequence_kernels_train(*ec, cfg, device)) continue;
      ec->enable_fused_optimizer(cfg.embedding_optimizer);
      out.emplace_back(item.key(), ec);
    }
  return out;
}

/// The model's embedding parameters minus the fused tables.
std::vector<std::pair<std::string, torch::Tensor>> unfused_embedding_parameters(
    config::ModelGraph& model, const FusedCollections& fused, const FusedSequenceCollections& fused_sequences) {
  std::set<const void*> fused_tensors;
  for (const auto& [_, ebc] : fused)
    for (const auto& p : ebc->parameters()) fused_tensors.insert(p.unsafeGetTensorImpl());
  for (const auto& [_, ec] : fused_sequences)
    for (const auto& p : ec->parameters()) fused_tensors.insert(p.unsafeGetTensorImpl());
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (auto& [name, p] : model->embedding_parameters())
    if (!fused_tensors.count(p.unsafeGetTensorImpl())) out.emplace_back(name, p);
  return out;
}

/// Per parameter of `params`: whether its table rounds stochastically (a
/// table of an EmbeddingBagCollection or EmbeddingCollection anywhere in the
/// model, FP / MC / tower wrappers and sharded collections included, with
/// `stochastic_rounding: true`).
std::vector<bool> stochastic_rounding_of(config::ModelGraph& model,
                                         const std::vector<std::pair<std::string, torch::Tensor>>& params) {
  std::set<const void*> stochastic;
  for (const auto& item : model->named_modules(/*name_prefix=*/"", /*include_self=*/false)) {
    if (auto ebc = std::dynamic_pointer_cast<EmbeddingBagCollectionImpl>(item.value())) {
      // a sharded collection's local tables keep their full table's config
      for (const auto& c : ebc->embedding_bag_configs())
        if (c.stochastic_rounding) stochastic.insert(ebc->table_weight(c.name).unsafeGetTensorImpl());
    } else if (auto ec = std::dynamic_pointer_cast<EmbeddingCollectionImpl>(item.value())) {
      // a sharded one: every block this rank holds, narrow column blocks included
      auto sharded = std::dynamic_pointer_cast<dist::ShardedEmbeddingCollectionImpl>(ec);
      const auto weights = ec->named_parameters(/*recurse=*/true);
      for (const auto& c : sharded ? sharded->full_configs() : ec->embedding_configs())
        if (const torch::Tensor* w = weights.find("embeddings." + c.name + ".weight"); w && c.stochastic_rounding)
          stochastic.insert(w->unsafeGetTensorImpl());
    }
  }
  std::vector<bool> out;
  out.reserve(params.size());
  for (const auto& [_, p] : params) out.push_back(stochastic.count(p.unsafeGetTensorImpl()) > 0);
  return out;
}

std::vector<optim::ShardOffsets> offsets_of(const std::map<const void*, optim::ShardOffsets>& offsets,
                                            const std::vector<std::pair<std::string, torch::Tensor>>& params) {
  std::vector<optim::ShardOffsets> out;
  for (const auto& [_, p] : params) out.push_back(offsets_of(offsets, p));
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
                             const torch::Device& device, std::shared_ptr<dist::Communicator> comm,
                             const dist::ShardingPlan& plan)
    : TrainingSetup(model, training, device, comm, shard_offsets_of(model, plan, comm->rank())) {}

TrainingSetup::TrainingSetup(config::ModelGraph& model, const config::TrainingSpec& training,
                             const torch::Device& device, std::shared_ptr<dist::Communicator> comm,
                             const std::map<const void*, optim::ShardOffsets>& offsets)
    : fused_(enable_fused_collections(model, training, device, comm->world_size() > 1, offsets)),
      fused_sequences_(enable_fused_sequence_collections(model, training, device, comm->world_size() > 1)),
      optimizer_(model->dense_parameters(), training.dense_optimizer,
                 unfused_embedding_parameters(model, fused_, fused_sequences_), training.embedding_optimizer,
                 stochastic_rounding_of(model, unfused_embedding_parameters(model, fused_, fused_sequences_)),
                 offsets_of(offsets, unfused_embedding_parameters(model, fused_, fused_sequences_))),
      dense_options_(training.dense_optimizer),
      embedding_options_(training.embedding_optimizer),
      dense_lr_(training.dense_optimizer.lr()),
      embedding_lr_(training.embedding_optimizer.lr()),
      comm_(std::move(comm)),
      tasks_(training.tasks) {
  // training.dense_precision: bf16 products in the MLPs' training steps.
  set_dense_compute_dtype(
      *model, training.dense_precision == "bf16" ? std::optional<torch::Dtype>(torch::kBFloat16) : std::nullopt);
  // training.cuda_graphs: decided once, before the first step.
  {
    const GraphPlan plan = plan_graph_split(*model);
    graph_refusal_ =
        graph_step_refusal(training.cuda_graphs, device, cuda::cuda_graphs_available(), distributed(), plan);
    if (graph_refusal_.empty()) graph_step_ = std::make_shared<GraphStep>(model, plan, GraphStep::Mode::capture);
    // Asked for and refused: say why once (the mode being off needs no word).
    refusal_noted_ = training.cuda_graphs == "off" || !device.is_cuda();
  }
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

std::string TrainingSetup::cuda_graphs_status() const {
  return graph_step_ ? graph_step_->status() : "eager: " + graph_refusal_;
}

std::string TrainingSetup::take_cuda_graphs_notes() {
  if (graph_step_) return graph_step_->take_notes();
  if (refusal_noted_) return "";
  refusal_noted_ = true;
  return "cuda graphs: eager: " + graph_refusal_;
}

void TrainingSetup::use_uncaptured_split_step(const config::ModelGraph& model) {
  GraphPlan plan = plan_graph_split(*model);
  if (!plan.ok()) throw_input_error("the model cannot be split for CUDA graphs: ", plan.reason);
  graph_step_ = std::make_shared<GraphStep>(model, std::move(plan), GraphStep::Mode::split);
}

void TrainingSetup::schedule_lr(int64_t step) {
  dense_lr_ = optim::scheduled_lr(dense_options_, step);
  embedding_lr_ = optim::scheduled_lr(embedding_options_, step);
  optimizer_.set_lr(dense_lr_, embedding_lr_);
  for (auto& [_, ebc] : fused_) ebc->set_fused_lr(embedding_lr_);
  for (auto& [_, ec] : fused_sequences_) ec->set_fused_lr(embedding_lr_);
}

std::vector<double> TrainingSetup::all_reduce_gradients(const std::vector<double>& extras) {
  if (!distributed() || (replicated_.empty() && extras.empty())) return extras;
  std::vector<torch::Tensor> flat;
  for (auto& p : replicated_) flat.push_back(p.grad().defined() ? p.grad().reshape(-1) : torch::zeros({p.numel()}, p.options()));
  const auto dtype = flat.empty() ? torch::kFloat : flat[0].scalar_type();
  // On the gradients' device (a rank's GPU under --device cuda); read back on the host.
  flat.push_back(torch::tensor(extras, torch::kDouble).to(flat.empty() ? torch::Device(torch::kCPU) : flat[0].device(), dtype));
  std::vector<torch::Tensor> buffer{torch::cat(flat)};
  comm_->all_reduce_sum(buffer);
  const torch::Tensor summed = buffer[0].narrow(0, buffer[0].numel() - static_cast<int64_t>(extras.size()),
                                                static_cast<int64_t>(extras.size())).to(torch::kCPU, torch::kDouble);
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
  // (no table of a fused EmbeddingCollection rounds stochastically: no rounding key)
  for (const auto& [path, ec] : fused_sequences_)
    for (const auto& [key, value] : ec->fused_optimizer_state_dict()) out.emplace_back(fused_state_prefix(path) + key, value);
  return out;
}

void TrainingSetup::load_state_dict(const StateDict& state, const std::string& origin) {
  StateDict optimizer_state;
  std::vector<StateDict> fused_state(fused_.size()), sequence_state(fused_sequences_.size());
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
    for (size_t i = 0; i < fused_sequences_.size() && !taken; ++i) {
      const std::string prefix = fused_state_prefix(fused_sequences_[i].first);
      if (name.rfind(prefix, 0) == 0) {
        sequence_state[i].emplace_back(name.substr(prefix.size()), value);
        taken = true;
      }
    }
    if (!taken) optimizer_state.emplace_back(name, value);
  }
  optimizer_.load_state_dict(optimizer_state, origin);
  for (size_t i = 0; i < fused_.size(); ++i) fused_[i].second->load_fused_optimizer_state_dict(fused_state[i], origin);
  for (size_t i = 0; i < fused_sequences_.size(); ++i)
    fused_sequences_[i].second->load_fused_optimizer_state_dict(sequence_state[i], origin);
}

}  // namespace recmod::train
