#include "recmod/modules/crossnet.h"

#include <torch/torch.h>

#include "recmod/common/check.h"

namespace recmod {

namespace {

void check_sizes(const char* who, const std::optional<int64_t>& in_features, int64_t num_layers) {
  RECMOD_CHECK_INPUT(!in_features || *in_features > 0, who, ": in_features must be positive, got ", *in_features);
  RECMOD_CHECK_INPUT(num_layers >= 0, who, ": num_layers must be >= 0, got ", num_layers);
}

/// Checks that `input` is (B, N); learns N on the first call of a lazy module.
int64_t checked_in_features(const char* who, const torch::Tensor& input, const std::optional<int64_t>& in_features) {
  RECMOD_CHECK_INPUT(input.dim() == 2 && (!in_features || input.size(1) == *in_features), who,
                     ": expected input of shape (B, ", (in_features ? std::to_string(*in_features) : "N"), "), got ",
                     input.sizes());
  return input.size(1);
}

torch::TensorOptions options_for(const torch::Tensor& input) {
  return torch::TensorOptions().device(input.device()).dtype(input.scalar_type());
}

void append_xavier(torch::nn::ParameterList& list, at::IntArrayRef shape, const torch::TensorOptions& options) {
  torch::Tensor t = torch::empty(shape, options);
  torch::nn::init::xavier_normal_(t);
  list->append(t.set_requires_grad(true));
}

void append_zeros(torch::nn::ParameterList& list, at::IntArrayRef shape, const torch::TensorOptions& options) {
  list->append(torch::zeros(shape, options).set_requires_grad(true));
}

const torch::Tensor& at(const torch::nn::ParameterList& list, int64_t i) { return (*list)[static_cast<size_t>(i)]; }

}  // namespace

// ---- CrossNet ---------------------------------------------------------------

CrossNetImpl::CrossNetImpl(CrossNetOptions options_) : options(std::move(options_)) {
  check_sizes("CrossNet", options.in_features(), options.num_layers());
  kernels_ = register_module("kernels", torch::nn::ParameterList());
  bias_ = register_module("bias", torch::nn::ParameterList());
  if (options.in_features()) create_parameters(*options.in_features(), torch::TensorOptions());
}

void CrossNetImpl::create_parameters(int64_t n, const torch::TensorOptions& tensor_options) {
  options.in_features(n);
  for (int64_t l = 0; l < options.num_layers(); ++l) append_xavier(kernels_, {n, n}, tensor_options);
  for (int64_t l = 0; l < options.num_layers(); ++l) append_zeros(bias_, {n, 1}, tensor_options);
}

void CrossNetImpl::initialize_parameters(int64_t in_features, const torch::Tensor& like) {
  TORCH_CHECK(!is_initialized(), "CrossNet: already initialized with in_features ", *options.in_features());
  RECMOD_CHECK_INPUT(in_features > 0, "CrossNet: in_features must be positive, got ", in_features);
  create_parameters(in_features, options_for(like));
}

torch::Tensor CrossNetImpl::forward(const torch::Tensor& input) {
  const int64_t n = checked_in_features("CrossNet", input, options.in_features());
  if (!is_initialized()) initialize_parameters(n, input);
  const torch::Tensor x0 = input.unsqueeze(2);  // (B, N, 1)
  torch::Tensor xl = x0;
  for (int64_t l = 0; l < options.num_layers(); ++l)
    xl = x0 * (torch::matmul(at(kernels_, l), xl) + at(bias_, l)) + xl;
  torch::Tensor out = xl.squeeze(2);
  finish_forward(*this);
  return out;
}

// ---- LowRankCrossNet --------------------------------------------------------

LowRankCrossNetImpl::LowRankCrossNetImpl(LowRankCrossNetOptions options_) : options(std::move(options_)) {
  check_sizes("LowRankCrossNet", options.in_features(), options.num_layers());
  RECMOD_CHECK_INPUT(options.low_rank() >= 1, "LowRankCrossNet: low_rank must be >= 1, got ", options.low_rank());
  w_kernels_ = register_module("W_kernels", torch::nn::ParameterList());
  v_kernels_ = register_module("V_kernels", torch::nn::ParameterList());
  bias_ = register_module("bias", torch::nn::ParameterList());
  if (options.in_features()) create_parameters(*options.in_features(), torch::TensorOptions());
}

void LowRankCrossNetImpl::create_parameters(int64_t n, const torch::TensorOptions& tensor_options) {
  options.in_features(n);
  const int64_t r = options.low_rank();
  for (int64_t l = 0; l < options.num_layers(); ++l) append_xavier(w_kernels_, {n, r}, tensor_options);
  for (int64_t l = 0; l < options.num_layers(); ++l) append_xavier(v_kernels_, {r, n}, tensor_options);
  for (int64_t l = 0; l < options.num_layers(); ++l) append_zeros(bias_, {n}, tensor_options);
}

void LowRankCrossNetImpl::initialize_parameters(int64_t in_features, const torch::Tensor& like) {
  TORCH_CHECK(!is_initialized(), "LowRankCrossNet: already initialized with in_features ", *options.in_features());
  RECMOD_CHECK_INPUT(in_features > 0, "LowRankCrossNet: in_features must be positive, got ", in_features);
  create_parameters(in_features, options_for(like));
}

torch::Tensor LowRankCrossNetImpl::forward(const torch::Tensor& input) {
  const int64_t n = checked_in_features("LowRankCrossNet", input, options.in_features());
  if (!is_initialized()) initialize_parameters(n, input);
  const torch::Tensor& x0 = input;  // (B, N)
  torch::Tensor xl = x0;
  for (int64_t l = 0; l < options.num_layers(); ++l) {
    const torch::Tensor xl_v = torch::nn::functional::linear(xl, at(v_kernels_, l));    // (B, r)
    const torch::Tensor xl_w = torch::nn::functional::linear(xl_v, at(w_kernels_, l));  // (B, N)
    xl = x0 * (xl_w + at(bias_, l)) + xl;
  }
  finish_forward(*this);
  return xl;
}

// ---- VectorCrossNet ---------------------------------------------------------

VectorCrossNetImpl::VectorCrossNetImpl(VectorCrossNetOptions options_) : options(std::move(options_)) {
  check_sizes("VectorCrossNet", options.in_features(), options.num_layers());
  kernels_ = register_module("kernels", torch::nn::ParameterList());
  bias_ = register_module("bias", torch::nn::ParameterList());
  if (options.in_features()) create_parameters(*options.in_features(), torch::TensorOptions());
}

void VectorCrossNetImpl::create_parameters(int64_t n, const torch::TensorOptions& tensor_options) {
  options.in_features(n);
  for (int64_t l = 0; l < options.num_layers(); ++l) append_xavier(kernels_, {n, 1}, tensor_options);
  for (int64_t l = 0; l < options.num_layers(); ++l) append_zeros(bias_, {n, 1}, tensor_options);
}

void VectorCrossNetImpl::initialize_parameters(int64_t in_features, const torch::Tensor& like) {
  TORCH_CHECK(!is_initialized(), "VectorCrossNet: already initialized with in_features ", *options.in_features());
  RECMOD_CHECK_INPUT(in_features > 0, "VectorCrossNet: in_features must be positive, got ", in_features);
  create_parameters(in_features, options_for(like));
}

torch::Tensor VectorCrossNetImpl::forward(const torch::Tensor& input) {
  const int64_t n = checked_in_features("VectorCrossNet", input, options.in_features());
  if (!is_initialized()) initialize_parameters(n, input);
  const torch::Tensor x0 = input.unsqueeze(2);  // (B, N, 1)
  torch::Tensor xl = x0;
  for (int64_t l = 0; l < options.num_layers(); ++l) {
    const torch::Tensor xl_w = torch::tensordot(xl, at(kernels_, l), {1}, {0});  // (B, 1, 1)
    xl = torch::matmul(x0, xl_w) + at(bias_, l) + xl;
  }
  torch::Tensor out = xl.squeeze(2);
  finish_forward(*this);
  return out;
}

// ---- LowRankMixtureCrossNet -------------------------------------------------

LowRankMixtureCrossNetImpl::LowRankMixtureCrossNetImpl(LowRankMixtureCrossNetOptions options_)
    : options(std::move(options_)) {
  check_sizes("LowRankMixtureCrossNet", options.in_features(), options.num_layers());
  RECMOD_CHECK_INPUT(options.num_experts() >= 1, "LowRankMixtureCrossNet: num_experts must be >= 1, got ",
                     options.num_experts());
  RECMOD_CHECK_INPUT(options.low_rank() >= 1, "LowRankMixtureCrossNet: low_rank must be >= 1, got ",
                     options.low_rank());
  // Registration order is TorchRec's attribute order, which fixes the state_dict key order.
  u_kernels_ = register_module("U_kernels", torch::nn::ParameterList());
  v_kernels_ = register_module("V_kernels", torch::nn::ParameterList());
  bias_ = register_module("bias", torch::nn::ParameterList());
  if (options.num_experts() > 1) gates_ = register_module("gates", torch::nn::ModuleList());
  if (options.activation().is_module()) register_module("_activation", options.activation().module_ptr());
  c_kernels_ = register_module("C_kernels", torch::nn::ParameterList());
  if (options.in_features()) create_parameters(*options.in_features(), torch::TensorOptions());
}

void LowRankMixtureCrossNetImpl::create_parameters(int64_t n, const torch::TensorOptions& tensor_options) {
  options.in_features(n);
  const int64_t k = options.num_experts(), r = options.low_rank();
  for (int64_t l = 0; l < options.num_layers(); ++l) append_xavier(u_kernels_, {k, n, r}, tensor_options);
  for (int64_t l = 0; l < options.num_layers(); ++l) append_xavier(v_kernels_, {k, r, n}, tensor_options);
  for (int64_t l = 0; l < options.num_layers(); ++l) append_zeros(bias_, {n, 1}, tensor_options);
  if (k > 1) {
    for (int64_t i = 0; i < k; ++i) {
      torch::nn::Linear gate(torch::nn::LinearOptions(n, 1).bias(false));
      gate->to(tensor_options.device(), tensor_options.dtype().toScalarType());
      gates_->push_back(gate);
    }
  }
  for (int64_t l = 0; l < options.num_layers(); ++l) append_xavier(c_kernels_, {k, r, r}, tensor_options);
}

void LowRankMixtureCrossNetImpl::initialize_parameters(int64_t in_features, const torch::Tensor& like) {
  TORCH_CHECK(!is_initialized(), "LowRankMixtureCrossNet: already initialized with in_features ", *options.in_features());
  RECMOD_CHECK_INPUT(in_features > 0, "LowRankMixtureCrossNet: in_features must be positive, got ", in_features);
  create_parameters(in_features, options_for(like));
}

torch::Tensor LowRankMixtureCrossNetImpl::forward(const torch::Tensor& input) {
  const int64_t n = checked_in_features("LowRankMixtureCrossNet", input, options.in_features());
  if (!is_initialized()) initialize_parameters(n, input);
  const int64_t k = options.num_experts();
  const Activation& g = options.activation();
  const torch::Tensor x0 = input.unsqueeze(2);  // (B, N, 1)
  torch::Tensor xl = x0;
  for (int64_t l = 0; l < options.num_layers(); ++l) {
    std::vector<torch::Tensor> experts;
    for (int64_t i = 0; i < k; ++i) {
      torch::Tensor e = torch::matmul(at(v_kernels_, l)[i], xl);  // (B, r, 1)
      e = torch::matmul(at(c_kernels_, l)[i], g(e));               // (B, r, 1)
      e = torch::matmul(at(u_kernels_, l)[i], g(e));               // (B, N, 1)
      experts.push_back((x0 * (e + at(bias_, l))).squeeze(2));     // (B, N)
    }
    const torch::Tensor stacked = torch::stack(experts, 2);  // (B, N, K)
    if (k > 1) {
      std::vector<torch::Tensor> gating;
      for (const auto& gate : *gates_) gating.push_back(gate->as<torch::nn::LinearImpl>()->forward(xl.squeeze(2)));
      const torch::Tensor weights = torch::softmax(torch::stack(gating, 1), 1);  // (B, K, 1)
      xl = torch::matmul(stacked, weights) + xl;                                // (B, N, 1)
    } else {
      xl = stacked + xl;
    }
  }
  torch::Tensor out = xl.squeeze(2);
  finish_forward(*this);
  return out;
}

}  // namespace recmod
