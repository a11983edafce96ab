#include "recmod/optim/row_update.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "recmod/common/errors.h"
#include "recmod/common/huge_pages.h"

namespace recmod::optim {

RowUpdate row_update_of(const std::string& type, const std::string& who) {
  if (type == "sgd") return RowUpdate::sgd;
  if (type == "adagrad") return RowUpdate::adagrad;
  if (type == "rowwise_adagrad") return RowUpdate::rowwise_adagrad;
  throw_input_error(who, ": unknown type '", type, "'; valid types are ",
                    join_names(optimizer_types(OptimizerRole::embedding)));
}

const char* state_name(RowUpdate rule) {
  switch (rule) {
    case RowUpdate::adagrad:
      return "sum";
    case RowUpdate::rowwise_adagrad:
      return "momentum1";
    case RowUpdate::sgd:
      break;
  }
  return "";
}

int64_t state_per_row(RowUpdate rule, int64_t dim) {
  switch (rule) {
    case RowUpdate::adagrad:
      return dim;
    case RowUpdate::rowwise_adagrad:
      return 1;
    case RowUpdate::sgd:
      break;
  }
  return 0;
}

torch::Tensor make_row_state(RowUpdate rule, const OptimizerOptions& optimizer, torch::IntArrayRef table_shape,
                             const torch::TensorOptions& options) {
  torch::Tensor state;
  switch (rule) {
    case RowUpdate::adagrad:
      state = torch::empty(table_shape, options);
      break;
    case RowUpdate::rowwise_adagrad:
      state = torch::empty({table_shape[0]}, options);
      break;
    case RowUpdate::sgd:
      return {};
  }
  // The state is read and written at the touched rows, as randomly as the
  // table: huge pages (asked for before the fill touches it) spare TLB misses.
  if (state.is_cpu()) advise_huge_pages(state.data_ptr(), static_cast<size_t>(state.numel()) * state.element_size());
  return state.fill_(optimizer.initial_accumulator_value());
}

RoundingState RoundingState::drawn() {
  return given(static_cast<uint64_t>(torch::randint(0, int64_t{1} << 62, {1}, torch::kLong).item<int64_t>()), 0);
}

RoundingState RoundingState::given(uint64_t seed, uint64_t step) {
  RoundingState out;
  out.state_ = torch::tensor({static_cast<int64_t>(seed), static_cast<int64_t>(step)}, torch::kLong);
  return out;
}

uint64_t RoundingState::seed() const {
  return defined() ? static_cast<uint64_t>(state_.data_ptr<int64_t>()[0]) : 0;
}
uint64_t RoundingState::step() const {
  return defined() ? static_cast<uint64_t>(state_.data_ptr<int64_t>()[1]) : 0;
}

RowRounding RoundingState::rounding(bool stochastic, ShardOffsets offsets) const {
  if (!stochastic || !defined()) return {};
  return {true, stochastic_rounding_stream(seed(), step()), 0, offsets};
}

void RoundingState::advance() {
  if (defined()) ++state_.data_ptr<int64_t>()[1];
}

namespace {

/// One row of an fp16 / bf16 table rounded stochastically (a template, so
/// that the dispatch's other types never instantiate it).
template <typename weight_t>
void store_rounded_row(const float* v, weight_t* w, int64_t dim, const RowRounding& rounding, int64_t row) {
  if constexpr (sizeof(weight_t) == 2)
    store_row_stochastic<weight_t>(v, w, dim,
                                   stochastic_rounding_row(rounding.stream, rounding.offsets.row + static_cast<uint64_t>(row)),
                                   rounding.offsets.column);
}

}  // namespace

void update_rows_with_tensor_ops(RowUpdate rule, const OptimizerOptions& o, torch::Tensor& table,
                                 torch::Tensor& state, const torch::Tensor& rows, torch::Tensor g,
                                 const RowRounding& rounding) {
  torch::Tensor w = table.index_select(0, rows).to(g.scalar_type());
  if (o.weight_decay() != 0) g = g.add(w, o.weight_decay());
  switch (rule) {
    case RowUpdate::sgd:
      w.add_(g, -o.lr());
      break;
    case RowUpdate::adagrad: {
      torch::Tensor s = state.index_select(0, rows).addcmul_(g, g);
      state.index_copy_(0, rows, s);
      w.addcdiv_(g, s.sqrt_().add_(o.eps()), -o.lr());
      break;
    }
    case RowUpdate::rowwise_adagrad: {
      torch::Tensor m = state.index_select(0, rows).add_(g.square().mean(1));
      state.index_copy_(0, rows, m);
      w.sub_(g * (o.lr() / (m.sqrt() + o.eps())).unsqueeze(1));
      break;
    }
  }
  const bool low = table.scalar_type() == torch::kHalf || table.scalar_type() == torch::kBFloat16;
  if (!rounding.stochastic || !low) {
    table.index_copy_(0, rows, w.to(table.scalar_type()));
    return;
  }
  // Stochastic rounding: element (row, j) with the bits of (seed, step, global row, global column).
  const torch::Tensor wf = w.to(torch::kCPU, torch::kFloat).contiguous();
  const torch::Tensor r = rows.to(torch::kCPU, torch::kLong).contiguous();
  torch::Tensor out = torch::empty(wf.sizes(), wf.options().dtype(table.scalar_type()));
  const int64_t n = wf.size(0), dim = wf.size(1);
  AT_DISPATCH_FLOATING_TYPES_AND2(torch::kHalf, torch::kBFloat16, out.scalar_type(), "round_rows_stochastic", [&] {
    if constexpr (sizeof(scalar_t) == 2) {
      const float* src = wf.data_ptr<float>();
      const int64_t* row = r.data_ptr<int64_t>();
      scalar_t* dst = out.data_ptr<scalar_t>();
      // A task rounds at least 16 Ki elements (tens of microseconds): fewer
      // cost less than waking a sleeping OpenMP worker.
      at::parallel_for(0, n, std::max<int64_t>(1, 16384 / std::max<int64_t>(dim, 1)), [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) store_rounded_row(src + i * dim, dst + i * dim, dim, rounding, row[i]);
      });
    }
  });
  table.index_copy_(0, rows, out.to(table.device()));
}

}  // namespace recmod::optim
