#include "recmod/optim/sparse_optimizer.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
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

/// Rows ahead whose lines update_rows_cpu_kernel prefetches.
constexpr int64_t kPrefetchDistance = 6;

/// Each row is read and written by exactly one thread. weight_t: the
/// table's dtype; math_t: its state's and the gradients' (float for fp16 /
/// bf16 tables).
template <typename weight_t, typename math_t>
void update_rows_cpu_kernel(RowUpdate rule, const OptimizerOptions& o, torch::Tensor& weight, torch::Tensor& state,
                            const torch::Tensor& rows_tensor, const torch::Tensor& values,
                            const RowRounding& rounding) {
  const int64_t n = rows_tensor.numel();
  const int64_t dim = weight.size(1);
  const int64_t state_stride = state_per_row(rule, dim);
  const int64_t* rows = rows_tensor.data_ptr<int64_t>();
  const math_t* g_all = values.data_ptr<math_t>();
  weight_t* w_all = weight.data_ptr<weight_t>();
  math_t* s_all = state.defined() ? state.data_ptr<math_t>() : nullptr;
  const RowUpdateScalars<math_t> scalars(o);
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(dim, 1));
  const int64_t row_bytes = dim * static_cast<int64_t>(sizeof(weight_t));
  at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) {
    RowRounding row_rounding = rounding;
    for (int64_t i = begin; i < end; ++i) {
      // The rows are scattered over the table: ask for a later row (and its
      // state) while this one is updated, as the fused backward does.
      if (i + kPrefetchDistance < end) {
        const int64_t ahead = rows[i + kPrefetchDistance];
        const char* w_ahead = reinterpret_cast<const char*>(w_all + ahead * dim);
        for (int64_t o = 0; o < row_bytes; o += 64) __builtin_prefetch(w_ahead + o, 1, 3);
        if (s_all != nullptr) __builtin_prefetch(s_all + ahead * state_stride, 1, 3);
      }
      const int64_t r = rows[i];
      row_rounding.row = static_cast<uint64_t>(r);
      apply_row_update<weight_t, math_t>(rule, scalars, g_all + i * dim, w_all + r * dim,
                                         s_all != nullptr ? s_all + r * state_stride : nullptr, dim, row_rounding);
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

void update_rows(const OptimizerOptions& options, torch::Tensor& weight, torch::Tensor& state, const RowGradients& grad,
                 bool use_tensor_ops, const RowRounding& rounding) {
  const RowUpdate rule = row_update_of(options.type(), "embedding optimizer");
  TORCH_CHECK(weight.dim() == 2, "embedding optimizer: expected a table of shape (N, D), got ", weight.sizes());
  TORCH_CHECK(grad.values.dim() == 2 && grad.values.size(1) == weight.size(1) &&
                  grad.values.size(0) == grad.rows.numel(),
              "embedding optimizer: expected row gradients of shape (", grad.rows.numel(), ", ", weight.size(1),
              "), got ", grad.values.sizes());
  if (grad.rows.numel() == 0) return;
  torch::NoGradGuard no_grad;
  const auto wt = weight.scalar_type();
  const bool low = wt == torch::kHalf || wt == torch::kBFloat16;
  // fp16 / bf16 tables: the update in float32 (the state's dtype).
  const auto math_type = low ? torch::kFloat : wt;
  const bool cpu_kernel = !use_tensor_ops && weight.is_cpu() && grad.values.is_cpu() && weight.is_contiguous() &&
                          (!state.defined() || (state.is_contiguous() && state.scalar_type() == math_type)) &&
                          (low || ((wt == torch::kFloat || wt == torch::kDouble) && grad.values.scalar_type() == wt));
  if (!cpu_kernel) {
    const bool low_grad = grad.values.scalar_type() == torch::kHalf || grad.values.scalar_type() == torch::kBFloat16;
    update_rows_with_tensor_ops(rule, options, weight, state, grad.rows,
                                low_grad ? grad.values.to(torch::kFloat) : grad.values, rounding);
    return;
  }
  const torch::Tensor rows = grad.rows.to(torch::kLong).contiguous();
  check_rows_in_range(rows, weight.size(0));
  const torch::Tensor values = grad.values.to(math_type).contiguous();
  if (wt == torch::kHalf) {
    update_rows_cpu_kernel<c10::Half, float>(rule, options, weight, state, rows, values, rounding);
  } else if (wt == torch::kBFloat16) {
    update_rows_cpu_kernel<c10::BFloat16, float>(rule, options, weight, state, rows, values, rounding);
  } else if (wt == torch::kDouble) {
    update_rows_cpu_kernel<double, double>(rule, options, weight, state, rows, values, rounding);
  } else {
    update_rows_cpu_kernel<float, float>(rule, options, weight, state, rows, values, rounding);
  }
}

SparseOptimizer::SparseOptimizer(std::vector<std::pair<std::string, torch::Tensor>> tables, OptimizerOptions options,
                                 std::vector<bool> stochastic_rounding, std::vector<ShardOffsets> offsets)
    : tables_(std::move(tables)),
      options_(std::move(options)),
      stochastic_rounding_(std::move(stochastic_rounding)),
      offsets_(std::move(offsets)) {
  validate(options_, OptimizerRole::embedding);
  TORCH_CHECK(stochastic_rounding_.empty() || stochastic_rounding_.size() == tables_.size(),
              "embedding optimizer: ", stochastic_rounding_.size(), " stochastic_rounding flags for ", tables_.size(),
              " tables");
  TORCH_CHECK(offsets_.empty() || offsets_.size() == tables_.size(), "embedding optimizer: ", offsets_.size(),
              " shard offsets for ", tables_.size(), " tables");
  if (std::find(stochastic_rounding_.begin(), stochastic_rounding_.end(), true) != stochastic_rounding_.end())
    rounding_ = RoundingState::drawn();
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
    const bool stochastic = i < stochastic_rounding_.size() && stochastic_rounding_[i];
    update_rows(options_, w, states_[i], touched_rows(w.grad()), /*use_tensor_ops=*/false,
                rounding_.rounding(stochastic, i < offsets_.size() ? offsets_[i] : ShardOffsets{}));
  }
  rounding_.advance();
}

StateDict SparseOptimizer::state_dict() const {
  const std::string suffix = std::string(".") + state_name(row_update_of(options_.type(), "embedding optimizer"));
  StateDict out;
  for (size_t i = 0; i < tables_.size(); ++i)
    if (states_[i].defined()) out.emplace_back("embedding." + tables_[i].first + suffix, states_[i]);
  if (rounding_.defined()) out.emplace_back("stochastic_rounding", rounding_.tensor());
  return out;
}

}  // namespace recmod::optim
