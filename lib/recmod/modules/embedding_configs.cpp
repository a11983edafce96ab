#include "recmod/modules/embedding_configs.h"

#include <torch/torch.h>

#include <cmath>

#include "recmod/common/errors.h"

namespace recmod {

namespace {
const std::vector<std::pair<PoolingType, std::string>> kPoolingNames = {
    {PoolingType::SUM, "SUM"}, {PoolingType::MEAN, "MEAN"}, {PoolingType::NONE, "NONE"}};

const std::vector<std::pair<DataType, std::string>> kDataTypeNames = {
    {DataType::FP32, "FP32"}, {DataType::FP16, "FP16"},   {DataType::BF16, "BF16"},
    {DataType::INT64, "INT64"}, {DataType::INT32, "INT32"}, {DataType::INT8, "INT8"},
    {DataType::UINT8, "UINT8"}, {DataType::INT4, "INT4"},   {DataType::INT2, "INT2"}};

template <typename Enum>
std::string name_of(const std::vector<std::pair<Enum, std::string>>& table, Enum value) {
  for (const auto& [v, n] : table)
    if (v == value) return n;
  return "?";
}

template <typename Enum>
Enum parse(const std::vector<std::pair<Enum, std::string>>& table, const std::string& name, const char* what) {
  std::vector<std::string> valid;
  for (const auto& [v, n] : table) {
    if (n == name) return v;
    valid.push_back(n);
  }
  throw_input_error("unknown ", what, " '", name, "'; valid: ", join_names(valid));
}
}  // namespace

std::string to_string(PoolingType pooling) { return name_of(kPoolingNames, pooling); }

PoolingType pooling_type_from_string(const std::string& name) {
  return parse(kPoolingNames, name, "pooling type");
}

std::string pooling_type_to_str(PoolingType pooling) {
  switch (pooling) {
    case PoolingType::SUM:
      return "sum";
    case PoolingType::MEAN:
      return "mean";
    case PoolingType::NONE:
      break;
  }
  throw_input_error("Unsupported pooling type ", to_string(pooling));
}

PoolingMode pooling_type_to_pooling_mode(PoolingType pooling) {
  switch (pooling) {
    case PoolingType::SUM:
      return PoolingMode::SUM;
    case PoolingType::MEAN:
      return PoolingMode::MEAN;
    case PoolingType::NONE:
      break;
  }
  return PoolingMode::NONE;
}

int64_t pooling_type_to_embedding_bag_mode(PoolingType pooling) {
  // torch::embedding_bag's modes: 0 sum, 1 mean, 2 max.
  return pooling_type_to_str(pooling) == "sum" ? 0 : 1;
}

std::string to_string(DataType data_type) { return name_of(kDataTypeNames, data_type); }

DataType data_type_from_string(const std::string& name) { return parse(kDataTypeNames, name, "data type"); }

torch::Dtype data_type_to_dtype(DataType data_type) {
  switch (data_type) {
    case DataType::FP32:
      return torch::kFloat32;
    case DataType::FP16:
      return torch::kFloat16;
    case DataType::BF16:
      return torch::kBFloat16;
    case DataType::INT64:
      return torch::kInt64;
    case DataType::INT32:
      return torch::kInt32;
    case DataType::INT8:
      return torch::kInt8;
    case DataType::UINT8:
      return torch::kUInt8;
    case DataType::INT4:
      return torch::kQUInt4x2;
    case DataType::INT2:
      return torch::kQUInt2x4;
  }
  throw_input_error("unknown data type");
}

DataType dtype_to_data_type(torch::Dtype dtype) {
  switch (dtype) {
    case torch::kFloat32:
      return DataType::FP32;
    case torch::kFloat16:
      return DataType::FP16;
    case torch::kBFloat16:
      return DataType::BF16;
    case torch::kInt64:
      return DataType::INT64;
    case torch::kInt32:
      return DataType::INT32;
    // TorchRec: {quint8, qint8, int8} -> INT8; only uint8 is UINT8.
    case torch::kInt8:
    case torch::kQInt8:
    case torch::kQUInt8:
      return DataType::INT8;
    case torch::kUInt8:
      return DataType::UINT8;
    case torch::kQUInt4x2:
      return DataType::INT4;
    case torch::kQUInt2x4:
      return DataType::INT2;
    default:
      break;
  }
  throw_input_error("Data type ", dtype, " has no DataType counterpart");
}

int64_t data_type_num_bits(DataType data_type) {
  switch (data_type) {
    case DataType::FP32:
    case DataType::INT32:
      return 32;
    case DataType::INT64:
      return 64;
    case DataType::FP16:
    case DataType::BF16:
      return 16;
    case DataType::INT8:
    case DataType::UINT8:
      return 8;
    case DataType::INT4:
      return 4;
    case DataType::INT2:
      return 2;
  }
  return 0;
}

torch::Dtype weight_storage_dtype(DataType data_type) {
  switch (data_type) {
    case DataType::FP32:
    case DataType::INT8:
    case DataType::UINT8:
    case DataType::INT4:
    case DataType::INT2:
      return torch::kFloat32;  // trained in float32, quantized for inference
    case DataType::BF16:
      return torch::kBFloat16;
    default:
      return torch::kFloat16;
  }
}

double BaseEmbeddingConfig::get_weight_init_max() const {
  return weight_init_max ? *weight_init_max : std::sqrt(1.0 / static_cast<double>(num_embeddings));
}

double BaseEmbeddingConfig::get_weight_init_min() const {
  return weight_init_min ? *weight_init_min : -std::sqrt(1.0 / static_cast<double>(num_embeddings));
}

void BaseEmbeddingConfig::init_weight(torch::Tensor& weight) const {
  torch::NoGradGuard no_grad;
  if (init_fn) {
    init_fn(weight);
  } else {
    // torch::nn::init::uniform_ is Tensor::uniform_ compiled inside libtorch:
    // calling Tensor::uniform_ here builds its default optional<Generator>
    // argument in this file, where GCC's ASan build warns about it
    // (-Wmaybe-uninitialized, a false positive).
    torch::nn::init::uniform_(weight, get_weight_init_min(), get_weight_init_max());
  }
}

void BaseEmbeddingConfig::validate(const std::string& what) const {
  if (name.empty()) throw_input_error(what, ": a table needs a non-empty name");
  if (name.find('.') != std::string::npos)
    throw_input_error(what, ": table name '", name, "' must not contain '.' (it is part of state_dict keys)");
  if (num_embeddings <= 0)
    throw_input_error(what, ": table '", name, "' needs num_embeddings > 0, got ", num_embeddings);
  if (embedding_dim <= 0)
    throw_input_error(what, ": table '", name, "' needs embedding_dim > 0, got ", embedding_dim);
}

}  // namespace recmod
