#include "recmod/config/feature_hashing.h"

#include <torch/torch.h>

#include "recmod/common/hash.h"

namespace recmod::config {

torch::Tensor hash_ids(const torch::Tensor& ids, const std::string& hash, int64_t range) {
  if (hash == "none") return ids;
  auto x = hash == "murmur" ? murmur3_fmix64(ids) : ids.to(torch::kLong);
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
