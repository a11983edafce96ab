#include "recmod/config/dense_nodes.h"

#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/modules/activation.h"
#include "recmod/modules/crossnet.h"
#include "recmod/modules/deepfm.h"
#include "recmod/modules/mlp.h"

namespace recmod::config {

namespace {

// A (B, N) -> (B, M) module on the node's single dense input.
template <typename Holder>
BuiltNode dense_node(Holder module, int64_t out_width, std::string summary) {
  BuiltNode node;
  node.module = module.ptr();
  node.shape = ValueShape::dense(out_width);
  node.forward = [module](const std::vector<Value>& values) mutable { return Value::of_dense(module->forward(values[0].as_dense())); };
  node.summary = std::move(summary);
  return node;
}

int64_t single_dense_input(const NodeSpec& spec, const std::vector<Port>& inputs) {
  expect_num_inputs(spec, inputs, 1);
  return expect_dense_input(spec, inputs[0], spec.type);
}

std::vector<int64_t> positive_sizes(const ConfigNode& node) {
  auto sizes = node.as_int_list();
  if (sizes.empty()) node.fail("expected at least one layer size");
  for (size_t i = 0; i < sizes.size(); ++i)
    if (sizes[i] <= 0) node.at(i).fail(str_cat("must be > 0, got ", sizes[i]));
  return sizes;
}

// `dropout: p`, p in [0, 1) (0 when absent).
double mlp_dropout(const NodeSpec& spec) {
  if (!spec.yaml.has("dropout")) return 0.0;
  const ConfigNode node = spec.yaml["dropout"];
  const double p = node.as_double();
  if (!(p >= 0 && p < 1)) node.fail(str_cat("must be in [0, 1), got ", p));
  return p;
}

std::string mlp_activation_name(const NodeSpec& spec) {
  return spec.yaml.has("activation") ? spec.yaml["activation"].one_of({"relu", "sigmoid", "swish_layernorm"}) : "relu";
}

// Pooled inputs as DeepFM / FM take them: one (B, 1, D_k) tensor per key.
std::vector<int64_t> expect_pooled_inputs(const NodeSpec& spec, const std::vector<Port>& inputs) {
  std::vector<int64_t> dims;
  if (inputs.empty()) fail_at_inputs(spec, spec.type + " takes pooled embeddings");
  for (const auto& in : inputs) {
    if (in.shape.kind != ValueKind::Pooled)
      fail_at_inputs(spec, str_cat(spec.type, " expects pooled embeddings (an EmbeddingBagCollection), but '", in.name,
                                   "' gives ", in.shape.kind_name()));
    dims.insert(dims.end(), in.shape.dims.begin(), in.shape.dims.end());
  }
  return dims;
}

std::vector<torch::Tensor> embeddings_of(const std::vector<Value>& values) {
  std::vector<torch::Tensor> out;
  for (const auto& v : values)
    for (const auto& [key, block] : v.pooled.to_dict()) out.push_back(block.unsqueeze(1));
  return out;
}

}  // namespace

BuiltNode build_mlp(const NodeSpec& spec, const std::vector<Port>& inputs) {
  const int64_t in = single_dense_input(spec, inputs);
  auto sizes = positive_sizes(spec.yaml["layer_sizes"]);
  auto activation = mlp_activation_name(spec);
  const double dropout = mlp_dropout(spec);
  MLP mlp(MLPOptions(in, sizes)
              .bias(spec.yaml.get_bool("bias", true))
              .activation(mlp_activation(activation))
              .dropout(dropout));
  std::string summary = str_cat(in);
  for (auto s : sizes) summary += str_cat(" -> ", s);
  if (dropout > 0) summary += str_cat(", dropout ", dropout);
  return dense_node(mlp, sizes.back(), summary + ", " + activation);
}

BuiltNode build_crossnet(const NodeSpec& spec, const std::vector<Port>& inputs) {
  const int64_t n = single_dense_input(spec, inputs);
  const int64_t layers = spec.yaml.positive_int("num_layers");
  return dense_node(CrossNet(CrossNetOptions(n, layers)), n, str_cat("N=", n, ", ", layers, " layers"));
}

BuiltNode build_low_rank_crossnet(const NodeSpec& spec, const std::vector<Port>& inputs) {
  const int64_t n = single_dense_input(spec, inputs);
  const int64_t layers = spec.yaml.positive_int("num_layers");
  const int64_t rank = spec.yaml.positive_int("low_rank", 1);
  return dense_node(LowRankCrossNet(LowRankCrossNetOptions(n, layers).low_rank(rank)), n,
                    str_cat("N=", n, ", ", layers, " layers, rank ", rank));
}

BuiltNode build_vector_crossnet(const NodeSpec& spec, const std::vector<Port>& inputs) {
  const int64_t n = single_dense_input(spec, inputs);
  const int64_t layers = spec.yaml.positive_int("num_layers");
  return dense_node(VectorCrossNet(VectorCrossNetOptions(n, layers)), n, str_cat("N=", n, ", ", layers, " layers"));
}

BuiltNode build_low_rank_mixture_crossnet(const NodeSpec& spec, const std::vector<Port>& inputs) {
  const int64_t n = single_dense_input(spec, inputs);
  const int64_t layers = spec.yaml.positive_int("num_layers");
  const int64_t experts = spec.yaml.positive_int("num_experts", 1);
  const int64_t rank = spec.yaml.positive_int("low_rank", 1);
  auto activation = spec.yaml.has("activation") ? spec.yaml["activation"].one_of({"relu", "sigmoid"}) : "relu";
  LowRankMixtureCrossNet net(
      LowRankMixtureCrossNetOptions(n, layers).num_experts(experts).low_rank(rank).activation(activation_by_name(activation)));
  return dense_node(net, n, str_cat("N=", n, ", ", layers, " layers, ", experts, " experts, rank ", rank));
}

BuiltNode build_deepfm(const NodeSpec& spec, const std::vector<Port>& inputs) {
  auto dims = expect_pooled_inputs(spec, inputs);
  int64_t in = 0;
  for (auto d : dims) in += d;
  auto sizes = positive_sizes(spec.yaml["layer_sizes"]);
  auto activation = mlp_activation_name(spec);
  DeepFM deepfm(MLP(MLPOptions(in, sizes).activation(mlp_activation(activation)).dropout(mlp_dropout(spec))));
  BuiltNode node;
  node.module = deepfm.ptr();
  node.shape = ValueShape::dense(sizes.back());
  node.forward = [deepfm](const std::vector<Value>& values) mutable { return Value::of_dense(deepfm->forward(embeddings_of(values))); };
  node.summary = str_cat(dims.size(), " embeddings, deep ", in, " -> ", sizes.back());
  return node;
}

BuiltNode build_factorization_machine(const NodeSpec& spec, const std::vector<Port>& inputs) {
  auto dims = expect_pooled_inputs(spec, inputs);
  FactorizationMachine fm;
  BuiltNode node;
  node.module = fm.ptr();
  node.shape = ValueShape::dense(1);
  node.forward = [fm](const std::vector<Value>& values) mutable { return Value::of_dense(fm->forward(embeddings_of(values))); };
  node.summary = str_cat(dims.size(), " embeddings");
  return node;
}

}  // namespace recmod::config

namespace recmod::config {

BuiltNode build_perceptron(const NodeSpec& spec, const std::vector<Port>& inputs) {
  const int64_t in = single_dense_input(spec, inputs);
  const int64_t out = spec.yaml.positive_int("out_size");
  const std::string activation = mlp_activation_name(spec);
  // TorchRec's Perceptron takes one activation module or function; a
  // swish_layernorm normalises the layer's own output.
  Perceptron perceptron(PerceptronOptions(in, out)
                            .bias(spec.yaml.get_bool("bias", true))
                            .activation(mlp_activation(activation)(out)));
  return dense_node(perceptron, out, str_cat(in, " -> ", out, ", ", activation));
}

BuiltNode build_swish_layer_norm(const NodeSpec& spec, const std::vector<Port>& inputs) {
  const int64_t n = single_dense_input(spec, inputs);
  return dense_node(SwishLayerNorm(SwishLayerNormOptions(n)), n, str_cat("N=", n));
}

}  // namespace recmod::config
