#include "recmod/modules/mlp.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>

#include "recmod/common/check.h"
#include "recmod/modules/onednn_linear.h"

namespace recmod {

namespace {

/// y[r, :] = act(y[r, :] + b) for every row, in one pass over y (the GEMM
/// wrote y = x W^T with beta = 0).
void bias_activation_rows(float* y, const float* b, int64_t rows, int64_t cols, bool relu) {
  // A task gets at least 256 Ki elements (1 MiB, some 30 us of this pass):
  // a smaller one costs less than waking a sleeping OpenMP worker, so batch
  // 128's 128 x 512 output stays on one thread and batch 2048's splits.
  constexpr int64_t kMinTaskElements = int64_t{1} << 18;
  const int64_t grain = std::max<int64_t>(1, kMinTaskElements / std::max<int64_t>(cols, 1));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* __restrict yr = y + r * cols;
      if (relu)
        for (int64_t j = 0; j < cols; ++j) yr[j] = std::max(yr[j] + b[j], 0.f);
      else
        for (int64_t j = 0; j < cols; ++j) yr[j] += b[j];
    }
  });
}

/// x W^T + b, then the activation, on a fresh output; nothing for autograd.
torch::Tensor linear_activation_forward(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b,
                                        bool relu) {
  torch::Tensor y = mm_any(x, false, w, true);
  bias_activation_rows(y.data_ptr<float>(), b.data_ptr<float>(), y.size(0), y.size(1), relu);
  return y;
}

}  // namespace

PerceptronImpl::PerceptronImpl(PerceptronOptions options_) : options(std::move(options_)) {
  RECMOD_CHECK_INPUT(options.out_size() > 0, "Perceptron: out_size must be positive, got ", options.out_size());
  if (options.in_size()) {
    RECMOD_CHECK_INPUT(*options.in_size() > 0, "Perceptron: in_size must be positive, got ", *options.in_size());
    auto tensor_options = torch::TensorOptions();
    if (options.device()) tensor_options = tensor_options.device(*options.device());
    if (options.dtype()) tensor_options = tensor_options.dtype(*options.dtype());
    create_layers(*options.in_size(), tensor_options);
  }
}

void PerceptronImpl::create_layers(int64_t in_size, const torch::TensorOptions& tensor_options) {
  options.in_size(in_size);
  linear_ = register_module(
      "_linear", torch::nn::Linear(torch::nn::LinearOptions(in_size, options.out_size()).bias(options.bias())));
  // Registered after _linear (also when lazy) so that state_dict keeps TorchRec's key order.
  if (options.activation().is_module()) register_module("_activation_fn", options.activation().module_ptr());
  const bool moved = tensor_options.has_device() || tensor_options.has_dtype();
  if (moved) to(tensor_options.device(), tensor_options.dtype().toScalarType());
}

void PerceptronImpl::initialize_parameters(int64_t in_size, const torch::Tensor& like) {
  TORCH_CHECK(!is_initialized(), "Perceptron: already initialized with in_size ", *options.in_size());
  RECMOD_CHECK_INPUT(in_size > 0, "Perceptron: in_size must be positive, got ", in_size);
  create_layers(in_size, lazy_tensor_options(like, options.device(), options.dtype()));
}

torch::Tensor PerceptronImpl::forward(const torch::Tensor& input) {
  const torch::Tensor out = forward_in_compute_dtype(input);
  return out.scalar_type() == input.scalar_type() ? out : out.to(input.scalar_type());
}

torch::Tensor PerceptronImpl::forward_in_compute_dtype(const torch::Tensor& input) {
  if (!is_initialized()) initialize_parameters(infer_in_size(input, "Perceptron"), input);
  RECMOD_CHECK_INPUT(input.dim() >= 1 && input.size(-1) == *options.in_size(),
                     "Perceptron: expected input of shape (*, ", *options.in_size(), "), got ", input.sizes());
  const auto& act = options.activation();
  const torch::Tensor& weight = linear_->weight;
  const torch::Tensor& bias = linear_->bias;
  const bool relu = !act.is_module() && act.name() == "relu";
  const bool recording = torch::autograd::GradMode::is_enabled() &&
                         (input.requires_grad() || weight.requires_grad() || (bias.defined() && bias.requires_grad()));
  const auto compute = options.compute_dtype();
  torch::Tensor out;
  if (recording && compute && *compute != weight.scalar_type()) {
    // Training in a lower precision (training.dense_precision): the product
    // and the bias in `compute` on copies of the master weights; autograd
    // casts their gradients back to the weights' dtype. ReLU stays in
    // `compute` (the next layer reads it as is); any other activation sees
    // the weights' dtype (an activation module has parameters of its own).
    const torch::Tensor y = torch::linear(input.to(*compute), weight.to(*compute),
                                          bias.defined() ? bias.to(*compute) : torch::Tensor());
    out = relu ? act(y) : act(y.to(weight.scalar_type()));
  } else {
    // An input in the compute dtype (the previous layer's) while not recording
    // returns to the weights' dtype; any other dtype goes to linear as given.
    const torch::Tensor x =
        compute && input.scalar_type() == *compute && *compute != weight.scalar_type() ? input.to(weight.scalar_type())
                                                                                       : input;
    const bool fused = relu && x.dim() == 2 && bias.defined() && x.device().is_cpu() &&
                       x.scalar_type() == torch::kFloat;
    // Without autograd (eval, predictions): one GEMM and one bias + ReLU pass.
    // Otherwise linear_any: in fp32 on the CPU the product (and, training,
    // both backward products) through oneDNN's GEMM where this build has it.
    // The activation stays a node of its own: a fused Linear + ReLU with the
    // mask and bias gradient in one pass was no faster (the layers run at
    // their GEMM roof; dlrm_bench BM_TopMlp, BENCHMARKS.md issue 17).
    out = fused && !recording ? linear_activation_forward(x.contiguous(), weight, bias, relu)
                              : act(linear_any(x, weight, bias));
  }
  finish_forward(*this);
  return out;
}

MLPImpl::MLPImpl(MLPOptions options_) : options(std::move(options_)) {
  const auto& sizes = options.layer_sizes();
  RECMOD_CHECK_INPUT(!sizes.empty(), "MLP: layer_sizes must not be empty");
  TORCH_CHECK(options.activation(), "MLP: empty activation factory");
  RECMOD_CHECK_INPUT(options.dropout() >= 0 && options.dropout() < 1, "MLP: dropout must be in [0, 1), got ",
                     options.dropout());
  mlp_ = register_module("_mlp", torch::nn::Sequential());
  std::optional<int64_t> in_size = options.in_size();
  for (int64_t out_size : sizes) {
    RECMOD_CHECK_INPUT(out_size > 0, "MLP: layer_sizes must be positive, got ", c10::IntArrayRef(sizes));
    Perceptron layer(PerceptronOptions(in_size, out_size)
                         .bias(options.bias())
                         .activation(options.activation()(out_size))
                         .device(options.device())
                         .dtype(options.dtype())
                         .compute_dtype(options.compute_dtype()));
    mlp_->push_back(layer);
    layers_.push_back(layer);
    in_size = out_size;
  }
}

void MLPImpl::initialize_parameters(int64_t in_size, const torch::Tensor& like) {
  TORCH_CHECK(!is_initialized(), "MLP: already initialized with in_size ", *options.in_size());
  // The first layer is created on `like`'s device (or the configured one);
  // the layers sized at construction follow it there.
  const auto tensor_options = lazy_tensor_options(like, options.device(), options.dtype());
  to(tensor_options.device(), tensor_options.dtype().toScalarType());
  layers_.front()->initialize_parameters(in_size, like);
  options.in_size(in_size);
}

torch::Tensor MLPImpl::forward(const torch::Tensor& input) {
  if (!is_initialized()) initialize_parameters(infer_in_size(input, "MLP"), input);
  RECMOD_CHECK_INPUT(input.dim() >= 1 && input.size(-1) == *options.in_size(), "MLP: expected input of shape (*, ",
                     *options.in_size(), "), got ", input.sizes());
  torch::Tensor x = input;
  const bool drop = options.dropout() > 0 && is_training();
  for (auto& layer : layers_) {
    x = layer->forward_in_compute_dtype(x);
    if (drop) x = torch::dropout(x, options.dropout(), /*train=*/true);
  }
  if (x.scalar_type() != input.scalar_type()) x = x.to(input.scalar_type());
  finish_forward(*this);
  return x;
}

int64_t set_dense_compute_dtype(torch::nn::Module& root, std::optional<torch::Dtype> compute_dtype) {
  int64_t perceptrons = 0;
  auto visit = [&](torch::nn::Module& m) {
    if (auto* p = dynamic_cast<PerceptronImpl*>(&m)) {
      p->options.compute_dtype(compute_dtype);
      ++perceptrons;
    } else if (auto* mlp = dynamic_cast<MLPImpl*>(&m)) {
      mlp->options.compute_dtype(compute_dtype);
    }
  };
  visit(root);
  for (const auto& item : root.named_modules(/*name_prefix=*/"", /*include_self=*/false)) visit(*item.value());
  return perceptrons;
}

}  // namespace recmod
