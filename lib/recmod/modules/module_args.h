#pragma once
// Each module family's options read once from its arguments (TorchRec's
// parameter names), whoever holds them: a model config's YAML node
// (config/*_nodes.cpp) or a golden case's recorded args
// (conformance/cases_*.cpp). Sizes that a config takes from the node's
// inputs (in_size, in_features) are parameters here; a golden case reads them
// from its args and passes them in.
#include <cstdint>

#include "recmod/common/args.h"
#include "recmod/modules/crossnet.h"
#include "recmod/modules/embedding_configs.h"
#include "recmod/modules/mlp.h"

namespace recmod {

/// Table fields every table kind shares: name, num_embeddings, embedding_dim,
/// feature_names (default [name], never empty), weight_init_min/max,
/// data_type (fp32 | fp16 | bf16 | int8 | int4 | int2, either case; the int
/// types only where `allow_quantized`).
void read_table_args(const ModuleArgs& args, BaseEmbeddingConfig& table, bool allow_quantized);
/// `pooling`: sum | mean (| none where `allow_none`), either case; SUM when absent.
PoolingType read_pooling(const ModuleArgs& args, bool allow_none);

/// MLP: layer_sizes (each > 0), bias (true), activation (relu | sigmoid |
/// swish_layernorm; relu), dropout ([0, 1); 0: recmod's, TorchRec has none).
MLPOptions mlp_options_from(const ModuleArgs& args, int64_t in_size);
/// The activation name mlp_options_from reads (for summaries).
std::string mlp_activation_name(const ModuleArgs& args);
/// Perceptron: out_size (> 0), bias (true), activation as MLP's, built for out_size.
PerceptronOptions perceptron_options_from(const ModuleArgs& args, int64_t in_size);

/// The CrossNet family: num_layers (> 0); low_rank (> 0, 1); num_experts (> 0, 1);
/// the mixture's activation (relu | sigmoid; relu).
CrossNetOptions crossnet_options_from(const ModuleArgs& args, int64_t in_features);
LowRankCrossNetOptions low_rank_crossnet_options_from(const ModuleArgs& args, int64_t in_features);
VectorCrossNetOptions vector_crossnet_options_from(const ModuleArgs& args, int64_t in_features);
LowRankMixtureCrossNetOptions low_rank_mixture_crossnet_options_from(const ModuleArgs& args, int64_t in_features);

}  // namespace recmod
