#pragma once
// The unpooled (sequence) lookup of an EmbeddingCollection on CUDA: every
// table's rows for all of the collection's features gathered in one kernel
// launch. It takes tbe.h's launch description (tables, slots, ids, the
// out-of-range id slot); its backward is tbe.h's: an unpooled lookup is a
// pooled one with bags of one id, so tbe_backward_keys and
// tbe_backward_update serve it with the layout of
// modules/fused_embedding_collection.cpp (ids in output order, offsets
// 0..n, one key, out_dim = D). Plain C++ over raw device pointers; the
// kernel is in tbe_sequence.cu (built with RECMOD_CUDA_KERNELS), the
// CPU-only build gets tbe_sequence.cpp's stub.
#include <cstdint>

#include "recmod/cuda/tbe.h"

namespace recmod::cuda {

/// out (contributions x launch.out_dim, float32, row-major): row c is the
/// row of the c-th contribution's id, converted to float32. Contribution c
/// belongs to slot s (the last whose contrib_offset <= c) and reads
/// ids[s.id_begin + c - s.contrib_offset] from table s.table; every table
/// is launch.out_dim wide (an EmbeddingCollection has one embedding_dim).
/// An out-of-range id gives a row of zeros and is reported in
/// launch.error as tbe_forward does (position, id, table << 32 | key).
/// launch.offsets, per_sample_weights and batch are not read.
void tbe_sequence_forward(const TbeLaunch& launch, int64_t contributions, float* out);

}  // namespace recmod::cuda
