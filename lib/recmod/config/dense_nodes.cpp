#include "recmod/config/dense_nodes.h"

#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/config/yaml_args.h"
#include "recmod/modules/activation.h"
#include "recmod/modules/crossnet.h"
#include "recmod/modules/deepfm.h"
#include "recmod/modules/mlp.h"
#include "recmod/modules/module_args.h"

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
  const YamlArgs args(spec.yaml);
  const MLPOptions options = mlp_options_from(args, in);
  MLP mlp(options);
  std::string summary = str_cat(in);
  for (auto s : options.layer_sizes()) summary += str_cat(" -> ", s);
  if (options.dropout() > 0) summary += str_cat(", dropout ", options.dropout());
  return dense_node(mlp, options.layer_sizes().back(), summary + ", " + mlp_activation_name(args));
}

BuiltNode build_crossnet(const NodeSpec& spec, const std::vector<Port>& inputs) {
  const int64_t n = single_dense_input(spec, inputs);
  const auto options = crossnet_options_from(YamlArgs(spec.yaml), n);
  return dense_node(CrossNet(options), n, str_cat("N=", n, ", ", options.num_layers(), " layers"));
}

BuiltNode build_low_rank_crossnet(const NodeSpec& spec, const std::vector<Port>& inputs) {
  const int64_t n = single_dense_input(spec, inputs);
  const auto options = low_rank_crossnet_options_from(YamlArgs(spec.yaml), n);
  return dense_node(LowRankCrossNet(options), n,
                    str_cat("N=", n, ", ", options.num_layers(), " layers, rank ", options.low_rank()));
}

BuiltNode build_vector_crossnet(const NodeSpec& spec, const std::vector<Port>& inputs) {
  const int64_t n = single_dense_input(spec, inputs);
  const auto options = vector_crossnet_options_from(YamlArgs(spec.yaml), n);
  return dense_node(VectorCrossNet(options), n, str_cat("N=", n, ", ", options.num_layers(), " layers"));
}

BuiltNode build_low_rank_mixture_crossnet(const NodeSpec& spec, const std::vector<Port>& inputs) {
  const int64_t n = single_dense_input(spec, inputs);
  const auto options = low_rank_mixture_crossnet_options_from(YamlArgs(spec.yaml), n);
  return dense_node(LowRankMixtureCrossNet(options), n,
                    str_cat("N=", n, ", ", options.num_layers(), " layers, ", options.num_experts(), " experts, rank ",
                            options.low_rank()));
}

BuiltNode build_deepfm(const NodeSpec& spec, const std::vector<Port>& inputs) {
  auto dims = expect_pooled_inputs(spec, inputs);
  int64_t in = 0;
  for (auto d : dims) in += d;
  // DeepFM's deep part is an MLP over the concatenated embeddings, with
  // MLP's arguments on the node.
  const MLPOptions deep = mlp_options_from(YamlArgs(spec.yaml), in);
  DeepFM deepfm{MLP(deep)};
  BuiltNode node;
  node.module = deepfm.ptr();
  node.shape = ValueShape::dense(deep.layer_sizes().back());
  node.forward = [deepfm](const std::vector<Value>& values) mutable { return Value::of_dense(deepfm->forward(embeddings_of(values))); };
  node.summary = str_cat(dims.size(), " embeddings, deep ", in, " -> ", deep.layer_sizes().back());
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
  const YamlArgs args(spec.yaml);
  const PerceptronOptions options = perceptron_options_from(args, in);
  return dense_node(Perceptron(options), options.out_size(),
                    str_cat(in, " -> ", options.out_size(), ", ", mlp_activation_name(args)));
}

BuiltNode build_swish_layer_norm(const NodeSpec& spec, const std::vector<Port>& inputs) {
  const int64_t n = single_dense_input(spec, inputs);
  return dense_node(SwishLayerNorm(SwishLayerNormOptions(n)), n, str_cat("N=", n));
}

}  // namespace recmod::config
