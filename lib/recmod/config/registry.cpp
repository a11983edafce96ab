#include "recmod/config/registry.h"

#include <sstream>

#include "recmod/config/basic_nodes.h"
#include "recmod/config/dense_nodes.h"
#include "recmod/config/embedding_nodes.h"
#include "recmod/config/fp_nodes.h"
#include "recmod/config/mc_nodes.h"
#include "recmod/config/tower_nodes.h"

namespace recmod::config {

namespace {

const char* kTables =
    "list of {name, num_embeddings, embedding_dim, feature_names (default [name]), pooling: sum | mean (default sum), "
    "weight_init_min, weight_init_max (default +-sqrt(1/num_embeddings)), data_type: fp32 | fp16 | bf16 (the stored "
    "rows, trained and evaluated so; stochastic_rounding: true rounds their updates stochastically, default false) | "
    "int8 | int4 | int2 (trained in fp32, row-wise quantized by eval and profile "
    "--inference) (default fp32)}, or for_each_feature templates";
const char* kEcTables = "as EmbeddingBagCollection's, without pooling; all share one embedding_dim";
const char* kManagedCollision =
    "per table: managed_collision: {zch_size (default num_embeddings - mch_size), mch_size (residual hashing: ids "
    "without a slot are hashed into these rows after the zch_size rows), mch_hash_func: mod | murmur3 (default mod), "
    "eviction: lfu | lru | distance_lfu (default lfu), eviction_interval (default 1), decay_exponent (default 1), "
    "threshold: none | average | dynamic, threshold_skew_multiplier (default 10), input_hash_size, input_hash: "
    "mod | murmur3, output_global_offset}";
const char* kActivation = "relu | sigmoid | swish_layernorm (default relu)";
const char* kDropout = "p in [0, 1): inverted dropout after each layer's activation, training only (default 0)";

}  // namespace

const std::vector<NodeType>& node_types() {
  static const std::vector<NodeType> types = {
      {"EmbeddingBagCollection", "torchrec.modules.embedding_modules.EmbeddingBagCollection", "features.sparse",
       "pooled KeyedTensor, one key per feature (feature@table when shared); keys embedding_bags.<table>.weight",
       {{"tables", kTables}, {"is_weighted", "the input's weights scale each id, pooling sum only (default false)"}},
       build_embedding_bag_collection},
      {"EmbeddingCollection", "torchrec.modules.embedding_modules.EmbeddingCollection", "features.sparse",
       "sequence embeddings (a JaggedTensor per feature); keys embeddings.<table>.weight",
       {{"tables", kEcTables}},
       build_embedding_collection},
      {"ManagedCollisionEmbeddingBagCollection",
       "torchrec.modules.mc_embedding_modules.ManagedCollisionEmbeddingBagCollection", "features.sparse",
       "pooled KeyedTensor; keys _embedding_bag_collection.*, _managed_collision_collection.*",
       {{"tables", std::string("as EmbeddingBagCollection's (data_type too: int8 | int4 | int2 quantized by eval), each with ") +
                       kManagedCollision},
        {"reset_evicted_rows", "re-initialise evicted rows (default true)"},
        {"is_weighted", "as EmbeddingBagCollection (default false)"}},
       build_mc_embedding_bag_collection},
      {"ManagedCollisionEmbeddingCollection",
       "torchrec.modules.mc_embedding_modules.ManagedCollisionEmbeddingCollection", "features.sparse",
       "sequence embeddings; keys _embedding_collection.* and _embedding_module.* (the same tensors, as TorchRec "
       "registers them), _managed_collision_collection.*",
       {{"tables", std::string("as EmbeddingCollection's (data_type too: int8 | int4 | int2 quantized by eval), each with ") +
                       kManagedCollision},
        {"reset_evicted_rows", "re-initialise evicted rows (default true)"}},
       build_mc_embedding_collection},
      {"FeatureProcessedEmbeddingBagCollection",
       "torchrec.modules.fp_embedding_modules.FeatureProcessedEmbeddingBagCollection", "features.sparse",
       "pooled KeyedTensor; keys _embedding_bag_collection.embedding_bags.* (embedding optimizer), "
       "_feature_processors.<feature>.position_weight (dense optimizer)",
       {{"tables", "as EmbeddingBagCollection's (pooling sum; data_type too: int8 | int4 | int2 quantized by eval)"},
        {"feature_processors",
         "{feature: {max_feature_length: N}}: a PositionWeightedModule per listed feature, the others weighted 1"}},
       build_feature_processed_embedding_bag_collection},
      {"EmbeddingTower", "torchrec.modules.embedding_tower.EmbeddingTower", "features.sparse",
       "(B, N): the interaction's output; keys embedding.* (embedding optimizer), interaction.* (dense optimizer)",
       {{"embedding", "a nested node map {type: EmbeddingBagCollection | EmbeddingCollection | "
                      "FeatureProcessedEmbeddingBagCollection, its options} (required)"},
        {"interaction", "a nested node map {type: any node type taking one input, its options}, fed the embedding "
                        "module's output (pooled or sequence) and giving (B, N) (required)"}},
       build_embedding_tower},
      {"EmbeddingTowerCollection", "torchrec.modules.embedding_tower.EmbeddingTowerCollection", "features.sparse",
       "(B, sum of the towers' N): the towers' outputs concatenated; keys towers.<i>.embedding.*, "
       "towers.<i>.interaction.*",
       {{"towers", "list of {embedding, interaction} as EmbeddingTower's (required)"}},
       build_embedding_tower_collection},
      {"MLP", "torchrec.modules.mlp.MLP", "dense (B, N)", "(B, last size); keys _mlp.<i>._linear.*",
       {{"layer_sizes", "out_size of each layer (required)"},
        {"bias", "(default true)"},
        {"activation", kActivation},
        {"dropout", kDropout}},
       build_mlp},
      {"Perceptron", "torchrec.modules.mlp.Perceptron", "dense (B, N)",
       "(B, out_size); keys _linear.*, _activation_fn.norm.0.* with swish_layernorm",
       {{"out_size", "(required)"}, {"bias", "(default true)"}, {"activation", kActivation}},
       build_perceptron},
      {"SwishLayerNorm", "torchrec.modules.activation.SwishLayerNorm", "dense (B, N)",
       "(B, N): x * sigmoid(LayerNorm(x)); keys norm.0.*",
       {},
       build_swish_layer_norm},
      {"CrossNet", "torchrec.modules.crossnet.CrossNet", "dense (B, N)", "(B, N)",
       {{"num_layers", "(required)"}},
       build_crossnet},
      {"LowRankCrossNet", "torchrec.modules.crossnet.LowRankCrossNet", "dense (B, N)", "(B, N)",
       {{"num_layers", "(required)"}, {"low_rank", "(default 1)"}},
       build_low_rank_crossnet},
      {"VectorCrossNet", "torchrec.modules.crossnet.VectorCrossNet", "dense (B, N)", "(B, N)",
       {{"num_layers", "(required)"}},
       build_vector_crossnet},
      {"LowRankMixtureCrossNet", "torchrec.modules.crossnet.LowRankMixtureCrossNet", "dense (B, N)", "(B, N)",
       {{"num_layers", "(required)"},
        {"num_experts", "(default 1)"},
        {"low_rank", "(default 1)"},
        {"activation", "relu | sigmoid (default relu)"}},
       build_low_rank_mixture_crossnet},
      {"DeepFM", "torchrec.modules.deepfm.DeepFM", "pooled embeddings (each key's (B, D) block is one embedding)",
       "(B, last size); keys dense_module._mlp.*",
       {{"layer_sizes", "the deep MLP over the flattened embeddings (required)"},
        {"activation", kActivation},
        {"dropout", kDropout}},
       build_deepfm},
      {"FactorizationMachine", "torchrec.modules.deepfm.FactorizationMachine",
       "pooled embeddings (each key's (B, D) block is one embedding)", "(B, 1)",
       {},
       build_factorization_machine},
      {"SequencePool", "", "an EmbeddingCollection", "pooled KeyedTensor",
       {{"mode", "sum | mean (default sum)"}},
       build_sequence_pool},
      {"Concat", "", "dense or pooled values", "(B, sum of widths)",
       {},
       build_concat},
      {"DotInteraction", "torchrec.models.dlrm.InteractionArch",
       "[dense (B, D), pooled embeddings of dim D, ...]", "(B, D + F(F+1)/2)",
       {},
       build_dot_interaction},
      {"Linear", "torch.nn.Linear", "dense (B, N)", "(B, out_features); keys weight, bias",
       {{"out_features", "(required)"}, {"bias", "(default true)"}},
       build_linear},
  };
  return types;
}

const NodeType* find_node_type(const std::string& name) {
  for (const auto& t : node_types())
    if (t.name == name) return &t;
  return nullptr;
}

std::vector<std::string> node_type_names() {
  std::vector<std::string> names;
  for (const auto& t : node_types()) names.push_back(t.name);
  return names;
}

std::vector<std::string> allowed_keys(const NodeType& type) {
  std::vector<std::string> keys = {"type", "input", "inputs"};
  for (const auto& o : type.options) keys.push_back(o.key);
  return keys;
}

namespace {
// Text for a markdown table cell.
std::string cell(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '|') out += "\\|";
    else if (c == '<') out += "&lt;";  // "<table>" would be an HTML tag
    else if (c == '>') out += "&gt;";
    else out += c;
  }
  return out;
}
}  // namespace

std::string node_types_markdown() {
  std::ostringstream os;
  os << "| type | TorchRec class | inputs | options | output |\n|---|---|---|---|---|\n";
  for (const auto& t : node_types()) {
    std::string options;
    for (const auto& o : t.options) options += (options.empty() ? "" : "; ") + ("`" + o.key + "`: " + cell(o.description));
    os << "| `" << t.name << "` | " << (t.torchrec_class.empty() ? "—" : "`" + t.torchrec_class + "`") << " | "
       << cell(t.inputs) << " | " << (options.empty() ? "—" : options) << " | " << cell(t.output) << " |\n";
  }
  return os.str();
}

std::string describe_node_type(const NodeType& type) {
  std::ostringstream os;
  os << type.name;
  if (!type.torchrec_class.empty()) os << " (" << type.torchrec_class << ")";
  os << "\n  inputs: " << type.inputs << "\n  output: " << type.output << "\n  options:";
  if (type.options.empty()) os << " none";
  os << "\n";
  for (const auto& o : type.options) os << "    " << o.key << ": " << o.description << "\n";
  return os.str();
}

}  // namespace recmod::config
