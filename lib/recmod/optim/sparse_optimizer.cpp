#include "recmod/optim/sparse_optimizer.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cmath>

#include "recmod/common/errors.h"

namespace recmod::optim {

RowGradients touched_rows(const torch::Tensor& grad) {
  TORCH_CHECK(grad.dim() == 2, "embedding optimizer: expected a gradient of shape (N, D), got ", grad.sizes());
  if (grad.is_sparse()) {
    if (grad.sparse_dim() != 1) return touched_rows(grad.to_dense());
    const torch::Tensor g = grad.coalesce();
    return {g.indices().select(0, 0).contiguous(), g.values().contiguous()};
  }
  const torch::Tensor rows = grad.ne(0).any(1).nonzero().select(1, 0).contiguous();
  return {rows, grad.index_select(0, rows).contiguous()};
}

namespace {

/// Each row is read and written by exactly one thread.
template <typename scalar_t>
void update_rows_cpu_kernel(RowUpdate rule, const OptimizerOptions& o, torch::Tensor& weight, torch::Tensor& state,
                            const RowGradients& grad) {
  const int64_t n = grad.rows.numel();
  const int64_t dim = weight.size(1);
  const int64_t state_stride = state_per_row(rule, dim);
  const int64_t* rows = grad.rows.data_ptr<int64_t>();
  const scalar_t* g_all = grad.values.data_ptr<scalar_t>();
  scalar_t* w_all = weight.data_ptr<scalar_t>();
  scalar_t* s_all = state.defined() ? state.data_ptr<scalar_t>() : nullptr;
  const RowUpdateScalars<scalar_t> scalars(o);
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(dim, 1));
  at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t r = rows[i];
      apply_row_update<scalar_t, scalar_t>(rule, scalars, g_all + i * dim, w_all + r * dim,
                                           s_all != nullptr ? s_all + r * state_stride : nullptr, dim);
    }
  });
}

void check_rows_in_range(const torch::Tensor& rows, int64_t num_rows) {
  if (rows.numel() == 0) return;
  const int64_t* r = rows.data_ptr<int64_t>();  // sorted
  TORCH_CHECK(r[0] >= 0 && r[rows.numel() - 1] < num_rows, "embedding optimizer: gradient rows span [", r[0],
              ", ", r[rows.numel() - 1], "], the table has ", num_rows, " rows");
}

}  // namespace

void update_rows(const OptimizerOptions& options, torch::Tensor& weight, torch::Tensor& state,
                 const RowGradients& grad, bool use_tensor_ops) {
  const RowUpdate rule = row_update_of(options.type(), "embedding optimizer");
  TORCH_CHECK(weight.dim() == 2, "embedding optimizer: expected a table of shape (N, D), got ", weight.sizes());
  TORCH_CHECK(grad.values.dim() == 2 && grad.values.size(1) == weight.size(1) &&
                  grad.values.size(0) == grad.rows.numel(),
              "embedding optimizer: expected row gradients of shape (", grad.rows.numel(), ", ", weight.size(1),
              "), got ", grad.values.sizes());
  if (grad.rows.numel() == 0) return;
  torch::NoGradGuard no_grad;
  const bool cpu_kernel = !use_tensor_ops && weight.is_cpu() && weight.is_contiguous() &&
                          (!state.defined() || state.is_contiguous()) &&
                          grad.values.scalar_type() == weight.scalar_type() &&
                          (weight.scalar_type() == torch::kFloat || weight.scalar_type() == torch::kDouble);
  if (!cpu_kernel) {
    // fp16 / bf16 tables: the update in float32 (the state's dtype), the
    // rows written back rounded to nearest.
    const bool low = grad.values.scalar_type() == torch::kHalf || grad.values.scalar_type() == torch::kBFloat16;
    update_rows_with_tensor_ops(rule, options, weight, state, grad.rows,
                                low ? grad.values.to(torch::kFloat) : grad.values);
    return;
  }
  const torch::Tensor rows = grad.rows.to(torch::kLong).contiguous();
  check_rows_in_range(rows, weight.size(0));
  const RowGradients contiguous{rows, grad.values.contiguous()};
  AT_DISPATCH_FLOATING_TYPES(weight.scalar_type(), "update_rows_cpu", [&] {
    update_rows_cpu_kernel<scalar_t>(rule, options, weight, state, contiguous);
  });
}

SparseOptimizer::SparseOptimizer(std::vector<std::pair<std::string, torch::Tensor>> tables, OptimizerOptions options)
    : tables_(std::move(tables)), options_(std::move(options)) {
  validate(options_, OptimizerRole::embedding);
  const RowUpdate rule = row_update_of(options_.type(), "embedding optimizer");
  states_.reserve(tables_.size());
  for (const auto& [name, w] : tables_) {
    TORCH_CHECK(w.defined() && w.dim() == 2, "embedding optimizer: parameter '", name,
                "' must be a table of shape (N, D), got ", w.defined() ? w.sizes() : torch::IntArrayRef{});
    // fp16 / bf16 tables keep their optimizer state in float32.
    const bool low = w.scalar_type() == torch::kHalf || w.scalar_type() == torch::kBFloat16;
    states_.push_back(make_row_state(rule, options_, w.sizes(), low ? w.options().dtype(torch::kFloat) : w.options()));
  }
}

void SparseOptimizer::step() {
  for (size_t i = 0; i < tables_.size(); ++i) {
    torch::Tensor& w = tables_[i].second;
    if (!w.grad().defined()) continue;
    update_rows(options_, w, states_[i], touched_rows(w.grad()));
  }
}

StateDict SparseOptimizer::state_dict() const {
  const std::string suffix = std::string(".") + state_name(row_update_of(options_.type(), "embedding optimizer"));
  StateDict out;
  for (size_t i = 0; i < tables_.size(); ++i)
    if (states_[i].defined()) out.emplace_back("embedding." + tables_[i].first + suffix, states_[i]);
  return out;
}

}  // namespace recmod::optim
