#pragma once
// Id hashing shared by feature hashing (config) and managed-collision
// input hashing (mc): one implementation of MurmurHash3's finalizer.
#include <torch/types.h>

namespace recmod {

/// MurmurHash3's 64-bit finalizer (fmix64) of each id's 64 bits (int64 in,
/// int64 bit patterns out; the multiplications wrap as the unsigned
/// original's). Callers choose how to fold the result into a range.
torch::Tensor murmur3_fmix64(const torch::Tensor& ids);

}  // namespace recmod
