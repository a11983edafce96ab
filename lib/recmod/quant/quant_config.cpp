#include "recmod/quant/quant_config.h"

#include <algorithm>
#include <cctype>

#include "recmod/common/errors.h"

namespace recmod::quant {

std::string to_string(SparseType type) {
  switch (type) {
    case SparseType::FP32: return "fp32";
    case SparseType::FP16: return "fp16";
    case SparseType::BF16: return "bf16";
    case SparseType::INT8: return "int8";
    case SparseType::INT4: return "int4";
    case SparseType::INT2: return "int2";
  }
  return "?";
}

SparseType data_type_to_sparse_type(DataType data_type) {
  switch (data_type) {
    case DataType::FP32: return SparseType::FP32;
    case DataType::FP16: return SparseType::FP16;
    case DataType::BF16: return SparseType::BF16;
    case DataType::INT8:
    case DataType::UINT8: return SparseType::INT8;
    case DataType::INT4: return SparseType::INT4;
    case DataType::INT2: return SparseType::INT2;
    default: break;
  }
  throw_input_error("data type ", recmod::to_string(data_type),
                    " has no SparseType (an embedding table is FP32, FP16, BF16, INT8, INT4 or INT2)");
}

DataType quantized_data_type_from_string(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower == "int8") return DataType::INT8;
  if (lower == "int4") return DataType::INT4;
  if (lower == "int2") return DataType::INT2;
  if (lower == "fp16") return DataType::FP16;
  if (lower == "fp32") return DataType::FP32;
  throw_input_error("unknown table data type '", name, "' (valid: int8, int4, int2, fp16, fp32)");
}

DataType QuantConfig::data_type_of(const std::string& name) const {
  auto it = per_table_weight_dtype.find(name);
  const DataType type = dtype_to_data_type(it != per_table_weight_dtype.end() ? it->second : weight);
  return type == DataType::UINT8 ? DataType::INT8 : type;
}

void QuantConfig::validate() const {
  if (activation != torch::kFloat)
    throw_input_error("QuantConfig: activation must be float32 (the pooled output recmod computes), got ", activation);
  auto check = [](torch::Dtype dtype, const std::string& what) {
    if (dtype != torch::kQInt8 && dtype != torch::kQUInt8 && dtype != torch::kQUInt4x2 && dtype != torch::kQUInt2x4 && dtype != torch::kHalf &&
        dtype != torch::kFloat)
      throw_input_error("QuantConfig: ", what, " weight dtype ", dtype,
                        " is not one of qint8 / quint8 (INT8), quint4x2 (INT4), quint2x4 (INT2), float16, float32");
  };
  check(weight, "the");
  for (const auto& [table, dtype] : per_table_weight_dtype) check(dtype, "table '" + table + "'s");
}

}  // namespace recmod::quant
