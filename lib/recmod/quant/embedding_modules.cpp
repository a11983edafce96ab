#include "recmod/quant/embedding_modules.h"

#include <ATen/Parallel.h>
#include <c10/util/Half.h>
#include <torch/autograd.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <set>

#include "recmod/common/errors.h"
#include "recmod/common/huge_pages.h"

namespace recmod::quant {

namespace {

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

int64_t scale_bias_bytes(DataType type) { return type == DataType::INT8 ? 4 : 2; }

/// Unwritten table rows under transparent huge pages (common/huge_pages.h),
/// asked for before anything touches them, as the float tables are.
torch::Tensor empty_rows(int64_t n, int64_t width, torch::Dtype dtype) {
  torch::Tensor t = torch::empty({n, width}, dtype);
  advise_huge_pages(t.data_ptr(), static_cast<size_t>(t.numel()) * t.element_size());
  return t;
}

DataType normalized(DataType type) { return type == DataType::UINT8 ? DataType::INT8 : type; }

void check_storable(const BaseEmbeddingConfig& t, const char* module = "quantized EmbeddingBagCollection") {
  const DataType type = normalized(t.data_type);
  if (!is_rowwise_quantized(type) && type != DataType::FP16 && type != DataType::FP32)
    throw_input_error(module, ": table '", t.name, "' has data type ", to_string(t.data_type),
                      "; expected INT8, INT4, INT2, FP16 or FP32");
}

/// fp16 / fp32 rows, pooled with fp32 accumulation.
template <typename scalar_t, typename index_t>
bool pool_float_bag(const scalar_t* table, int64_t rows, int64_t dim, const index_t* ids, int64_t begin, int64_t end,
                    const float* psw, bool mean, float* out) {
  for (int64_t j = 0; j < dim; ++j) out[j] = 0.0f;
  for (int64_t i = begin; i < end; ++i) {
    const auto r = static_cast<int64_t>(ids[i]);
    if (r < 0 || r >= rows) return false;
    const scalar_t* row = table + r * dim;
    const float w = psw ? psw[i] : 1.0f;
    for (int64_t j = 0; j < dim; ++j) out[j] += w * static_cast<float>(row[j]);
  }
  if (mean && end > begin) {
    const float inv = 1.0f / static_cast<float>(end - begin);
    for (int64_t j = 0; j < dim; ++j) out[j] *= inv;
  }
  return true;
}

struct Slot {
  size_t table = 0;
  int64_t key = 0;
  int64_t column = 0;
};

}  // namespace

QuantizedTable QuantizedTable::allocate(const BaseEmbeddingConfig& t, bool uninitialized, torch::nn::Module& holder) {
  QuantizedTable table;
  table.type = normalized(t.data_type);
  table.dim = t.embedding_dim;
  const int64_t n = t.num_embeddings;
  if (is_rowwise_quantized(table.type)) {
    const int64_t sb = scale_bias_bytes(table.type);
    table.code_bytes = quant::code_bytes(table.type, t.embedding_dim);
    table.scale_offset = round_up(table.code_bytes, sb);
    table.row_bytes = table.scale_offset + 2 * sb;
    table.storage = empty_rows(n, table.row_bytes, torch::kUInt8);
    if (!uninitialized) table.storage.zero_();
    const auto dtype = scale_bias_dtype(table.type);
    torch::Tensor keep = table.storage;
    uint8_t* base = table.storage.data_ptr<uint8_t>();
    auto view_at = [&](int64_t offset) {
      return torch::from_blob(
          base + offset, {n, 1}, {table.row_bytes / sb, 1}, [keep](void*) {}, torch::TensorOptions().dtype(dtype));
    };
    torch::Tensor qscale = view_at(table.scale_offset);
    if (!uninitialized) qscale.fill_(1.0);
    holder.register_buffer("weight", table.storage.narrow(1, 0, table.code_bytes));
    holder.register_buffer(kQScaleSuffix, qscale);
    holder.register_buffer(kQBiasSuffix, view_at(table.scale_offset + sb));
  } else {
    const auto dtype = table.type == DataType::FP16 ? torch::kHalf : torch::kFloat;
    table.storage = empty_rows(n, t.embedding_dim, dtype);
    if (!uninitialized) table.storage.zero_();
    table.row_bytes = t.embedding_dim * table.storage.element_size();
    holder.register_buffer("weight", table.storage);
  }
  return table;
}

void QuantizedTable::fill_from_float(const torch::Tensor& weight) {
  torch::NoGradGuard no_grad;
  if (!is_rowwise_quantized(type)) {
    storage.copy_(weight);
    return;
  }
  // In chunks of rows: never a second whole copy of a large table.
  const int64_t chunk = 1 << 16;
  const int64_t sb = scale_bias_bytes(type);
  for (int64_t r0 = 0; r0 < weight.size(0); r0 += chunk) {
    const int64_t r1 = std::min(weight.size(0), r0 + chunk);
    torch::Tensor rows = weight.slice(0, r0, r1);
    if (rows.scalar_type() == torch::kBFloat16) rows = rows.to(torch::kFloat);  // exact
    const torch::Tensor fused = quantize_rows(rows, type);
    torch::Tensor dst = storage.slice(0, r0, r1);
    dst.narrow(1, 0, code_bytes).copy_(fused.narrow(1, 0, code_bytes));
    dst.narrow(1, scale_offset, 2 * sb).copy_(fused.narrow(1, code_bytes, 2 * sb));
  }
}

QuantizedRows QuantizedTable::rows() const {
  TORCH_CHECK(is_rowwise_quantized(type), "quantized table of type ", to_string(type), " is not row-wise quantized");
  QuantizedRows r;
  r.type = type;
  r.num_rows = storage.size(0);
  r.dim = dim;
  r.codes = storage.data_ptr<uint8_t>();
  r.code_stride = r.scale_stride = r.bias_stride = row_bytes;
  r.scale = r.codes + scale_offset;
  r.bias = r.scale + scale_bias_bytes(type);
  return r;
}

torch::Tensor QuantizedTable::dequantized() const {
  if (is_rowwise_quantized(type)) return dequantize_rows(rows());
  return storage.to(torch::kFloat);
}

EmbeddingBagCollectionImpl::EmbeddingBagCollectionImpl(EmbeddingBagCollectionOptions options)
    : options_(std::move(options)) {
  if (options_.output_dtype() != torch::kFloat)
    throw_input_error("quantized EmbeddingBagCollection: output_dtype must be float32, got ", options_.output_dtype());
  std::set<std::string> names;
  for (auto& t : options_.tables()) {
    t.validate("quantized EmbeddingBagCollection");
    if (!names.insert(t.name).second)
      throw_input_error("quantized EmbeddingBagCollection: duplicate table name '", t.name, "'");
    if (t.feature_names.empty()) t.feature_names = {t.name};
    if (t.pooling == PoolingType::NONE)
      throw_input_error("quantized EmbeddingBagCollection: table '", t.name, "' has pooling NONE");
    if (options_.is_weighted() && t.pooling != PoolingType::SUM)
      throw_input_error("quantized EmbeddingBagCollection: table '", t.name, "' has pooling ", to_string(t.pooling),
                        " but is_weighted is set; per-sample weights are only supported with pooling SUM");
    check_storable(t);
    t.data_type = normalized(t.data_type);
  }
  embedding_bags_ = register_module("embedding_bags", torch::nn::ModuleDict());
  for (const auto& t : options_.tables()) {
    auto holder = std::make_shared<torch::nn::Module>();
    tables_.push_back(QuantizedTable::allocate(t, options_.uninitialized(), *holder));
    embedding_bags_->update({{t.name, holder}});
  }
  for (const auto& names_of_table : get_embedding_names_by_table(options_.tables()))
    embedding_names_.insert(embedding_names_.end(), names_of_table.begin(), names_of_table.end());
  for (const auto& t : options_.tables())
    for (size_t f = 0; f < t.feature_names.size(); ++f) length_per_embedding_.push_back(t.embedding_dim);
}

std::shared_ptr<EmbeddingBagCollectionImpl> EmbeddingBagCollectionImpl::from_float(
    const recmod::EmbeddingBagCollectionImpl& module, const QuantConfig& config) {
  config.validate();
  std::vector<EmbeddingBagConfig> tables = module.embedding_bag_configs();
  update_embedding_configs(tables, config);
  for (const auto& t : tables) check_distinguishable(t.data_type, t.embedding_dim, t.name);
  EmbeddingBagCollectionOptions options(tables);
  options.is_weighted(module.is_weighted());
  auto out = std::make_shared<EmbeddingBagCollectionImpl>(options);
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < tables.size(); ++i) {
    const torch::Tensor& weight = module.table_weight(tables[i].name);
    if (!weight.defined() || weight.is_meta())
      throw_input_error("quantized EmbeddingBagCollection: table '", tables[i].name,
                        "' is not allocated here (deferred or sharded); load or gather it first");
    out->tables_[i].fill_from_float(weight);
  }
  return out;
}

int64_t EmbeddingBagCollectionImpl::output_dim() const {
  int64_t d = 0;
  for (int64_t l : length_per_embedding_) d += l;
  return d;
}

QuantizedRows EmbeddingBagCollectionImpl::rows(size_t index) const {
  TORCH_CHECK(index < tables_.size(), "quantized EmbeddingBagCollection: no table ", index);
  return tables_[index].rows();
}

torch::Tensor EmbeddingBagCollectionImpl::dequantized_weight(size_t index) const {
  TORCH_CHECK(index < tables_.size(), "quantized EmbeddingBagCollection: no table ", index);
  return tables_[index].dequantized();
}

int64_t EmbeddingBagCollectionImpl::table_bytes(size_t index) const {
  TORCH_CHECK(index < tables_.size(), "quantized EmbeddingBagCollection: no table ", index);
  return tables_[index].storage.numel() * tables_[index].storage.element_size();
}

KeyedTensor EmbeddingBagCollectionImpl::forward(const KeyedJaggedTensor& features) {
  if (is_training() && torch::GradMode::is_enabled()) {
    const auto& t = options_.tables().front();
    throw_input_error("quantized EmbeddingBagCollection: table '", t.name, "' is ", to_string(t.data_type),
                      " and cannot be trained: a quantized table stores codes with a per-row scale and bias, which "
                      "have no gradient (train the float model, then convert it with `recmod quantize`); for "
                      "inference call eval() or disable grad mode");
  }
  if (!features.device().is_cpu())
    throw_input_error("quantized EmbeddingBagCollection: runs on the CPU, got input on ", features.device());
  const bool weighted = options_.is_weighted();
  if (weighted && !features.has_weights())
    throw_input_error("quantized EmbeddingBagCollection: is_weighted is set but the input KeyedJaggedTensor with keys ",
                      join_names(features.keys()), " has no weights");
  const auto index = features.index_per_key();
  std::vector<Slot> slots;
  int64_t column = 0;
  for (size_t t = 0; t < tables_.size(); ++t) {
    const auto& config = options_.tables()[t];
    for (const auto& f : config.feature_names) {
      auto it = index.find(f);
      if (it == index.end())
        throw_input_error("quantized EmbeddingBagCollection: feature '", f, "' of table '", config.name,
                          "' is not in the input KeyedJaggedTensor, which has keys ", join_names(features.keys()));
      slots.push_back({t, it->second, column});
      column += config.embedding_dim;
    }
  }
  const int64_t batch = features.stride();
  torch::Tensor out = torch::empty({batch, column}, torch::kFloat);
  const torch::Tensor offsets = features.offsets().to(torch::kLong).contiguous();
  const torch::Tensor ids = features.values().contiguous();
  torch::Tensor psw;
  if (weighted) psw = features.weights().to(torch::kFloat).contiguous();
  std::vector<QuantizedRows> views(tables_.size());
  for (size_t t = 0; t < tables_.size(); ++t)
    if (is_rowwise_quantized(tables_[t].type)) views[t] = rows(t);
  const int64_t* off = offsets.data_ptr<int64_t>();
  const float* w = psw.defined() ? psw.data_ptr<float>() : nullptr;
  float* o = out.data_ptr<float>();
  std::atomic<bool> bad{false};
  auto run = [&](auto* id) {
    using index_t = std::remove_const_t<std::remove_pointer_t<decltype(id)>>;
    // Each thread takes a block of samples and runs through it slot by
    // slot: consecutive bags of one feature are contiguous ids, so the rows
    // of the next bags are prefetched while this one is added.
    at::parallel_for(0, batch, 8, [&](int64_t b0, int64_t b1) {
      for (const Slot& s : slots) {
        const QuantizedTable& table = tables_[s.table];
        const auto& config = options_.tables()[s.table];
        const bool mean = config.pooling == PoolingType::MEAN;
        const int64_t prefetch_end = off[s.key * batch + b1];
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t begin = off[s.key * batch + b];
          const int64_t end = off[s.key * batch + b + 1];
          float* dst = o + b * column + s.column;
          bool ok;
          if (is_rowwise_quantized(table.type))
            ok = pool_quantized_bag<index_t>(views[s.table], id, begin, end, w, mean, dst, prefetch_end);
          else if (table.type == DataType::FP16)
            ok = pool_float_bag(table.storage.data_ptr<c10::Half>(), table.storage.size(0), config.embedding_dim, id,
                                begin, end, w, mean, dst);
          else
            ok = pool_float_bag(table.storage.data_ptr<float>(), table.storage.size(0), config.embedding_dim, id,
                                begin, end, w, mean, dst);
          if (!ok) bad = true;
        }
      }
    });
    if (!bad) return;
    for (const Slot& s : slots) {
      const int64_t n = tables_[s.table].storage.size(0);
      for (int64_t i = off[s.key * batch]; i < off[(s.key + 1) * batch]; ++i)
        if (id[i] < 0 || id[i] >= n)
          throw_input_error("quantized EmbeddingBagCollection: id ", static_cast<int64_t>(id[i]), " of feature '",
                            features.keys()[s.key], "' is outside table '", options_.tables()[s.table].name, "' (",
                            n, " rows)");
    }
  };
  if (ids.scalar_type() == torch::kLong)
    run(ids.data_ptr<int64_t>());
  else if (ids.scalar_type() == torch::kInt)
    run(ids.data_ptr<int32_t>());
  else
    throw_input_error("quantized EmbeddingBagCollection: ids must be int64 or int32, got ", ids.scalar_type());
  return KeyedTensor(embedding_names_, length_per_embedding_, out, 1);
}

void EmbeddingBagCollectionImpl::load_quantized_state_dict(StateDict state, const std::string& origin) {
  for (size_t i = 0; i < tables_.size(); ++i) {
    const auto& config = options_.tables()[i];
    const std::string what = str_cat(origin, ": table '", config.name, "' (", to_string(tables_[i].type), ", ",
                                     config.num_embeddings, " x ", config.embedding_dim, ")");
    check_quantized_table_state(tables_[i], config, state, "embedding_bags." + config.name + ".", what);
  }
  load_quantized_buffers(*this, std::move(state), origin);
}

void check_quantized_table_state(const QuantizedTable& table, const BaseEmbeddingConfig& config,
                                 const StateDict& state, const std::string& prefix, const std::string& what) {
  const torch::Tensor* weight = find_tensor(state, prefix + "weight");
  if (!weight) throw CheckpointError(str_cat(what, ": missing key '", prefix, "weight'"));
  const torch::Tensor* qscale = find_tensor(state, prefix + kQScaleSuffix);
  const torch::Tensor* qbias = find_tensor(state, prefix + kQBiasSuffix);
  if (!is_rowwise_quantized(table.type)) {
    if (qscale || qbias)
      throw CheckpointError(str_cat(what, ": the checkpoint has a scale/bias block ('", prefix, kQScaleSuffix,
                                    "'), i.e. a row-wise quantized table, the model a ", to_string(table.type),
                                    " one"));
    return;  // shape and dtype: load_quantized_buffers' messages
  }
  if (weight->scalar_type() != torch::kUInt8)
    throw CheckpointError(str_cat(what, ": key '", prefix, "weight' is ", weight->scalar_type(), " ",
                                  weight->sizes(), ", a quantized table's codes are uint8"));
  if (weight->dim() == 2 && weight->size(0) != config.num_embeddings)
    throw CheckpointError(str_cat(what, ": key '", prefix, "weight' has ", weight->size(0), " rows, the table has ",
                                  config.num_embeddings));
  if (weight->dim() != 2 || weight->size(1) != table.code_bytes) {
    std::string hint;
    if (weight->dim() == 2 && weight->size(1) != table.code_bytes) {
      for (DataType other : {DataType::INT8, DataType::INT4, DataType::INT2})
        if (other != table.type && code_bytes(other, config.embedding_dim) == weight->size(1)) {
          hint = str_cat(" (", to_string(other), " rows)");
          break;
        }
    }
    throw CheckpointError(str_cat(what, ": ", to_string(table.type), " rows of dimension ", config.embedding_dim,
                                  " have ", table.code_bytes, " bytes of codes, key '", prefix, "weight' has shape ",
                                  weight->sizes(), hint));
  }
  for (const auto* suffix : {kQScaleSuffix, kQBiasSuffix}) {
    const torch::Tensor* t = find_tensor(state, prefix + suffix);
    if (!t)
      throw CheckpointError(str_cat(what, ": missing key '", prefix, suffix, "' (the rows' scale/bias block)"));
    const auto want = scale_bias_dtype(table.type);
    const bool widen = table.type == DataType::INT8 && t->scalar_type() == torch::kHalf;
    if (t->dim() != 2 || t->size(0) != config.num_embeddings || t->size(1) != 1 ||
        (t->scalar_type() != want && !widen))
      throw CheckpointError(str_cat(what, ": key '", prefix, suffix, "' is ", t->scalar_type(), " ", t->sizes(),
                                    ", expected ", want, " [", config.num_embeddings, ", 1]"));
  }
}

void load_quantized_buffers(torch::nn::Module& module, StateDict state, const std::string& origin) {
  // Every key is the module's; then copy table by table, releasing each
  // source tensor once copied (a caller that moved the checkpoint in holds
  // at most one table twice, not the whole collection).
  const StateDict targets = state_dict(module);
  for (const auto& [key, _] : state)
    if (!find_tensor(targets, key)) {
      std::vector<std::string> keys;
      for (const auto& [k, __] : targets) keys.push_back(k);
      throw CheckpointError(str_cat(origin, ": unexpected key '", key, "'; the module's keys are ", join_names(keys)));
    }
  torch::NoGradGuard no_grad;
  for (const auto& [key, dst] : targets) {
    auto it = std::find_if(state.begin(), state.end(), [&](const auto& kv) { return kv.first == key; });
    if (it == state.end()) throw CheckpointError(str_cat(origin, ": missing key '", key, "' (shape ", dst.sizes(), ")"));
    torch::Tensor src = std::move(it->second);
    if (dst.scalar_type() == torch::kFloat && src.scalar_type() == torch::kHalf && src.sizes() == dst.sizes() &&
        src.dim() == 2 && src.size(1) == 1)
      src = src.to(torch::kFloat);  // INT8 scale/bias from FBGEMM's TBE (fp16), checked above
    if (src.sizes() != dst.sizes())
      throw CheckpointError(str_cat(origin, ": key '", key, "' has shape ", src.sizes(), ", the module expects ",
                                    dst.sizes()));
    if (src.scalar_type() != dst.scalar_type())
      throw CheckpointError(str_cat(origin, ": key '", key, "' has dtype ", src.scalar_type(), ", the module expects ",
                                    dst.scalar_type()));
    check_finite(src, key, origin);
    const_cast<torch::Tensor&>(dst).copy_(src);
  }
}

DataType data_type_of_checkpoint(int64_t dim, const torch::Tensor& weight, const torch::Tensor& qscale,
                                 const std::string& what) {
  if (!qscale.defined()) {
    if (weight.scalar_type() == torch::kFloat) return DataType::FP32;
    if (weight.scalar_type() == torch::kHalf) return DataType::FP16;
    throw CheckpointError(str_cat(what, ": weight is ", weight.scalar_type(), " with no scale/bias block"));
  }
  if (weight.scalar_type() != torch::kUInt8 || weight.dim() != 2)
    throw CheckpointError(str_cat(what, ": a quantized table's codes are 2-D uint8, got ", weight.scalar_type(), " ",
                                  weight.sizes()));
  const int64_t width = weight.size(1);
  if (width == code_bytes(DataType::INT8, dim) &&
      (qscale.scalar_type() == torch::kFloat || qscale.scalar_type() == torch::kHalf))
    return DataType::INT8;
  if (qscale.scalar_type() == torch::kHalf) {
    if (width == code_bytes(DataType::INT4, dim)) return DataType::INT4;
    if (width == code_bytes(DataType::INT2, dim)) return DataType::INT2;
  }
  throw CheckpointError(str_cat(what, ": ", width, " bytes of codes per row with a ", qscale.scalar_type(),
                                " scale fit no type for dimension ", dim, " (INT8: ", code_bytes(DataType::INT8, dim),
                                " bytes, float32 or float16 scale; INT4: ", code_bytes(DataType::INT4, dim),
                                ", INT2: ", code_bytes(DataType::INT2, dim), ", float16 scale)"));
}

void check_distinguishable(DataType type, int64_t dim, const std::string& table) {
  type = normalized(type);
  if ((type == DataType::INT4 && dim < 2) || (type == DataType::INT2 && dim <= 2))
    throw_input_error("table '", table, "' of dimension ", dim, " cannot be ", to_string(type),
                      ": its rows would be as wide as a wider type's and read back as that type; use ",
                      dim < 2 ? "INT8" : "INT4 or INT8");
}

// ---------------------------------------------------------------------------
// EmbeddingCollection

EmbeddingCollectionImpl::EmbeddingCollectionImpl(EmbeddingCollectionOptions options) : options_(std::move(options)) {
  if (options_.tables().empty()) throw_input_error("quantized EmbeddingCollection: expected at least one table");
  std::set<std::string> names;
  const auto& first = options_.tables().front();
  for (auto& t : options_.tables()) {
    t.validate("quantized EmbeddingCollection");
    if (!names.insert(t.name).second) throw_input_error("quantized EmbeddingCollection: duplicate table name '", t.name, "'");
    if (t.feature_names.empty()) t.feature_names = {t.name};
    if (t.embedding_dim != first.embedding_dim)
      throw_input_error("quantized EmbeddingCollection: all tables share one embedding_dim; table '", t.name, "' has ",
                        t.embedding_dim, ", table '", first.name, "' ", first.embedding_dim);
    check_storable(t, "quantized EmbeddingCollection");
    t.data_type = normalized(t.data_type);
  }
  embeddings_ = register_module("embeddings", torch::nn::ModuleDict());
  for (const auto& t : options_.tables()) {
    auto holder = std::make_shared<torch::nn::Module>();
    tables_.push_back(QuantizedTable::allocate(t, options_.uninitialized(), *holder));
    embeddings_->update({{t.name, holder}});
  }
  embedding_names_by_table_ = get_embedding_names_by_table(options_.tables());
}

std::shared_ptr<EmbeddingCollectionImpl> EmbeddingCollectionImpl::from_float(const recmod::EmbeddingCollectionImpl& module,
                                                                             const QuantConfig& config) {
  config.validate();
  std::vector<EmbeddingConfig> tables = module.embedding_configs();
  update_embedding_configs(tables, config);
  for (const auto& t : tables) check_distinguishable(t.data_type, t.embedding_dim, t.name);
  auto out = std::make_shared<EmbeddingCollectionImpl>(
      EmbeddingCollectionOptions(tables).need_indices(module.need_indices()).uninitialized(true));
  for (size_t i = 0; i < tables.size(); ++i) {
    const torch::Tensor& weight = module.table_weight(tables[i].name);
    if (!weight.defined() || weight.is_meta())
      throw_input_error("quantized EmbeddingCollection: table '", tables[i].name,
                        "' is not allocated here (deferred or sharded); load or gather it first");
    out->tables_[i].fill_from_float(weight);
  }
  return out;
}

std::vector<std::string> EmbeddingCollectionImpl::embedding_names() const {
  std::vector<std::string> out;
  for (const auto& names : embedding_names_by_table_) out.insert(out.end(), names.begin(), names.end());
  return out;
}

JaggedTensorDict EmbeddingCollectionImpl::forward(const KeyedJaggedTensor& features) {
  if (is_training() && torch::GradMode::is_enabled()) {
    const auto& t = options_.tables().front();
    throw_input_error("quantized EmbeddingCollection: table '", t.name, "' is ", to_string(t.data_type),
                      " and cannot be trained (train the float model, then quantize it); for inference call eval() "
                      "or disable grad mode");
  }
  if (!features.device().is_cpu())
    throw_input_error("quantized EmbeddingCollection: runs on the CPU, got input on ", features.device());
  const auto index = features.index_per_key();
  const auto& opk = features.offset_per_key();
  const torch::Tensor values = features.values();
  if (values.scalar_type() != torch::kLong && values.scalar_type() != torch::kInt)
    throw_input_error("quantized EmbeddingCollection: ids must be int64 or int32, got ", values.scalar_type());
  JaggedTensorDict out;
  for (size_t t = 0; t < tables_.size(); ++t) {
    const auto& config = options_.tables()[t];
    const QuantizedTable& table = tables_[t];
    for (size_t j = 0; j < config.feature_names.size(); ++j) {
      const std::string& f = config.feature_names[j];
      auto it = index.find(f);
      if (it == index.end())
        throw_input_error("quantized EmbeddingCollection: feature '", f, "' of table '", config.name,
                          "' is not in the input KeyedJaggedTensor, which has keys ", join_names(features.keys()));
      const int64_t k = it->second;
      const torch::Tensor ids = values.slice(0, opk[k], opk[k + 1]).to(torch::kLong);
      if (ids.numel() > 0) {
        const auto [lo, hi] = torch::aminmax(ids);
        const int64_t min = lo.item<int64_t>(), max = hi.item<int64_t>();
        if (min < 0 || max >= config.num_embeddings)
          throw_input_error("quantized EmbeddingCollection: id ", min < 0 ? min : max, " of feature '", f,
                            "' is outside table '", config.name, "' (", config.num_embeddings, " rows)");
      }
      torch::Tensor rows;
      if (is_rowwise_quantized(table.type)) {
        QuantizedTable picked = table;  // the looked-up rows, same layout
        picked.storage = table.storage.index_select(0, ids).contiguous();
        rows = picked.dequantized();
      } else {
        rows = table.storage.index_select(0, ids).to(torch::kFloat);
      }
      torch::Tensor lengths = features.lengths_of_key(k);
      std::optional<torch::Tensor> indices;
      if (options_.need_indices()) indices = values.slice(0, opk[k], opk[k + 1]);
      out.emplace_back(embedding_names_by_table_[t][j],
                       JaggedTensor::unchecked(rows, lengths, offsets_from_lengths(lengths), indices));
    }
  }
  return out;
}

void EmbeddingCollectionImpl::load_quantized_state_dict(StateDict state, const std::string& origin) {
  for (size_t i = 0; i < tables_.size(); ++i) {
    const auto& config = options_.tables()[i];
    const std::string what = str_cat(origin, ": table '", config.name, "' (", to_string(tables_[i].type), ", ",
                                     config.num_embeddings, " x ", config.embedding_dim, ")");
    check_quantized_table_state(tables_[i], config, state, "embeddings." + config.name + ".", what);
  }
  load_quantized_buffers(*this, std::move(state), origin);
}

}  // namespace recmod::quant
