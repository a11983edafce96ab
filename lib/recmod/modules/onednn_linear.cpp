#include "recmod/modules/onednn_linear.h"

#include <torch/torch.h>

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#ifdef RECMOD_ONEDNN_SGEMM
#include <dnnl.h>
#endif

namespace recmod {

namespace {

#ifdef RECMOD_ONEDNN_SGEMM
bool turned_off_by_environment() {
  const char* value = std::getenv("RECMOD_ONEDNN_SGEMM");
  return value && std::strcmp(value, "0") == 0;
}
#endif

/// op(a) op(b) into a fresh tensor through onednn_sgemm; fp32 2-D inputs.
torch::Tensor onednn_mm(const torch::Tensor& a, bool transpose_a, const torch::Tensor& b, bool transpose_b) {
  const torch::Tensor ac = a.contiguous(), bc = b.contiguous();
  const int64_t m = ac.size(transpose_a ? 1 : 0), k = ac.size(transpose_a ? 0 : 1), n = bc.size(transpose_b ? 0 : 1);
  torch::Tensor c = torch::empty({m, n}, ac.options());
  onednn_sgemm(transpose_a, transpose_b, m, n, k, 1.f, ac.data_ptr<float>(), ac.size(1), bc.data_ptr<float>(),
               bc.size(1), 0.f, c.data_ptr<float>(), n);
  return c;
}

/// x W^T + b with nothing for autograd: one product and one bias pass.
torch::Tensor linear_forward(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  return onednn_mm(x, false, w, true).add_(b);  // (B, O) + (O) broadcast
}

/// y = x W^T + b under autograd; the backward's two products through oneDNN.
struct OneDnnLinearFunction : torch::autograd::Function<OneDnnLinearFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w,
                               const torch::Tensor& b) {
    ctx->save_for_backward({x, w});
    return linear_forward(x, w, b);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& x = saved[0];
    const torch::Tensor& w = saved[1];
    const torch::Tensor dy = grads[0].contiguous();
    torch::Tensor dx, dw, db;
    if (ctx->needs_input_grad(0)) dx = onednn_mm(dy, false, w, false);  // (B, O) (O, I)
    if (ctx->needs_input_grad(1)) dw = onednn_mm(dy, true, x, false);   // (O, B) (B, I)
    if (ctx->needs_input_grad(2)) db = dy.sum(0);
    return {dx, dw, db};
  }
};

}  // namespace

bool onednn_sgemm_enabled() {
#ifdef RECMOD_ONEDNN_SGEMM
  static const bool enabled = !turned_off_by_environment();
  return enabled;
#else
  return false;
#endif
}

void onednn_sgemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                  int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
#ifdef RECMOD_ONEDNN_SGEMM
  const dnnl_status_t status =
      dnnl_sgemm(transpose_a ? 'T' : 'N', transpose_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  if (status != dnnl_success)
    throw std::runtime_error("oneDNN sgemm failed (status " + std::to_string(static_cast<int>(status)) + ") for m=" +
                             std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k));
#else
  (void)transpose_a, (void)transpose_b, (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)lda, (void)b,
      (void)ldb, (void)beta, (void)c, (void)ldc;
  throw std::logic_error("onednn_sgemm: this build has no oneDNN GEMM (check onednn_sgemm_enabled())");
#endif
}

bool onednn_linear_applies(const torch::Tensor& input, const torch::Tensor& weight, const torch::Tensor& bias) {
  return onednn_sgemm_enabled() && bias.defined() && input.dim() == 2 && weight.dim() == 2 && bias.dim() == 1 &&
         input.numel() > 0 && weight.numel() > 0 && input.device().is_cpu() && weight.device().is_cpu() &&
         bias.device().is_cpu() && input.scalar_type() == torch::kFloat && weight.scalar_type() == torch::kFloat &&
         bias.scalar_type() == torch::kFloat && input.size(1) == weight.size(1) && bias.size(0) == weight.size(0);
}

torch::Tensor onednn_linear(const torch::Tensor& input, const torch::Tensor& weight, const torch::Tensor& bias) {
  TORCH_CHECK(onednn_linear_applies(input, weight, bias), "onednn_linear: unsupported input ", input.sizes(), " ",
              input.scalar_type(), ", weight ", weight.sizes(), ", bias ", bias.sizes());
  return OneDnnLinearFunction::apply(input, weight, bias);
}

torch::Tensor linear_any(const torch::Tensor& input, const torch::Tensor& weight, const torch::Tensor& bias) {
  if (!onednn_linear_applies(input, weight, bias)) return torch::linear(input, weight, bias);
  const bool recording = torch::autograd::GradMode::is_enabled() &&
                         (input.requires_grad() || weight.requires_grad() || bias.requires_grad());
  return recording ? OneDnnLinearFunction::apply(input, weight, bias) : linear_forward(input, weight, bias);
}

torch::Tensor mm_any(const torch::Tensor& a, bool transpose_a, const torch::Tensor& b, bool transpose_b) {
  const bool onednn = onednn_sgemm_enabled() && a.dim() == 2 && b.dim() == 2 && a.numel() > 0 && b.numel() > 0 &&
                      a.device().is_cpu() && b.device().is_cpu() && a.scalar_type() == torch::kFloat &&
                      b.scalar_type() == torch::kFloat &&
                      a.size(transpose_a ? 0 : 1) == b.size(transpose_b ? 1 : 0);
  if (!onednn) return torch::mm(transpose_a ? a.t() : a, transpose_b ? b.t() : b);
  return onednn_mm(a, transpose_a, b, transpose_b);
}

}  // namespace recmod
