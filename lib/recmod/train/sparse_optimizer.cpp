#include "recmod/train/sparse_optimizer.h"

#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cmath>

#include "recmod/common/errors.h"

namespace recmod::train {

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

RowUpdate row_update_of(const std::string& type, const std::string& who) {
  if (type == "sgd") return RowUpdate::sgd;
  if (type == "adagrad") return RowUpdate::adagrad;
  if (type == "rowwise_adagrad") return RowUpdate::rowwise_adagrad;
  throw_input_error(who, ": unknown type '", type, "'; valid types are ", join_names(embedding_optimizer_types()));
}

namespace {

void update_rows_tensor_ops(RowUpdate algorithm, const OptimizerOptions& o, torch::Tensor& weight,
                            torch::Tensor& state, const RowGradients& grad) {
  const torch::Tensor& rows = grad.rows;
  torch::Tensor w = weight.index_select(0, rows);
  const torch::Tensor g = o.weight_decay != 0 ? grad.values.add(w, o.weight_decay) : grad.values;
  switch (algorithm) {
    case RowUpdate::sgd:
      w.add_(g, -o.lr);
      break;
    case RowUpdate::adagrad: {
      torch::Tensor s = state.index_select(0, rows).addcmul_(g, g);
      state.index_copy_(0, rows, s);
      w.addcdiv_(g, s.sqrt_().add_(o.eps), -o.lr);
      break;
    }
    case RowUpdate::rowwise_adagrad: {
      torch::Tensor m = state.index_select(0, rows).add_(g.square().mean(1));
      state.index_copy_(0, rows, m);
      w.sub_(g * (o.lr / (m.sqrt() + o.eps)).unsqueeze(1));
      break;
    }
  }
  weight.index_copy_(0, rows, w);
}

/// Each row is read and written by exactly one thread.
template <typename scalar_t>
void update_rows_cpu_kernel(RowUpdate algorithm, const OptimizerOptions& o, torch::Tensor& weight,
                            torch::Tensor& state, const RowGradients& grad) {
  using acc_t = at::acc_type<scalar_t, /*is_cuda=*/false>;
  const int64_t n = grad.rows.numel();
  const int64_t dim = weight.size(1);
  const int64_t* rows = grad.rows.data_ptr<int64_t>();
  const scalar_t* g_all = grad.values.data_ptr<scalar_t>();
  scalar_t* w_all = weight.data_ptr<scalar_t>();
  scalar_t* s_all = state.defined() ? state.data_ptr<scalar_t>() : nullptr;
  const auto lr = static_cast<scalar_t>(o.lr);
  const auto eps = static_cast<scalar_t>(o.eps);
  const auto wd = static_cast<scalar_t>(o.weight_decay);
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(dim, 1));
  at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t r = rows[i];
      scalar_t* w = w_all + r * dim;
      const scalar_t* g = g_all + i * dim;
      switch (algorithm) {
        case RowUpdate::sgd:
          for (int64_t j = 0; j < dim; ++j) w[j] -= lr * (g[j] + wd * w[j]);
          break;
        case RowUpdate::adagrad: {
          scalar_t* s = s_all + r * dim;
          for (int64_t j = 0; j < dim; ++j) {
            const scalar_t gj = g[j] + wd * w[j];
            s[j] += gj * gj;
            w[j] -= lr * gj / (std::sqrt(s[j]) + eps);
          }
          break;
        }
        case RowUpdate::rowwise_adagrad: {
          acc_t sum_sq = 0;
          for (int64_t j = 0; j < dim; ++j) {
            const acc_t gj = g[j] + wd * w[j];
            sum_sq += gj * gj;
          }
          s_all[r] += static_cast<scalar_t>(sum_sq / static_cast<acc_t>(dim));
          const scalar_t multiplier = lr / (std::sqrt(s_all[r]) + eps);
          for (int64_t j = 0; j < dim; ++j) w[j] -= multiplier * (g[j] + wd * w[j]);
          break;
        }
      }
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
  const RowUpdate algorithm = row_update_of(options.type, "embedding optimizer");
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
    update_rows_tensor_ops(algorithm, options, weight, state, grad);
    return;
  }
  const torch::Tensor rows = grad.rows.to(torch::kLong).contiguous();
  check_rows_in_range(rows, weight.size(0));
  const RowGradients contiguous{rows, grad.values.contiguous()};
  AT_DISPATCH_FLOATING_TYPES(weight.scalar_type(), "update_rows_cpu", [&] {
    update_rows_cpu_kernel<scalar_t>(algorithm, options, weight, state, contiguous);
  });
}

SparseOptimizer::SparseOptimizer(std::vector<std::pair<std::string, torch::Tensor>> tables, OptimizerOptions options)
    : tables_(std::move(tables)), options_(std::move(options)) {
  validate_optimizer_options(options_, "embedding");
  states_.reserve(tables_.size());
  for (const auto& [name, w] : tables_) {
    TORCH_CHECK(w.defined() && w.dim() == 2, "embedding optimizer: parameter '", name,
                "' must be a table of shape (N, D), got ", w.defined() ? w.sizes() : torch::IntArrayRef{});
    torch::Tensor state;
    if (options_.type == "adagrad") state = torch::full_like(w, options_.initial_accumulator_value);
    if (options_.type == "rowwise_adagrad") state = torch::full({w.size(0)}, options_.initial_accumulator_value, w.options());
    states_.push_back(std::move(state));
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
  const char* suffix = options_.type == "adagrad" ? ".sum" : ".momentum1";
  StateDict out;
  for (size_t i = 0; i < tables_.size(); ++i)
    if (states_[i].defined()) out.emplace_back("embedding." + tables_[i].first + suffix, states_[i]);
  return out;
}

}  // namespace recmod::train
