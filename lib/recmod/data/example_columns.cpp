#include "recmod/data/example_columns.h"

#include <torch/torch.h>

#include <cstring>

#include "recmod/common/errors.h"

namespace recmod::data {

namespace {
template <typename T>
torch::Tensor to_tensor(const std::vector<T>& v, torch::Dtype dtype, std::vector<int64_t> shape) {
  auto t = torch::empty(shape, torch::TensorOptions().dtype(dtype));
  if (!v.empty()) std::memcpy(t.data_ptr(), v.data(), v.size() * sizeof(T));
  return t;
}

void check_same_schema(const DataSchema& a, const DataSchema& b) {
  if (a.num_dense != b.num_dense || a.num_labels != b.num_labels || a.sparse_features != b.sparse_features ||
      a.weighted != b.weighted || a.sample_weights != b.sample_weights)
    throw_input_error("ExampleColumns: schemas differ (features ", join_names(a.sparse_features), " vs ",
                      join_names(b.sparse_features), ")");
}
}  // namespace

ExampleColumns::ExampleColumns(DataSchema schema) : schema_(std::move(schema)) {
  sparse.resize(schema_.sparse_features.size());
}

void ExampleColumns::truncate(int64_t rows) {
  num_rows_ = std::min(num_rows_, rows);
  labels.resize(num_rows_ * schema_.num_labels);
  dense.resize(num_rows_ * schema_.num_dense);
  if (schema_.sample_weights) sample_weights.resize(num_rows_);
  for (auto& col : sparse) {
    col.offsets.resize(num_rows_ + 1);
    col.ids.resize(col.offsets.back());
    if (schema_.weighted) col.weights.resize(col.offsets.back());
  }
}

void ExampleColumns::reserve(int64_t rows, int64_t ids_per_feature_per_row) {
  labels.reserve(rows * schema_.num_labels);
  dense.reserve(rows * schema_.num_dense);
  if (schema_.sample_weights) sample_weights.reserve(rows);
  for (auto& col : sparse) {
    col.offsets.reserve(rows + 1);
    col.ids.reserve(rows * ids_per_feature_per_row);
    if (schema_.weighted) col.weights.reserve(rows * ids_per_feature_per_row);
  }
}

void ExampleColumns::append(const ExampleColumns& other) {
  check_same_schema(schema_, other.schema_);
  labels.insert(labels.end(), other.labels.begin(), other.labels.end());
  dense.insert(dense.end(), other.dense.begin(), other.dense.end());
  sample_weights.insert(sample_weights.end(), other.sample_weights.begin(), other.sample_weights.end());
  for (size_t f = 0; f < sparse.size(); ++f) {
    auto& col = sparse[f];
    const auto& src = other.sparse[f];
    const int64_t base = col.offsets.back();
    for (size_t r = 1; r < src.offsets.size(); ++r) col.offsets.push_back(base + src.offsets[r]);
    col.ids.insert(col.ids.end(), src.ids.begin(), src.ids.end());
    col.weights.insert(col.weights.end(), src.weights.begin(), src.weights.end());
  }
  num_rows_ += other.num_rows_;
}

ExampleColumns ExampleColumns::slice(int64_t begin, int64_t end) const {
  TORCH_CHECK(0 <= begin && begin <= end && end <= num_rows_, "ExampleColumns::slice: expected 0 <= begin <= end <= ",
              num_rows_, ", got [", begin, ", ", end, ")");
  ExampleColumns out(schema_);
  const int64_t nl = schema_.num_labels, nd = schema_.num_dense;
  out.labels.assign(labels.begin() + begin * nl, labels.begin() + end * nl);
  out.dense.assign(dense.begin() + begin * nd, dense.begin() + end * nd);
  if (schema_.sample_weights) out.sample_weights.assign(sample_weights.begin() + begin, sample_weights.begin() + end);
  for (size_t f = 0; f < sparse.size(); ++f) {
    const auto& src = sparse[f];
    auto& col = out.sparse[f];
    const int64_t first = src.offsets[begin], last = src.offsets[end];
    col.offsets.resize(end - begin + 1);
    for (int64_t r = begin; r <= end; ++r) col.offsets[r - begin] = src.offsets[r] - first;
    col.ids.assign(src.ids.begin() + first, src.ids.begin() + last);
    if (!src.weights.empty()) col.weights.assign(src.weights.begin() + first, src.weights.begin() + last);
  }
  out.num_rows_ = end - begin;
  return out;
}

ExampleColumns ExampleColumns::take(const std::vector<int64_t>& rows) const {
  ExampleColumns out(schema_);
  const int64_t nl = schema_.num_labels, nd = schema_.num_dense;
  out.reserve(static_cast<int64_t>(rows.size()));
  for (int64_t r : rows) {
    TORCH_CHECK(0 <= r && r < num_rows_, "ExampleColumns::take: row ", r, " out of range [0, ", num_rows_, ")");
    out.labels.insert(out.labels.end(), labels.begin() + r * nl, labels.begin() + (r + 1) * nl);
    out.dense.insert(out.dense.end(), dense.begin() + r * nd, dense.begin() + (r + 1) * nd);
    if (schema_.sample_weights) out.sample_weights.push_back(sample_weights[r]);
  }
  for (size_t f = 0; f < sparse.size(); ++f) {
    const auto& src = sparse[f];
    auto& col = out.sparse[f];
    for (int64_t r : rows) {
      col.ids.insert(col.ids.end(), src.ids.begin() + src.offsets[r], src.ids.begin() + src.offsets[r + 1]);
      if (!src.weights.empty())
        col.weights.insert(col.weights.end(), src.weights.begin() + src.offsets[r],
                           src.weights.begin() + src.offsets[r + 1]);
      col.offsets.push_back(static_cast<int64_t>(col.ids.size()));
    }
  }
  out.num_rows_ = static_cast<int64_t>(rows.size());
  return out;
}

Batch ExampleColumns::to_batch() const {
  const int64_t n = num_rows_;
  const auto num_features = static_cast<int64_t>(sparse.size());
  int64_t total_ids = 0;
  for (const auto& col : sparse) total_ids += static_cast<int64_t>(col.ids.size());

  auto lengths = torch::empty({num_features * n}, torch::kLong);
  auto values = torch::empty({total_ids}, torch::kLong);
  std::optional<torch::Tensor> weights;
  if (schema_.weighted) weights = torch::empty({total_ids}, torch::kFloat);
  auto* l = lengths.data_ptr<int64_t>();
  auto* v = values.data_ptr<int64_t>();
  float* w = weights ? weights->data_ptr<float>() : nullptr;
  for (const auto& col : sparse) {  // key-major: all rows of feature 0, then feature 1, ...
    for (int64_t r = 0; r < n; ++r) *l++ = col.offsets[r + 1] - col.offsets[r];
    if (!col.ids.empty()) std::memcpy(v, col.ids.data(), col.ids.size() * sizeof(int64_t));
    v += col.ids.size();
    if (w) {
      if (!col.weights.empty()) std::memcpy(w, col.weights.data(), col.weights.size() * sizeof(float));
      w += col.ids.size();
    }
  }
  Batch batch;
  batch.dense = to_tensor(dense, torch::kFloat, {n, schema_.num_dense});
  batch.labels = to_tensor(labels, torch::kFloat, {n, schema_.num_labels});
  if (schema_.sample_weights) batch.weights = to_tensor(sample_weights, torch::kFloat, {n});
  batch.sparse = KeyedJaggedTensor::unchecked(schema_.sparse_features, values, lengths, weights, n);
  return batch;
}

ExampleColumns ExampleColumns::from_batch(const Batch& batch, DataSchema schema) {
  ExampleColumns out(std::move(schema));
  const int64_t n = batch.size();
  auto labels = batch.labels.to(torch::kCPU, torch::kFloat).contiguous();
  auto dense = batch.dense.to(torch::kCPU, torch::kFloat).contiguous();
  out.labels.assign(labels.data_ptr<float>(), labels.data_ptr<float>() + labels.numel());
  out.dense.assign(dense.data_ptr<float>(), dense.data_ptr<float>() + dense.numel());
  if (out.schema_.sample_weights) {
    TORCH_CHECK(batch.weights.defined(), "ExampleColumns::from_batch: the schema has sample weights, the batch none");
    auto w = batch.weights.to(torch::kCPU, torch::kFloat).contiguous();
    out.sample_weights.assign(w.data_ptr<float>(), w.data_ptr<float>() + w.numel());
  }
  const auto sparse_cpu = batch.sparse.select(out.schema_.sparse_features).to(torch::kCPU);
  for (size_t f = 0; f < out.sparse.size(); ++f) {
    const auto jt = sparse_cpu[out.schema_.sparse_features[f]];
    auto offsets = jt.offsets().to(torch::kLong).contiguous();
    auto ids = jt.values().to(torch::kLong).contiguous();
    auto& col = out.sparse[f];
    col.offsets.assign(offsets.data_ptr<int64_t>(), offsets.data_ptr<int64_t>() + offsets.numel());
    col.ids.assign(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + ids.numel());
    if (out.schema_.weighted) {
      auto w = jt.weights().to(torch::kFloat).contiguous();
      col.weights.assign(w.data_ptr<float>(), w.data_ptr<float>() + w.numel());
    }
  }
  out.num_rows_ = n;
  return out;
}

}  // namespace recmod::data
