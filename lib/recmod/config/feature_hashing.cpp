#include "recmod/config/feature_hashing.h"

#include <torch/torch.h>

namespace recmod::config {

namespace {
// x >> s on the bits of an unsigned 64-bit value (torch's >> is arithmetic).
torch::Tensor logical_shift_right(const torch::Tensor& x, int64_t s) {
  return torch::bitwise_and(torch::bitwise_right_shift(x, s), (int64_t{1} << (64 - s)) - 1);
}
}  // namespace

torch::Tensor murmur_fmix64(const torch::Tensor& ids) {
  // Constants of MurmurHash3's fmix64, as int64 bit patterns; int64
  // multiplication wraps like uint64 multiplication on the low 64 bits.
  const int64_t c1 = static_cast<int64_t>(0xff51afd7ed558ccdULL);
  const int64_t c2 = static_cast<int64_t>(0xc4ceb9fe1a85ec53ULL);
  auto k = ids.to(torch::kLong);
  k = torch::bitwise_xor(k, logical_shift_right(k, 33)) * c1;
  k = torch::bitwise_xor(k, logical_shift_right(k, 33)) * c2;
  return torch::bitwise_xor(k, logical_shift_right(k, 33));
}

torch::Tensor hash_ids(const torch::Tensor& ids, const std::string& hash, int64_t range) {
  if (hash == "none") return ids;
  auto x = hash == "murmur" ? murmur_fmix64(ids) : ids.to(torch::kLong);
  return torch::remainder(x, range);  // remainder takes the divisor's sign: in [0, range)
}

KeyedJaggedTensor hash_features(const KeyedJaggedTensor& kjt, const std::vector<SparseFeatureSpec>& specs) {
  bool any = false;
  for (const auto& s : specs) any = any || s.hash != "none";
  if (!any || kjt.keys().empty()) return kjt;
  std::vector<torch::Tensor> parts;
  const auto& offsets = kjt.offset_per_key();
  for (size_t k = 0; k < kjt.keys().size(); ++k) {
    auto part = kjt.values().slice(0, offsets[k], offsets[k + 1]);
    for (const auto& s : specs)
      if (s.name == kjt.keys()[k]) part = hash_ids(part, s.hash, s.range);
    parts.push_back(part);
  }
  return KeyedJaggedTensor::unchecked(kjt.keys(), torch::cat(parts), kjt.lengths(), kjt.weights_or_none(), kjt.stride());
}

}  // namespace recmod::config
