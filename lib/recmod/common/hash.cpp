#include "recmod/common/hash.h"

#include <torch/torch.h>

namespace recmod {

namespace {
// x >> s on the bits of an unsigned 64-bit value (torch's >> is arithmetic).
torch::Tensor logical_right_shift(const torch::Tensor& x, int64_t s) {
  return torch::bitwise_and(torch::bitwise_right_shift(x, s), (int64_t{1} << (64 - s)) - 1);
}
}  // namespace

torch::Tensor murmur3_fmix64(const torch::Tensor& ids) {
  torch::Tensor k = ids.to(torch::kLong);
  k = torch::bitwise_xor(k, logical_right_shift(k, 33)) * static_cast<int64_t>(0xff51afd7ed558ccdULL);
  k = torch::bitwise_xor(k, logical_right_shift(k, 33)) * static_cast<int64_t>(0xc4ceb9fe1a85ec53ULL);
  return torch::bitwise_xor(k, logical_right_shift(k, 33));
}

}  // namespace recmod
