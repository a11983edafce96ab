#include "recmod/config/graph.h"

#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <set>
#include <sstream>

#include "recmod/common/errors.h"
#include "recmod/config/feature_hashing.h"
#include "recmod/config/embedding_nodes.h"
#include "recmod/config/registry.h"

namespace recmod::config {

int64_t count_parameters(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

namespace {

bool under_any(const std::string& key, const std::vector<std::string>& prefixes) {
  return std::any_of(prefixes.begin(), prefixes.end(),
                     [&](const std::string& prefix) { return key.rfind(prefix + ".", 0) == 0; });
}

/// The parameters of a node's dense_submodules (counted as count_parameters does).
int64_t dense_part_parameters(const BuiltNode& node) {
  int64_t n = 0;
  if (node.module)
    for (const auto& p : node.module->named_parameters())
      if (under_any(p.key(), node.dense_submodules)) n += p.value().numel();
  return n;
}

bool valid_node_name(const std::string& name) {
  if (name.empty() || !(std::isalpha(static_cast<unsigned char>(name[0])) || name[0] == '_')) return false;
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  return true;
}

// Depth-first topological order; a cycle is an error at the node that closes it.
void visit(size_t i, const std::vector<NodeSpec>& specs, const std::vector<std::vector<int64_t>>& inputs,
           std::vector<int>& state, std::vector<size_t>& order) {
  if (state[i] == 2) return;
  if (state[i] == 1) fail_at_inputs(specs[i], "the graph has a cycle through node '" + specs[i].name + "'");
  state[i] = 1;
  for (int64_t in : inputs[i])
    if (in >= 0) visit(static_cast<size_t>(in), specs, inputs, state, order);
  state[i] = 2;
  order.push_back(i);
}

}  // namespace

ModelGraphImpl::ModelGraphImpl(const ModelSpec& spec) : spec_(spec) {
  const auto& specs = spec_.nodes;
  std::map<std::string, int64_t> index;
  for (size_t i = 0; i < specs.size(); ++i) {
    if (!valid_node_name(specs[i].name))
      specs[i].yaml.fail("node names must be identifiers (letters, digits, '_'), got '" + specs[i].name + "'");
    index[specs[i].name] = static_cast<int64_t>(i);
  }
  // Resolve input names.
  input_ids_.resize(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    for (const auto& name : specs[i].inputs) {
      if (name == kDenseFeatures) {
        input_ids_[i].push_back(kDenseInput);
      } else if (name == kSparseFeatures) {
        input_ids_[i].push_back(kSparseInput);
      } else if (auto it = index.find(name); it != index.end()) {
        input_ids_[i].push_back(it->second);
      } else {
        std::vector<std::string> known = {kDenseFeatures, kSparseFeatures};
        for (const auto& s : specs) known.push_back(s.name);
        fail_at_inputs(specs[i], str_cat("unknown input '", name, "'; known inputs are ", join_names(known)));
      }
    }
  }
  // The output node(s) and everything they depend on; nodes none uses are
  // an error (they would train nothing).
  std::vector<std::string> outputs = spec_.outputs;
  std::vector<ConfigNode> outputs_yaml = spec_.outputs_yaml;
  if (outputs.empty()) {
    outputs = {spec_.output};
    outputs_yaml = {*spec_.output_yaml};
  }
  std::vector<int> state(specs.size(), 0);
  for (size_t k = 0; k < outputs.size(); ++k) {
    auto out = index.find(outputs[k]);
    if (out == index.end()) outputs_yaml[k].fail("output '" + outputs[k] + "' is not a node");
    output_ids_.push_back(static_cast<size_t>(out->second));
    visit(static_cast<size_t>(out->second), specs, input_ids_, state, order_);
  }
  for (size_t i = 0; i < specs.size(); ++i)
    if (state[i] == 0)
      specs[i].yaml.fail("node '" + specs[i].name + "' is not used by the output" + (outputs.size() > 1 ? "s " : " '") +
                         (outputs.size() > 1 ? join_names(outputs) : outputs[0] + "'"));

  // Build in order, inferring each node's input shapes from its inputs.
  built_.resize(specs.size());
  infos_.resize(specs.size());
  const ValueShape dense_shape = ValueShape::dense(spec_.features.num_dense);
  const ValueShape sparse_shape = ValueShape::sparse(spec_.features.sparse_names());
  for (size_t i : order_) {
    const auto& spec = specs[i];
    const NodeType* type = find_node_type(spec.type);
    if (!type) spec.yaml["type"].fail(str_cat("unknown node type '", spec.type, "'; valid types are ", join_names(node_type_names())));
    std::vector<Port> ports;
    for (size_t k = 0; k < input_ids_[i].size(); ++k) {
      int64_t in = input_ids_[i][k];
      ports.push_back({spec.inputs[k], in == kDenseInput ? dense_shape : in == kSparseInput ? sparse_shape : built_[in].shape});
    }
    spec.yaml.allow_keys(allowed_keys(*type));  // the registry's options, described once
    built_[i] = type->build(spec, ports);
    if (built_[i].module) register_module(spec.name, built_[i].module);
    infos_[i] = NodeInfo{spec.name, spec.type, spec.inputs, built_[i].shape,
                         built_[i].module ? count_parameters(*built_[i].module) : 0, built_[i].embedding,
                         built_[i].summary};
  }
  for (size_t k = 0; k < outputs.size(); ++k) {
    const auto& out_shape = built_[output_ids_[k]].shape;
    if (out_shape.kind != ValueKind::Dense || out_shape.width != 1)
      outputs_yaml[k].fail(str_cat("the output must be a logit of shape (B, 1), but '", outputs[k], "' gives ",
                                   out_shape.kind_name(), " (end with an MLP whose last layer size is 1)"));
  }
}

std::pair<Value, Value> ModelGraphImpl::inputs(const data::Batch& batch) const {
  // Only the config's features, in its order (the data may carry more).
  auto sparse = batch.sparse.keys() == spec_.features.sparse_names()
                    ? batch.sparse
                    : batch.sparse.select(spec_.features.sparse_names());
  return {Value::of_dense(batch.dense), Value::of_sparse(hash_features(sparse, spec_.features.sparse))};
}

torch::Tensor ModelGraphImpl::forward(const data::Batch& batch, NodeObserver* observer) {
  auto [dense, sparse] = inputs(batch);
  std::vector<Value> values(built_.size());
  std::vector<Value> in;
  for (size_t i : order_) {
    in.clear();
    for (int64_t id : input_ids_[i]) in.push_back(id == kDenseInput ? dense : id == kSparseInput ? sparse : values[id]);
    if (observer) observer->before_node(i);
    values[i] = built_[i].forward(in);
    if (observer) observer->after_node(i, values[i]);
  }
  return logits_of(values);
}

torch::Tensor ModelGraphImpl::logits_of(const std::vector<Value>& values) const {
  if (spec_.outputs.empty()) return values[output_ids_[0]].dense.reshape({-1});
  std::vector<torch::Tensor> columns;
  for (size_t id : output_ids_) columns.push_back(values[id].dense.reshape({-1, 1}));
  return torch::cat(columns, 1);
}

void ModelGraphImpl::replace_node(size_t index, std::shared_ptr<torch::nn::Module> module,
                                  std::function<Value(const std::vector<Value>&)> forward) {
  TORCH_CHECK(index < built_.size() && built_[index].module, "replace_node: node ", index, " has no module");
  replace_module(infos_[index].name, module);
  built_[index].module = std::move(module);
  built_[index].forward = std::move(forward);
}

void ModelGraphImpl::replace_embedding_node(const std::string& node, BuiltNode replacement,
                                            const std::vector<std::string>& features) {
  size_t index = infos_.size();
  for (size_t i = 0; i < infos_.size(); ++i)
    if (infos_[i].name == node) index = i;
  if (index == infos_.size()) {
    std::vector<std::string> names;
    for (const auto& n : infos_) names.push_back(n.name);
    throw_input_error("replace_embedding_module: no node '", node, "'; the nodes are ", join_names(names));
  }
  const NodeInfo& info = infos_[index];
  const ValueShape& shape = built_[index].shape;
  const std::vector<int64_t>& ids = input_ids_[index];
  if (!built_[index].module || ids.size() != 1 || (ids[0] >= 0 && built_[ids[0]].shape.kind != ValueKind::Sparse) ||
      (ids[0] < 0 && ids[0] != kSparseInput) || shape.kind != replacement.shape.kind)
    throw_input_error("replace_embedding_module: node '", node, "' (", info.type, ") takes ", join_names(info.inputs),
                      " and gives ", shape.kind_name(), "; a module giving ", replacement.shape.kind_name(),
                      " replaces a node with one sparse input and the same kind of output");
  if (shape.keys != replacement.shape.keys || shape.dims != replacement.shape.dims)
    throw_input_error("replace_embedding_module: node '", node, "' gives ", shape.str(), ", the module gives ",
                      replacement.shape.str());
  const std::vector<std::string> available =
      ids[0] == kSparseInput ? spec_.features.sparse_names() : built_[ids[0]].shape.keys;
  for (const auto& f : features)
    if (std::find(available.begin(), available.end(), f) == available.end())
      throw_input_error("replace_embedding_module: the module reads feature '", f, "', which node '", node,
                        "''s input (", info.inputs[0], ") does not have; it has ", join_names(available));
  replace_node(index, replacement.module, replacement.forward);
  built_[index].embedding = true;
  built_[index].dense_submodules.clear();
  built_[index].summary = replacement.summary;
  infos_[index].num_parameters = count_parameters(*replacement.module);
  infos_[index].embedding = true;
  infos_[index].summary = replacement.summary;
}

void ModelGraphImpl::replace_embedding_module(const std::string& node,
                                              std::shared_ptr<EmbeddingBagCollectionInterface> module) {
  if (!module) throw_input_error("replace_embedding_module: no module given for node '", node, "'");
  replace_embedding_node(node, embedding_bag_collection_node(module, node), features_of(module->embedding_bag_configs()));
}

void ModelGraphImpl::replace_embedding_module(const std::string& node,
                                              std::shared_ptr<EmbeddingCollectionInterface> module) {
  if (!module) throw_input_error("replace_embedding_module: no module given for node '", node, "'");
  replace_embedding_node(node, embedding_collection_node(module, node), features_of(module->embedding_configs()));
}

data::DataSchema ModelGraphImpl::schema() const {
  data::DataSchema s;
  s.num_dense = spec_.features.num_dense;
  s.sparse_features = spec_.features.sparse_names();
  s.num_labels = spec_.num_labels;
  return s;
}

void ModelGraphImpl::check_schema(const data::DataSchema& schema, const std::string& origin) const {
  if (schema.num_dense != spec_.features.num_dense)
    throw_input_error(origin, ": the data has ", schema.num_dense, " dense features, the config (", spec_.file,
                      ") expects ", spec_.features.num_dense);
  for (const auto& name : spec_.features.sparse_names())
    if (std::find(schema.sparse_features.begin(), schema.sparse_features.end(), name) == schema.sparse_features.end())
      throw_input_error(origin, ": the config (", spec_.file, ") uses sparse feature '", name,
                        "', which the data does not have; the data has ", join_names(schema.sparse_features));
}

std::vector<std::pair<std::string, torch::Tensor>> ModelGraphImpl::named_parameters_of(bool embedding) const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  // A module may hold a tensor under two names (the MC-EC's
  // _embedding_module and _embedding_collection): an optimizer gets it once.
  std::set<const void*> seen;
  for (size_t i = 0; i < built_.size(); ++i) {
    if (!built_[i].module) continue;
    const auto& dense_parts = built_[i].dense_submodules;
    for (const auto& p : built_[i].module->named_parameters()) {
      const bool dense_part = under_any(p.key(), dense_parts);
      if ((built_[i].embedding && !dense_part) != embedding) continue;
      // Counters kept as non-trainable parameters (MC modules' iteration)
      // are not for an optimizer.
      if (!p.value().requires_grad() || !seen.insert(p.value().unsafeGetTensorImpl()).second) continue;
      out.emplace_back(infos_[i].name + "." + p.key(), p.value());
    }
  }
  return out;
}

std::vector<std::pair<std::string, torch::Tensor>> ModelGraphImpl::dense_parameters() const {
  return named_parameters_of(false);
}

std::vector<std::pair<std::string, torch::Tensor>> ModelGraphImpl::embedding_parameters() const {
  return named_parameters_of(true);
}

std::string ModelGraphImpl::describe() const {
  std::ostringstream os;
  os << "features: dense " << spec_.features.num_dense << ", sparse " << join_names(spec_.features.sparse_names())
     << "\n";
  int64_t dense_params = 0, embedding_params = 0;
  for (size_t i : order_) {
    const auto& n = infos_[i];
    os << "  " << n.name << " (" << n.type << ") <- " << join_names(n.inputs) << " -> " << n.shape.str() << ", "
       << n.num_parameters << " parameters";
    if (!n.summary.empty()) os << "; " << n.summary;
    os << "\n";
    // An embedding node's dense parts (a tower's interaction, an FP-EBC's
    // feature processors) count as dense, as the optimizers split them.
    const int64_t dense_part = n.embedding ? dense_part_parameters(built_[i]) : n.num_parameters;
    dense_params += dense_part;
    embedding_params += n.num_parameters - dense_part;
  }
  if (spec_.outputs.empty())
    os << "output: " << spec_.output << "\n";
  else
    os << "output: " << join_names(spec_.outputs) << " (one per task)\n";
  os << "parameters: " << dense_params + embedding_params << " (dense " << dense_params << ", embedding "
     << embedding_params << ")\n";
  return os.str();
}

ModelGraph build_model(const std::string& config_path, const std::vector<std::string>& overrides) {
  const ModelSpec spec = load_model_config(config_path, overrides);
  return ModelGraph(spec);
}

}  // namespace recmod::config
