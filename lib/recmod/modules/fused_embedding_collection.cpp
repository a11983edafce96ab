#include "recmod/modules/fused_embedding_collection.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/torch.h>

#include <cstring>
#include <type_traits>

#include "recmod/common/errors.h"
#include "recmod/cuda/tbe.h"
#include "recmod/cuda/tbe_sequence.h"
#include "recmod/modules/cuda_lookup_errors.h"
#include "recmod/modules/tbe_rule.h"
#include "recmod/optim/sparse_optimizer.h"

namespace recmod {

namespace {

void check_input(const SequenceLookupPlan& plan, const SequenceLookupInput& input) {
  TORCH_CHECK(input.ids.dim() == 1 && (input.ids.scalar_type() == torch::kLong || input.ids.scalar_type() == torch::kInt),
              "sequence embedding lookup: expected 1-d int64 or int32 ids, got ", input.ids.scalar_type(), " of shape ",
              input.ids.sizes());
  TORCH_CHECK(!input.offset_per_key.empty() && input.offset_per_key.back() == input.ids.numel(),
              "sequence embedding lookup: offset_per_key does not end at the ", input.ids.numel(), " ids");
  const auto keys = static_cast<int64_t>(input.offset_per_key.size()) - 1;
  for (const auto& w : plan.tables)
    TORCH_CHECK(w.dim() == 2 && w.size(1) == plan.dim, "sequence embedding lookup: expected tables of width ",
                plan.dim, ", got ", w.sizes());
  for (const auto& s : plan.slots)
    TORCH_CHECK(s.table >= 0 && s.table < static_cast<int64_t>(plan.tables.size()) && s.key >= 0 && s.key < keys,
                "sequence embedding lookup: slot (table ", s.table, ", key ", s.key, ") does not fit ",
                plan.tables.size(), " tables and ", keys, " keys");
}

torch::Tensor key_ids(const SequenceLookupInput& input, int64_t key) {
  return input.ids.slice(0, input.offset_per_key[key], input.offset_per_key[key + 1]);
}

// ---------------------------------------------------------------------------
// Tensor ops (CPU, devices without the kernels, stochastic rounding)

torch::Tensor forward_generic(const SequenceLookupPlan& plan, const SequenceLookupInput& input,
                              const std::vector<int64_t>& rows) {
  torch::Tensor out = torch::empty({rows.back(), plan.dim}, input.ids.options().dtype(torch::kFloat));
  for (size_t s = 0; s < plan.slots.size(); ++s) {
    const FusedSlot& slot = plan.slots[s];
    const torch::Tensor& w = plan.tables[slot.table];
    const torch::Tensor ids = key_ids(input, slot.key).to(torch::kLong);
    if (ids.numel() == 0) continue;
    const torch::Tensor bad = (ids < 0).logical_or(ids >= w.size(0));
    if (bad.any().item<bool>()) {
      const int64_t i = bad.nonzero()[0][0].item<int64_t>();
      throw_input_error("sequence embedding lookup: id ", ids[i].item<int64_t>(), " (input key ", slot.key,
                        ", position ", input.offset_per_key[slot.key] + i, ") is out of range for table ",
                        slot.table, " with ", w.size(0), " rows");
    }
    out.slice(0, rows[s], rows[s + 1]).copy_(w.index_select(0, ids));
  }
  return out;
}

void backward_generic(const SequenceLookupPlan& plan, const SequenceLookupInput& input, const torch::Tensor& grad,
                      const std::vector<int64_t>& rows, FusedEmbeddingOptimizer& optimizer) {
  for (size_t t = 0; t < plan.tables.size(); ++t) {
    std::vector<torch::Tensor> ids, grads;
    for (size_t s = 0; s < plan.slots.size(); ++s) {
      if (plan.slots[s].table != static_cast<int64_t>(t) || rows[s + 1] == rows[s]) continue;
      ids.push_back(key_ids(input, plan.slots[s].key).to(torch::kLong));
      grads.push_back(grad.slice(0, rows[s], rows[s + 1]));
    }
    if (ids.empty()) continue;
    const auto unique = at::_unique(torch::cat(ids), /*sorted=*/true, /*return_inverse=*/true);
    optim::RowGradients g;
    g.rows = std::get<0>(unique);
    g.values = torch::zeros({g.rows.numel(), plan.dim}, grad.options()).index_add_(0, std::get<1>(unique),
                                                                                  torch::cat(grads));
    torch::Tensor table = plan.tables[t];
    optim::update_rows(optimizer.options(), table, optimizer.states()[t], g, /*use_tensor_ops=*/!table.is_cpu(),
                       optimizer.rounding(t));
  }
}

// ---------------------------------------------------------------------------
// CUDA

/// Where the sequence kernels of one device report an out-of-range id: the
/// GPU does not stop at a bad id (it gives a zero row), it is raised one
/// lookup later (as the EBC's, in slots of its own).
CudaLookupErrors& sequence_lookup_errors() {
  static auto& errors = *new CudaLookupErrors("sequence embedding lookup", "a bad id gives a zero row");
  return errors;
}

cuda::TbeDtype dtype_of(const torch::Tensor& w) {
  return w.scalar_type() == torch::kFloat ? cuda::TbeDtype::f32
         : w.scalar_type() == torch::kHalf ? cuda::TbeDtype::f16
                                           : cuda::TbeDtype::bf16;
}

/// The kernels' view of a lookup; the tensors keep what it points to alive
/// until the kernels are queued (the caching allocator orders reuse).
struct SequenceCudaLookup {
  cuda::TbeLaunch launch;
  torch::Tensor meta, ids, offsets;
};

/// `backward`: tbe.h's pooled-backward layout of an unpooled lookup: ids
/// gathered into output order (a view when the slots' keys are already
/// consecutive), one key whose n "bags" are the single ids (offsets
/// 0..n, batch n), every slot at column 0 of an out_dim = D gradient, so
/// that contribution c's gradient is row c. Else (the forward): the KJT's
/// ids and keys, for the kernel and its error report.
SequenceCudaLookup make_cuda_lookup(const SequenceLookupPlan& plan, const SequenceLookupInput& input,
                            const std::vector<int64_t>& rows, FusedEmbeddingOptimizer* optimizer, bool backward,
                            CudaErrorSlot& errors) {
  static_assert(std::is_trivially_copyable<cuda::TbeTable>::value && std::is_trivially_copyable<cuda::TbeSlot>::value,
                "the kernels' metadata is copied as bytes");
  SequenceCudaLookup c;
  const int64_t n = rows.back();
  std::vector<cuda::TbeTable> tables;
  int64_t row_base = 0;
  bool vec4 = plan.dim % 4 == 0;
  for (size_t t = 0; t < plan.tables.size(); ++t) {
    const torch::Tensor& w = plan.tables[t];
    cuda::TbeTable e;
    e.weights = w.data_ptr();
    if (optimizer != nullptr && optimizer->states()[t].defined()) e.state = optimizer->states()[t].data_ptr<float>();
    e.rows = w.size(0);
    e.row_base = row_base;
    e.dim = static_cast<int32_t>(plan.dim);
    e.dtype = dtype_of(w);
    row_base += e.rows;
    vec4 = vec4 && reinterpret_cast<uintptr_t>(w.data_ptr()) % 16 == 0;
    tables.push_back(e);
  }
  std::vector<cuda::TbeSlot> slots;
  bool consecutive = true;
  for (size_t s = 0; s < plan.slots.size(); ++s) {
    const int64_t k = plan.slots[s].key;
    cuda::TbeSlot e;
    e.table = static_cast<int32_t>(plan.slots[s].table);
    e.key = backward ? 0 : static_cast<int32_t>(k);
    e.id_begin = backward ? rows[s] : input.offset_per_key[k];
    e.id_end = backward ? rows[s + 1] : input.offset_per_key[k + 1];
    e.contrib_offset = rows[s];
    if (s > 0 && input.offset_per_key[k] != input.offset_per_key[plan.slots[s - 1].key + 1]) consecutive = false;
    slots.push_back(e);
  }
  const size_t table_bytes = tables.size() * sizeof(cuda::TbeTable), slot_bytes = slots.size() * sizeof(cuda::TbeSlot);
  torch::Tensor host = torch::empty({static_cast<int64_t>(table_bytes + slot_bytes)},
                                    torch::TensorOptions().dtype(torch::kUInt8).pinned_memory(true));
  if (table_bytes > 0) std::memcpy(host.data_ptr<uint8_t>(), tables.data(), table_bytes);
  if (slot_bytes > 0) std::memcpy(host.data_ptr<uint8_t>() + table_bytes, slots.data(), slot_bytes);
  c.meta = host.to(input.ids.device(), /*non_blocking=*/true);
  if (!backward) {
    c.ids = input.ids.contiguous();
  } else if (consecutive && !plan.slots.empty()) {
    const int64_t begin = input.offset_per_key[plan.slots.front().key];
    c.ids = input.ids.slice(0, begin, begin + n);
  } else {
    std::vector<torch::Tensor> parts;
    for (const auto& s : plan.slots) parts.push_back(key_ids(input, s.key));
    c.ids = parts.empty() ? input.ids.slice(0, 0, 0) : torch::cat(parts);
  }
  c.ids = c.ids.contiguous();
  cuda::TbeLaunch& l = c.launch;
  l.tables = reinterpret_cast<const cuda::TbeTable*>(c.meta.data_ptr<uint8_t>());
  l.slots = reinterpret_cast<const cuda::TbeSlot*>(c.meta.data_ptr<uint8_t>() + table_bytes);
  l.n_tables = static_cast<int32_t>(tables.size());
  l.n_slots = static_cast<int32_t>(slots.size());
  l.max_dim = static_cast<int32_t>(plan.dim);
  l.vec4 = vec4 ? 1 : 0;
  l.ids_int32 = c.ids.scalar_type() == torch::kInt ? 1 : 0;
  l.ids = c.ids.data_ptr();
  if (backward) {
    c.offsets = torch::arange(n + 1, input.ids.options().dtype(torch::kLong));
    l.offsets = c.offsets.data_ptr<int64_t>();
    l.batch = n;
  }
  l.out_dim = plan.dim;
  l.error = errors.device.data_ptr<int64_t>();
  return c;
}

torch::Tensor forward_cuda(const SequenceLookupPlan& plan, const SequenceLookupInput& input,
                           const std::vector<int64_t>& rows) {
  CudaErrorSlot& errors = sequence_lookup_errors().slot(input.ids.device());
  sequence_lookup_errors().throw_reported_bad_id(errors);
  torch::Tensor out = torch::empty({rows.back(), plan.dim}, input.ids.options().dtype(torch::kFloat));
  if (rows.back() == 0) return out;
  const SequenceCudaLookup c = make_cuda_lookup(plan, input, rows, nullptr, /*backward=*/false, errors);
  cuda::tbe_sequence_forward(c.launch, rows.back(), out.data_ptr<float>());
  errors.host.copy_(errors.device, /*non_blocking=*/true);
  return out;
}

/// Sorts the (table, row) keys stably (equal rows keep output order), then
/// tbe_backward_update sums each row's gradient in that order and applies
/// the rule once: deterministic.
void backward_cuda(const SequenceLookupPlan& plan, const SequenceLookupInput& input, const torch::Tensor& grad,
                   const std::vector<int64_t>& rows, FusedEmbeddingOptimizer& optimizer) {
  const int64_t n = rows.back();
  if (n == 0) return;
  CudaErrorSlot& errors = sequence_lookup_errors().slot(input.ids.device());
  const SequenceCudaLookup c = make_cuda_lookup(plan, input, rows, &optimizer, /*backward=*/true, errors);
  torch::Tensor keys = torch::empty({n}, input.ids.options().dtype(torch::kLong));
  cuda::tbe_backward_keys(c.launch, n, keys.data_ptr<int64_t>());
  const auto sorted = torch::sort(keys, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  cuda::TbeUpdate update;
  update.rule = tbe_rule_of(optimizer.rule());
  update.lr = static_cast<float>(optimizer.options().lr());
  update.eps = static_cast<float>(optimizer.options().eps());
  update.weight_decay = static_cast<float>(optimizer.options().weight_decay());
  cuda::tbe_backward_update(c.launch, n, std::get<0>(sorted).data_ptr<int64_t>(),
                            std::get<1>(sorted).data_ptr<int64_t>(), grad.data_ptr<float>(), update);
}

/// The autograd node of fused_embedding_sequence: its inputs are the
/// tables; backward updates them and returns no gradient.
class FusedEmbeddingSequenceBackward : public torch::autograd::Node {
 public:
  FusedEmbeddingSequenceBackward(SequenceLookupPlan plan, SequenceLookupInput input,
                                 std::shared_ptr<FusedEmbeddingOptimizer> optimizer)
      : plan_(std::move(plan)), input_(std::move(input)), optimizer_(std::move(optimizer)) {}

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    TORCH_CHECK(!released_, "FusedEmbeddingSequenceBackward: backward ran twice; the update has been applied already");
    torch::autograd::variable_list out(num_outputs());
    if (grads.empty() || !grads[0].defined()) return out;
    torch::NoGradGuard no_grad;
    fused_sequence_backward_update(plan_, input_, grads[0], *optimizer_);
    return out;
  }
  std::string name() const override { return "FusedEmbeddingSequenceBackward"; }
  void release_variables() override {
    plan_.tables.clear();
    input_ = SequenceLookupInput();
    released_ = true;
  }

 private:
  SequenceLookupPlan plan_;
  SequenceLookupInput input_;
  std::shared_ptr<FusedEmbeddingOptimizer> optimizer_;
  bool released_ = false;
};

}  // namespace

std::vector<int64_t> sequence_output_rows(const SequenceLookupPlan& plan, const SequenceLookupInput& input) {
  std::vector<int64_t> rows{0};
  rows.reserve(plan.slots.size() + 1);
  for (const auto& s : plan.slots)
    rows.push_back(rows.back() + input.offset_per_key.at(s.key + 1) - input.offset_per_key.at(s.key));
  return rows;
}

bool sequence_kernel_applies(const SequenceLookupPlan& plan, const SequenceLookupInput& input) {
  if (!input.ids.is_cuda() || !cuda::tbe_available() || plan.dim <= 0) return false;
  bool vec4 = plan.dim % 4 == 0;
  for (const auto& w : plan.tables) {
    if (w.device() != input.ids.device() || !w.is_contiguous() || w.dim() != 2 || w.size(1) != plan.dim) return false;
    const auto st = w.scalar_type();
    if (st != torch::kFloat && st != torch::kHalf && st != torch::kBFloat16) return false;
    vec4 = vec4 && reinterpret_cast<uintptr_t>(w.data_ptr()) % 16 == 0;
  }
  return plan.dim <= cuda::tbe_max_dim(vec4) && plan.tables.size() < (size_t{1} << 30) &&
         input.offset_per_key.size() < (size_t{1} << 30);
}

void check_fused_sequence_errors(const torch::Device& device) { sequence_lookup_errors().check(device); }

torch::Tensor fused_sequence_forward(const SequenceLookupPlan& plan, const SequenceLookupInput& input) {
  check_input(plan, input);
  const std::vector<int64_t> rows = sequence_output_rows(plan, input);
  torch::NoGradGuard no_grad;
  if (sequence_kernel_applies(plan, input)) return forward_cuda(plan, input, rows);
  return forward_generic(plan, input, rows);
}

void fused_sequence_backward_update(const SequenceLookupPlan& plan, const SequenceLookupInput& input,
                                    const torch::Tensor& grad_out, FusedEmbeddingOptimizer& optimizer) {
  check_input(plan, input);
  const std::vector<int64_t> rows = sequence_output_rows(plan, input);
  TORCH_CHECK(optimizer.states().size() == plan.tables.size(), "sequence embedding backward: the optimizer has ",
              optimizer.states().size(), " tables, the lookup ", plan.tables.size());
  TORCH_CHECK(grad_out.dim() == 2 && grad_out.size(0) == rows.back() && grad_out.size(1) == plan.dim,
              "sequence embedding backward: expected a gradient of shape (", rows.back(), ", ", plan.dim, "), got ",
              grad_out.sizes());
  torch::NoGradGuard no_grad;
  const torch::Tensor g = grad_out.to(torch::kFloat).contiguous();
  if (!optimizer.any_stochastic_rounding() && sequence_kernel_applies(plan, input))
    backward_cuda(plan, input, g, rows, optimizer);
  else
    backward_generic(plan, input, g, rows, optimizer);
  optimizer.advance_step();
}

torch::Tensor fused_embedding_sequence(const SequenceLookupPlan& plan, const SequenceLookupInput& input,
                                       std::shared_ptr<FusedEmbeddingOptimizer> optimizer) {
  TORCH_CHECK(optimizer != nullptr, "fused_embedding_sequence: no optimizer");
  torch::Tensor out = fused_sequence_forward(plan, input);
  bool tables_need_grad = false;
  for (const auto& w : plan.tables) tables_need_grad = tables_need_grad || w.requires_grad();
  if (!torch::autograd::GradMode::is_enabled() || !tables_need_grad) return out;
  torch::autograd::edge_list edges;
  for (const auto& w : plan.tables) edges.push_back(torch::autograd::impl::gradient_edge(w));
  std::shared_ptr<FusedEmbeddingSequenceBackward> node(
      new FusedEmbeddingSequenceBackward(plan, input, std::move(optimizer)), torch::autograd::deleteNode);
  node->set_next_edges(std::move(edges));
  torch::autograd::set_history(out, node);
  return out;
}

}  // namespace recmod
