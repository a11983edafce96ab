#pragma once
// Builders of the dense node types: MLP, Perceptron, SwishLayerNorm, the four
// cross nets, DeepFM and FactorizationMachine. Input sizes come from the inputs' shapes.
#include <vector>

#include "recmod/config/node_builder.h"

namespace recmod::config {

BuiltNode build_mlp(const NodeSpec& spec, const std::vector<Port>& inputs);
BuiltNode build_crossnet(const NodeSpec& spec, const std::vector<Port>& inputs);
BuiltNode build_low_rank_crossnet(const NodeSpec& spec, const std::vector<Port>& inputs);
BuiltNode build_vector_crossnet(const NodeSpec& spec, const std::vector<Port>& inputs);
BuiltNode build_low_rank_mixture_crossnet(const NodeSpec& spec, const std::vector<Port>& inputs);
/// Inputs: pooled embeddings; each key's (B, D) block is one (B, 1, D) embedding.
BuiltNode build_deepfm(const NodeSpec& spec, const std::vector<Port>& inputs);
BuiltNode build_factorization_machine(const NodeSpec& spec, const std::vector<Port>& inputs);
/// One Linear + activation (TorchRec's Perceptron): (B, N) -> (B, out_size).
BuiltNode build_perceptron(const NodeSpec& spec, const std::vector<Port>& inputs);
/// x * sigmoid(LayerNorm(x)) over the input's width: (B, N) -> (B, N).
BuiltNode build_swish_layer_norm(const NodeSpec& spec, const std::vector<Port>& inputs);

}  // namespace recmod::config
