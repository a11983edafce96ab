#include "recmod/config/feature_hashing.h"

#include <torch/torch.h>

#include <cstdint>
#include <limits>

#include "recmod/common/hash.h"

namespace recmod::config {

namespace {
// x mod range with x's 64 bits read as an unsigned integer (torch has no
// uint64): x = low + 2^63 * top_bit, low = x & (2^63 - 1) >= 0, so
// u mod r = (low mod r + top_bit * (2^63 mod r)) mod r, without overflow.
torch::Tensor unsigned_mod(const torch::Tensor& x, int64_t range) {
  const auto r = static_cast<uint64_t>(range);
  const auto top = static_cast<int64_t>((UINT64_C(1) << 63) % r);
  auto low = torch::remainder(torch::bitwise_and(x, std::numeric_limits<int64_t>::max()), range);
  auto with_top = low - (range - top);  // low + top - range, in (-range, range)
  with_top = torch::where(with_top.lt(0), with_top + range, with_top);
  return torch::where(x.lt(0), with_top, low);
}
}  // namespace

torch::Tensor hash_ids(const torch::Tensor& ids, const std::string& hash, int64_t range) {
  if (hash == "none") return ids;
  if (hash == "murmur") return unsigned_mod(murmur3_fmix64(ids), range);
  return torch::remainder(ids.to(torch::kLong), range);  // remainder takes the divisor's sign: in [0, range)
}

KeyedJaggedTensor hash_features(const KeyedJaggedTensor& kjt, const std::vector<SparseFeatureSpec>& specs) {
  bool any = false;
  for (const auto& s : specs) any = any || s.hash != "none";
  if (!any || kjt.keys().empty()) return kjt;
  // Each key's hashes (every spec of its name, in order). Elementwise, so
  // consecutive keys hashed alike are hashed as one slice: one set of
  // tensor operations (kernel launches) per run of keys, not per key.
  const size_t n_keys = kjt.keys().size();
  std::vector<std::vector<const SparseFeatureSpec*>> of_key(n_keys);
  for (size_t k = 0; k < n_keys; ++k)
    for (const auto& s : specs)
      if (s.name == kjt.keys()[k] && s.hash != "none") of_key[k].push_back(&s);
  auto same = [](const std::vector<const SparseFeatureSpec*>& a, const std::vector<const SparseFeatureSpec*>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (a[i]->hash != b[i]->hash || a[i]->range != b[i]->range) return false;
    return true;
  };
  std::vector<torch::Tensor> parts;
  const auto& offsets = kjt.offset_per_key();
  for (size_t k = 0; k < n_keys;) {
    size_t end = k + 1;
    while (end < n_keys && same(of_key[end], of_key[k])) ++end;
    const bool whole = k == 0 && end == n_keys;
    auto part = whole ? kjt.values() : kjt.values().slice(0, offsets[k], offsets[end]);
    for (const auto* s : of_key[k]) part = hash_ids(part, s->hash, s->range);
    parts.push_back(part);
    k = end;
  }
  torch::Tensor values = parts.size() == 1 ? parts[0] : torch::cat(parts);
  return KeyedJaggedTensor::unchecked(kjt.keys(), std::move(values), kjt.lengths(), kjt.weights_or_none(),
                                      kjt.stride());
}

}  // namespace recmod::config
