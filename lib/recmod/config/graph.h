#pragma once
// A model built from a config: the nodes of the config as registered
// submodules (named as the nodes are, so state_dict keys read
// "<node>.<TorchRec's key>", e.g. "sparse_arch.embedding_bags.t_C1.weight"),
// run in an order where each node follows its inputs.
#include <torch/nn/module.h>

#include <string>
#include <vector>

#include "recmod/config/model_config.h"
#include "recmod/config/node_builder.h"
#include "recmod/data/batch.h"
#include "recmod/modules/embedding_interfaces.h"

namespace recmod::config {

/// What `recmod validate` prints per node.
struct NodeInfo {
  std::string name;
  std::string type;
  std::vector<std::string> inputs;
  ValueShape shape;
  int64_t num_parameters = 0;
  bool embedding = false;
  std::string summary;
};

/// Watches a forward pass node by node (recmod profile's timer is one).
/// The executor calls before_node(i) and after_node(i, output) around node
/// i, in execution order.
class NodeObserver {
 public:
  virtual ~NodeObserver() = default;
  virtual void before_node(size_t /*index*/) {}
  virtual void after_node(size_t /*index*/, const Value& /*output*/) {}
};

class ModelGraphImpl : public torch::nn::Module {
 public:
  /// Builds every node; throws ConfigError (with file:line:col) for unknown
  /// types, unknown or cyclic inputs, bad options and shape mismatches.
  /// The training and data sections of a config are not the model's: a
  /// ModelConfig passed here is sliced to its ModelSpec.
  explicit ModelGraphImpl(const ModelSpec& spec);

  /// Logits (B) for a batch whose schema matches the config's features, or
  /// (B, T) for a config with T `tasks:` (column t: task t's output): the
  /// one graph executor (every node in order(), each fed its inputs'
  /// outputs); `observer`, when given, sees each node run.
  torch::Tensor forward(const data::Batch& batch, NodeObserver* observer = nullptr);

  const ModelSpec& spec() const { return spec_; }
  const std::vector<NodeInfo>& nodes() const { return infos_; }
  /// Node indices, inputs before users; the (last task's) output node is last.
  const std::vector<size_t>& order() const { return order_; }
  /// The inputs of node `index` (indices into nodes(), or kDenseInput/kSparseInput).
  const std::vector<int64_t>& input_ids(size_t index) const { return input_ids_[index]; }
  static constexpr int64_t kDenseInput = -1;
  static constexpr int64_t kSparseInput = -2;

  /// The features (and label columns) a batch must carry, in the config's order.
  data::DataSchema schema() const;
  /// Checks a data set's schema against the features (same dense count,
  /// every sparse feature present); throws InputError.
  void check_schema(const data::DataSchema& schema, const std::string& origin) const;
  /// Hashes the batch's ids into range and returns the graph's two inputs.
  std::pair<Value, Value> inputs(const data::Batch& batch) const;
  /// Runs node `index` alone on its inputs' values (one step of forward;
  /// a split step runs the nodes in two parts, train/graph_step.h).
  Value run_node(size_t index, const std::vector<Value>& inputs) const { return built_[index].forward(inputs); }
  /// The logits from the nodes' values, indexed as nodes() (forward's last step).
  torch::Tensor logits_of(const std::vector<Value>& values) const;

  /// The module of node `index` (null for parameter-free nodes).
  std::shared_ptr<torch::nn::Module> node_module(size_t index) const { return built_[index].module; }
  /// Swaps node `index`'s module (registered under the same name, at the
  /// same place in state_dict order) and forward; what sharding does to an
  /// EmbeddingBagCollection (TorchRec's module swap in DistributedModelParallel).
  void replace_node(size_t index, std::shared_ptr<torch::nn::Module> module,
                    std::function<Value(const std::vector<Value>&)> forward);
  /// The graph hook for custom embedding modules: swaps the module of node
  /// `node` (one whose only input is sparse features and whose output is
  /// pooled, e.g. an EmbeddingBagCollection node) for any
  /// EmbeddingBagCollectionInterface whose promised output (its configs'
  /// embedding names and dims) is the node's, and whose features the input
  /// carries; the forward is embedding_bag_collection_node's. Its parameters
  /// go to the embedding optimizer. InputError naming the node and what
  /// differs otherwise.
  void replace_embedding_module(const std::string& node, std::shared_ptr<EmbeddingBagCollectionInterface> module);
  /// The same for a sequence-output node and any EmbeddingCollectionInterface.
  void replace_embedding_module(const std::string& node, std::shared_ptr<EmbeddingCollectionInterface> module);

  /// Parameters by state_dict key, split by optimizer.
  std::vector<std::pair<std::string, torch::Tensor>> dense_parameters() const;
  std::vector<std::pair<std::string, torch::Tensor>> embedding_parameters() const;
  /// The validate printout: one line per node, then the totals.
  std::string describe() const;

 private:
  std::vector<std::pair<std::string, torch::Tensor>> named_parameters_of(bool embedding) const;
  void replace_embedding_node(const std::string& node, BuiltNode replacement, const std::vector<std::string>& features);
  ModelSpec spec_;
  std::vector<BuiltNode> built_;
  std::vector<NodeInfo> infos_;
  std::vector<std::vector<int64_t>> input_ids_;
  std::vector<size_t> order_;
  std::vector<size_t> output_ids_;  // the output node, or each task's
};
TORCH_MODULE(ModelGraph);

/// Shorthand: load, parse and build the model of a config file (with
/// `--set KEY=VALUE` overrides).
ModelGraph build_model(const std::string& config_path, const std::vector<std::string>& overrides = {});

int64_t count_parameters(const torch::nn::Module& module);

}  // namespace recmod::config
