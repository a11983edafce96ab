#pragma once
// Embedding table configs, as torchrec.modules.embedding_configs (v0.6):
// PoolingType, DataType, BaseEmbeddingConfig and its EmbeddingBagConfig /
// EmbeddingConfig / EmbeddingTableConfig flavours, and the conversions
// between them and torch.
#include <torch/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace recmod {

/// How a bag of embeddings is reduced (NONE: not pooled, EmbeddingCollection).
enum class PoolingType { SUM, MEAN, NONE };

/// Storage type of a table. The float modules store FP32 in float32, FP16 in
/// float16 and BF16 in bfloat16 (FBGEMM's TBE rule; TorchRec's unsharded
/// module would store BF16 as float16); the row-wise quantized types INT8 /
/// INT4 / INT2 are trained in float32 and quantized for inference
/// (recmod::quant). Pooled and sequence outputs are always float32.
enum class DataType { FP32, FP16, BF16, INT64, INT32, INT8, UINT8, INT4, INT2 };

/// fbgemm's PoolingMode, the kernel-level counterpart of PoolingType.
enum class PoolingMode { SUM, MEAN, NONE };

/// "SUM" / "MEAN" / "NONE".
std::string to_string(PoolingType pooling);
/// Inverse of to_string; throws InputError listing the valid names.
PoolingType pooling_type_from_string(const std::string& name);
/// TorchRec's pooling_type_to_str: "sum" / "mean" (torch.nn.EmbeddingBag's
/// mode); throws InputError for NONE ("Unsupported pooling type NONE").
std::string pooling_type_to_str(PoolingType pooling);
PoolingMode pooling_type_to_pooling_mode(PoolingType pooling);
/// The integer mode of torch::embedding_bag (0 sum, 1 mean); throws for NONE.
int64_t pooling_type_to_embedding_bag_mode(PoolingType pooling);

/// "FP32", "FP16", ...
std::string to_string(DataType data_type);
/// Inverse of to_string; throws InputError listing the valid names.
DataType data_type_from_string(const std::string& name);
/// TorchRec's data_type_to_dtype (INT4 -> quint4x2, INT2 -> quint2x4).
torch::Dtype data_type_to_dtype(DataType data_type);
/// TorchRec's dtype_to_data_type; throws InputError for other dtypes.
DataType dtype_to_data_type(torch::Dtype dtype);
/// Bits per element (DATA_TYPE_NUM_BITS).
int64_t data_type_num_bits(DataType data_type);
/// The dtype the float modules store a table's weight in: float32 for FP32
/// and the row-wise quantized types (INT8 / UINT8 / INT4 / INT2: the float
/// model they are quantized from), bfloat16 for BF16, float16 otherwise.
torch::Dtype weight_storage_dtype(DataType data_type);

/// Initialises a weight in place (called under NoGradGuard).
using EmbeddingInitFn = std::function<void(torch::Tensor& weight)>;

/// Fields shared by all table configs (TorchRec's BaseEmbeddingConfig;
/// pruning_indices_remapping is left out: recmod has no pruned tables).
struct BaseEmbeddingConfig {
  BaseEmbeddingConfig() = default;
  BaseEmbeddingConfig(int64_t num_embeddings, int64_t embedding_dim, std::string name,
                      std::vector<std::string> feature_names = {})
      : num_embeddings(num_embeddings),
        embedding_dim(embedding_dim),
        name(std::move(name)),
        feature_names(std::move(feature_names)) {}

  int64_t num_embeddings = 0;
  int64_t embedding_dim = 0;
  std::string name;
  DataType data_type = DataType::FP32;
  /// fp16 / bf16 tables: the optimizer writes updated rows back rounded
  /// stochastically (optim/stochastic_rounding.h) rather than to nearest
  /// (TorchRec/FBGEMM's stochastic_rounding). Only with those data types.
  bool stochastic_rounding = false;
  /// Empty means [name] (the modules fill it in, as TorchRec does).
  std::vector<std::string> feature_names;
  std::optional<double> weight_init_max;  // default  sqrt(1 / num_embeddings)
  std::optional<double> weight_init_min;  // default -sqrt(1 / num_embeddings)
  /// Default: uniform(get_weight_init_min(), get_weight_init_max()).
  EmbeddingInitFn init_fn;
  bool need_pos = false;

  double get_weight_init_max() const;
  double get_weight_init_min() const;
  int64_t num_features() const { return static_cast<int64_t>(feature_names.size()); }
  /// init_fn if set, else the uniform default; under NoGradGuard.
  void init_weight(torch::Tensor& weight) const;
  /// Throws InputError, prefixed by `what`, unless num_embeddings > 0,
  /// embedding_dim > 0 and name is a non-empty string without '.'.
  void validate(const std::string& what) const;
};

/// A table of an EmbeddingBagCollection.
struct EmbeddingBagConfig : BaseEmbeddingConfig {
  EmbeddingBagConfig() = default;
  EmbeddingBagConfig(int64_t num_embeddings, int64_t embedding_dim, std::string name,
                     std::vector<std::string> feature_names = {}, PoolingType pooling = PoolingType::SUM)
      : BaseEmbeddingConfig(num_embeddings, embedding_dim, std::move(name), std::move(feature_names)),
        pooling(pooling) {}
  PoolingType pooling = PoolingType::SUM;
};

/// A table of an EmbeddingCollection (no pooling).
struct EmbeddingConfig : BaseEmbeddingConfig {
  using BaseEmbeddingConfig::BaseEmbeddingConfig;
};

/// TorchRec's EmbeddingTableConfig (used by sharding planners and model
/// descriptions): a table with its pooling and how its features are fed.
struct EmbeddingTableConfig : BaseEmbeddingConfig {
  using BaseEmbeddingConfig::BaseEmbeddingConfig;
  PoolingType pooling = PoolingType::SUM;
  bool is_weighted = false;
  bool has_feature_processor = false;
  std::vector<std::string> embedding_names;
};

}  // namespace recmod
