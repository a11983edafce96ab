#include "recmod/train/graph_step.h"

#include <torch/torch.h>

#include <algorithm>
#include <exception>
#include <unordered_set>

#include "recmod/common/errors.h"
#include "recmod/cuda/cuda_graph.h"
#include "recmod/train/train_step.h"
#include "recmod/train/training_setup.h"

namespace recmod::train {

using config::ModelGraphImpl;
using config::Value;
using config::ValueKind;

namespace {

std::string node_label(const ModelGraphImpl& model, size_t i) {
  return str_cat("'", model.nodes()[i].name, "' (", model.nodes()[i].type, ")");
}

/// The tensor a dense or pooled value carries.
const torch::Tensor& tensor_of(const Value& v) { return v.kind == ValueKind::Pooled ? v.pooled.values() : v.dense; }

/// A value like `like` (its keys and widths) carrying `t`.
Value with_tensor(const Value& like, const torch::Tensor& t) {
  if (like.kind == ValueKind::Pooled)
    return Value::of_pooled(KeyedTensor(like.pooled.keys(), like.pooled.length_per_key(), t, like.pooled.key_dim()));
  return Value::of_dense(t);
}

std::string shape_str(const torch::Tensor& t) {
  if (!t.defined()) return "none";
  std::string s = "(";
  for (int64_t d = 0; d < t.dim(); ++d) s += str_cat(d ? ", " : "", t.size(d));
  return s + ") " + std::string(c10::toString(t.scalar_type()));
}

/// "" when the first replay's loss and gradients are the uncaptured step's
/// (float tolerance), else what differs. Reads them on the host, once.
std::string replay_difference_impl(const torch::Tensor& ref_loss, const torch::Tensor& loss,
                                   const std::vector<torch::Tensor>& ref, const std::vector<torch::Tensor>& got) {
  auto close = [](const torch::Tensor& a, const torch::Tensor& b) {
    return a.defined() == b.defined() &&
           (!a.defined() || (a.sizes() == b.sizes() && torch::allclose(a.to(torch::kDouble), b.to(torch::kDouble), 1e-3, 1e-5)));
  };
  if (!close(ref_loss, loss))
    return str_cat("the first replay's loss ", loss.item<double>(), " is not the uncaptured step's ", ref_loss.item<double>());
  if (ref.size() != got.size()) return "the first replay gave another number of gradients";
  for (size_t k = 0; k < ref.size(); ++k)
    if (!close(ref[k], got[k])) return str_cat("the first replay's gradient ", k, " differs from the uncaptured step's");
  return "";
}

}  // namespace

GraphPlan plan_graph_split(const ModelGraphImpl& model) {
  GraphPlan plan;
  const auto& nodes = model.nodes();
  std::vector<bool> eager(nodes.size(), false);
  for (size_t i : model.order()) {
    bool e = nodes[i].embedding;
    for (int64_t in : model.input_ids(i))
      if (in == ModelGraphImpl::kSparseInput ||
          (in >= 0 && eager[in] && !nodes[in].shape.is_dense_like()))
        e = true;
    eager[i] = e;
    (e ? plan.eager : plan.captured).push_back(i);
  }
  std::vector<bool> is_boundary(nodes.size(), false);
  for (size_t i : model.order()) {
    for (int64_t in : model.input_ids(i)) {
      if (in < 0) continue;
      if (eager[i] && !eager[in]) {
        plan.reason = str_cat("node ", node_label(model, i), " runs in the eager sparse part but reads node ",
                              node_label(model, in), " of the dense part");
        return plan;
      }
      if (!eager[i] && eager[in]) {
        if (!nodes[in].shape.is_dense_like()) {
          plan.reason = str_cat("node ", node_label(model, in), " gives ", nodes[in].shape.kind_name(), " to node ",
                                node_label(model, i), "; the captured dense part needs fixed-shape inputs");
          return plan;
        }
        if (!is_boundary[in]) plan.boundary.push_back(static_cast<size_t>(in));
        is_boundary[in] = true;
      }
    }
  }
  if (plan.captured.empty()) {
    plan.reason = "the model has no dense nodes to capture";
    return plan;
  }
  if (eager[model.order().back()]) {
    plan.reason = str_cat("the output node ", node_label(model, model.order().back()), " runs in the sparse part");
    return plan;
  }
  // Dense parameters (the dense optimizer's) must all be in captured nodes:
  // the graph computes their gradients.
  for (const auto& [key, p] : model.dense_parameters())
    for (size_t i : plan.eager)
      if (key.rfind(nodes[i].name + ".", 0) == 0) {
        plan.reason = str_cat("node ", node_label(model, i), " of the sparse part has dense parameters (", key, ")");
        return plan;
      }
  std::sort(plan.boundary.begin(), plan.boundary.end(), [&](size_t a, size_t b) {
    const auto& order = model.order();
    return std::find(order.begin(), order.end(), a) < std::find(order.begin(), order.end(), b);
  });
  return plan;
}

std::string graph_step_refusal(const std::string& mode, const torch::Device& device, bool graphs_built,
                               bool distributed, const GraphPlan& plan) {
  if (mode != "auto") return "training.cuda_graphs is " + mode;
  if (!device.is_cuda()) return "the device is the CPU (CUDA graphs need a CUDA device)";
  if (!graphs_built) return "this build of recmod has no CUDA graphs (built without CUDA)";
  if (distributed) return "a distributed run (the gradient all-reduce sits inside the step)";
  return plan.reason;
}

std::string batch_shape_mismatch(const data::Batch& captured, const data::Batch& batch) {
  if (batch.size() != captured.size())
    return str_cat("a batch of ", batch.size(), " rows (the graph's has ", captured.size(), ")");
  const std::pair<const char*, std::pair<const torch::Tensor*, const torch::Tensor*>> parts[] = {
      {"dense features", {&captured.dense, &batch.dense}},
      {"labels", {&captured.labels, &batch.labels}},
      {"sample weights", {&captured.weights, &batch.weights}}};
  for (const auto& [what, tensors] : parts) {
    const torch::Tensor& a = *tensors.first;
    const torch::Tensor& b = *tensors.second;
    if (a.defined() != b.defined() ||
        (a.defined() && (a.sizes() != b.sizes() || a.scalar_type() != b.scalar_type() || a.device() != b.device())))
      return str_cat("the batch's ", what, " are ", shape_str(b), " (the graph's ", shape_str(a), ")");
  }
  return "";
}

GraphStep::GraphStep(const config::ModelGraph& model, GraphPlan plan, Mode mode, int warmup_steps)
    : model_(model), plan_(std::move(plan)), mode_(mode), warmup_steps_(std::max(warmup_steps, 1)) {
  TORCH_CHECK(plan_.ok(), "GraphStep: the model cannot be split: ", plan_.reason);
  for (const auto& [key, p] : model_->dense_parameters()) params_.push_back(p);
  if (mode_ == Mode::capture) graph_ = std::make_unique<cuda::CudaGraph>();
}

GraphStep::~GraphStep() = default;

bool GraphStep::captured() const { return graph_ && graph_->captured() && failure_.empty(); }

bool GraphStep::warming_up() const { return mode_ == Mode::capture && failure_.empty() && !captured(); }

void GraphStep::note(const std::string& message) {
  if (noted_.insert(message).second) notes_.push_back(message);
}

std::string GraphStep::take_notes() {
  std::string out;
  for (const auto& n : notes_) out += (out.empty() ? "" : "\n") + n;
  notes_.clear();
  return out;
}

std::string GraphStep::status() const {
  const std::string part =
      str_cat("dense part: ", plan_.captured.size(), " of ", model_->nodes().size(), " nodes; sparse part eager");
  if (mode_ == Mode::split) return str_cat("split, not captured (", part, ")");
  if (!failure_.empty()) return "eager: the capture failed: " + failure_;
  if (captured())
    return str_cat("captured (", part, "; ", replays_, " replays, ", uncaptured_, " uncaptured steps)");
  return str_cat("warming up (", warmed_, " of ", warmup_steps_, " steps before the capture)");
}

std::string GraphStep::replay_difference(const DenseOut& reference, const DenseOut& replayed) {
  std::vector<torch::Tensor> ref = reference.param_grads, got = replayed.param_grads;
  ref.insert(ref.end(), reference.leaf_grads.begin(), reference.leaf_grads.end());
  got.insert(got.end(), replayed.leaf_grads.begin(), replayed.leaf_grads.end());
  return replay_difference_impl(reference.loss, replayed.loss, ref, got);
}

GraphStep::DenseOut GraphStep::run_dense(const DenseIn& in, const TrainingSetup& training) const {
  const ModelGraphImpl& model = *model_;
  std::vector<Value> values(model.nodes().size());
  for (size_t k = 0; k < plan_.boundary.size(); ++k)
    values[plan_.boundary[k]] = with_tensor(boundary_templates_[k], in.leaves[k]);
  const Value dense = Value::of_dense(in.dense);
  std::vector<Value> inputs;
  for (size_t i : plan_.captured) {
    inputs.clear();
    for (int64_t id : model.input_ids(i)) inputs.push_back(id == ModelGraphImpl::kDenseInput ? dense : values[id]);
    values[i] = model.run_node(i, inputs);
  }
  DenseOut out;
  const torch::Tensor logits = model.logits_of(values);
  data::Batch rows;
  rows.labels = in.labels;
  rows.weights = in.weights;
  const torch::Tensor loss = loss_of(logits, rows, training.tasks());
  std::vector<torch::Tensor> wrt = params_;
  for (const auto& leaf : in.leaves) wrt.push_back(leaf);
  std::vector<torch::Tensor> grads = torch::autograd::grad({loss}, wrt, /*grad_outputs=*/{}, /*retain_graph=*/false,
                                                           /*create_graph=*/false, /*allow_unused=*/true);
  // The parameters' gradients become their .grad: each its own contiguous
  // tensor (autograd may return one tensor for two inputs, or an expanded one).
  std::unordered_set<const void*> seen;
  for (size_t k = 0; k < params_.size(); ++k) {
    torch::Tensor g = grads[k];
    if (g.defined()) {
      g = g.contiguous();
      if (!seen.insert(g.data_ptr()).second) g = g.clone();
    }
    out.param_grads.push_back(g);
  }
  out.leaf_grads.assign(grads.begin() + static_cast<std::ptrdiff_t>(params_.size()), grads.end());
  out.logits = logits.detach();
  out.loss = loss.detach();
  return out;
}

torch::Tensor GraphStep::step(TrainingSetup& training, const data::Batch& batch, const StepHooks& hooks) {
  const ModelGraphImpl& model = *model_;
  training.zero_grad();
  // The eager sparse part, as the executor runs it.
  auto [dense_in, sparse_in] = model.inputs(batch);
  std::vector<Value> values(model.nodes().size());
  std::vector<Value> inputs;
  for (size_t i : plan_.eager) {
    inputs.clear();
    for (int64_t id : model.input_ids(i))
      inputs.push_back(id == ModelGraphImpl::kDenseInput ? dense_in : id == ModelGraphImpl::kSparseInput ? sparse_in : values[id]);
    if (hooks.observer) hooks.observer->before_node(i);
    values[i] = model.run_node(i, inputs);
    if (hooks.observer) hooks.observer->after_node(i, values[i]);
  }
  std::vector<torch::Tensor> boundary_out;
  for (size_t b : plan_.boundary) boundary_out.push_back(tensor_of(values[b]));

  // The first batch fixes the static shapes.
  if (!shape_.labels.defined()) {
    shape_ = batch;
    shape_.sparse = {};
    torch::NoGradGuard no_grad;
    static_in_.dense = torch::empty_like(batch.dense);
    static_in_.labels = torch::empty_like(batch.labels);
    if (batch.weights.defined()) static_in_.weights = torch::empty_like(batch.weights);
    for (size_t k = 0; k < plan_.boundary.size(); ++k) {
      boundary_templates_.push_back(with_tensor(values[plan_.boundary[k]], boundary_out[k].detach()));
      static_in_.leaves.push_back(torch::empty_like(boundary_out[k]).requires_grad_(true));
    }
  }
  std::string mismatch = batch_shape_mismatch(shape_, batch);
  for (size_t k = 0; mismatch.empty() && k < boundary_out.size(); ++k)
    if (boundary_out[k].sizes() != static_in_.leaves[k].sizes() ||
        boundary_out[k].scalar_type() != static_in_.leaves[k].scalar_type())
      mismatch = str_cat("node ", node_label(model, plan_.boundary[k]), " gives ", shape_str(boundary_out[k]),
                         " (the graph's ", shape_str(static_in_.leaves[k]), ")");

  DenseOut out;
  if (!mismatch.empty()) {
    // Uncaptured: the same dense part on this batch's own tensors.
    if (mode_ == Mode::capture) note("cuda graphs: eager step for " + mismatch);
    DenseIn in{batch.dense, batch.labels, batch.weights, {}};
    for (const auto& t : boundary_out) in.leaves.push_back(t.detach().requires_grad_(true));
    out = run_dense(in, training);
    ++uncaptured_;
  } else {
    {
      torch::NoGradGuard no_grad;
      static_in_.dense.copy_(batch.dense);
      static_in_.labels.copy_(batch.labels);
      if (batch.weights.defined()) static_in_.weights.copy_(batch.weights);
      for (size_t k = 0; k < boundary_out.size(); ++k) static_in_.leaves[k].copy_(boundary_out[k]);
    }
    if (mode_ == Mode::split || !failure_.empty()) {
      out = run_dense(static_in_, training);
      ++uncaptured_;
    } else if (warmed_ < warmup_steps_) {
      graph_->run_on_side_stream([&] { out = run_dense(static_in_, training); });
      ++warmed_;
      ++uncaptured_;
    } else if (!graph_->captured()) {
      // The step uncaptured first: the first replay must give its numbers,
      // or the run goes on uncaptured (a wrong graph never trains).
      DenseOut reference;
      graph_->run_on_side_stream([&] { reference = run_dense(static_in_, training); });
      try {
        graph_->capture([&] { captured_out_ = run_dense(static_in_, training); });
        graph_->replay();
        failure_ = replay_difference(reference, captured_out_);
      } catch (const std::exception& e) {
        failure_ = e.what();
        const auto eol = failure_.find('\n');  // libtorch's messages carry a backtrace
        if (eol != std::string::npos) failure_.resize(eol);
      }
      if (failure_.empty()) {
        note(str_cat("cuda graphs: captured the dense part of the step (", plan_.captured.size(), " of ",
                     model.nodes().size(), " nodes); the sparse part runs eagerly"));
        out = captured_out_;
        ++replays_;
      } else {
        note("cuda graphs: eager: the capture failed: " + failure_);
        captured_out_ = DenseOut();
        out = reference;
        ++uncaptured_;
      }
    } else {
      graph_->replay();
      out = captured_out_;
      ++replays_;
    }
  }

  if (hooks.after_forward) hooks.after_forward(out.logits);
  if (hooks.before_backward) hooks.before_backward(out.loss);
  for (size_t k = 0; k < params_.size(); ++k)
    if (out.param_grads[k].defined()) params_[k].mutable_grad() = out.param_grads[k];
  // The sparse part's backward (the fused embedding optimizer runs in it).
  std::vector<torch::Tensor> roots, root_grads;
  for (size_t k = 0; k < boundary_out.size(); ++k)
    if (out.leaf_grads[k].defined() && boundary_out[k].requires_grad()) {
      roots.push_back(boundary_out[k]);
      root_grads.push_back(out.leaf_grads[k]);
    }
  if (!roots.empty()) torch::autograd::backward(roots, root_grads);
  if (hooks.after_backward) hooks.after_backward();
  training.step();
  // The loss of its own: a replay overwrites the graph's output.
  return out.loss.clone();
}

}  // namespace recmod::train
