// Golden-case builders for the dense module family: activation, mlp,
// crossnet and deepfm modules (args conventions in golden/FORMAT.md).
#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/conformance/registry.h"
#include "recmod/modules/activation.h"
#include "recmod/modules/crossnet.h"
#include "recmod/modules/deepfm.h"
#include "recmod/modules/mlp.h"

namespace recmod::conformance {

namespace {

/// Throws InputError for an args key the module does not take, listing the valid ones.
void expect_keys(const std::string& module, const json& args, const std::vector<std::string>& valid) {
  if (!args.is_object()) throw_input_error(module, ": args must be an object, got ", args.dump());
  for (const auto& item : args.items())
    if (std::find(valid.begin(), valid.end(), item.key()) == valid.end())
      throw_input_error(module, ": unknown argument '", item.key(), "'; expected one of ", join_names(valid));
}

template <typename T>
T required(const std::string& module, const json& args, const std::string& key) {
  if (!args.contains(key)) throw_input_error(module, ": missing argument '", key, "'");
  try {
    return args.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    throw_input_error(module, ": argument '", key, "' has the wrong type: ", args.at(key).dump());
  }
}

template <typename T>
T optional_arg(const std::string& module, const json& args, const std::string& key, T fallback) {
  return args.contains(key) ? required<T>(module, args, key) : fallback;
}

/// TorchRec's `input_dims: Union[int, List[int]]`.
std::vector<int64_t> int_or_list(const std::string& module, const json& args, const std::string& key) {
  if (args.contains(key) && args.at(key).is_number_integer()) return {args.at(key).get<int64_t>()};
  return required<std::vector<int64_t>>(module, args, key);
}

/// Perceptron's activation: "relu", "sigmoid", or "swish_layernorm" = SwishLayerNorm(out_size).
Activation perceptron_activation(const std::string& name, int64_t out_size) {
  return mlp_activation(name)(out_size);
}

SwishLayerNorm build_swish_layernorm(const json& args) {
  expect_keys("SwishLayerNorm", args, {"input_dims"});
  return SwishLayerNorm(int_or_list("SwishLayerNorm", args, "input_dims"));
}

Perceptron build_perceptron(const json& args) {
  const std::string m = "Perceptron";
  expect_keys(m, args, {"in_size", "out_size", "bias", "activation"});
  const auto out_size = required<int64_t>(m, args, "out_size");
  return Perceptron(
      PerceptronOptions(required<int64_t>(m, args, "in_size"), out_size)
          .bias(optional_arg<bool>(m, args, "bias", true))
          .activation(perceptron_activation(optional_arg<std::string>(m, args, "activation", "relu"), out_size)));
}

MLP build_mlp(const json& args) {
  const std::string m = "MLP";
  expect_keys(m, args, {"in_size", "layer_sizes", "bias", "activation"});
  return MLP(MLPOptions(required<int64_t>(m, args, "in_size"), required<std::vector<int64_t>>(m, args, "layer_sizes"))
                 .bias(optional_arg<bool>(m, args, "bias", true))
                 .activation(mlp_activation(optional_arg<std::string>(m, args, "activation", "relu"))));
}

CrossNet build_crossnet(const json& args) {
  const std::string m = "CrossNet";
  expect_keys(m, args, {"in_features", "num_layers"});
  return CrossNet(CrossNetOptions(required<int64_t>(m, args, "in_features"), required<int64_t>(m, args, "num_layers")));
}

LowRankCrossNet build_lowrank_crossnet(const json& args) {
  const std::string m = "LowRankCrossNet";
  expect_keys(m, args, {"in_features", "num_layers", "low_rank"});
  return LowRankCrossNet(
      LowRankCrossNetOptions(required<int64_t>(m, args, "in_features"), required<int64_t>(m, args, "num_layers"))
          .low_rank(optional_arg<int64_t>(m, args, "low_rank", 1)));
}

VectorCrossNet build_vector_crossnet(const json& args) {
  const std::string m = "VectorCrossNet";
  expect_keys(m, args, {"in_features", "num_layers"});
  return VectorCrossNet(
      VectorCrossNetOptions(required<int64_t>(m, args, "in_features"), required<int64_t>(m, args, "num_layers")));
}

LowRankMixtureCrossNet build_mixture_crossnet(const json& args) {
  const std::string m = "LowRankMixtureCrossNet";
  expect_keys(m, args, {"in_features", "num_layers", "num_experts", "low_rank", "activation"});
  return LowRankMixtureCrossNet(
      LowRankMixtureCrossNetOptions(required<int64_t>(m, args, "in_features"),
                                    required<int64_t>(m, args, "num_layers"))
          .num_experts(optional_arg<int64_t>(m, args, "num_experts", 1))
          .low_rank(optional_arg<int64_t>(m, args, "low_rank", 1))
          .activation(activation_by_name(optional_arg<std::string>(m, args, "activation", "relu"))));
}

torch::nn::Linear build_linear(const json& args) {
  const std::string m = "torch.nn.Linear";
  expect_keys(m, args, {"in_features", "out_features", "bias"});
  return torch::nn::Linear(
      torch::nn::LinearOptions(required<int64_t>(m, args, "in_features"), required<int64_t>(m, args, "out_features"))
          .bias(optional_arg<bool>(m, args, "bias", true)));
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
    expect_keys("FactorizationMachine", a, {});
    return embeddings_case(FactorizationMachine(), "FactorizationMachine");
  };
  registry["DeepFM"] = [](const json& a) {
    expect_keys("DeepFM", a, {"dense_module"});
    if (!a.contains("dense_module")) throw_input_error("DeepFM: missing argument 'dense_module'");
    return embeddings_case(DeepFM(build_tensor_module(a.at("dense_module"), "DeepFM.dense_module")), "DeepFM");
  };
}

}  // namespace recmod::conformance
