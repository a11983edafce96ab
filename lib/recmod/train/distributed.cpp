#include "recmod/train/distributed.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cstring>
#include <limits>
#include <mutex>
#include <set>

#include "recmod/common/errors.h"
#include "recmod/common/memory.h"
#include "recmod/config/value.h"
#include "recmod/data/batcher.h"
#include "recmod/dist/planner.h"
#include "recmod/dist/sharded_embedding.h"  // sharded EmbeddingCollection
#include "recmod/dist/sharded_mc_embedding.h"
#include "recmod/dist/sharded_mc_embedding_bag.h"
#include "recmod/io/file_backed_tensor.h"
#include "recmod/io/mapped_tensors.h"
#include "recmod/mc/mc_collection.h"
#include "recmod/mc/mc_embedding_modules.h"
#include "recmod/mc/mc_modules.h"
#include "recmod/modules/embedding_modules.h"
#include "recmod/optim/row_update.h"
#include "recmod/train/sharded_warm_start.h"

namespace recmod::train {

namespace {

std::vector<dist::TableTensorKind> optimizer_kinds(const config::TrainingSpec& spec) {
  const auto rule = optim::row_update_of(spec.embedding_optimizer.type(), "training.embedding_optimizer");
  const std::string name = optim::state_name(rule);
  if (name.empty()) return {};
  return {dist::TableTensorKind{"." + name, rule == optim::RowUpdate::rowwise_adagrad, false}};
}

std::string optimizer_prefix(const std::string& node) { return "embedding." + node + "."; }

/// Rows [start, start + n) of a KJT.
KeyedJaggedTensor slice_rows(const KeyedJaggedTensor& kjt, int64_t start, int64_t n) {
  const int64_t b = kjt.stride();
  const auto offsets = kjt.offsets().to(torch::kLong).cpu();
  const auto* o = offsets.data_ptr<int64_t>();
  std::vector<torch::Tensor> lengths, values, weights;
  for (size_t k = 0; k < kjt.keys().size(); ++k) {
    const int64_t first = static_cast<int64_t>(k) * b + start;
    lengths.push_back(kjt.lengths().narrow(0, first, n));
    values.push_back(kjt.values().narrow(0, o[first], o[first + n] - o[first]));
    if (kjt.has_weights()) weights.push_back(kjt.weights().narrow(0, o[first], o[first + n] - o[first]));
  }
  if (kjt.keys().empty()) return KeyedJaggedTensor::empty(kjt.has_weights(), kjt.device(), n);
  std::optional<torch::Tensor> w;
  if (kjt.has_weights()) w = torch::cat(weights);
  return KeyedJaggedTensor::from_lengths(kjt.keys(), torch::cat(values), torch::cat(lengths), w, n);
}

// ---- sharded EmbeddingCollection: both sharded kinds behind one face, for
// the checkpoint functions below (ShardedEmbeddingCollectionImpl).
struct AnySharded {
  std::shared_ptr<dist::ShardedEmbeddingBagCollectionImpl> ebc;
  std::shared_ptr<dist::ShardedEmbeddingCollectionImpl> ec;
  std::shared_ptr<dist::ShardedManagedCollisionEmbeddingBagCollectionImpl> mc;
  std::shared_ptr<dist::ShardedManagedCollisionEmbeddingCollectionImpl> mc_ec;
  StateDict local_state() const {
    return ebc ? state_dict(*ebc) : mc ? state_dict(*mc) : mc_ec ? state_dict(*mc_ec) : state_dict(*ec);
  }
  /// gathered one tensor at a time (the managed-collision state whole,
  /// when the call is made: its remapping is sorted as a whole).
  DeferredStateDict deferred_gather(const StateDict& local, const std::vector<dist::TableTensorKind>& kinds,
                                    const dist::FullTensorAllocator& allocate) const {
    return ebc  ? ebc->deferred_gather(local, kinds, allocate)
           : mc ? mc->deferred_gather(local, kinds, allocate)
           : mc_ec ? mc_ec->deferred_gather(local, kinds, allocate)
                   : ec->deferred_gather(local, kinds, allocate);
  }
  StateDict slice(const StateDict& full, const std::vector<dist::TableTensorKind>& kinds, const std::string& origin) const {
    return ebc  ? ebc->slice(full, kinds, origin)
           : mc ? mc->slice(full, kinds, origin)
           : mc_ec ? mc_ec->slice(full, kinds, origin)
                   : ec->slice(full, kinds, origin);
  }
};

/// The sharded collections (EmbeddingBagCollection and EmbeddingCollection) by node name.
std::vector<std::pair<std::string, std::shared_ptr<AnySharded>>> all_sharded(const config::ModelGraph& model) {
  std::vector<std::pair<std::string, std::shared_ptr<AnySharded>>> out;
  for (size_t i = 0; i < model->nodes().size(); ++i) {
    auto any = std::make_shared<AnySharded>();
    any->ebc = std::dynamic_pointer_cast<dist::ShardedEmbeddingBagCollectionImpl>(model->node_module(i));
    any->ec = std::dynamic_pointer_cast<dist::ShardedEmbeddingCollectionImpl>(model->node_module(i));
    any->mc = std::dynamic_pointer_cast<dist::ShardedManagedCollisionEmbeddingBagCollectionImpl>(model->node_module(i));
    any->mc_ec = std::dynamic_pointer_cast<dist::ShardedManagedCollisionEmbeddingCollectionImpl>(model->node_module(i));
    if (any->ebc || any->ec || any->mc || any->mc_ec) out.emplace_back(model->nodes()[i].name, any);
  }
  return out;
}

/// The tables of node `i` when it is an EmbeddingCollection (or a
/// managed-collision one, sharded or not), as the planner sees them.
void add_embedding_collection_tables(const config::ModelGraph& model, size_t i, std::vector<dist::TableShape>& out) {
  const auto module = model->node_module(i);
  auto ec = std::dynamic_pointer_cast<EmbeddingCollectionImpl>(module);
  if (auto mc = std::dynamic_pointer_cast<ManagedCollisionEmbeddingCollectionImpl>(module))
    ec = mc->embedding_collection().ptr();
  if (auto mc = std::dynamic_pointer_cast<dist::ShardedManagedCollisionEmbeddingCollectionImpl>(module))
    ec = std::shared_ptr<EmbeddingCollectionImpl>(module, &mc->embedding_collection());
  if (!ec) return;
  const auto full = std::dynamic_pointer_cast<dist::ShardedEmbeddingCollectionImpl>(ec);
  for (const auto& t : full ? full->full_configs() : ec->embedding_configs())
    out.push_back(dist::TableShape{model->nodes()[i].name, t.name, t.num_embeddings, t.embedding_dim,
                                   t.feature_names,
                                   static_cast<int64_t>(torch::elementSize(weight_storage_dtype(t.data_type)))});
}

/// Swaps the model's EmbeddingCollection nodes for sharded ones, except those
/// whose tables are all data_parallel (left replicated, all-reduced as dense).
void shard_embedding_collections(config::ModelGraph& model, const dist::ShardingPlan& plan,
                                 const std::shared_ptr<dist::Communicator>& comm) {
  for (size_t i = 0; i < model->nodes().size(); ++i) {
    const auto ec = std::dynamic_pointer_cast<EmbeddingCollectionImpl>(model->node_module(i));
    if (!ec || std::dynamic_pointer_cast<dist::ShardedEmbeddingCollectionImpl>(ec)) continue;
    const std::string& name = model->nodes()[i].name;
    bool replicated = true;
    for (const auto& t : ec->embedding_configs()) {
      const dist::TablePlan* p = plan.find(name, t.name);
      replicated = replicated && p != nullptr && p->type == dist::ShardingType::data_parallel;
    }
    if (replicated) continue;
    auto sharded = std::make_shared<dist::ShardedEmbeddingCollectionImpl>(*ec, name, plan, comm);
    model->replace_node(i, sharded, [sharded](const std::vector<config::Value>& in) {
      return config::Value::of_sequence(sharded->forward_sharded(in[0].sparse));
    });
  }
}
/// Rank 0's gathered optimizer state in one process's key order:
/// ModelOptimizer's (dense, then the unfused tables in node order), then the
/// fused collections' (TrainingSetup::state_dict); only the order changes.
void order_like_one_process(DeferredStateDict& state, const config::ModelGraph& model,
                            const TrainingSetup& training) {
  auto position = [&](const std::string& key) -> std::pair<int, size_t> {
    const std::string prefix = "embedding.";
    if (key.rfind(prefix, 0) != 0) return {0, 0};
    for (size_t j = 0; j < training.fused().size(); ++j)
      if (key.rfind(prefix + training.fused()[j].first + ".", 0) == 0) return {2, j};
    for (size_t i = 0; i < model->nodes().size(); ++i)
      if (key.rfind(prefix + model->nodes()[i].name + ".", 0) == 0) return {1, i};
    return {1, model->nodes().size()};
  };
  std::stable_sort(state.begin(), state.end(),
                   [&](const auto& a, const auto& b) { return position(a.key) < position(b.key); });
}
// ---- end sharded EmbeddingCollection

}  // namespace

/// The EmbeddingBagCollection of node `i`: the node itself, or the one inside a
/// managed-collision EBC (sharded or not); nullptr for other nodes.
std::shared_ptr<EmbeddingBagCollectionImpl> bag_collection_of(const config::ModelGraph& model, size_t i) {
  const auto module = model->node_module(i);
  if (auto ebc = std::dynamic_pointer_cast<EmbeddingBagCollectionImpl>(module)) return ebc;
  if (auto mc = std::dynamic_pointer_cast<ManagedCollisionEmbeddingBagCollectionImpl>(module))
    return mc->embedding_bag_collection().ptr();
  if (auto mc = std::dynamic_pointer_cast<dist::ShardedManagedCollisionEmbeddingBagCollectionImpl>(module))
    return std::shared_ptr<EmbeddingBagCollectionImpl>(module, &mc->embedding_bag_collection());
  return nullptr;
}

bool is_managed_bag_collection(const config::ModelGraph& model, size_t i) {
  const auto module = model->node_module(i);
  return std::dynamic_pointer_cast<ManagedCollisionEmbeddingBagCollectionImpl>(module) ||
         std::dynamic_pointer_cast<dist::ShardedManagedCollisionEmbeddingBagCollectionImpl>(module);
}

namespace {
/// Node `i` is a managed-collision collection that shard_model shards.
bool is_sharded_mc_kind(const config::ModelGraph& model, size_t i) {
  const auto module = model->node_module(i);
  return is_managed_bag_collection(model, i) ||
         std::dynamic_pointer_cast<ManagedCollisionEmbeddingCollectionImpl>(module) ||
         std::dynamic_pointer_cast<dist::ShardedManagedCollisionEmbeddingCollectionImpl>(module);
}
}  // namespace

std::vector<dist::TableShape> shardable_tables(const config::ModelGraph& model) {
  std::vector<dist::TableShape> out;
  for (size_t i = 0; i < model->nodes().size(); ++i) {
    const auto ebc = bag_collection_of(model, i);
    if (!ebc) {
      add_embedding_collection_tables(model, i, out);  // sharded EmbeddingCollection
      continue;
    }
    const auto full = std::dynamic_pointer_cast<dist::ShardedEmbeddingBagCollectionImpl>(ebc);
    for (const auto& t : full ? full->full_configs() : ebc->embedding_bag_configs())
      out.push_back(dist::TableShape{model->nodes()[i].name, t.name, t.num_embeddings, t.embedding_dim,
                                     t.feature_names,
                                     static_cast<int64_t>(torch::elementSize(weight_storage_dtype(t.data_type)))});
  }
  return out;
}

dist::ShardingPlan plan_model(const config::ModelGraph& model, const config::ModelConfig& config, int64_t world_size,
                              std::optional<double> memory_per_rank) {
  dist::PlannerOptions planner;
  planner.world_size = world_size;
  planner.memory_per_rank = memory_per_rank;
  planner.batch_size_per_rank = config.training.batch_size;
  planner.optimizer = config.training.embedding_optimizer;
  // Managed-collision tables are placed like any table (table_wise while it
  // fits, else row_wise); `sharding:` asks for row_wise explicitly.
  return dist::plan_sharding(shardable_tables(model), config.sharding, planner);
}

std::string describe_plan(const dist::ShardingPlan& plan) {
  std::string out;
  for (const auto& table : plan.tables) {
    out += str_cat(out.empty() ? "" : " ", table.table, "=", dist::name_of(table.type), "@");
    for (size_t i = 0; i < table.shards.size(); ++i) out += str_cat(i ? "," : "", table.shards[i].rank);
  }
  return out;
}

void shard_model(config::ModelGraph& model, const dist::ShardingPlan& plan,
                 const std::shared_ptr<dist::Communicator>& comm) {
  // The collectives only line up if every rank shards alike.
  comm->expect_same("the sharding plan", static_cast<int64_t>(std::hash<std::string>{}(describe_plan(plan))));
  // Managed-collision modules remap ids with state of their own, which each
  // rank would update from its rows only: the replicas would drift apart.
  // The MC-EBC and MC-EC are sharded (each rank remaps the ids of its slot
  // range); any other module holding one is refused.
  for (size_t i = 0; i < model->nodes().size(); ++i)
    if (auto module = model->node_module(i); module && !is_sharded_mc_kind(model, i))
      for (const auto& m : module->modules())
        if (std::dynamic_pointer_cast<ManagedCollisionModuleImpl>(m) || std::dynamic_pointer_cast<ManagedCollisionCollectionImpl>(m))
          throw UsageError(str_cat("node '", model->nodes()[i].name, "' (", model->nodes()[i].type,
                                   ") has managed-collision tables, which distributed training does not shard yet; "
                                   "train it in one process"));
  for (size_t i = 0; i < model->nodes().size(); ++i) {
    auto mc = std::dynamic_pointer_cast<ManagedCollisionEmbeddingBagCollectionImpl>(model->node_module(i));
    if (!mc) continue;
    auto sharded = std::make_shared<dist::ShardedManagedCollisionEmbeddingBagCollectionImpl>(
        *mc, model->nodes()[i].name, plan, comm);
    model->replace_node(i, sharded, [sharded](const std::vector<config::Value>& in) {
      return config::Value::of_pooled(sharded->forward_sharded(in[0].sparse));
    });
  }
  for (size_t i = 0; i < model->nodes().size(); ++i) {
    auto mc = std::dynamic_pointer_cast<ManagedCollisionEmbeddingCollectionImpl>(model->node_module(i));
    if (!mc) continue;
    auto sharded = std::make_shared<dist::ShardedManagedCollisionEmbeddingCollectionImpl>(
        *mc, model->nodes()[i].name, plan, comm);
    model->replace_node(i, sharded, [sharded](const std::vector<config::Value>& in) {
      return config::Value::of_sequence(sharded->forward_sharded(in[0].sparse));
    });
  }
  for (size_t i = 0; i < model->nodes().size(); ++i) {
    const auto ebc = std::dynamic_pointer_cast<EmbeddingBagCollectionImpl>(model->node_module(i));
    if (!ebc || std::dynamic_pointer_cast<dist::ShardedEmbeddingBagCollectionImpl>(ebc)) continue;
    auto sharded = std::make_shared<dist::ShardedEmbeddingBagCollectionImpl>(*ebc, model->nodes()[i].name, plan, comm);
    model->replace_node(i, sharded, [sharded](const std::vector<config::Value>& in) {
      return config::Value::of_pooled(sharded->forward_sharded(in[0].sparse));
    });
  }
  shard_embedding_collections(model, plan, comm);  // sharded EmbeddingCollection
  // What no shard took over (replicated collections, tables inside other
  // modules) is allocated now, with the values a full init gives.
  materialize_deferred_tables(*model);
}

namespace {
/// The tables of `pieces` (2-D views of a mapped checkpoint, as slice gives
/// them) copied into `module`'s tensors of the same key, shape and dtype in
/// chunks whose pages of the file are given back as they are copied, so a
/// rank never holds a table's pages whole (copy_in_chunks); each such piece
/// then is the module's own tensor, which load_state_dict checks and does
/// not copy again. Anything else is left to load_state_dict.
void copy_mapped_tables(torch::nn::Module& module, StateDict& pieces) {
  const StateDict local = state_dict(module);
  for (auto& [key, piece] : pieces) {
    if (piece.dim() != 2 || !io::is_mapped(piece)) continue;
    const torch::Tensor* dst = find_tensor(local, key);
    if (dst == nullptr || dst->sizes() != piece.sizes() || dst->scalar_type() != piece.scalar_type()) continue;
    copy_in_chunks(*dst, piece, 0, 0);
    piece = *dst;
  }
}

/// `mine` (keys relative to the node) into the node: a sharded collection
/// (one of `sharded`, the model's) takes its shards' slices, every other
/// node its tensors; strict.
void load_into_node(const std::vector<std::pair<std::string, std::shared_ptr<AnySharded>>>& sharded_nodes,
                    const std::string& node, torch::nn::Module& module, StateDict mine, const std::string& origin) {
  for (const auto& [name, sharded] : sharded_nodes)
    if (name == node) {
      mine = sharded->slice(mine, {dist::TableTensorKind{"", false, true}}, origin);  // views of the full tensors
      copy_mapped_tables(module, mine);
    }
  recmod::load_state_dict(module, mine, origin + " (" + node + ")");
}

/// The entries of `full` under "<node>.", the prefix taken off.
StateDict keys_of_node(const StateDict& full, const std::string& node, std::set<std::string>* used = nullptr) {
  const std::string prefix = node + ".";
  StateDict mine;
  for (const auto& [key, value] : full)
    if (key.rfind(prefix, 0) == 0) {
      mine.emplace_back(key.substr(prefix.size()), value);
      if (used != nullptr) used->insert(key);
    }
  return mine;
}
}  // namespace

void load_full_state(config::ModelGraph& model, const StateDict& full, const std::string& origin) {
  const auto sharded = all_sharded(model);
  std::set<std::string> used;
  for (const auto& child : model->named_children())
    load_into_node(sharded, child.key(), *child.value(), keys_of_node(full, child.key(), &used), origin);
  for (const auto& [key, value] : full)
    if (!used.count(key))
      throw CheckpointError(str_cat(origin, ": unexpected key '", key, "' (the model has no node '",
                                    key.substr(0, key.find('.')), "')"));
}

void load_node_state(config::ModelGraph& model, const std::string& node, const StateDict& full,
                     const std::string& origin) {
  for (const auto& child : model->named_children())
    if (child.key() == node) load_into_node(all_sharded(model), node, *child.value(), keys_of_node(full, node), origin);
}

void load_full_checkpoint(config::ModelGraph& model, const std::string& path) {
  const StateDict full = io::map_tensors(path, /*release_verified=*/true);
  load_full_state(model, full, path);
  io::check_mapped_unchanged(full);
}

ShardedCollections sharded_collections(const config::ModelGraph& model) {
  ShardedCollections out;
  for (size_t i = 0; i < model->nodes().size(); ++i)
    if (auto s = std::dynamic_pointer_cast<dist::ShardedEmbeddingBagCollectionImpl>(model->node_module(i)))
      out.emplace_back(model->nodes()[i].name, s);
  return out;
}

namespace {
/// BadRecords as int64 words: num_records, the bad count and records, the
/// message count, then each message's length and bytes (8 a word).
std::vector<int64_t> encode(const data::BadRecords& bad) {
  std::vector<int64_t> out{bad.num_records, static_cast<int64_t>(bad.records.size())};
  out.insert(out.end(), bad.records.begin(), bad.records.end());
  out.push_back(static_cast<int64_t>(bad.first_errors.size()));
  for (const auto& message : bad.first_errors) {
    out.push_back(static_cast<int64_t>(message.size()));
    const size_t at = out.size();
    out.resize(at + (message.size() + 7) / 8, 0);
    std::memcpy(out.data() + at, message.data(), message.size());
  }
  return out;
}

data::BadRecords decode(const int64_t* words, int64_t size) {
  int64_t at = 0;
  auto next = [&] {
    TORCH_CHECK(at < size, "share_bad_records: a rank's part ended early");
    return words[at++];
  };
  data::BadRecords bad;
  bad.num_records = next();
  const int64_t n = next();
  TORCH_CHECK(n >= 0 && at + n <= size, "share_bad_records: a rank's part is malformed");
  bad.records.assign(words + at, words + at + n);
  at += n;
  for (int64_t m = next(); m > 0; --m) {
    const int64_t length = next();
    const int64_t span = (length + 7) / 8;
    TORCH_CHECK(length >= 0 && at + span <= size, "share_bad_records: a rank's part is malformed");
    bad.first_errors.emplace_back(reinterpret_cast<const char*>(words + at), static_cast<size_t>(length));
    at += span;
  }
  return bad;
}
}  // namespace

std::vector<data::BadRecords> share_bad_records(dist::Communicator& comm, const data::BadRecords& mine) {
  if (comm.world_size() == 1) return {mine};
  const std::vector<int64_t> words = encode(mine);
  const std::vector<int64_t> sizes = comm.all_gather(static_cast<int64_t>(words.size()));
  std::vector<data::BadRecords> parts;
  for (int64_t r = 0; r < comm.world_size(); ++r) {
    torch::Tensor part = r == comm.rank()
                             ? torch::tensor(words, torch::kLong)
                             : torch::empty({sizes[static_cast<size_t>(r)]}, torch::kLong);
    comm.broadcast(part, r);
    part = part.to(torch::kCPU).contiguous();
    parts.push_back(decode(part.data_ptr<int64_t>(), part.numel()));
  }
  return parts;
}

std::vector<int64_t> rank_batch_sizes(int64_t total, int64_t world_size) {
  std::vector<int64_t> out;
  for (int64_t r = 0; r < world_size; ++r) out.push_back(data::rank_rows(total, r, world_size).second);
  return out;
}

data::Batch rank_slice(const data::Batch& global, int64_t rank, int64_t world_size) {
  const auto [start, n] = data::rank_rows(global.size(), rank, world_size);
  return data::Batch{global.dense.narrow(0, start, n), slice_rows(global.sparse, start, n),
                     global.labels.narrow(0, start, n),
                     global.weights.defined() ? global.weights.narrow(0, start, n) : torch::Tensor()};
}

dist::FullTensorAllocator checkpoint_tensor_allocator(const std::string& dir, int64_t in_memory_bytes) {
  return [dir, in_memory_bytes](torch::IntArrayRef sizes, torch::Dtype dtype) {
    const int64_t bytes = c10::multiply_integers(sizes) * static_cast<int64_t>(c10::elementSize(dtype));
    return bytes <= in_memory_bytes ? torch::Tensor() : io::file_backed_zeros(sizes, dtype, dir);
  };
}

int64_t default_checkpoint_memory() {
  const auto available = available_memory_bytes();
  return available ? static_cast<int64_t>(*available / 2) : std::numeric_limits<int64_t>::max();
}

DeferredStateDict deferred_model_state(const config::ModelGraph& model, dist::Communicator& comm,
                                       const dist::FullTensorAllocator& allocate) {
  const auto sharded = all_sharded(model);  // both sharded kinds
  DeferredStateDict out;
  for (const auto& child : model->named_children()) {
    const std::string prefix = child.key() + ".";
    auto it = std::find_if(sharded.begin(), sharded.end(), [&](const auto& s) { return s.first == child.key(); });
    if (it == sharded.end()) {
      if (comm.rank() == 0) dist::append_prefixed(out, deferred(state_dict(*child.value())), prefix);
      continue;
    }
    dist::append_prefixed(
        out, it->second->deferred_gather(it->second->local_state(), {dist::TableTensorKind{"", false, true}}, allocate),
        prefix);
  }
  return out;
}

DeferredStateDict deferred_optimizer_state(const config::ModelGraph& model, const TrainingSetup& training,
                                           const config::TrainingSpec& spec, dist::Communicator& comm,
                                           const dist::FullTensorAllocator& allocate) {
  const auto sharded = all_sharded(model);  // both sharded kinds
  const auto kinds = optimizer_kinds(spec);
  const StateDict local = training.state_dict();
  DeferredStateDict out;
  auto owner_of = [&](const std::string& key) -> const AnySharded* {
    for (const auto& [node, module] : sharded)
      if (key.rfind(optimizer_prefix(node), 0) == 0) return module.get();
    return nullptr;
  };
  if (comm.rank() == 0) {
    StateDict replicated;  // identical on every rank
    for (const auto& [key, value] : local)
      if (!owner_of(key)) replicated.emplace_back(key, value);
    dist::append_prefixed(out, deferred(replicated), "");
  }
  for (const auto& [node, module] : sharded) {
    const std::string prefix = optimizer_prefix(node);
    StateDict mine;
    for (const auto& [key, value] : local)
      if (key.rfind(prefix, 0) == 0) mine.emplace_back(key.substr(prefix.size()), value);
    dist::append_prefixed(out, module->deferred_gather(mine, kinds, allocate), prefix);
  }
  // A stable sort by key: the collective entries keep one order on every rank.
  order_like_one_process(out, model, training);  // sharded EmbeddingCollection
  return out;
}

StateDict local_optimizer_state(const config::ModelGraph& model, const StateDict& full,
                                const config::TrainingSpec& spec, const std::string& origin) {
  const auto sharded = all_sharded(model);  // both sharded kinds
  const auto kinds = optimizer_kinds(spec);
  StateDict out;
  for (const auto& [key, value] : full) {
    bool is_sharded = false;
    for (const auto& [node, _] : sharded) is_sharded = is_sharded || key.rfind(optimizer_prefix(node), 0) == 0;
    if (!is_sharded) out.emplace_back(key, value);
  }
  for (const auto& [node, module] : sharded) {
    const std::string prefix = optimizer_prefix(node);
    StateDict mine;
    for (const auto& [key, value] : full)
      if (key.rfind(prefix, 0) == 0) mine.emplace_back(key.substr(prefix.size()), value);
    for (auto& [key, value] : module->slice(mine, kinds, origin)) out.emplace_back(prefix + key, value);
  }
  return out;
}

namespace {
/// Whether `pieces` has exactly `target`'s keys, each with its shape and dtype.
bool same_layout(const StateDict& pieces, const StateDict& target) {
  if (pieces.size() != target.size()) return false;
  for (const auto& [key, dst] : target) {
    const torch::Tensor* piece = find_tensor(pieces, key);
    if (piece == nullptr || piece->sizes() != dst.sizes() || piece->scalar_type() != dst.scalar_type()) return false;
  }
  return true;
}
}  // namespace

void load_local_optimizer_state(TrainingSetup& training, const config::ModelGraph& model, const StateDict& full,
                                const config::TrainingSpec& spec, const std::string& origin) {
  StateDict pieces = local_optimizer_state(model, full, spec, origin);
  const StateDict target = training.state_dict();
  // Only a state that load_state_dict will take whole: anything else is its
  // error to name, before any tensor is written.
  if (same_layout(pieces, target))
    for (auto& [key, piece] : pieces) {
      if (!io::is_mapped(piece)) continue;
      const torch::Tensor& dst = *find_tensor(target, key);
      copy_in_chunks(dst, piece, 0, 0);
      piece = dst;  // load_state_dict's copy is then onto itself: no second read of the file
    }
  training.load_state_dict(pieces, origin);
  io::check_mapped_unchanged(full);
}

}  // namespace recmod::train
