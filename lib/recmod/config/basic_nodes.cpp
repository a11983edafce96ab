#include "recmod/config/basic_nodes.h"

#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/modules/interaction.h"
#include "recmod/modules/onednn_linear.h"

namespace recmod::config {


BuiltNode build_concat(const NodeSpec& spec, const std::vector<Port>& inputs) {
  int64_t width = 0;
  for (const auto& in : inputs) width += expect_dense_input(spec, in, "Concat");
  BuiltNode node;
  node.shape = ValueShape::dense(width);
  node.forward = [](const std::vector<Value>& values) {
    std::vector<torch::Tensor> parts;
    for (const auto& v : values) parts.push_back(v.as_dense());
    return Value::of_dense(parts.size() == 1 ? parts[0] : torch::cat(parts, 1));
  };
  node.summary = str_cat(inputs.size(), " inputs");
  return node;
}

BuiltNode build_dot_interaction(const NodeSpec& spec, const std::vector<Port>& inputs) {
  if (inputs.size() < 2)
    fail_at_inputs(spec, "DotInteraction takes [dense, embeddings...]: a dense (B, D) input, then pooled embeddings");
  const int64_t dim = expect_dense_input(spec, inputs[0], "DotInteraction");
  int64_t num_sparse = 0;
  for (size_t i = 1; i < inputs.size(); ++i) {
    const auto& in = inputs[i];
    if (in.shape.kind != ValueKind::Pooled)
      fail_at_inputs(spec, str_cat("DotInteraction expects pooled embeddings after the dense input, but '", in.name,
                                   "' gives ", in.shape.kind_name()));
    for (size_t k = 0; k < in.shape.keys.size(); ++k) {
      if (in.shape.dims[k] != dim)
        fail_at_inputs(spec, str_cat("shape mismatch: DotInteraction needs every embedding dim to equal the dense width ",
                                     dim, " (from '", inputs[0].name, "'), but '", in.name, "' key '", in.shape.keys[k],
                                     "' has dim ", in.shape.dims[k]));
    }
    num_sparse += static_cast<int64_t>(in.shape.keys.size());
  }
  BuiltNode node;
  node.shape = ValueShape::dense(dim + num_sparse * (num_sparse + 1) / 2);
  node.forward = [num_sparse](const std::vector<Value>& values) {
    std::vector<torch::Tensor> sparse;
    for (size_t i = 1; i < values.size(); ++i) sparse.push_back(values[i].as_dense());
    return Value::of_dense(recmod::dot_interaction(values[0].as_dense(), torch::cat(sparse, 1), num_sparse));
  };
  node.summary = str_cat("D=", dim, ", F=", num_sparse);
  return node;
}

BuiltNode build_sequence_pool(const NodeSpec& spec, const std::vector<Port>& inputs) {
  expect_num_inputs(spec, inputs, 1);
  const auto& in = inputs[0];
  if (in.shape.kind != ValueKind::Sequence)
    fail_at_inputs(spec, str_cat("SequencePool expects sequence embeddings (an EmbeddingCollection), but '", in.name,
                                 "' gives ", in.shape.kind_name()));
  std::string mode = spec.yaml.has("mode") ? spec.yaml["mode"].one_of({"sum", "mean"}) : "sum";
  BuiltNode node;
  node.shape = ValueShape::pooled(in.shape.keys, in.shape.dims);
  node.forward = [mode](const std::vector<Value>& values) {
    std::vector<std::string> keys;
    std::vector<torch::Tensor> pooled;
    for (const auto& [key, jt] : values[0].sequence) {
      const auto& emb = jt.values();  // (total ids, D)
      auto lengths = jt.lengths().to(torch::kLong);
      auto segment = torch::repeat_interleave(torch::arange(lengths.size(0), lengths.options()), lengths);
      auto sum = torch::zeros({lengths.size(0), emb.size(1)}, emb.options()).index_add(0, segment, emb);
      if (mode == "mean") sum = sum / lengths.clamp_min(1).unsqueeze(1).to(emb.scalar_type());
      keys.push_back(key);
      pooled.push_back(sum);
    }
    return Value::of_pooled(KeyedTensor::from_tensor_list(keys, pooled));
  };
  node.summary = "mode=" + mode;
  return node;
}

BuiltNode build_linear(const NodeSpec& spec, const std::vector<Port>& inputs) {
  expect_num_inputs(spec, inputs, 1);
  const int64_t in = expect_dense_input(spec, inputs[0], "Linear");
  const int64_t out = spec.yaml.positive_int("out_features");
  torch::nn::Linear linear(torch::nn::LinearOptions(in, out).bias(spec.yaml.get_bool("bias", true)));
  BuiltNode node;
  node.module = linear.ptr();
  node.shape = ValueShape::dense(out);
  node.forward = [linear](const std::vector<Value>& values) mutable {
    return Value::of_dense(linear_any(values[0].as_dense(), linear->weight, linear->bias));
  };
  node.summary = str_cat(in, " -> ", out);
  return node;
}

}  // namespace recmod::config
