#include "recmod/train/sharded_warm_start.h"

#include <torch/torch.h>

#include <algorithm>
#include <optional>
#include <set>

#include "recmod/common/errors.h"
#include "recmod/dist/sharded_embedding.h"
#include "recmod/dist/sharded_embedding_bag.h"
#include "recmod/io/mapped_tensors.h"
#include "recmod/mc/mc_embedding_modules.h"
#include "recmod/modules/embedding_modules.h"
#include "recmod/train/distributed.h"

namespace recmod::train {

namespace {

/// The nodes that are managed-collision collections (MC-EBC, MC-EC): the
/// only ones of a distributed model holding managed-collision modules
/// (shard_model refuses any other).
std::set<std::string> managed_collision_nodes(const config::ModelGraph& model) {
  std::set<std::string> out;
  for (size_t i = 0; i < model->nodes().size(); ++i)
    if (std::dynamic_pointer_cast<ManagedCollisionEmbeddingBagCollectionImpl>(model->node_module(i)) ||
        std::dynamic_pointer_cast<ManagedCollisionEmbeddingCollectionImpl>(model->node_module(i)))
      out.insert(model->nodes()[i].name);
  return out;
}

std::string node_of(const std::string& key) { return key.substr(0, key.find('.')); }

/// A managed-collision node is warm-started whole or not at all: its tables
/// and its id -> slot state belong together (a one-process warm start may
/// take part of it). CheckpointError naming the node and the first key
/// missing, on every rank alike, before anything is drawn.
void check_managed_nodes_whole(const StateDict& model_state, const std::vector<std::string>& loaded,
                               const std::set<std::string>& managed, const std::string& origin) {
  const std::set<std::string> taken(loaded.begin(), loaded.end());
  for (const auto& node : managed) {
    std::string missing;
    int64_t keys = 0, have = 0;
    for (const auto& [key, _] : model_state) {
      if (node_of(key) != node) continue;
      ++keys;
      if (taken.count(key)) ++have;
      else if (missing.empty()) missing = key;
    }
    if (have > 0 && have < keys)
      throw CheckpointError(str_cat(origin, ": node '", node, "' is a managed-collision collection, which a distributed "
                                    "warm start loads whole (its tables with their id -> slot state); the checkpoint "
                                    "gives ", have, " of its ", keys, " keys (no '", missing, "')"));
  }
}

/// Where a model key lies once sharded: `sharded` for the weight of a table
/// of a sharded collection, with this rank's shard of it (none: the rank
/// holds nothing of it).
struct KeyPlace {
  bool sharded = false;
  std::optional<dist::Shard> mine;
};

KeyPlace place_of(const config::ModelGraph& model, const dist::ShardingPlan& plan, int64_t rank, const std::string& key) {
  KeyPlace out;
  const std::string node = key.substr(0, key.find('.'));
  for (size_t i = 0; i < model->nodes().size(); ++i) {
    if (model->nodes()[i].name != node) continue;
    const auto module = model->node_module(i);
    const char* prefix = std::dynamic_pointer_cast<dist::ShardedEmbeddingBagCollectionImpl>(module) ? "embedding_bags."
                         : std::dynamic_pointer_cast<dist::ShardedEmbeddingCollectionImpl>(module) ? "embeddings."
                                                                                                    : nullptr;
    if (prefix == nullptr) return out;
    const std::string rest = key.substr(node.size() + 1), suffix = ".weight";
    const std::string head = prefix;
    if (rest.size() <= head.size() + suffix.size() || rest.compare(0, head.size(), head) != 0 ||
        rest.compare(rest.size() - suffix.size(), suffix.size(), suffix) != 0)
      return out;
    const dist::TablePlan* p = plan.find(node, rest.substr(head.size(), rest.size() - head.size() - suffix.size()));
    if (p == nullptr) return out;
    out.sharded = true;
    for (const auto& s : p->shards)
      if (s.rank == rank && dist::holds_rows(s)) {
        out.mine = s;
        break;
      }
    return out;
  }
  return out;
}

}  // namespace

void copy_in_chunks(torch::Tensor dst, const torch::Tensor& src, int64_t row_offset, int64_t col_offset,
                    int64_t chunk_bytes) {
  torch::NoGradGuard no_grad;
  const bool block = dst.dim() == 2 && src.dim() == 2 && (dst.sizes() != src.sizes() || row_offset || col_offset);
  // Chunks of whole rows: a contiguous tensor, or a 2-D view of one whose rows are contiguous (a column block).
  const bool in_rows = src.is_contiguous() || (src.dim() == 2 && src.stride(1) == 1);
  if (src.dim() == 0 || src.numel() == 0 || !in_rows) {  // not worth chunking, or not laid out in rows
    dst.copy_(block ? src.narrow(0, row_offset, dst.size(0)).narrow(1, col_offset, dst.size(1)) : src);
    return;
  }
  const int64_t row_bytes = src.stride(0) * static_cast<int64_t>(src.element_size());
  const int64_t rows = dst.size(0), step = std::max<int64_t>(1, chunk_bytes / std::max<int64_t>(row_bytes, 1));
  for (int64_t r = 0; r < rows; r += step) {
    const int64_t n = std::min(step, rows - r);
    torch::Tensor piece = src.narrow(0, row_offset + r, n);
    if (block) piece = piece.narrow(1, col_offset, dst.size(1));
    dst.narrow(0, r, n).copy_(piece);
    io::release_mapped_bytes(src, (row_offset + r) * row_bytes, (row_offset + r + n) * row_bytes);
  }
  // The pages at the chunks' edges, now that every chunk is copied.
  io::release_mapped_bytes(src, row_offset * row_bytes, (row_offset + rows) * row_bytes);
}

WarmStartReport warm_start_sharded(config::ModelGraph& model, const dist::ShardingPlan& plan,
                                   const std::shared_ptr<dist::Communicator>& comm, const StateDict& checkpoint,
                                   const std::vector<std::string>& only, const std::string& origin) {
  // Checked and reported on the deferred model (meta tensors of the full
  // shapes), before the shards are drawn.
  std::vector<std::string> loaded;
  const StateDict full_shapes = state_dict(*model);
  WarmStartReport report = match_warm_start(full_shapes, checkpoint, only, origin, loaded);
  const std::set<std::string> managed = managed_collision_nodes(model);
  check_managed_nodes_whole(full_shapes, loaded, managed, origin);
  shard_model(model, plan, comm);
  // A managed-collision node is loaded as a resume loads it: its tables'
  // shards and the id -> slot state of this rank's slots (sliced; refused
  // when the checkpoint placed ids where this layout cannot keep them).
  StateDict managed_keys;
  for (const auto& key : loaded)
    if (managed.count(node_of(key))) managed_keys.emplace_back(key, *find_tensor(checkpoint, key));
  for (const auto& node : managed) load_node_state(model, node, managed_keys, origin);
  const StateDict local = state_dict(*model);
  for (const auto& key : loaded) {
    if (managed.count(node_of(key))) continue;
    const torch::Tensor& src = *find_tensor(checkpoint, key);
    const KeyPlace place = place_of(model, plan, comm->rank(), key);
    if (place.sharded && !place.mine) continue;  // another rank's table
    const torch::Tensor* dst = find_tensor(local, key);
    TORCH_CHECK(dst != nullptr, "warm_start_sharded: the sharded model has no key '", key, "'");
    if (place.sharded) {
      const dist::Shard& s = *place.mine;
      TORCH_CHECK(dst->dim() == 2 && dst->size(0) == s.rows && dst->size(1) == s.cols, "warm_start_sharded: '", key,
                  "' holds ", dst->sizes(), ", its shard is ", s.rows, " x ", s.cols);
      copy_in_chunks(*dst, src, s.row_offset, s.col_offset);
    } else {
      TORCH_CHECK(dst->sizes() == src.sizes(), "warm_start_sharded: '", key, "' holds ", dst->sizes(),
                  ", the checkpoint ", src.sizes());
      copy_in_chunks(*dst, src, 0, 0);
    }
  }
  return report;
}

}  // namespace recmod::train
