#pragma once
// The fused training path of an EmbeddingCollection (unpooled, "sequence"
// embeddings): every table's rows for all of the collection's features
// gathered in one lookup, and a backward that applies the embedding
// optimizer to the touched rows directly (duplicate ids of the batch summed
// in input order; no dense or COO gradient). On CUDA the lookup is one
// kernel launch (recmod/cuda/tbe_sequence.h) and the backward tbe.h's
// sort + fused update; elsewhere tensor ops (index_select, and
// optim::update_rows, the row-sparse optimizer's update) compute the same.
#include <torch/types.h>

#include <memory>
#include <vector>

#include "recmod/modules/fused_embedding_bag.h"

namespace recmod {

/// What a sequence lookup reads: the tables (N_t, D) (one D; float32,
/// float16 or bfloat16, contiguous) and the (table, key) slots in output
/// order (FusedSlot::column unused).
struct SequenceLookupPlan {
  std::vector<torch::Tensor> tables;
  std::vector<FusedSlot> slots;
  int64_t dim = 0;
};

/// The input: a KeyedJaggedTensor's values (int64 or int32 ids) and its
/// offset_per_key (K + 1 entries, host side).
struct SequenceLookupInput {
  torch::Tensor ids;
  std::vector<int64_t> offset_per_key;
};

/// The first output row of each slot's ids (slots + 1 entries, the last the
/// number of output rows): slot s's ids (key k's) fill rows
/// [rows[s], rows[s + 1]) in KJT order.
std::vector<int64_t> sequence_output_rows(const SequenceLookupPlan& plan, const SequenceLookupInput& input);

/// True when the lookup runs recmod's CUDA kernels (a CUDA build, CUDA
/// tables of one width <= cuda::tbe_max_dim, float32 / float16 / bfloat16).
bool sequence_kernel_applies(const SequenceLookupPlan& plan, const SequenceLookupInput& input);

/// (rows, D) float32: output row rows[s] + i = W_{table(s)}[ids[opk[key(s)] + i]].
/// An id outside its table: InputError (on CUDA the row is zero and the
/// error is raised by the next lookup on the device, or by
/// check_fused_sequence_errors).
torch::Tensor fused_sequence_forward(const SequenceLookupPlan& plan, const SequenceLookupInput& input);

/// The backward fused with the optimizer: grad_out (rows, D) is summed per
/// touched row of each table (duplicates combined in input order) and
/// `optimizer`'s update applied to that row once. Stochastic rounding
/// tables take the tensor-op path (the CUDA kernels round to nearest).
void fused_sequence_backward_update(const SequenceLookupPlan& plan, const SequenceLookupInput& input,
                                    const torch::Tensor& grad_out, FusedEmbeddingOptimizer& optimizer);

/// fused_sequence_forward with autograd: when grad mode is on and a table
/// requires grad, the output's backward runs fused_sequence_backward_update
/// (the tables never get a .grad).
torch::Tensor fused_embedding_sequence(const SequenceLookupPlan& plan, const SequenceLookupInput& input,
                                       std::shared_ptr<FusedEmbeddingOptimizer> optimizer);

/// Raises (InputError) an out-of-range id that a CUDA sequence lookup on
/// `device` met (synchronizes the device). No-op elsewhere.
void check_fused_sequence_errors(const torch::Device& device);

}  // namespace recmod
