#pragma once
// `train --init-from` in a distributed run: each rank copies only its
// shards out of the memory-mapped checkpoint, so no rank ever holds a
// checkpoint's table whole (issue 12).
#include <memory>
#include <string>
#include <vector>

#include "recmod/common/state_dict.h"
#include "recmod/config/graph.h"
#include "recmod/dist/communicator.h"
#include "recmod/dist/sharding_plan.h"
#include "recmod/train/checkpoint_keys.h"

namespace recmod::train {

/// warm_start for a rank of a distributed run. `model` is opened deferred
/// (open_model_deferred) and not sharded yet; `checkpoint` is mapped
/// (io::map_tensors, best with release_verified). The selection (`only`),
/// the checks (shapes, dtypes, --init-only names, nothing to load) and the
/// report are warm_start's, made before anything is drawn, so every rank
/// fails alike and before any collective. Then the model is sharded
/// (shard_model, collective; the shards of what the checkpoint does not
/// give are drawn as the full init would have) and every loaded key is
/// copied in bounded chunks (about 4 MiB of the checkpoint at a time),
/// each chunk's pages of the file given back as soon as it is copied: a
/// sharded table's key into this rank's shard (its rows and columns of
/// it; nothing when the rank holds none), every other key (dense
/// parameters, data_parallel and unsharded tables) whole. A
/// managed-collision collection is loaded as a resume loads it
/// (load_node_state: its tables' shards and the id -> slot state of this
/// rank's slots, CheckpointError where the checkpoint placed ids in slots
/// of another id block) and only whole (all of its keys or none).
/// Optimizer state is never part of a warm start.
WarmStartReport warm_start_sharded(config::ModelGraph& model, const dist::ShardingPlan& plan,
                                   const std::shared_ptr<dist::Communicator>& comm, const StateDict& checkpoint,
                                   const std::vector<std::string>& only, const std::string& origin);

/// Copies rows [row_offset, +dst.size(0)) and columns [col_offset,
/// +dst.size(1)) of `src` (2-D) into `dst`, or the whole of `src` into a
/// `dst` of its shape (any dim; col_offset 0), about `chunk_bytes` of `src`
/// at a time, giving the pages of a mapped `src` back after each chunk
/// (io::release_mapped_bytes). The caller checks shapes and dtypes.
void copy_in_chunks(torch::Tensor dst, const torch::Tensor& src, int64_t row_offset, int64_t col_offset,
                    int64_t chunk_bytes = int64_t{4} << 20);

}  // namespace recmod::train
