#include "recmod/modules/utils.h"

#include <torch/torch.h>

#include <map>

#include "recmod/common/errors.h"

namespace recmod {

JaggedTensorDict construct_jagged_tensors(const torch::Tensor& embeddings, const KeyedJaggedTensor& features,
                                          const std::vector<std::string>& embedding_names, bool need_indices) {
  ConstructJaggedTensorsOptions options;
  options.need_indices = need_indices;
  return construct_jagged_tensors(embeddings, features, embedding_names, options);
}

namespace {

// TorchRec's _permute_indices: permuted[i] = keys[permute[i]].
std::vector<int64_t> permuted_keys(const std::string& name, const std::vector<int64_t>& keys,
                                   const std::vector<int64_t>& permute) {
  std::vector<bool> seen(keys.size(), false);
  if (permute.size() != keys.size())
    throw_input_error("construct_jagged_tensors: features_to_permute_indices['", name, "'] has ", permute.size(),
                      " entries for the name's ", keys.size(), " keys");
  std::vector<int64_t> out;
  for (int64_t p : permute) {
    if (p < 0 || p >= static_cast<int64_t>(keys.size()) || seen[static_cast<size_t>(p)])
      throw_input_error("construct_jagged_tensors: features_to_permute_indices['", name,
                        "'] must be a permutation of 0..", keys.size() - 1, ", got ", p, " at ", out.size());
    seen[static_cast<size_t>(p)] = true;
    out.push_back(keys[static_cast<size_t>(p)]);
  }
  return out;
}

}  // namespace

JaggedTensorDict construct_jagged_tensors(const torch::Tensor& embeddings_in, const KeyedJaggedTensor& features_in,
                                          const std::vector<std::string>& embedding_names,
                                          const ConstructJaggedTensorsOptions& options) {
  const KeyedJaggedTensor& features = options.original_features ? *options.original_features : features_in;
  const torch::Tensor embeddings =
      options.reverse_indices ? embeddings_in.index_select(0, options.reverse_indices->to(torch::kLong)) : embeddings_in;
  const auto num_keys = static_cast<int64_t>(features.keys().size());
  if (static_cast<int64_t>(embedding_names.size()) != num_keys)
    throw_input_error("construct_jagged_tensors: ", embedding_names.size(), " embedding names for ", num_keys,
                      " keys ", join_names(features.keys()));
  const auto& lpk = features.length_per_key();
  int64_t total = 0;
  for (int64_t l : lpk) total += l;
  if (embeddings.dim() != 2 || embeddings.size(0) != total)
    throw_input_error("construct_jagged_tensors: expected embeddings of shape (", total, ", D), got ",
                      embeddings.sizes());
  const int64_t b = features.stride();
  const auto rows = embeddings.split_with_sizes(lpk, 0);
  const auto ids = features.values().split_with_sizes(lpk, 0);

  std::vector<std::string> order;
  std::map<std::string, std::vector<int64_t>> keys_of_name;
  for (int64_t k = 0; k < num_keys; ++k) {
    auto& ks = keys_of_name[embedding_names[k]];
    if (ks.empty()) order.push_back(embedding_names[k]);
    ks.push_back(k);
  }
  JaggedTensorDict out;
  for (const auto& name : order) {
    auto ks = keys_of_name[name];
    if (auto p = options.features_to_permute_indices.find(name); p != options.features_to_permute_indices.end())
      ks = permuted_keys(name, ks, p->second);
    const int64_t first = ks.front();
    torch::Tensor lengths = features.lengths().slice(0, first * b, (first + 1) * b);
    torch::Tensor values = rows[first];
    if (ks.size() > 1) {
      std::vector<torch::Tensor> parts;
      for (int64_t k : ks) parts.push_back(rows[k]);
      values = torch::cat(parts, 1);
    }
    std::optional<torch::Tensor> weights;
    if (options.need_indices) weights = ids[first];
    out.emplace_back(name, JaggedTensor::unchecked(values, lengths, offsets_from_lengths(lengths), weights));
  }
  return out;
}

int64_t pooled_embedding_dim(const std::vector<EmbeddingBagConfig>& tables) {
  int64_t d = 0;
  for (const auto& t : tables) d += t.embedding_dim * std::max<int64_t>(1, t.num_features());
  return d;
}

bool check_module_output_dimension(std::vector<torch::nn::AnyModule>& modules, int64_t in_features,
                                   int64_t out_features) {
  for (auto& module : modules) {
    torch::NoGradGuard no_grad;
    const auto params = module.ptr()->parameters();
    const torch::Device device = params.empty() ? torch::Device(torch::kCPU) : params.front().device();
    const auto out = module.forward(torch::zeros({1, in_features}, torch::TensorOptions().device(device)));
    if (out.size(-1) != out_features) return false;
  }
  return true;
}

void throw_output_dimension_mismatch(const std::string& what, int64_t expected, int64_t actual) {
  throw_input_error(what, ": expected output dimension ", expected, ", got ", actual);
}

}  // namespace recmod
