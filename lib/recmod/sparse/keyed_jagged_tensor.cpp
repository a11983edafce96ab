#include "recmod/sparse/keyed_jagged_tensor.h"

#include <torch/torch.h>

#include <numeric>

#include "recmod/common/errors.h"

namespace recmod {

namespace {
int64_t infer_stride(const std::vector<std::string>& keys, const torch::Tensor& lengths,
                     std::optional<int64_t> stride) {
  const auto k = static_cast<int64_t>(keys.size());
  if (k == 0) {
    if (lengths.numel() != 0)
      throw_input_error("KeyedJaggedTensor: no keys but ", lengths.numel(), " lengths");
    return stride.value_or(0);
  }
  if (lengths.numel() % k != 0)
    throw_input_error("KeyedJaggedTensor: ", lengths.numel(), " lengths cannot be split evenly over ", k,
         " keys ", join_names(keys), " (expected a multiple of ", k, ")");
  const int64_t b = lengths.numel() / k;
  if (stride && *stride != b)
    throw_input_error("KeyedJaggedTensor: stride ", *stride, " given but ", lengths.numel(), " lengths over ", k,
         " keys make ", b);
  return b;
}

void check_keys_unique(const std::vector<std::string>& keys) {
  std::map<std::string, int> seen;
  for (const auto& k : keys)
    if (seen[k]++) throw_input_error("KeyedJaggedTensor: duplicate key '", k, "' in ", join_names(keys));
}
// What every constructor checks before the lengths or offsets: 1-D values,
// unique keys, weights (when given) matching the values.
void check_parts(const std::vector<std::string>& keys, const torch::Tensor& values,
                 const std::optional<torch::Tensor>& weights) {
  if (!values.defined() || values.dim() != 1)
    throw_input_error("KeyedJaggedTensor: values must be a 1-D tensor, got ",
                      values.defined() ? values.sizes() : c10::IntArrayRef{});
  check_keys_unique(keys);
  detail::check_weights(weights, values, "KeyedJaggedTensor");
}
}  // namespace

void KeyedJaggedTensor::finish() {
  if (!offsets_.defined()) offsets_ = offsets_from_lengths(lengths_);
  const auto k = static_cast<int64_t>(keys_.size());
  length_per_key_.assign(k, 0);
  offset_per_key_.assign(k + 1, 0);
  lengths_offset_per_key_.assign(k + 1, 0);
  if (!variable_stride_per_key()) {
    for (int64_t i = 0; i < k; ++i) lengths_offset_per_key_[i + 1] = (i + 1) * stride_;
    if (k > 0 && stride_ > 0) {
      auto per_key = lengths_.view({k, stride_}).sum(1).to(torch::kCPU, torch::kLong);
      const auto* p = per_key.data_ptr<int64_t>();
      for (int64_t i = 0; i < k; ++i) {
        length_per_key_[i] = p[i];
        offset_per_key_[i + 1] = offset_per_key_[i] + p[i];
      }
    }
    return;
  }
  for (int64_t i = 0; i < k; ++i) {
    const auto& ranks = stride_per_key_per_rank_[i];
    lengths_offset_per_key_[i + 1] = lengths_offset_per_key_[i] + std::accumulate(ranks.begin(), ranks.end(), int64_t{0});
  }
  // The values of key i span offsets[lengths_offset[i]] .. offsets[lengths_offset[i + 1]].
  const auto at = torch::tensor(lengths_offset_per_key_, torch::kLong).to(offsets_.device());
  const auto bounds = offsets_.index_select(0, at).to(torch::kCPU, torch::kLong);
  const auto* p = bounds.data_ptr<int64_t>();
  for (int64_t i = 0; i <= k; ++i) offset_per_key_[i] = p[i];
  for (int64_t i = 0; i < k; ++i) length_per_key_[i] = p[i + 1] - p[i];
}

int64_t KeyedJaggedTensor::stride() const {
  if (variable_stride_per_key())
    throw_input_error("KeyedJaggedTensor with keys ", join_names(keys_),
                      " has a variable batch per feature (stride_per_key ", c10::IntArrayRef(stride_per_key()),
                      "), not one stride; this operation needs one batch size for every key");
  return stride_;
}

std::vector<int64_t> KeyedJaggedTensor::stride_per_key() const {
  std::vector<int64_t> out;
  for (size_t k = 0; k < keys_.size(); ++k) out.push_back(lengths_offset_per_key_[k + 1] - lengths_offset_per_key_[k]);
  return out;
}

std::vector<std::vector<int64_t>> KeyedJaggedTensor::stride_per_key_per_rank() const {
  if (variable_stride_per_key()) return stride_per_key_per_rank_;
  return std::vector<std::vector<int64_t>>(keys_.size(), std::vector<int64_t>{stride_});
}

torch::Tensor KeyedJaggedTensor::lengths_of_key(int64_t k) const {
  return lengths_.slice(0, lengths_offset_per_key_[k], lengths_offset_per_key_[k + 1]);
}

const InverseIndices& KeyedJaggedTensor::inverse_indices() const {
  if (!inverse_indices_)
    throw_input_error("KeyedJaggedTensor with keys ", join_names(keys_), " has no inverse_indices");
  return *inverse_indices_;
}

KeyedJaggedTensor KeyedJaggedTensor::from_lengths_variable_stride(
    std::vector<std::string> keys, torch::Tensor values, torch::Tensor lengths, std::optional<torch::Tensor> weights,
    std::vector<std::vector<int64_t>> stride_per_key_per_rank) {
  check_parts(keys, values, weights);
  detail::check_lengths(lengths, values.size(0), "KeyedJaggedTensor");
  if (stride_per_key_per_rank.size() != keys.size())
    throw_input_error("KeyedJaggedTensor: stride_per_key_per_rank has ", stride_per_key_per_rank.size(),
                      " lists for ", keys.size(), " keys ", join_names(keys), " (expected one list per key)");
  int64_t total = 0, max_stride = 0;
  for (size_t k = 0; k < keys.size(); ++k) {
    if (stride_per_key_per_rank[k].empty())
      throw_input_error("KeyedJaggedTensor: stride_per_key_per_rank of key '", keys[k], "' is empty");
    int64_t s = 0;
    for (int64_t r : stride_per_key_per_rank[k]) {
      if (r < 0) throw_input_error("KeyedJaggedTensor: key '", keys[k], "' has a negative stride ", r);
      s += r;
    }
    total += s;
    max_stride = std::max(max_stride, s);
  }
  if (total != lengths.numel())
    throw_input_error("KeyedJaggedTensor: stride_per_key_per_rank adds up to ", total, " samples but there are ",
                      lengths.numel(), " lengths");
  KeyedJaggedTensor kjt;
  kjt.keys_ = std::move(keys);
  kjt.values_ = std::move(values);
  kjt.lengths_ = std::move(lengths);
  kjt.weights_ = std::move(weights);
  kjt.stride_ = max_stride;  // TorchRec's stride() of such a KJT; recmod's stride() refuses it
  kjt.stride_per_key_per_rank_ = std::move(stride_per_key_per_rank);
  kjt.finish();
  return kjt;
}

KeyedJaggedTensor KeyedJaggedTensor::with_inverse_indices(InverseIndices inverse_indices) const {
  const auto& ix = inverse_indices.indices;
  if (!ix.defined() || ix.dim() != 2 || ix.scalar_type() != torch::kLong)
    throw_input_error("KeyedJaggedTensor: inverse_indices must be an int64 2-D tensor, got ",
                      ix.defined() ? str_cat(ix.scalar_type(), " ", ix.sizes()) : std::string("none"));
  if (ix.size(0) != static_cast<int64_t>(inverse_indices.keys.size()))
    throw_input_error("KeyedJaggedTensor: inverse_indices has ", ix.size(0), " rows for ",
                      inverse_indices.keys.size(), " keys ", join_names(inverse_indices.keys));
  if (ix.numel() > 0 && ix.min().item<int64_t>() < 0)
    throw_input_error("KeyedJaggedTensor: inverse_indices has a negative index ", ix.min().item<int64_t>());
  KeyedJaggedTensor out = *this;
  out.inverse_indices_ = std::move(inverse_indices);
  return out;
}

KeyedJaggedTensor KeyedJaggedTensor::unchecked(std::vector<std::string> keys, torch::Tensor values,
                                               torch::Tensor lengths, std::optional<torch::Tensor> weights,
                                               int64_t stride) {
  KeyedJaggedTensor kjt;
  kjt.keys_ = std::move(keys);
  kjt.values_ = std::move(values);
  kjt.lengths_ = std::move(lengths);
  kjt.weights_ = std::move(weights);
  kjt.stride_ = stride;
  kjt.finish();
  return kjt;
}

KeyedJaggedTensor KeyedJaggedTensor::from_lengths(std::vector<std::string> keys, torch::Tensor values,
                                                  torch::Tensor lengths, std::optional<torch::Tensor> weights,
                                                  std::optional<int64_t> stride) {
  check_parts(keys, values, weights);
  detail::check_lengths(lengths, values.size(0), "KeyedJaggedTensor");
  const int64_t b = infer_stride(keys, lengths, stride);
  return unchecked(std::move(keys), std::move(values), std::move(lengths), std::move(weights), b);
}

KeyedJaggedTensor KeyedJaggedTensor::from_offsets(std::vector<std::string> keys, torch::Tensor values,
                                                  torch::Tensor offsets, std::optional<torch::Tensor> weights,
                                                  std::optional<int64_t> stride) {
  check_parts(keys, values, weights);
  detail::check_offsets(offsets, values.size(0), "KeyedJaggedTensor");
  auto lengths = lengths_from_offsets(offsets);
  const int64_t b = infer_stride(keys, lengths, stride);
  auto kjt = unchecked(std::move(keys), std::move(values), std::move(lengths), std::move(weights), b);
  kjt.offsets_ = std::move(offsets);
  return kjt;
}

KeyedJaggedTensor KeyedJaggedTensor::from_jt_dict(const std::vector<std::pair<std::string, JaggedTensor>>& jts) {
  if (jts.empty()) return empty();
  std::vector<std::string> keys;
  std::vector<torch::Tensor> values, lengths, weights;
  const int64_t b = jts.front().second.num_rows();
  const bool weighted = jts.front().second.has_weights();
  for (const auto& [key, jt] : jts) {
    if (jt.num_rows() != b)
      throw_input_error("KeyedJaggedTensor::from_jt_dict: key '", key, "' has ", jt.num_rows(), " rows, expected ", b,
           " like '", jts.front().first, "'");
    if (jt.has_weights() != weighted)
      throw_input_error("KeyedJaggedTensor::from_jt_dict: key '", key, "' ", jt.has_weights() ? "has" : "lacks",
           " weights unlike '", jts.front().first, "'");
    keys.push_back(key);
    values.push_back(jt.values());
    lengths.push_back(jt.lengths().to(torch::kLong));
    if (weighted) weights.push_back(jt.weights());
  }
  std::optional<torch::Tensor> w;
  if (weighted) w = torch::cat(weights);
  return from_lengths(keys, torch::cat(values), torch::cat(lengths), w, b);
}

KeyedJaggedTensor KeyedJaggedTensor::empty(bool is_weighted, torch::Device device, int64_t stride) {
  auto opts = torch::TensorOptions().device(device);
  std::optional<torch::Tensor> w;
  if (is_weighted) w = torch::empty({0}, opts.dtype(torch::kFloat));
  return unchecked({}, torch::empty({0}, opts.dtype(torch::kLong)), torch::empty({0}, opts.dtype(torch::kLong)),
                   w, stride);
}

KeyedJaggedTensor KeyedJaggedTensor::concat(const std::vector<KeyedJaggedTensor>& kjts) {
  if (kjts.empty()) throw_input_error("KeyedJaggedTensor::concat: needs at least one KeyedJaggedTensor");
  std::vector<std::string> keys;
  std::vector<torch::Tensor> values, lengths, weights;
  const int64_t b = kjts.front().stride();
  const bool weighted = kjts.front().has_weights();
  for (size_t i = 0; i < kjts.size(); ++i) {
    const auto& k = kjts[i];
    (void)k.stride();  // refuses a variable batch per feature
    if (k.stride() != b && !k.keys().empty())
      throw_input_error("KeyedJaggedTensor::concat: input ", i, " has stride ", k.stride(), ", expected ", b);
    if (k.has_weights() != weighted)
      throw_input_error("KeyedJaggedTensor::concat: input ", i, (weighted ? " has no weights" : " has weights"),
           " unlike input 0");
    keys.insert(keys.end(), k.keys().begin(), k.keys().end());
    values.push_back(k.values());
    lengths.push_back(k.lengths());
    if (weighted) weights.push_back(k.weights());
  }
  check_keys_unique(keys);
  std::optional<torch::Tensor> w;
  if (weighted) w = torch::cat(weights);
  return unchecked(std::move(keys), torch::cat(values), torch::cat(lengths), w, b);
}

const torch::Tensor& KeyedJaggedTensor::weights() const {
  if (!weights_) throw_input_error("KeyedJaggedTensor: weights requested but this KeyedJaggedTensor has none");
  return *weights_;
}

std::map<std::string, int64_t> KeyedJaggedTensor::index_per_key() const {
  std::map<std::string, int64_t> out;
  for (size_t i = 0; i < keys_.size(); ++i) out[keys_[i]] = static_cast<int64_t>(i);
  return out;
}

bool KeyedJaggedTensor::has_key(const std::string& key) const {
  return std::find(keys_.begin(), keys_.end(), key) != keys_.end();
}

JaggedTensor KeyedJaggedTensor::operator[](const std::string& key) const {
  auto it = std::find(keys_.begin(), keys_.end(), key);
  if (it == keys_.end()) throw_input_error("KeyedJaggedTensor: no key '", key, "'; keys are ", join_names(keys_));
  const int64_t k = it - keys_.begin();
  const int64_t start = offset_per_key_[k], end = offset_per_key_[k + 1];
  auto lengths = lengths_of_key(k);
  std::optional<torch::Tensor> w;
  if (weights_) w = weights_->slice(0, start, end);
  return JaggedTensor::unchecked(values_.slice(0, start, end), lengths, offsets_from_lengths(lengths), w);
}

std::vector<std::pair<std::string, JaggedTensor>> KeyedJaggedTensor::to_dict() const {
  std::vector<std::pair<std::string, JaggedTensor>> out;
  out.reserve(keys_.size());
  for (const auto& k : keys_) out.emplace_back(k, (*this)[k]);
  return out;
}

std::vector<KeyedJaggedTensor> KeyedJaggedTensor::split(const std::vector<int64_t>& segments) const {
  int64_t total = 0;
  for (auto s : segments) {
    if (s < 0) throw_input_error("KeyedJaggedTensor::split: segment sizes must be >= 0, got ", s);
    total += s;
  }
  if (total != static_cast<int64_t>(keys_.size()))
    throw_input_error("KeyedJaggedTensor::split: segments sum to ", total, " but there are ", keys_.size(), " keys");
  std::vector<KeyedJaggedTensor> out;
  int64_t key_start = 0;
  for (auto s : segments) {
    const int64_t key_end = key_start + s;
    const int64_t v0 = offset_per_key_[key_start], v1 = offset_per_key_[key_end];
    std::optional<torch::Tensor> w;
    if (weights_) w = weights_->slice(0, v0, v1);
    std::vector<int64_t> positions(s);
    std::iota(positions.begin(), positions.end(), key_start);
    out.push_back(with_parts(std::move(positions), std::vector<std::string>(keys_.begin() + key_start, keys_.begin() + key_end),
                             values_.slice(0, v0, v1),
                             lengths_.slice(0, lengths_offset_per_key_[key_start], lengths_offset_per_key_[key_end]), w));
    key_start = key_end;
  }
  return out;
}

KeyedJaggedTensor KeyedJaggedTensor::with_parts(std::vector<int64_t> positions, std::vector<std::string> keys,
                                                torch::Tensor values, torch::Tensor lengths,
                                                std::optional<torch::Tensor> weights) const {
  KeyedJaggedTensor out;
  out.keys_ = std::move(keys);
  out.values_ = std::move(values);
  out.lengths_ = std::move(lengths);
  out.weights_ = std::move(weights);
  out.stride_ = stride_;
  if (variable_stride_per_key()) {
    if (positions.empty()) {
      out.stride_ = 0;  // no keys left: TorchRec's empty KJT
    } else {
      for (int64_t i : positions) out.stride_per_key_per_rank_.push_back(stride_per_key_per_rank_[i]);
    }
  }
  out.inverse_indices_ = inverse_indices_;
  out.finish();
  return out;
}

KeyedJaggedTensor KeyedJaggedTensor::permute(const std::vector<int64_t>& indices) const {
  const auto k = static_cast<int64_t>(keys_.size());
  std::vector<std::string> keys;
  std::vector<torch::Tensor> values, lengths, weights;
  for (auto i : indices) {
    if (i < 0 || i >= k) throw_input_error("KeyedJaggedTensor::permute: index ", i, " out of range for ", k, " keys");
    keys.push_back(keys_[i]);
    values.push_back(values_.slice(0, offset_per_key_[i], offset_per_key_[i + 1]));
    lengths.push_back(lengths_of_key(i));
    if (weights_) weights.push_back(weights_->slice(0, offset_per_key_[i], offset_per_key_[i + 1]));
  }
  if (indices.empty()) {
    auto e = empty(weights_.has_value(), device(), variable_stride_per_key() ? 0 : stride_);
    e.values_ = values_.new_empty({0});
    e.lengths_ = lengths_.new_empty({0});
    e.offsets_ = lengths_.new_zeros({1});
    e.inverse_indices_ = inverse_indices_;
    return e;
  }
  std::optional<torch::Tensor> w;
  if (weights_) w = torch::cat(weights);
  return with_parts(indices, std::move(keys), torch::cat(values), torch::cat(lengths), w);
}

KeyedJaggedTensor KeyedJaggedTensor::select(const std::vector<std::string>& keys) const {
  const auto index = index_per_key();
  std::vector<int64_t> indices;
  indices.reserve(keys.size());
  for (const auto& key : keys) {
    auto it = index.find(key);
    if (it == index.end()) throw_input_error("KeyedJaggedTensor: no key '", key, "'; keys are ", join_names(keys_));
    indices.push_back(it->second);
  }
  return permute(indices);
}

KeyedJaggedTensor KeyedJaggedTensor::to(const torch::Device& device, bool non_blocking) const {
  return map_tensors([&](const torch::Tensor& t) { return t.to(device, non_blocking); });
}

KeyedJaggedTensor KeyedJaggedTensor::map_tensors(const std::function<torch::Tensor(const torch::Tensor&)>& f) const {
  auto g = [&](const torch::Tensor& t) { return t.defined() ? f(t) : t; };
  KeyedJaggedTensor out = *this;
  out.values_ = g(values_);
  out.lengths_ = g(lengths_);
  out.offsets_ = g(offsets_);
  if (weights_) out.weights_ = g(*weights_);
  if (inverse_indices_) out.inverse_indices_->indices = g(inverse_indices_->indices);
  return out;
}

}  // namespace recmod
