#include "recmod/modules/interaction.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

namespace recmod {

namespace {

/// Row i of example b: the dense vector for i = 0, else sparse embedding i - 1.
struct Rows {
  const float* dense;
  const float* sparse;
  int64_t f, d;
  const float* row(int64_t b, int64_t i) const { return i == 0 ? dense + b * d : sparse + (b * f + i - 1) * d; }
};

float dot(const float* x, const float* y, int64_t d) {
  float s = 0;
  for (int64_t k = 0; k < d; ++k) s += x[k] * y[k];
  return s;
}

void axpy(float a, const float* x, float* y, int64_t d) {
  for (int64_t k = 0; k < d; ++k) y[k] += a * x[k];
}

constexpr int64_t kGrain = 32;  // examples per task

class DotInteractionFunction : public torch::autograd::Function<DotInteractionFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& dense,
                               const torch::Tensor& sparse, int64_t num_sparse) {
    const torch::Tensor x0 = dense.contiguous(), xs = sparse.contiguous();
    ctx->save_for_backward({x0, xs});
    ctx->saved_data["num_sparse"] = num_sparse;
    const int64_t b = x0.size(0), d = x0.size(1), n = num_sparse + 1, pairs = n * (n - 1) / 2;
    torch::Tensor out = torch::empty({b, d + pairs}, x0.options());
    const Rows rows{x0.data_ptr<float>(), xs.data_ptr<float>(), num_sparse, d};
    float* o = out.data_ptr<float>();
    at::parallel_for(0, b, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t e = begin; e < end; ++e) {
        float* oe = o + e * (d + pairs);
        std::copy(rows.row(e, 0), rows.row(e, 0) + d, oe);
        int64_t p = d;
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = i + 1; j < n; ++j) oe[p++] = dot(rows.row(e, i), rows.row(e, j), d);
      }
    });
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& x0 = saved[0];
    const torch::Tensor& xs = saved[1];
    const int64_t num_sparse = ctx->saved_data["num_sparse"].toInt();
    const int64_t b = x0.size(0), d = x0.size(1), n = num_sparse + 1, pairs = n * (n - 1) / 2;
    const torch::Tensor g = grads[0].contiguous();
    torch::Tensor g_dense = g.slice(1, 0, d).clone();  // the pass-through part
    torch::Tensor g_sparse = torch::zeros_like(xs);
    const Rows rows{x0.data_ptr<float>(), xs.data_ptr<float>(), num_sparse, d};
    const float* gp = g.data_ptr<float>();
    float* gd = g_dense.data_ptr<float>();
    float* gs = g_sparse.data_ptr<float>();
    auto grad_row = [&](int64_t e, int64_t i) { return i == 0 ? gd + e * d : gs + (e * num_sparse + i - 1) * d; };
    at::parallel_for(0, b, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t e = begin; e < end; ++e) {
        const float* ge = gp + e * (d + pairs) + d;
        int64_t p = 0;
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = i + 1; j < n; ++j, ++p) {
            axpy(ge[p], rows.row(e, j), grad_row(e, i), d);
            axpy(ge[p], rows.row(e, i), grad_row(e, j), d);
          }
      }
    });
    return {g_dense, g_sparse, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor dot_interaction_reference(const torch::Tensor& dense, const torch::Tensor& sparse, int64_t num_sparse) {
  const int64_t batch = dense.size(0), dim = dense.size(1);
  auto combined = torch::cat({dense.unsqueeze(1), sparse.reshape({batch, num_sparse, dim})}, 1);
  auto interactions = torch::bmm(combined, combined.transpose(1, 2));
  auto idx = torch::triu_indices(num_sparse + 1, num_sparse + 1, 1,
                                 torch::TensorOptions().dtype(torch::kLong).device(dense.device()));
  auto flat = interactions.index({torch::indexing::Slice(), idx[0], idx[1]});
  return torch::cat({dense, flat}, 1);
}

torch::Tensor dot_interaction(const torch::Tensor& dense, const torch::Tensor& sparse, int64_t num_sparse) {
  const int64_t batch = dense.size(0), dim = dense.size(1);
  TORCH_CHECK(sparse.dim() == 2 && sparse.size(0) == batch && sparse.size(1) == num_sparse * dim,
              "DotInteraction: expected sparse (", batch, ", ", num_sparse * dim, "), got ", sparse.sizes());
  if (num_sparse == 0) return dense;
  const bool direct = dense.device().is_cpu() && sparse.device().is_cpu() && dense.scalar_type() == torch::kFloat &&
                      sparse.scalar_type() == torch::kFloat;
  if (!direct) return dot_interaction_reference(dense, sparse, num_sparse);
  return DotInteractionFunction::apply(dense, sparse, num_sparse);
}

}  // namespace recmod
