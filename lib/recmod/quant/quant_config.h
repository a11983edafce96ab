#pragma once
// TorchRec's torchrec.quant.embedding_modules.QuantConfig (activation /
// weight / per-table weight dtype), FBGEMM's SparseType and TorchRec's
// data_type_to_sparse_type.
#include <torch/types.h>

#include <map>
#include <string>
#include <vector>

#include "recmod/modules/embedding_configs.h"

namespace recmod::quant {

/// fbgemm_gpu's SparseType: the storage type an inference kernel reads.
enum class SparseType { FP32, FP16, BF16, INT8, INT4, INT2 };

/// "fp32", "fp16", "bf16", "int8", "int4", "int2" (SparseType.value).
std::string to_string(SparseType type);

/// TorchRec's data_type_to_sparse_type; throws InputError for INT64 /
/// INT32 / UINT8 ("data type INT64 has no SparseType ...").
SparseType data_type_to_sparse_type(DataType data_type);

/// The DataType of a user's spelling: int8 | int4 | int2 | fp16 | fp32
/// (either case). Throws InputError listing them.
DataType quantized_data_type_from_string(const std::string& name);

/// What to quantize to, as TorchRec's QuantConfig: activation (the pooled
/// output's dtype; float32 is the only one recmod computes), weight (the
/// tables' default storage dtype: torch::kQInt8 or kQUInt8 = INT8,
/// kQUInt4x2 = INT4, kQUInt2x4 = INT2, kHalf = FP16, kFloat = FP32, as
/// TorchRec's dtype_to_data_type, whose UINT8 is INT8 here as in its
/// data_type_to_sparse_type) and per-table overrides by table name.
struct QuantConfig {
  torch::Dtype activation = torch::kFloat;
  torch::Dtype weight = torch::kQInt8;
  std::map<std::string, torch::Dtype> per_table_weight_dtype;

  /// The DataType of table `name` (its override, else `weight`).
  DataType data_type_of(const std::string& name) const;
  /// Throws InputError unless activation is float32 and every weight dtype
  /// is one of those above.
  void validate() const;
};

/// Sets each table's data_type from `config` (TorchRec's _update_embedding_configs).
template <typename Config>
void update_embedding_configs(std::vector<Config>& tables, const QuantConfig& config) {
  for (auto& t : tables) t.data_type = config.data_type_of(t.name);
}

}  // namespace recmod::quant
