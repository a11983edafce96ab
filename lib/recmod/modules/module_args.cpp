#include "recmod/modules/module_args.h"

#include <algorithm>
#include <cctype>

#include "recmod/common/errors.h"
#include "recmod/modules/activation.h"

namespace recmod {

namespace {

std::string lower(std::string s) {
  for (auto& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

std::string upper(std::string s) {
  for (auto& ch : s) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return s;
}

bool contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

DataType read_data_type(const ModuleArgs& args, const BaseEmbeddingConfig& c, bool allow_quantized) {
  const std::string written = args.get_string("data_type");
  const std::string name = lower(written);
  const std::vector<std::string> plain = {"fp32", "fp16", "bf16"};
  const std::vector<std::string> quantized = {"int8", "int4", "int2"};
  if (!contains(plain, name) && !contains(quantized, name))
    args.fail("data_type", str_cat("expected one of fp32, fp16, bf16, int8, int4, int2, found '", written, "'"));
  if (contains(quantized, name) && !allow_quantized)
    args.fail("data_type",
              str_cat("data_type ", name, " (row-wise quantized) is for EmbeddingBagCollection and EmbeddingCollection "
                      "tables; this kind stores fp32, fp16 or bf16"));
  const DataType type = data_type_from_string(upper(name));
  // INT4 rows of dimension 1 (INT2 up to 2) are as wide as INT8's (INT4's):
  // a checkpoint could not say which they are.
  if ((type == DataType::INT4 && c.embedding_dim < 2) || (type == DataType::INT2 && c.embedding_dim <= 2))
    args.fail("data_type", str_cat("a table of embedding_dim ", c.embedding_dim, " cannot be ", name,
                                   " (its rows would read back as a wider type); use ",
                                   c.embedding_dim < 2 ? "int8" : "int4 or int8"));
  return type;
}

}  // namespace

void read_table_args(const ModuleArgs& args, BaseEmbeddingConfig& c, bool allow_quantized) {
  c.name = args.get_name("name", "a table name");
  c.num_embeddings = args.positive_int("num_embeddings");
  c.embedding_dim = args.positive_int("embedding_dim");
  if (args.has("feature_names")) {
    c.feature_names = args.get_name_list("feature_names", "a feature name");
    if (c.feature_names.empty()) args.fail("feature_names", "expected at least one feature name");
  } else {
    c.feature_names = {c.name};
  }
  if (args.has("weight_init_min")) c.weight_init_min = args.get_double("weight_init_min");
  if (args.has("weight_init_max")) c.weight_init_max = args.get_double("weight_init_max");
  if (args.has("data_type")) c.data_type = read_data_type(args, c, allow_quantized);
  if (args.has("stochastic_rounding")) {
    c.stochastic_rounding = args.get_bool("stochastic_rounding");
    if (c.stochastic_rounding && c.data_type != DataType::FP16 && c.data_type != DataType::BF16)
      args.fail("stochastic_rounding", str_cat("stochastic_rounding is for tables of data_type fp16 or bf16; this "
                                               "table is ", lower(to_string(c.data_type))));
  }
}

PoolingType read_pooling(const ModuleArgs& args, bool allow_none) {
  if (!args.has("pooling")) return PoolingType::SUM;
  const std::string written = args.get_string("pooling");
  std::vector<std::string> choices = {"sum", "mean"};
  if (allow_none) choices.push_back("none");
  const std::string name = lower(written);
  if (!contains(choices, name)) args.fail("pooling", str_cat("expected one of ", join_names(choices), ", found '", written, "'"));
  return pooling_type_from_string(upper(name));
}

std::string mlp_activation_name(const ModuleArgs& args) {
  return args.one_of("activation", {"relu", "sigmoid", "swish_layernorm"}, "relu");
}

MLPOptions mlp_options_from(const ModuleArgs& args, int64_t in_size) {
  double dropout = 0.0;
  if (args.has("dropout")) {
    dropout = args.get_double("dropout");
    if (!(dropout >= 0 && dropout < 1)) args.fail("dropout", str_cat("must be in [0, 1), got ", dropout));
  }
  return MLPOptions(in_size, args.positive_int_list("layer_sizes"))
      .bias(args.get_bool("bias", true))
      .activation(mlp_activation(mlp_activation_name(args)))
      .dropout(dropout);
}

PerceptronOptions perceptron_options_from(const ModuleArgs& args, int64_t in_size) {
  const int64_t out_size = args.positive_int("out_size");
  // TorchRec's Perceptron takes one activation module or function; a
  // swish_layernorm normalises the layer's own output.
  return PerceptronOptions(in_size, out_size)
      .bias(args.get_bool("bias", true))
      .activation(mlp_activation(mlp_activation_name(args))(out_size));
}

CrossNetOptions crossnet_options_from(const ModuleArgs& args, int64_t in_features) {
  return CrossNetOptions(in_features, args.positive_int("num_layers"));
}

LowRankCrossNetOptions low_rank_crossnet_options_from(const ModuleArgs& args, int64_t in_features) {
  return LowRankCrossNetOptions(in_features, args.positive_int("num_layers")).low_rank(args.positive_int("low_rank", 1));
}

VectorCrossNetOptions vector_crossnet_options_from(const ModuleArgs& args, int64_t in_features) {
  return VectorCrossNetOptions(in_features, args.positive_int("num_layers"));
}

LowRankMixtureCrossNetOptions low_rank_mixture_crossnet_options_from(const ModuleArgs& args, int64_t in_features) {
  return LowRankMixtureCrossNetOptions(in_features, args.positive_int("num_layers"))
      .num_experts(args.positive_int("num_experts", 1))
      .low_rank(args.positive_int("low_rank", 1))
      .activation(activation_by_name(args.one_of("activation", {"relu", "sigmoid"}, "relu")));
}

}  // namespace recmod
