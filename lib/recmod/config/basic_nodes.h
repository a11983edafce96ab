#pragma once
// The graph's own node types (not modules of TorchRec's torchrec.modules):
// Concat, DotInteraction (DLRM's InteractionArch), SequencePool and Linear
// (torch.nn.Linear, e.g. DLRM's final logit layer).
#include <torch/types.h>

#include <vector>

#include "recmod/config/node_builder.h"

namespace recmod::config {

/// Concat: inputs dense or pooled, output (B, sum of widths).
BuiltNode build_concat(const NodeSpec& spec, const std::vector<Port>& inputs);
/// DotInteraction: inputs [dense (B, D), pooled embeddings of dim D...].
BuiltNode build_dot_interaction(const NodeSpec& spec, const std::vector<Port>& inputs);
/// SequencePool: sequence embeddings -> pooled (mode: sum | mean).
BuiltNode build_sequence_pool(const NodeSpec& spec, const std::vector<Port>& inputs);

/// Linear: dense input (B, N) -> (B, out_features); keys weight, bias.
BuiltNode build_linear(const NodeSpec& spec, const std::vector<Port>& inputs);

}  // namespace recmod::config
