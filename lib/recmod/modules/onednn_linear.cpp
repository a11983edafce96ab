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

torch::Tensor matmul_wt(const torch::Tensor& x, const torch::Tensor& w) {
  const torch::Tensor xc = x.contiguous(), wc = w.contiguous();
  const int64_t rows = xc.size(0), in = xc.size(1), out = wc.size(0);
  torch::Tensor y = torch::empty({rows, out}, xc.options());
  onednn_sgemm(false, true, rows, out, in, 1.f, xc.data_ptr<float>(), in, wc.data_ptr<float>(), in, 0.f,
               y.data_ptr<float>(), out);
  return y;
}

/// y = x W^T + b under autograd; the backward's two products through oneDNN.
struct OneDnnLinearFunction : torch::autograd::Function<OneDnnLinearFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w,
                               const torch::Tensor& b) {
    ctx->save_for_backward({x, w});
    torch::Tensor y = matmul_wt(x, w);
    y.add_(b);  // one pass; a (B, O) + (O) broadcast
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor x = saved[0].contiguous(), w = saved[1].contiguous();
    const torch::Tensor dy = grads[0].contiguous();
    const int64_t rows = x.size(0), in = x.size(1), out = w.size(0);
    torch::Tensor dx, dw, db;
    if (ctx->needs_input_grad(0)) {
      dx = torch::empty({rows, in}, x.options());
      onednn_sgemm(false, false, rows, in, out, 1.f, dy.data_ptr<float>(), out, w.data_ptr<float>(), in, 0.f,
                   dx.data_ptr<float>(), in);
    }
    if (ctx->needs_input_grad(1)) {
      dw = torch::empty({out, in}, w.options());
      onednn_sgemm(true, false, out, in, rows, 1.f, dy.data_ptr<float>(), out, x.data_ptr<float>(), in, 0.f,
                   dw.data_ptr<float>(), in);
    }
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
  return recording ? onednn_linear(input, weight, bias) : matmul_wt(input, weight).add_(bias);
}

torch::Tensor onednn_matmul_wt(const torch::Tensor& input, const torch::Tensor& weight) {
  TORCH_CHECK(onednn_sgemm_enabled() && input.dim() == 2 && weight.dim() == 2 && input.size(1) == weight.size(1) &&
                  input.scalar_type() == torch::kFloat && weight.scalar_type() == torch::kFloat,
              "onednn_matmul_wt: unsupported input ", input.sizes(), ", weight ", weight.sizes());
  return matmul_wt(input, weight);
}

}  // namespace recmod
