// Golden-case builders for the dense module family: activation, mlp,
// crossnet and deepfm modules (args conventions in golden/FORMAT.md).
#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/conformance/json_args.h"
#include "recmod/conformance/registry.h"
#include "recmod/modules/activation.h"
#include "recmod/modules/crossnet.h"
#include "recmod/modules/deepfm.h"
#include "recmod/modules/mlp.h"
#include "recmod/modules/module_args.h"

namespace recmod::conformance {

namespace {

/// The module's args, refusing keys outside TorchRec's signature.
JsonArgs args_of(const std::string& module, const json& args, const std::vector<std::string>& valid) {
  JsonArgs out(args, module);
  out.expect_keys(valid);
  return out;
}

/// TorchRec's `input_dims: Union[int, List[int]]`.
std::vector<int64_t> int_or_list(const JsonArgs& args, const json& raw, const std::string& key) {
  if (raw.contains(key) && raw.at(key).is_number_integer()) return {raw.at(key).get<int64_t>()};
  return args.get_int_list(key);
}

SwishLayerNorm build_swish_layernorm(const json& raw) {
  const JsonArgs args = args_of("SwishLayerNorm", raw, {"input_dims"});
  return SwishLayerNorm(int_or_list(args, raw, "input_dims"));
}

Perceptron build_perceptron(const json& raw) {
  const JsonArgs args = args_of("Perceptron", raw, {"in_size", "out_size", "bias", "activation"});
  return Perceptron(perceptron_options_from(args, args.get_int("in_size")));
}

MLP build_mlp(const json& raw) {
  const JsonArgs args = args_of("MLP", raw, {"in_size", "layer_sizes", "bias", "activation"});
  return MLP(mlp_options_from(args, args.get_int("in_size")));
}

CrossNet build_crossnet(const json& raw) {
  const JsonArgs args = args_of("CrossNet", raw, {"in_features", "num_layers"});
  return CrossNet(crossnet_options_from(args, args.get_int("in_features")));
}

LowRankCrossNet build_lowrank_crossnet(const json& raw) {
  const JsonArgs args = args_of("LowRankCrossNet", raw, {"in_features", "num_layers", "low_rank"});
  return LowRankCrossNet(low_rank_crossnet_options_from(args, args.get_int("in_features")));
}

VectorCrossNet build_vector_crossnet(const json& raw) {
  const JsonArgs args = args_of("VectorCrossNet", raw, {"in_features", "num_layers"});
  return VectorCrossNet(vector_crossnet_options_from(args, args.get_int("in_features")));
}

LowRankMixtureCrossNet build_mixture_crossnet(const json& raw) {
  const JsonArgs args =
      args_of("LowRankMixtureCrossNet", raw, {"in_features", "num_layers", "num_experts", "low_rank", "activation"});
  return LowRankMixtureCrossNet(low_rank_mixture_crossnet_options_from(args, args.get_int("in_features")));
}

torch::nn::Linear build_linear(const json& raw) {
  const JsonArgs args = args_of("torch.nn.Linear", raw, {"in_features", "out_features", "bias"});
  return torch::nn::Linear(torch::nn::LinearOptions(args.positive_int("in_features"), args.positive_int("out_features"))
                               .bias(args.get_bool("bias", true)));
}

/// A nested module {"module": "<Class>", "args": {...}} with forward(Tensor) -> Tensor.
torch::nn::AnyModule build_tensor_module(const json& spec, const std::string& where) {
  if (!spec.is_object() || !spec.contains("module"))
    throw_input_error(where, ": expected {\"module\": ..., \"args\": {...}}, got ", spec.dump());
  const std::string name = spec.at("module").get<std::string>();
  const json args = spec.value("args", json::object());
  if (name == "torch.nn.Linear") return torch::nn::AnyModule(build_linear(args));
  if (name == "MLP") return torch::nn::AnyModule(build_mlp(args));
  if (name == "Perceptron") return torch::nn::AnyModule(build_perceptron(args));
  if (name == "SwishLayerNorm") return torch::nn::AnyModule(build_swish_layernorm(args));
  if (name == "CrossNet") return torch::nn::AnyModule(build_crossnet(args));
  if (name == "LowRankCrossNet") return torch::nn::AnyModule(build_lowrank_crossnet(args));
  if (name == "VectorCrossNet") return torch::nn::AnyModule(build_vector_crossnet(args));
  if (name == "LowRankMixtureCrossNet") return torch::nn::AnyModule(build_mixture_crossnet(args));
  throw_input_error(where, ": unsupported module '", name, "'; expected one of ",
                    join_names({"torch.nn.Linear", "MLP", "Perceptron", "SwishLayerNorm", "CrossNet",
                                "LowRankCrossNet", "VectorCrossNet", "LowRankMixtureCrossNet"}));
}

std::vector<torch::Tensor> tensor_list(const Value& v, const std::string& what) {
  std::vector<torch::Tensor> out;
  for (const auto& item : v.as_list(what)) out.push_back(item.as_tensor(what + " item"));
  return out;
}

/// A case whose only method is forward(input: Tensor) -> Tensor.
template <typename Holder>
std::unique_ptr<CaseModule> tensor_case(Holder holder, const std::string& module) {
  return std::make_unique<HolderCase<Holder>>(
      std::move(holder), [module](Holder& h, const std::string& method, const Inputs& inputs) {
        if (method != "forward") unsupported_method(module, method);
        return Value::of(h->forward(input(inputs, "input").as_tensor("input")));
      });
}

/// A case whose only method is forward(embeddings: List[Tensor]) -> Tensor.
template <typename Holder>
std::unique_ptr<CaseModule> embeddings_case(Holder holder, const std::string& module) {
  return std::make_unique<HolderCase<Holder>>(
      std::move(holder), [module](Holder& h, const std::string& method, const Inputs& inputs) {
        if (method != "forward") unsupported_method(module, method);
        return Value::of(h->forward(tensor_list(input(inputs, "embeddings"), "embeddings")));
      });
}

}  // namespace

void add_dense_cases(CaseRegistry& registry) {
  registry["SwishLayerNorm"] = [](const json& a) { return tensor_case(build_swish_layernorm(a), "SwishLayerNorm"); };
  registry["Perceptron"] = [](const json& a) { return tensor_case(build_perceptron(a), "Perceptron"); };
  registry["MLP"] = [](const json& a) { return tensor_case(build_mlp(a), "MLP"); };
  registry["CrossNet"] = [](const json& a) { return tensor_case(build_crossnet(a), "CrossNet"); };
  registry["LowRankCrossNet"] = [](const json& a) {
    return tensor_case(build_lowrank_crossnet(a), "LowRankCrossNet");
  };
  registry["VectorCrossNet"] = [](const json& a) { return tensor_case(build_vector_crossnet(a), "VectorCrossNet"); };
  registry["LowRankMixtureCrossNet"] = [](const json& a) {
    return tensor_case(build_mixture_crossnet(a), "LowRankMixtureCrossNet");
  };
  registry["FactorizationMachine"] = [](const json& a) {
    args_of("FactorizationMachine", a, {});
    return embeddings_case(FactorizationMachine(), "FactorizationMachine");
  };
  registry["DeepFM"] = [](const json& a) {
    args_of("DeepFM", a, {"dense_module"});
    if (!a.contains("dense_module")) throw_input_error("DeepFM: missing argument 'dense_module'");
    return embeddings_case(DeepFM(build_tensor_module(a.at("dense_module"), "DeepFM.dense_module")), "DeepFM");
  };
}

}  // namespace recmod::conformance
