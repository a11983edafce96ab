#pragma once
// Quantized models for inference: a trained model's EmbeddingBagCollection
// nodes swapped for quantized ones (recmod quantize), and quantized
// checkpoints opened by the commands that only run forward (recmod eval).
#include <string>
#include <vector>

#include "recmod/common/state_dict.h"
#include "recmod/config/graph.h"
#include "recmod/quant/quant_config.h"

namespace recmod::train {

/// One table of `recmod quantize`'s report.
struct QuantizedTableReport {
  std::string node;
  std::string table;
  DataType type = DataType::FP32;
  int64_t num_embeddings = 0;
  int64_t embedding_dim = 0;
  int64_t bytes_before = 0;  // the float table's bytes
  int64_t bytes_after = 0;   // the quantized checkpoint's bytes of the table (codes + scale + bias)
  double mean_abs_error = 0;  // over all elements: |w - dequantized w|
  double max_abs_error = 0;
};

/// Swaps every EmbeddingBagCollection, EmbeddingCollection,
/// FeatureProcessedEmbeddingBagCollection, ManagedCollisionEmbeddingBagCollection
/// and ManagedCollisionEmbeddingCollection node of `model` (not sharded
/// ones) for a quantized one (quant::*Impl::from_float with `config`; the
/// FP / MC ones keep the float node's processors / MCC), keeping the node's
/// name, place and output. Returns one report per table, in node then table
/// order. InputError for a per-table dtype naming a table no collection
/// has, or an invalid config.
std::vector<QuantizedTableReport> quantize_model(config::ModelGraph& model, const quant::QuantConfig& config);

/// The config's own quantization: every plain EBC / EC node with a table
/// whose data_type is INT8 / INT4 / INT2 becomes a quantized collection,
/// each table of it stored as its data_type says (FP32 and BF16 tables as
/// FP32, FP16 as FP16). What `recmod eval` and `profile --inference` do
/// with a float model; nodes without int tables are left as they are.
/// Tables must be allocated (a loaded or freshly built model).
std::vector<QuantizedTableReport> quantize_as_configured(config::ModelGraph& model);

/// A QuantConfig giving each table declared INT8 / INT4 / INT2 in the
/// config that type, and the others `fallback` (what `recmod quantize`
/// without --dtype uses).
quant::QuantConfig configured_quant_config(const config::ModelGraph& model, torch::Dtype fallback);

/// Whether a checkpoint holds quantized tables (a key ending in
/// ".weight_qscale", or a uint8 / float16 embedding_bags weight).
bool has_quantized_tables(const StateDict& state);

/// Prepares `model` (built from its config, tables possibly deferred) for a
/// quantized checkpoint: every EmbeddingBagCollection / EmbeddingCollection
/// node (plain, feature-processed or managed-collision; the latter two with
/// TorchRec's quantized keys <node>.embedding_bags.* / <node>.embeddings.*)
/// whose tables the checkpoint stores quantized (types read from the
/// keys: quant::data_type_of_checkpoint) becomes a quantized collection of
/// those types. CheckpointError naming `origin`, the node and the table when
/// a table's codes width or scale/bias dtype fits no type of its dimension,
/// or when the config declares an int data_type the checkpoint's rows are not.
void use_quantized_tables(config::ModelGraph& model, const StateDict& state, const std::string& origin);

/// Loads a checkpoint into a model, node by node: quantized collections
/// through load_quantized_state_dict (table-named errors), the rest strictly
/// (recmod::load_state_dict). CheckpointError for keys of no node. Takes
/// the checkpoint by value: moved in, each quantized table's tensors are
/// released as soon as they are copied (peak memory: the model plus the
/// rest of the checkpoint, not twice the tables).
void load_model_state(config::ModelGraph& model, StateDict state, const std::string& origin);

}  // namespace recmod::train
