#include "recmod/sparse/jagged_tensor.h"

#include <torch/torch.h>


#include "recmod/common/errors.h"

namespace recmod {

namespace {
bool is_integral(const torch::Tensor& t) {
  return t.scalar_type() == torch::kLong || t.scalar_type() == torch::kInt;
}
}  // namespace

torch::Tensor offsets_from_lengths(const torch::Tensor& lengths) {
  auto out = torch::zeros({lengths.numel() + 1}, lengths.options());
  if (lengths.numel() > 0) out.slice(0, 1).copy_(torch::cumsum(lengths, 0));
  return out;
}

torch::Tensor lengths_from_offsets(const torch::Tensor& offsets) {
  if (offsets.numel() == 0) return offsets.new_empty({0});
  return offsets.slice(0, 1) - offsets.slice(0, 0, offsets.numel() - 1);
}

namespace detail {

void check_lengths(const torch::Tensor& lengths, int64_t num_values, const std::string& what) {
  if (!lengths.defined()) throw_input_error(what, ": lengths are missing");
  if (lengths.dim() != 1 || !is_integral(lengths))
    throw_input_error(what, ": lengths must be a 1-D int32/int64 tensor, got ", lengths.scalar_type(), " of shape ",
         lengths.sizes());
  if (lengths.numel() == 0) {
    if (num_values != 0) throw_input_error(what, ": no lengths but ", num_values, " values");
    return;
  }
  auto cpu = lengths.to(torch::kCPU, torch::kLong);
  const auto* l = cpu.data_ptr<int64_t>();
  int64_t sum = 0;
  for (int64_t i = 0; i < cpu.numel(); ++i) {
    if (l[i] < 0) throw_input_error(what, ": lengths must be >= 0, got lengths[", i, "] = ", l[i]);
    sum += l[i];
  }
  if (sum != num_values)
    throw_input_error(what, ": lengths sum to ", sum, " but there are ", num_values, " values");
}

void check_offsets(const torch::Tensor& offsets, int64_t num_values, const std::string& what) {
  if (!offsets.defined()) throw_input_error(what, ": offsets are missing");
  if (offsets.dim() != 1 || !is_integral(offsets))
    throw_input_error(what, ": offsets must be a 1-D int32/int64 tensor, got ", offsets.scalar_type(), " of shape ",
         offsets.sizes());
  if (offsets.numel() == 0) throw_input_error(what, ": offsets must have at least one entry (0), got none");
  auto cpu = offsets.to(torch::kCPU, torch::kLong);
  const auto* o = cpu.data_ptr<int64_t>();
  if (o[0] != 0) throw_input_error(what, ": offsets must start at 0, got offsets[0] = ", o[0]);
  for (int64_t i = 1; i < cpu.numel(); ++i)
    if (o[i] < o[i - 1])
      throw_input_error(what, ": offsets must not decrease, got offsets[", i - 1, "] = ", o[i - 1], " > offsets[", i,
           "] = ", o[i]);
  const int64_t last = o[cpu.numel() - 1];
  if (last != num_values)
    throw_input_error(what, ": last offset is ", last, " but there are ", num_values, " values");
}

void check_weights(const std::optional<torch::Tensor>& weights, const torch::Tensor& values,
                   const std::string& what) {
  if (!weights) return;
  if (!weights->defined()) throw_input_error(what, ": weights given but undefined");
  if (weights->dim() < 1 || weights->size(0) != values.size(0))
    throw_input_error(what, ": expected one weight per value (", values.size(0), "), got weights of shape ",
         weights->sizes());
}

}  // namespace detail

JaggedTensor::JaggedTensor(torch::Tensor values, torch::Tensor lengths, torch::Tensor offsets,
                           std::optional<torch::Tensor> weights)
    : values_(std::move(values)),
      lengths_(std::move(lengths)),
      offsets_(std::move(offsets)),
      weights_(std::move(weights)) {}

namespace {
void check_values(const torch::Tensor& values) {
  if (!values.defined()) throw_input_error("JaggedTensor: values are missing");
  if (values.dim() < 1) throw_input_error("JaggedTensor: values must have at least one dimension, got a scalar");
}
}  // namespace

JaggedTensor JaggedTensor::from_lengths(torch::Tensor values, torch::Tensor lengths,
                                        std::optional<torch::Tensor> weights) {
  check_values(values);
  detail::check_lengths(lengths, values.size(0), "JaggedTensor");
  detail::check_weights(weights, values, "JaggedTensor");
  auto offsets = offsets_from_lengths(lengths);
  return JaggedTensor(std::move(values), std::move(lengths), std::move(offsets), std::move(weights));
}

JaggedTensor JaggedTensor::from_offsets(torch::Tensor values, torch::Tensor offsets,
                                        std::optional<torch::Tensor> weights) {
  check_values(values);
  detail::check_offsets(offsets, values.size(0), "JaggedTensor");
  detail::check_weights(weights, values, "JaggedTensor");
  auto lengths = lengths_from_offsets(offsets);
  return JaggedTensor(std::move(values), std::move(lengths), std::move(offsets), std::move(weights));
}

JaggedTensor JaggedTensor::unchecked(torch::Tensor values, torch::Tensor lengths, torch::Tensor offsets,
                                     std::optional<torch::Tensor> weights) {
  if (!offsets.defined()) offsets = offsets_from_lengths(lengths);
  if (!lengths.defined()) lengths = lengths_from_offsets(offsets);
  return JaggedTensor(std::move(values), std::move(lengths), std::move(offsets), std::move(weights));
}

JaggedTensor JaggedTensor::from_dense(const std::vector<torch::Tensor>& rows,
                                      const std::vector<torch::Tensor>& weights) {
  if (rows.empty()) throw_input_error("JaggedTensor::from_dense: needs at least one row to know the dtype");
  if (!weights.empty() && weights.size() != rows.size())
    throw_input_error("JaggedTensor::from_dense: expected ", rows.size(), " weight rows, got ", weights.size());
  std::vector<int64_t> lengths;
  lengths.reserve(rows.size());
  for (const auto& r : rows) lengths.push_back(r.dim() == 0 ? 1 : r.size(0));
  auto values = torch::cat(rows, 0);
  std::optional<torch::Tensor> w;
  if (!weights.empty()) w = torch::cat(weights, 0);
  auto len = torch::tensor(lengths, torch::dtype(torch::kLong)).to(values.device());
  return from_lengths(values, len, w);
}

const torch::Tensor& JaggedTensor::weights() const {
  if (!weights_) throw_input_error("JaggedTensor: weights requested but this JaggedTensor has none");
  return *weights_;
}

namespace {
std::vector<torch::Tensor> split_rows(const torch::Tensor& t, const torch::Tensor& lengths) {
  auto cpu = lengths.to(torch::kCPU, torch::kLong);
  std::vector<int64_t> sizes(cpu.data_ptr<int64_t>(), cpu.data_ptr<int64_t>() + cpu.numel());
  return t.split_with_sizes(sizes, 0);
}
}  // namespace

std::vector<torch::Tensor> JaggedTensor::to_dense() const { return split_rows(values_, lengths_); }

std::vector<torch::Tensor> JaggedTensor::to_dense_weights() const { return split_rows(weights(), lengths_); }

torch::Tensor JaggedTensor::to_padded_dense(std::optional<int64_t> desired_length, double padding_value) const {
  if (values_.dim() != 1) throw_input_error("JaggedTensor::to_padded_dense: needs 1-D values, got ", values_.sizes());
  auto rows = to_dense();
  int64_t width = desired_length.value_or(0);
  if (!desired_length)
    for (const auto& r : rows) width = std::max<int64_t>(width, r.numel());
  auto out = torch::full({static_cast<int64_t>(rows.size()), width}, padding_value, values_.options());
  for (size_t i = 0; i < rows.size(); ++i) {
    const int64_t n = std::min<int64_t>(rows[i].numel(), width);
    if (n > 0) out[static_cast<int64_t>(i)].slice(0, 0, n).copy_(rows[i].slice(0, 0, n));
  }
  return out;
}

JaggedTensor JaggedTensor::to(const torch::Device& device, bool non_blocking) const {
  std::optional<torch::Tensor> w;
  if (weights_) w = weights_->to(device, non_blocking);
  return JaggedTensor(values_.to(device, non_blocking), lengths_.to(device, non_blocking),
                      offsets_.to(device, non_blocking), std::move(w));
}

}  // namespace recmod
