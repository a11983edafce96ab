#pragma once
// A sharded collection's local table taking its values from a block of the
// full table (EmbeddingTableImpl::table_block: copied or drawn).
#include <torch/types.h>

namespace recmod::dist {

/// Makes `block` (a new tensor of the shard's values) the data of the local
/// table's `weight` when it can (same shape, dtype and device): the local
/// table's own allocation, never written, is then freed untouched, so
/// taking a shard holds one copy of it in memory, not two. Otherwise copies.
void take_block(const torch::Tensor& weight, const torch::Tensor& block);

}  // namespace recmod::dist
