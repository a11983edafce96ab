#pragma once
// training.cuda_graphs: a training step split in two, its dense part
// captured as one CUDA graph (PyTorch's make_graphed_callables idea).
//
// The sparse part (every embedding node and what reads the sparse
// features: lookups with host-side launch parameters, managed-collision
// remapping, the fused embedding optimizer inside their backward) runs
// eagerly. Its outputs are copied into static leaf tensors; the dense part
// (the other nodes' forward, the loss, and the gradients of the loss with
// respect to the dense parameters and to those leaves, by
// torch::autograd::grad) reads only static buffers, so it is captured once
// and replayed every step. Then, eagerly: the leaves' gradients are pushed
// through the sparse part's backward, and both optimizers step (learning-rate
// schedules keep working: the optimizer step is not captured).
//
// Same math as train_step_eager, in the same order up to floating-point
// summation. At the capture the step is also run uncaptured, and the first
// replay must give its loss and gradients, or the run goes on uncaptured. What runs uncaptured (the "split step" without a graph): the
// warm-up steps, a batch whose shapes differ from the captured ones (the
// short last batch), and every step after a failed capture. A model or run
// the split cannot take (GraphPlan::reason, graph_step_refusal) trains
// with train_step_eager.
#include <torch/types.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "recmod/config/graph.h"
#include "recmod/data/batch.h"

namespace recmod::cuda {
class CudaGraph;
}

namespace recmod::train {

class TrainingSetup;
struct StepHooks;

/// How a model's nodes split into the eager sparse part and the captured
/// dense part. Node indices in the model's order().
struct GraphPlan {
  std::vector<size_t> eager;     // embedding nodes and nodes reading sparse features
  std::vector<size_t> captured;  // the rest
  std::vector<size_t> boundary;  // eager nodes whose (dense or pooled) output captured nodes read
  std::string reason;            // why the model cannot be split ("" = it can)
  bool ok() const { return reason.empty(); }
};

/// Splits `model` (a pure function of its graph and parameter names).
/// Refused, with a reason naming the node: an eager node reading a dense
/// node, a jagged (sequence / sparse) value crossing into the dense part,
/// dense parameters inside an eager node (a tower's interaction, feature
/// processors), an eager output node, no dense node.
GraphPlan plan_graph_split(const config::ModelGraphImpl& model);

/// Why steps of this run are not captured ("" = they may be): the mode
/// (training.cuda_graphs), the device, the build, a distributed run (its
/// collectives sit inside the step), then the plan's reason.
std::string graph_step_refusal(const std::string& mode, const torch::Device& device, bool graphs_built,
                               bool distributed, const GraphPlan& plan);

/// Whether a batch has the shapes and dtypes the graph was captured for;
/// else the difference, e.g. "batch of 100 rows, the graph's is 256".
std::string batch_shape_mismatch(const data::Batch& captured, const data::Batch& batch);

class GraphStep {
 public:
  enum class Mode {
    capture,  // warm up, capture, replay (a CUDA device and build)
    split,    // the same split step every time, never captured (checks the math on any device)
  };
  GraphStep(const config::ModelGraph& model, GraphPlan plan, Mode mode, int warmup_steps = 3);
  ~GraphStep();

  /// One training step as train_step's contract (hooks.observer sees the
  /// eager nodes only). Returns the loss (a scalar tensor of its own).
  torch::Tensor step(TrainingSetup& training, const data::Batch& batch, const StepHooks& hooks);

  /// "captured (dense part: 4 of 5 nodes; ...)", "warming up", "eager: <reason>".
  std::string status() const;
  /// Messages for the run's log not yet taken (each reason once), joined by "\n".
  std::string take_notes();
  int64_t replays() const { return replays_; }
  int64_t uncaptured_steps() const { return uncaptured_; }
  bool captured() const;
  /// Still running the eager steps before the capture (neither captured nor failed).
  bool warming_up() const;
  const GraphPlan& plan() const { return plan_; }

 private:
  struct DenseIn {
    torch::Tensor dense, labels, weights;
    std::vector<torch::Tensor> leaves;  // one per plan_.boundary
  };
  struct DenseOut {
    torch::Tensor logits, loss;
    std::vector<torch::Tensor> param_grads, leaf_grads;
  };
  DenseOut run_dense(const DenseIn& in, const TrainingSetup& training) const;
  static std::string replay_difference(const DenseOut& reference, const DenseOut& replayed);
  void note(const std::string& message);

  config::ModelGraph model_;
  GraphPlan plan_;
  Mode mode_;
  int warmup_steps_;
  std::vector<torch::Tensor> params_;  // the dense parameters
  std::vector<config::Value> boundary_templates_;  // keys and widths of the boundary outputs
  data::Batch shape_;  // the captured batch's tensors (their shapes), set on the first step
  DenseIn static_in_;
  DenseOut captured_out_;
  std::unique_ptr<cuda::CudaGraph> graph_;
  int warmed_ = 0;
  std::string failure_;  // a failed capture: every later step is uncaptured
  int64_t replays_ = 0, uncaptured_ = 0;
  std::vector<std::string> notes_;
  std::set<std::string> noted_;
};

}  // namespace recmod::train
