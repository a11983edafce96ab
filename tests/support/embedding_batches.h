#pragma once
// Tables and batches shared by the embedding-training tests (the fused path
// on the CPU and its CUDA parity test).
#include <torch/torch.h>

#include <optional>
#include <string>
#include <vector>

#include "recmod/modules/embedding_configs.h"
#include "recmod/sparse/keyed_jagged_tensor.h"
#include "recmod/optim/model_optimizer.h"

namespace recmod::test {

/// t_sum (SUM, features a and shared), t_mean (MEAN, feature b; SUM when
/// weighted), t_two (SUM, features c and shared): shared is looked up in two tables.
inline std::vector<EmbeddingBagConfig> three_tables(bool weighted) {
  return {EmbeddingBagConfig(50, 8, "t_sum", {"a", "shared"}, PoolingType::SUM),
          EmbeddingBagConfig(30, 4, "t_mean", {"b"}, weighted ? PoolingType::SUM : PoolingType::MEAN),
          EmbeddingBagConfig(20, 6, "t_two", {"c", "shared"}, PoolingType::SUM)};
}

/// A random batch for three_tables (seeded): B samples, bag lengths 0..5,
/// ids with many duplicates, keys in an order unlike the tables', plus one
/// key no table uses.
inline KeyedJaggedTensor three_table_batch(int64_t b, uint64_t seed, bool weighted,
                                           torch::Dtype id_dtype = torch::kLong) {
  torch::manual_seed(seed);
  const std::vector<std::string> keys = {"shared", "c", "b", "a", "unused"};
  const std::vector<int64_t> rows = {20, 20, 30, 50, 1000};
  torch::Tensor lengths = torch::randint(0, 6, {static_cast<int64_t>(keys.size()) * b}, torch::kLong);
  std::vector<torch::Tensor> ids;
  for (size_t k = 0; k < keys.size(); ++k) {
    const int64_t n = lengths.slice(0, k * b, (k + 1) * b).sum().item<int64_t>();
    ids.push_back(torch::randint(0, rows[k], {n}, torch::kLong));
  }
  torch::Tensor values = torch::cat(ids).to(id_dtype);
  std::optional<torch::Tensor> w;
  if (weighted) w = torch::rand({values.numel()}) + 0.5;
  return KeyedJaggedTensor::from_lengths(keys, values, lengths, w);
}

inline optim::OptimizerOptions optimizer_options(const std::string& type, double lr, double weight_decay = 0.0) {
  optim::OptimizerOptions o;
  o.type(type);
  o.lr(lr);
  o.weight_decay(weight_decay);
  return o;
}

}  // namespace recmod::test
