#pragma once
// The quantized EmbeddingBagCollection, as TorchRec's
// torchrec.quant.embedding_modules.EmbeddingBagCollection: inference only,
// tables stored as INT8 / INT4 / INT2 rows with a per-row scale and bias
// (rowwise_quantization.h), or as FP16 / FP32 rows.
#include <torch/nn/module.h>
#include <torch/nn/modules/container/moduledict.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

#include "recmod/common/state_dict.h"
#include "recmod/modules/embedding_configs.h"
#include "recmod/modules/embedding_modules.h"
#include "recmod/quant/quant_config.h"
#include "recmod/quant/rowwise_quantization.h"
#include "recmod/sparse/keyed_jagged_tensor.h"
#include "recmod/sparse/keyed_tensor.h"

namespace recmod::quant {

/// One table of a quantized collection as it sits in memory: a row-wise
/// quantized table is one block per row [codes | pad | scale | bias] (a
/// lookup touches one row; the state_dict's weight / weight_qscale /
/// weight_qbias are views into it), an FP16 / FP32 table its (N, D) rows.
struct QuantizedTable {
  DataType type = DataType::FP32;
  int64_t dim = 0;
  torch::Tensor storage;  // (N, row_bytes) uint8, or (N, D) float for FP16/FP32
  int64_t row_bytes = 0;  // bytes per row of storage
  int64_t code_bytes = 0;
  int64_t scale_offset = 0;  // byte offset of the scale in a row

  /// Allocates a table of `config`'s type and shape and registers its
  /// buffers (weight, and weight_qscale / weight_qbias when row-wise
  /// quantized) on `holder`; codes zero and scales one, or unwritten.
  static QuantizedTable allocate(const BaseEmbeddingConfig& config, bool uninitialized, torch::nn::Module& holder);
  /// Writes `weight` (N, D) float32 / float16 / bfloat16, quantized or
  /// converted to this table's type (the torch ops' bytes), in row chunks.
  void fill_from_float(const torch::Tensor& weight);
  /// The rows of a row-wise quantized table.
  QuantizedRows rows() const;
  /// (N, D) float32.
  torch::Tensor dequantized() const;
};

/// Checks the keys `prefix`weight (+ scale/bias) of `state` against a table
/// (CheckpointError prefixed by `what`: codes width, scale/bias dtype and
/// shape, a scale block where a float table is expected).
void check_quantized_table_state(const QuantizedTable& table, const BaseEmbeddingConfig& config,
                                 const StateDict& state, const std::string& prefix, const std::string& what);
/// Copies `state` into `module`'s buffers, every key checked for shape,
/// dtype and finiteness, each source released once copied (INT8 scale/bias
/// given as float16 are widened). CheckpointError naming `origin`.
void load_quantized_buffers(torch::nn::Module& module, StateDict state, const std::string& origin);

struct EmbeddingBagCollectionOptions {
  /* implicit */ EmbeddingBagCollectionOptions(std::vector<EmbeddingBagConfig> tables)
      : tables_(std::move(tables)) {}
  /// Each table's data_type says its storage: INT8 / UINT8 (as INT8), INT4,
  /// INT2, FP16 or FP32.
  TORCH_ARG(std::vector<EmbeddingBagConfig>, tables);
  /// Use the input KJT's weights as per-sample weights.
  TORCH_ARG(bool, is_weighted) = false;
  /// The pooled output's dtype (TorchRec's output_dtype); float32 only.
  TORCH_ARG(torch::Dtype, output_dtype) = torch::kFloat;
  /// Allocate the tables without writing them (a checkpoint is loaded next):
  /// their pages are only touched as each table is copied in.
  TORCH_ARG(bool, uninitialized) = false;
};

/// Pooled embeddings of quantized tables: KeyedJaggedTensor in, KeyedTensor
/// out, with the fp32 EmbeddingBagCollection's semantics and output order
/// (table order, then feature order; "feature@table" for shared features):
///   out[b, f] = pool_{i in bag(f, b)} w_i * (s_r * q_r + c_r),  r = id_i,
/// with q_r the row's codes, s_r / c_r its scale and bias, fp32 accumulation
/// in the torch ops' order (quantized_embedding_bag). values (B, sum D_k)
/// float32. (TorchRec groups tables by pooling type in its output; recmod
/// keeps the float module's order so the quantized module is a drop-in.)
///
/// One kernel pools every table: parallel over samples, each output row
/// written by one thread. CPU only; no autograd: forward in grad mode on a
/// module in training mode throws InputError (a quantized table cannot be
/// trained).
///
/// state_dict (TorchRec's keys with quant_state_dict_split_scale_bias):
///   embedding_bags.<t>.weight         uint8 (N, ceil(D * bits / 8)): codes
///   embedding_bags.<t>.weight_qscale  (N, 1) float32 (INT8) / float16 (INT4, INT2)
///   embedding_bags.<t>.weight_qbias   (N, 1) same dtype
/// and for FP16 / FP32 tables only embedding_bags.<t>.weight (N, D) in that
/// dtype. Internally a table's row is one block [codes | pad | scale | bias]
/// (a lookup touches one row); the three keys are views into it.
/// Implements recmod::EmbeddingBagCollectionInterface.
class EmbeddingBagCollectionImpl : public recmod::EmbeddingBagCollectionInterface {
 public:
  /// Tables allocated, codes zero and scales one (load or from_float fills
  /// them), or unwritten with options.uninitialized.
  explicit EmbeddingBagCollectionImpl(EmbeddingBagCollectionOptions options);

  /// TorchRec's from_float: quantizes an fp32 EmbeddingBagCollection, each
  /// table to config.data_type_of(name) (byte for byte the torch op's
  /// rows). Throws InputError for an invalid config or a sharded/deferred table.
  static std::shared_ptr<EmbeddingBagCollectionImpl> from_float(const recmod::EmbeddingBagCollectionImpl& module,
                                                                const QuantConfig& config);

  KeyedTensor forward(const KeyedJaggedTensor& features) override;

  const std::vector<EmbeddingBagConfig>& embedding_bag_configs() const override { return options_.tables(); }
  bool is_weighted() const override { return options_.is_weighted(); }
  torch::Dtype output_dtype() const { return options_.output_dtype(); }
  const std::vector<std::string>& embedding_names() const { return embedding_names_; }
  const std::vector<int64_t>& length_per_embedding() const { return length_per_embedding_; }
  int64_t output_dim() const;

  /// The rows of a row-wise quantized table (INT8 / INT4 / INT2) by index.
  QuantizedRows rows(size_t table) const;
  const QuantizedTable& table(size_t index) const { return tables_.at(index); }
  /// Table `table`'s rows dequantized (or converted) to float32 (N, D).
  torch::Tensor dequantized_weight(size_t table) const;
  /// Bytes a table occupies in memory (codes, scale and bias; row padding included).
  int64_t table_bytes(size_t table) const;

  /// Checks a state dict (keys relative to this module) against every
  /// table's type and shape, then loads it. CheckpointError naming the table
  /// and `origin` for a missing key, a codes width that is not this table's
  /// (e.g. "INT4 rows of dimension 16 are 8 bytes wide"), a scale/bias block
  /// of the wrong shape or dtype, or unexpected keys. INT8 scale and bias
  /// may come as float16 (FBGEMM's TBE, TorchRec's own INT8) and are widened.
  /// Takes the tensors by value: moved in, each is released once copied.
  void load_quantized_state_dict(StateDict state, const std::string& origin);

 private:
  EmbeddingBagCollectionOptions options_;
  torch::nn::ModuleDict embedding_bags_{nullptr};
  std::vector<QuantizedTable> tables_;
  std::vector<std::string> embedding_names_;
  std::vector<int64_t> length_per_embedding_;
};
TORCH_MODULE(EmbeddingBagCollection);

struct EmbeddingCollectionOptions {
  /* implicit */ EmbeddingCollectionOptions(std::vector<EmbeddingConfig> tables) : tables_(std::move(tables)) {}
  /// Each table's data_type: INT8 / UINT8 (as INT8), INT4, INT2, FP16 or FP32.
  TORCH_ARG(std::vector<EmbeddingConfig>, tables);
  /// Put each looked-up id in the output JaggedTensor's weights.
  TORCH_ARG(bool, need_indices) = false;
  /// Allocate the tables without writing them (a checkpoint is loaded next).
  TORCH_ARG(bool, uninitialized) = false;
};

/// The quantized EmbeddingCollection, as TorchRec's
/// torchrec.quant.embedding_modules.EmbeddingCollection: sequence
/// embeddings of quantized tables, KeyedJaggedTensor in, Dict[str,
/// JaggedTensor] out with the float EmbeddingCollection's names and order;
/// values[i] = s_r * q_r + c_r for r = id_i, (n_f, D) float32 (the rows
/// dequantized as torch's embedding_bag ops do: one fma per element). All
/// tables share one embedding_dim. CPU, inference only (forward in grad
/// mode on a module in training mode throws InputError).
///
/// state_dict: embeddings.<t>.weight, embeddings.<t>.weight_qscale,
/// embeddings.<t>.weight_qbias, laid out as the quantized
/// EmbeddingBagCollection's. Implements recmod::EmbeddingCollectionInterface.
class EmbeddingCollectionImpl : public recmod::EmbeddingCollectionInterface {
 public:
  explicit EmbeddingCollectionImpl(EmbeddingCollectionOptions options);
  /// Quantizes a float EmbeddingCollection, each table to config.data_type_of(name).
  static std::shared_ptr<EmbeddingCollectionImpl> from_float(const recmod::EmbeddingCollectionImpl& module,
                                                             const QuantConfig& config);

  JaggedTensorDict forward(const KeyedJaggedTensor& features) override;

  const std::vector<EmbeddingConfig>& embedding_configs() const override { return options_.tables(); }
  bool need_indices() const override { return options_.need_indices(); }
  int64_t embedding_dim() const override { return options_.tables().front().embedding_dim; }
  const std::vector<std::vector<std::string>>& embedding_names_by_table() const override {
    return embedding_names_by_table_;
  }
  std::vector<std::string> embedding_names() const;
  const QuantizedTable& table(size_t index) const { return tables_.at(index); }

  /// As the quantized EmbeddingBagCollection's (keys embeddings.<t>.*).
  void load_quantized_state_dict(StateDict state, const std::string& origin);

 private:
  EmbeddingCollectionOptions options_;
  torch::nn::ModuleDict embeddings_{nullptr};
  std::vector<QuantizedTable> tables_;
  std::vector<std::vector<std::string>> embedding_names_by_table_;
};
TORCH_MODULE(EmbeddingCollection);

/// TorchRec's quantized state_dict key suffixes.
inline const char* const kQScaleSuffix = "weight_qscale";
inline const char* const kQBiasSuffix = "weight_qbias";

/// The data type of a table of dimension `dim` as a checkpoint stores it:
/// codes width and scale/bias dtype (INT8: width D, float32 or float16
/// scale; INT4: ceil(D/2), INT2: ceil(D/4), float16). `what` names the
/// table in the CheckpointError thrown when nothing fits. Widths that two
/// types share (D <= 2) resolve to the wider type; `recmod quantize` does
/// not write such tables narrower than they can be told apart
/// (check_distinguishable).
DataType data_type_of_checkpoint(int64_t dim, const torch::Tensor& weight, const torch::Tensor& qscale,
                                 const std::string& what);
/// Throws InputError when a table of dimension `dim` stored as `type` would
/// be read back as another type (INT4 at D = 1, INT2 at D <= 2).
void check_distinguishable(DataType type, int64_t dim, const std::string& table);

}  // namespace recmod::quant
