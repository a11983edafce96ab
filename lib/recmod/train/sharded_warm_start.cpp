#include "recmod/train/sharded_warm_start.h"

#include <torch/torch.h>

#include <algorithm>
#include <optional>

#include "recmod/dist/sharded_embedding.h"
#include "recmod/dist/sharded_embedding_bag.h"
#include "recmod/io/mapped_tensors.h"
#include "recmod/mc/mc_collection.h"
#include "recmod/mc/mc_embedding_modules.h"
#include "recmod/mc/mc_modules.h"
#include "recmod/modules/embedding_modules.h"
#include "recmod/train/distributed.h"

namespace recmod::train {

namespace {

/// Whether any module of the model remaps ids with state of its own (the
/// sharded managed-collision modules hold it per shard: not copied here).
bool has_managed_collision(const config::ModelGraph& model) {
  for (const auto& m : model->modules())
    if (std::dynamic_pointer_cast<ManagedCollisionModuleImpl>(m) ||
        std::dynamic_pointer_cast<ManagedCollisionCollectionImpl>(m) ||
        std::dynamic_pointer_cast<ManagedCollisionEmbeddingBagCollectionImpl>(m) ||
        std::dynamic_pointer_cast<ManagedCollisionEmbeddingCollectionImpl>(m))
      return true;
  return false;
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
  if (has_managed_collision(model)) {
    materialize_deferred_tables(*model);  // the values a full build draws
    return warm_start(model, checkpoint, only, origin);
  }
  // Checked and reported on the deferred model (meta tensors of the full
  // shapes), before the shards are drawn.
  std::vector<std::string> loaded;
  WarmStartReport report = match_warm_start(state_dict(*model), checkpoint, only, origin, loaded);
  shard_model(model, plan, comm);
  const StateDict local = state_dict(*model);
  for (const auto& key : loaded) {
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
