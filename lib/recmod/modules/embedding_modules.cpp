#include "recmod/modules/embedding_modules.h"

#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>

#include <map>
#include <mutex>
#include <set>

#include "recmod/common/errors.h"
#include "recmod/common/huge_pages.h"
#include "recmod/modules/fused_embedding_bag.h"
#include "recmod/modules/fused_embedding_collection.h"

namespace recmod {

std::vector<std::vector<std::string>> get_embedding_names_by_table(
    const std::vector<std::string>& table_names, const std::vector<std::vector<std::string>>& feature_names) {
  auto features_of = [&](size_t t) {
    return feature_names[t].empty() ? std::vector<std::string>{table_names[t]} : feature_names[t];
  };
  std::map<std::string, int> uses;
  for (size_t t = 0; t < table_names.size(); ++t)
    for (const auto& f : features_of(t)) ++uses[f];
  std::vector<std::vector<std::string>> out;
  for (size_t t = 0; t < table_names.size(); ++t) {
    std::vector<std::string> names;
    for (const auto& f : features_of(t)) names.push_back(uses[f] > 1 ? f + "@" + table_names[t] : f);
    out.push_back(std::move(names));
  }
  return out;
}

namespace {
thread_local bool t_defer_tables = false;
thread_local bool t_defer_whole = false;

// Rows per chunk when a table is drawn piecewise: about 4 MiB of float32.
int64_t chunk_rows(int64_t cols) { return std::max<int64_t>(1, (int64_t{1} << 20) / std::max<int64_t>(cols, 1)); }
}  // namespace

DeferTableAllocation::DeferTableAllocation(bool whole) : previous_(t_defer_tables), previous_whole_(t_defer_whole) {
  t_defer_tables = true;
  t_defer_whole = whole;
}
DeferTableAllocation::~DeferTableAllocation() {
  t_defer_tables = previous_;
  t_defer_whole = previous_whole_;
}
bool DeferTableAllocation::active() { return t_defer_tables; }
bool DeferTableAllocation::sharded() { return t_defer_tables && !t_defer_whole; }

namespace {
/// A CPU table's rows under transparent huge pages (common/huge_pages.h), asked for before they are written.
torch::Tensor with_huge_pages(torch::Tensor t) {
  if (t.is_cpu()) advise_huge_pages(t.data_ptr(), static_cast<size_t>(t.numel()) * t.element_size());
  return t;
}
}  // namespace

EmbeddingTableImpl::EmbeddingTableImpl(int64_t num_embeddings, int64_t embedding_dim, torch::Dtype dtype,
                                       torch::Device device) {
  const torch::Device where = DeferTableAllocation::active() ? torch::Device(torch::kMeta) : device;
  weight = register_parameter("weight", with_huge_pages(torch::empty({num_embeddings, embedding_dim},
                                                                     torch::TensorOptions().dtype(dtype).device(where))));
}

void EmbeddingTableImpl::init(const BaseEmbeddingConfig& config) {
  if (!weight.is_meta()) return config.init_weight(weight);
  if (config.init_fn) {  // an arbitrary init cannot be replayed block by block
    materialize();
    return config.init_weight(weight);
  }
  at::Generator generator = at::detail::getDefaultCPUGenerator();
  {
    std::lock_guard<std::mutex> lock(generator.mutex());
    deferred_ = Deferred{generator.get_state(), config.get_weight_init_min(), config.get_weight_init_max()};
  }
  // Advance the generator as the full init would: the same draws, in chunks.
  torch::NoGradGuard no_grad;
  const int64_t rows = weight.size(0), cols = weight.size(1), step = chunk_rows(cols);
  torch::Tensor scratch = torch::empty({std::min(rows, step), cols}, weight.options().device(torch::kCPU));
  for (int64_t r = 0; r < rows; r += step) {
    torch::Tensor chunk = scratch.narrow(0, 0, std::min(step, rows - r));
    torch::nn::init::uniform_(chunk, deferred_->min, deferred_->max);
  }
}

torch::Tensor EmbeddingTableImpl::block(int64_t row_offset, int64_t rows, int64_t col_offset, int64_t cols) const {
  torch::NoGradGuard no_grad;
  if (!deferred_) return weight.narrow(0, row_offset, rows).narrow(1, col_offset, cols).to(torch::kCPU).clone();
  at::Generator generator = at::detail::createCPUGenerator();
  generator.set_state(deferred_->generator_state);
  const int64_t dim = weight.size(1), step = chunk_rows(dim), end = row_offset + rows;
  torch::Tensor out = with_huge_pages(torch::empty({rows, cols}, weight.options().device(torch::kCPU)));
  torch::Tensor scratch = torch::empty({std::min(end, step), dim}, out.options());
  for (int64_t r = 0; r < end; r += step) {  // rows before the block are drawn only to advance the generator
    const int64_t n = std::min(step, end - r);
    torch::Tensor chunk = scratch.narrow(0, 0, n);
    chunk.uniform_(deferred_->min, deferred_->max, generator);
    const int64_t first = std::max(r, row_offset), last = std::min(r + n, end);
    if (first < last) out.narrow(0, first - row_offset, last - first).copy_(chunk.narrow(0, first - r, last - first).narrow(1, col_offset, cols));
  }
  return out;
}

void EmbeddingTableImpl::materialize(bool draw) {
  torch::Tensor full = deferred_ && draw ? block(0, weight.size(0), 0, weight.size(1))
                                         : with_huge_pages(torch::empty(weight.sizes(), weight.options().device(torch::kCPU)));
  weight = full.requires_grad_(weight.requires_grad());
  parameters_["weight"] = weight;
  deferred_.reset();
}

void materialize_deferred_tables(torch::nn::Module& module, bool draw) {
  for (const auto& m : module.modules())
    if (auto table = std::dynamic_pointer_cast<EmbeddingTableImpl>(m))
      if (table->weight.is_meta()) table->materialize(draw);
}

namespace {

/// The ids (and offsets, weights) of some of a KJT's keys, laid out as one
/// embedding_bag input: the bags of key k_1, then of k_2, ...
struct TableInput {
  torch::Tensor values;
  torch::Tensor offsets;  // include_last_offset layout: F*B + 1 entries
  torch::Tensor weights;  // undefined when unweighted
};

bool consecutive(const std::vector<int64_t>& keys) {
  for (size_t i = 1; i < keys.size(); ++i)
    if (keys[i] != keys[i - 1] + 1) return false;
  return true;
}

/// No host synchronisation: every bound comes from offset_per_key, which
/// the KJT already holds on the host.
/// `offsets` are the KJT's offsets in the dtype of its values (embedding_bag
/// wants both alike).
TableInput gather_keys(const KeyedJaggedTensor& kjt, const torch::Tensor& offsets, const std::vector<int64_t>& keys,
                       bool with_weights) {
  const auto& lo = kjt.lengths_offset_per_key();  // key k's bags: lo[k] .. lo[k + 1]
  const auto& opk = kjt.offset_per_key();
  TableInput in;
  if (consecutive(keys)) {
    // The common case (a table's features adjacent in the KJT): views only.
    const int64_t k0 = keys.front(), k1 = keys.back() + 1;
    in.values = kjt.values().slice(0, opk[k0], opk[k1]);
    in.offsets = offsets.slice(0, lo[k0], lo[k1] + 1) - opk[k0];
    if (with_weights) in.weights = kjt.weights().slice(0, opk[k0], opk[k1]);
    return in;
  }
  std::vector<torch::Tensor> values, offs, weights;
  int64_t total = 0;
  for (int64_t k : keys) {
    values.push_back(kjt.values().slice(0, opk[k], opk[k + 1]));
    offs.push_back(offsets.slice(0, lo[k], lo[k + 1]) + (total - opk[k]));
    if (with_weights) weights.push_back(kjt.weights().slice(0, opk[k], opk[k + 1]));
    total += opk[k + 1] - opk[k];
  }
  offs.push_back(torch::full({1}, total, offsets.options()));
  in.values = torch::cat(values);
  in.offsets = torch::cat(offs);
  if (with_weights) in.weights = torch::cat(weights);
  return in;
}

/// Positions in `kjt` of `features`; throws InputError naming the missing
/// feature, its table and the KJT's keys.
std::vector<int64_t> key_positions(const KeyedJaggedTensor& kjt, const std::map<std::string, int64_t>& index,
                                   const std::vector<std::string>& features, const std::string& table,
                                   const char* module) {
  std::vector<int64_t> out;
  for (const auto& f : features) {
    auto it = index.find(f);
    if (it == index.end())
      throw_input_error(module, ": feature '", f, "' of table '", table,
                        "' is not in the input KeyedJaggedTensor, which has keys ", join_names(kjt.keys()));
    out.push_back(it->second);
  }
  return out;
}

template <typename Config>
void fill_default_feature_names(std::vector<Config>& tables, const char* module) {
  std::set<std::string> names;
  for (auto& t : tables) {
    t.validate(module);
    if (!names.insert(t.name).second) throw_input_error(module, ": duplicate table name '", t.name, "'");
    if (t.feature_names.empty()) t.feature_names = {t.name};
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// EmbeddingBagCollection

EmbeddingBagCollectionImpl::EmbeddingBagCollectionImpl(std::vector<EmbeddingBagConfig> tables, bool is_weighted,
                                                       torch::Device device)
    : EmbeddingBagCollectionImpl(EmbeddingBagCollectionOptions(std::move(tables)).is_weighted(is_weighted).device(device)) {}

EmbeddingBagCollectionImpl::EmbeddingBagCollectionImpl(EmbeddingBagCollectionOptions options)
    : options_(std::move(options)) {
  fill_default_feature_names(options_.tables(), "EmbeddingBagCollection");
  embedding_bags_ = register_module("embedding_bags", torch::nn::ModuleDict());
  for (const auto& t : options_.tables()) {
    if (t.pooling == PoolingType::NONE)
      throw_input_error("EmbeddingBagCollection: table '", t.name,
                        "' has pooling NONE; use an EmbeddingCollection for unpooled tables (Unsupported pooling type NONE)");
    if (options_.is_weighted() && t.pooling != PoolingType::SUM)
      throw_input_error("EmbeddingBagCollection: table '", t.name, "' has pooling ", to_string(t.pooling),
                        " but is_weighted is set; per-sample weights are only supported with pooling SUM");
    tables_.emplace_back(t.num_embeddings, t.embedding_dim, weight_storage_dtype(t.data_type), options_.device());
    embedding_bags_->update({{t.name, tables_.back().ptr()}});
    for (size_t i = 0; i < t.feature_names.size(); ++i) length_per_embedding_.push_back(t.embedding_dim);
  }
  for (const auto& names : get_embedding_names_by_table(options_.tables()))
    embedding_names_.insert(embedding_names_.end(), names.begin(), names.end());
  reset_parameters();
}

void EmbeddingBagCollectionImpl::reset_parameters() {
  for (size_t t = 0; t < tables_.size(); ++t) tables_[t]->init(options_.tables()[t]);
}

int64_t EmbeddingBagCollectionImpl::output_dim() const {
  int64_t d = 0;
  for (int64_t l : length_per_embedding_) d += l;
  return d;
}

torch::Tensor EmbeddingBagCollectionImpl::table_block(const std::string& table, int64_t row_offset, int64_t rows,
                                       int64_t col_offset, int64_t cols) const {
  for (size_t t = 0; t < tables_.size(); ++t)
    if (options_.tables()[t].name == table) return tables_[t]->block(row_offset, rows, col_offset, cols);
  table_weight(table);  // throws, naming the tables
  return {};
}

const torch::Tensor& EmbeddingBagCollectionImpl::table_weight(const std::string& table) const {
  std::vector<std::string> names;
  for (size_t t = 0; t < tables_.size(); ++t) {
    if (options_.tables()[t].name == table) return tables_[t]->weight;
    names.push_back(options_.tables()[t].name);
  }
  throw_input_error("EmbeddingBagCollection: no table '", table, "'; tables are ", join_names(names));
}

void EmbeddingBagCollectionImpl::to(torch::Device device, bool non_blocking) {
  torch::nn::Module::to(device, non_blocking);
  options_.device(device);
  if (fused_) fused_->to(device);
}

namespace {

/// A fused optimizer's state under "<dict><table>.weight.<state name>"
/// (float32, tensors shared), and the stochastic rounding's [seed, step].
template <typename Config>
StateDict fused_state_of(const FusedEmbeddingOptimizer* fused, const std::vector<Config>& tables,
                         const std::string& dict) {
  StateDict out;
  if (fused == nullptr) return out;
  const std::string suffix = ".weight." + fused->state_name();
  for (size_t t = 0; t < tables.size(); ++t)
    if (fused->states()[t].defined()) out.emplace_back(dict + tables[t].name + suffix, fused->states()[t]);
  // recmod's own: the stochastic rounding's int64 [seed, step], when a table rounds so.
  if (fused->rounding_state().defined()) out.emplace_back("stochastic_rounding", fused->rounding_state().tensor());
  return out;
}

/// Strict load into `expected` (fused_state_of's tensors): every key with its shape, no other.
void load_fused_state(const StateDict& expected, bool has_fused, const StateDict& state, const std::string& origin,
                      const char* module) {
  if (!has_fused && !state.empty())
    throw CheckpointError(str_cat(origin, ": ", module, " has no fused optimizer but the state has key '",
                                  state.front().first, "'"));
  for (const auto& [key, value] : state)
    if (find_tensor(expected, key) == nullptr) {
      std::vector<std::string> keys;
      for (const auto& kv : expected) keys.push_back(kv.first);
      throw CheckpointError(str_cat(origin, ": unexpected fused optimizer key '", key, "'; expected ", join_names(keys)));
    }
  for (const auto& [key, target] : expected) {
    const torch::Tensor* value = find_tensor(state, key);
    if (value == nullptr) throw CheckpointError(str_cat(origin, ": missing fused optimizer key '", key, "'"));
    if (value->sizes() != target.sizes())
      throw CheckpointError(str_cat(origin, ": key '", key, "' has shape ", value->sizes(), ", the model expects ",
                                    target.sizes()));
  }
  torch::NoGradGuard no_grad;
  for (const auto& [key, target] : expected) {
    torch::Tensor t = target;
    t.copy_(*find_tensor(state, key));
  }
}

}  // namespace

void EmbeddingBagCollectionImpl::enable_fused_optimizer(const optim::OptimizerOptions& options,
                                                        std::vector<optim::ShardOffsets> offsets) {
  std::vector<torch::Tensor> weights;
  std::vector<bool> stochastic_rounding;
  for (size_t t = 0; t < tables_.size(); ++t) {
    weights.push_back(tables_[t]->weight);
    stochastic_rounding.push_back(options_.tables()[t].stochastic_rounding);
  }
  fused_ = std::make_shared<FusedEmbeddingOptimizer>(weights, options, stochastic_rounding, std::move(offsets));
}

void EmbeddingBagCollectionImpl::disable_fused_optimizer() { fused_.reset(); }

void EmbeddingBagCollectionImpl::set_fused_lr(double lr) {
  TORCH_CHECK(fused_ != nullptr, "EmbeddingBagCollection: set_fused_lr needs the fused optimizer (enable_fused_optimizer)");
  fused_->set_lr(lr);
}

StateDict EmbeddingBagCollectionImpl::fused_optimizer_state_dict() const {
  return fused_state_of(fused_.get(), options_.tables(), "embedding_bags.");
}

void EmbeddingBagCollectionImpl::load_fused_optimizer_state_dict(const StateDict& state, const std::string& origin) {
  load_fused_state(fused_optimizer_state_dict(), fused_ != nullptr, state, origin, "EmbeddingBagCollection");
}

KeyedTensor EmbeddingBagCollectionImpl::forward_fused(const KeyedJaggedTensor& features) {
  const auto index = features.index_per_key();
  FusedLookupPlan plan;
  int64_t column = 0;
  for (size_t t = 0; t < tables_.size(); ++t) {
    const auto& config = options_.tables()[t];
    plan.tables.push_back(tables_[t]->weight);
    plan.pooling.push_back(config.pooling);
    for (int64_t k : key_positions(features, index, config.feature_names, config.name, "EmbeddingBagCollection")) {
      plan.slots.push_back({static_cast<int64_t>(t), k, column});
      column += config.embedding_dim;
    }
  }
  plan.output_dim = column;
  FusedLookupInput input;
  input.ids = features.values();
  input.offsets = features.offsets();
  input.batch_size = features.stride();
  input.offset_per_key = features.offset_per_key();
  if (options_.is_weighted()) input.per_sample_weights = features.weights().to(torch::kFloat);
  // Without autograd (eval, predictions) the fused lookup runs with or
  // without a fused optimizer: one pass over every table instead of one
  // embedding_bag call per table. Devices without a kernel of their own
  // take the tensor-op path inside.
  torch::Tensor values = fused_ && torch::autograd::GradMode::is_enabled() ? fused_embedding_bag(plan, input, fused_)
                                                                           : fused_pooled_forward(plan, input);
  return KeyedTensor(embedding_names_, length_per_embedding_, values, 1);
}

KeyedTensor EmbeddingBagCollectionImpl::forward(const KeyedJaggedTensor& features) {
  const bool weighted = options_.is_weighted();
  if (weighted && !features.has_weights())
    throw_input_error("EmbeddingBagCollection: is_weighted is set but the input KeyedJaggedTensor with keys ",
                      join_names(features.keys()), " has no weights");
  if (features.variable_stride_per_key() || features.inverse_indices_or_none()) return forward_variable_batch(features);
  // The fused lookup: when training with the fused optimizer, and whenever
  // autograd is off on a device with a lookup kernel (the CPU; CUDA in a
  // CUDA build); other devices keep the per-table path below.
  if (fused_ || (!torch::autograd::GradMode::is_enabled() && fused_lookup_has_kernel(features.device())))
    return forward_fused(features);
  const int64_t b = features.stride();
  const auto index = features.index_per_key();
  const torch::Tensor offsets = features.offsets().to(features.values().scalar_type());
  std::vector<torch::Tensor> pooled;
  for (size_t t = 0; t < tables_.size(); ++t) {
    const auto& config = options_.tables()[t];
    const torch::Tensor& weight = tables_[t]->weight;
    const auto keys = key_positions(features, index, config.feature_names, config.name, "EmbeddingBagCollection");
    const TableInput in = gather_keys(features, offsets, keys, weighted);
    torch::Tensor per_sample = in.weights.defined() ? in.weights.to(weight.scalar_type()) : torch::Tensor();
    // One call for all of the table's features: (F*B, D) bags, feature-major.
    auto result = torch::embedding_bag(weight, in.values, in.offsets, /*scale_grad_by_freq=*/false,
                                       pooling_type_to_embedding_bag_mode(config.pooling), options_.sparse(),
                                       per_sample, /*include_last_offset=*/true);
    const auto f = static_cast<int64_t>(keys.size());
    pooled.push_back(std::get<0>(result)
                         .view({f, b, config.embedding_dim})
                         .transpose(0, 1)
                         .reshape({b, f * config.embedding_dim})
                         .to(torch::kFloat32));
  }
  torch::Tensor values =
      pooled.empty() ? torch::zeros({b, 0}, torch::TensorOptions().device(features.device())) : torch::cat(pooled, 1);
  return KeyedTensor(embedding_names_, length_per_embedding_, values, 1);
}

KeyedTensor EmbeddingBagCollectionImpl::forward_variable_batch(const KeyedJaggedTensor& features) {
  if (fused_)
    throw_input_error("EmbeddingBagCollection: the fused training path takes one batch size for every feature, but "
                      "the input has a variable batch per feature (stride_per_key ",
                      c10::IntArrayRef(features.stride_per_key()), "); train it with training.fused_embeddings: false");
  const bool weighted = options_.is_weighted();
  const auto index = features.index_per_key();
  const auto strides = features.stride_per_key();
  const auto& lo = features.lengths_offset_per_key();
  const auto& opk = features.offset_per_key();
  const torch::Tensor offsets = features.offsets().to(features.values().scalar_type());
  // One (S_k, D) block per output feature, in output order.
  std::vector<torch::Tensor> pooled;
  std::vector<std::string> feature_names;
  std::vector<int64_t> samples;
  for (size_t t = 0; t < tables_.size(); ++t) {
    const auto& config = options_.tables()[t];
    const torch::Tensor& weight = tables_[t]->weight;
    for (int64_t k : key_positions(features, index, config.feature_names, config.name, "EmbeddingBagCollection")) {
      torch::Tensor per_sample;
      if (weighted) per_sample = features.weights().slice(0, opk[k], opk[k + 1]).to(weight.scalar_type());
      auto result = torch::embedding_bag(weight, features.values().slice(0, opk[k], opk[k + 1]),
                                         offsets.slice(0, lo[k], lo[k + 1] + 1) - opk[k], /*scale_grad_by_freq=*/false,
                                         pooling_type_to_embedding_bag_mode(config.pooling), options_.sparse(),
                                         per_sample, /*include_last_offset=*/true);
      pooled.push_back(std::get<0>(result).to(torch::kFloat32));
      feature_names.push_back(features.keys()[k]);
      samples.push_back(strides[k]);
    }
  }
  const auto& inverse = features.inverse_indices_or_none();
  if (inverse) {
    const torch::Tensor rows = reorder_inverse_indices(inverse, feature_names);
    // index_select would report a bad index without naming the feature.
    if (rows.numel() > 0) {
      const auto max = std::get<0>(rows.max(1)).to(torch::kCPU);
      for (size_t i = 0; i < feature_names.size(); ++i)
        if (max[static_cast<int64_t>(i)].item<int64_t>() >= samples[i])
          throw_input_error("EmbeddingBagCollection: inverse_indices of feature '", feature_names[i], "' point at sample ",
                            max[static_cast<int64_t>(i)].item<int64_t>(), " but the feature has ", samples[i],
                            " samples");
    }
    if (pooled.empty())
      return KeyedTensor(embedding_names_, length_per_embedding_,
                         torch::zeros({inverse->indices.size(1), 0}, torch::TensorOptions().device(features.device())), 1);
    return KeyedTensor(embedding_names_, length_per_embedding_, process_pooled_embeddings(pooled, rows), 1);
  }
  for (size_t i = 1; i < samples.size(); ++i)
    if (samples[i] != samples[0])
      throw_input_error("EmbeddingBagCollection: the input has a variable batch per feature (feature '",
                        feature_names[0], "' has ", samples[0], " samples, '", feature_names[i], "' ", samples[i],
                        ") and no inverse_indices to bring them to one batch");
  if (pooled.empty())
    return KeyedTensor(embedding_names_, length_per_embedding_,
                       torch::zeros({0, 0}, torch::TensorOptions().device(features.device())), 1);
  return KeyedTensor(embedding_names_, length_per_embedding_, torch::cat(pooled, 1), 1);
}

torch::Tensor reorder_inverse_indices(const std::optional<InverseIndices>& inverse_indices,
                                      const std::vector<std::string>& feature_names) {
  if (!inverse_indices) return torch::empty({0}, torch::kLong);
  std::map<std::string, int64_t> row_of;
  for (size_t i = 0; i < inverse_indices->keys.size(); ++i) row_of.emplace(inverse_indices->keys[i], i);
  std::vector<int64_t> rows;
  for (const auto& name : feature_names) {
    const std::string feature = name.substr(0, name.find('@'));
    auto it = row_of.find(feature);
    if (it == row_of.end())
      throw_input_error("inverse_indices has no row for feature '", feature, "'; it has ",
                        join_names(inverse_indices->keys));
    rows.push_back(it->second);
  }
  const auto& ix = inverse_indices->indices;
  return ix.index_select(0, torch::tensor(rows, torch::kLong).to(ix.device()));
}

torch::Tensor process_pooled_embeddings(const std::vector<torch::Tensor>& pooled_embeddings,
                                        const torch::Tensor& inverse_indices) {
  if (inverse_indices.numel() == 0) return torch::cat(pooled_embeddings, 1);
  std::vector<torch::Tensor> gathered;
  gathered.reserve(pooled_embeddings.size());
  for (size_t k = 0; k < pooled_embeddings.size(); ++k)
    gathered.push_back(pooled_embeddings[k].index_select(0, inverse_indices[static_cast<int64_t>(k)]));
  return torch::cat(gathered, 1);
}

// ---------------------------------------------------------------------------
// EmbeddingCollection

EmbeddingCollectionImpl::EmbeddingCollectionImpl(std::vector<EmbeddingConfig> tables, bool need_indices,
                                                 torch::Device device)
    : EmbeddingCollectionImpl(EmbeddingCollectionOptions(std::move(tables)).need_indices(need_indices).device(device)) {}

EmbeddingCollectionImpl::EmbeddingCollectionImpl(EmbeddingCollectionOptions options) : options_(std::move(options)) {
  fill_default_feature_names(options_.tables(), "EmbeddingCollection");
  embeddings_ = register_module("embeddings", torch::nn::ModuleDict());
  for (const auto& t : options_.tables()) {
    if (embedding_dim_ < 0) embedding_dim_ = t.embedding_dim;
    if (t.embedding_dim != embedding_dim_)
      throw_input_error(
          "EmbeddingCollection: all tables are required to have the same embedding_dim; table '", t.name,
          "' has embedding_dim ", t.embedding_dim, " but the first table '", options_.tables().front().name, "' has ",
          embedding_dim_);
    tables_.emplace_back(t.num_embeddings, t.embedding_dim, weight_storage_dtype(t.data_type), options_.device());
    embeddings_->update({{t.name, tables_.back().ptr()}});
  }
  embedding_names_by_table_ = get_embedding_names_by_table(options_.tables());
  reset_parameters();
}

void EmbeddingCollectionImpl::reset_parameters() {
  for (size_t t = 0; t < tables_.size(); ++t) tables_[t]->init(options_.tables()[t]);
}

std::vector<std::string> EmbeddingCollectionImpl::embedding_names() const {
  std::vector<std::string> out;
  for (const auto& names : embedding_names_by_table_) out.insert(out.end(), names.begin(), names.end());
  return out;
}

torch::Tensor EmbeddingCollectionImpl::table_block(const std::string& table, int64_t row_offset, int64_t rows,
                                       int64_t col_offset, int64_t cols) const {
  for (size_t t = 0; t < tables_.size(); ++t)
    if (options_.tables()[t].name == table) return tables_[t]->block(row_offset, rows, col_offset, cols);
  table_weight(table);  // throws, naming the tables
  return {};
}

const torch::Tensor& EmbeddingCollectionImpl::table_weight(const std::string& table) const {
  std::vector<std::string> names;
  for (size_t t = 0; t < tables_.size(); ++t) {
    if (options_.tables()[t].name == table) return tables_[t]->weight;
    names.push_back(options_.tables()[t].name);
  }
  throw_input_error("EmbeddingCollection: no table '", table, "'; tables are ", join_names(names));
}

void EmbeddingCollectionImpl::to(torch::Device device, bool non_blocking) {
  torch::nn::Module::to(device, non_blocking);
  options_.device(device);
  if (fused_) fused_->to(device);
}

void EmbeddingCollectionImpl::enable_fused_optimizer(const optim::OptimizerOptions& options) {
  std::vector<torch::Tensor> weights;
  std::vector<bool> stochastic_rounding;
  for (size_t t = 0; t < tables_.size(); ++t) {
    weights.push_back(tables_[t]->weight);
    stochastic_rounding.push_back(options_.tables()[t].stochastic_rounding);
  }
  fused_ = std::make_shared<FusedEmbeddingOptimizer>(weights, options, stochastic_rounding);
}

void EmbeddingCollectionImpl::disable_fused_optimizer() { fused_.reset(); }

void EmbeddingCollectionImpl::set_fused_lr(double lr) {
  TORCH_CHECK(fused_ != nullptr, "EmbeddingCollection: set_fused_lr needs the fused optimizer (enable_fused_optimizer)");
  fused_->set_lr(lr);
}

StateDict EmbeddingCollectionImpl::fused_optimizer_state_dict() const {
  return fused_state_of(fused_.get(), options_.tables(), "embeddings.");
}

void EmbeddingCollectionImpl::load_fused_optimizer_state_dict(const StateDict& state, const std::string& origin) {
  load_fused_state(fused_optimizer_state_dict(), fused_ != nullptr, state, origin, "EmbeddingCollection");
}

SequenceLookupPlan EmbeddingCollectionImpl::sequence_plan(const KeyedJaggedTensor& features) const {
  const auto index = features.index_per_key();
  SequenceLookupPlan plan;
  plan.dim = embedding_dim_;
  for (size_t t = 0; t < tables_.size(); ++t) {
    const auto& config = options_.tables()[t];
    plan.tables.push_back(tables_[t]->weight);
    for (int64_t k : key_positions(features, index, config.feature_names, config.name, "EmbeddingCollection"))
      plan.slots.push_back({static_cast<int64_t>(t), k, 0});
  }
  return plan;
}

JaggedTensorDict EmbeddingCollectionImpl::forward_fused(const KeyedJaggedTensor& features,
                                                        const SequenceLookupPlan& plan) {
  SequenceLookupInput input;
  input.ids = features.values();
  input.offset_per_key = features.offset_per_key();
  const std::vector<int64_t> rows = sequence_output_rows(plan, input);
  const torch::Tensor values = fused_ && torch::autograd::GradMode::is_enabled()
                                   ? fused_embedding_sequence(plan, input, fused_)
                                   : fused_sequence_forward(plan, input);
  JaggedTensorDict out;
  size_t s = 0;
  for (size_t t = 0; t < tables_.size(); ++t)
    for (size_t j = 0; j < embedding_names_by_table_[t].size(); ++j, ++s) {
      const int64_t k = plan.slots[s].key;
      torch::Tensor lengths = features.lengths_of_key(k);
      std::optional<torch::Tensor> ids;
      if (options_.need_indices())
        ids = features.values().slice(0, input.offset_per_key[k], input.offset_per_key[k + 1]);
      out.emplace_back(embedding_names_by_table_[t][j],
                       JaggedTensor::unchecked(values.slice(0, rows[s], rows[s + 1]), lengths,
                                               offsets_from_lengths(lengths), ids));
    }
  return out;
}

JaggedTensorDict EmbeddingCollectionImpl::forward(const KeyedJaggedTensor& features) {
  // The fused path (enable_fused_optimizer), and without autograd the CUDA
  // kernel's one-launch lookup whenever it applies.
  if (fused_ || (!torch::autograd::GradMode::is_enabled() && features.device().is_cuda())) {
    const SequenceLookupPlan plan = sequence_plan(features);
    if (fused_ || sequence_kernel_applies(plan, {features.values(), features.offset_per_key()}))
      return forward_fused(features, plan);
  }
  const auto index = features.index_per_key();
  const auto& lpk = features.length_per_key();
  JaggedTensorDict out;
  for (size_t t = 0; t < tables_.size(); ++t) {
    const auto& config = options_.tables()[t];
    const auto keys = key_positions(features, index, config.feature_names, config.name, "EmbeddingCollection");
    const TableInput in = gather_keys(features, features.offsets(), keys, /*with_weights=*/false);
    // One lookup for all of the table's features, then split per feature.
    const torch::Tensor rows =
        torch::embedding(tables_[t]->weight, in.values, /*padding_idx=*/-1, /*scale_grad_by_freq=*/false,
                         options_.sparse())
            .to(torch::kFloat32);
    int64_t start = 0;
    for (size_t j = 0; j < keys.size(); ++j) {
      const int64_t k = keys[j];
      const int64_t n = lpk[k];
      // Each key's own samples (TorchRec's EC ignores inverse_indices).
      torch::Tensor lengths = features.lengths_of_key(k);
      std::optional<torch::Tensor> ids;
      if (options_.need_indices()) ids = in.values.slice(0, start, start + n);
      out.emplace_back(embedding_names_by_table_[t][j],
                       JaggedTensor::unchecked(rows.slice(0, start, start + n), lengths,
                                               offsets_from_lengths(lengths), ids));
      start += n;
    }
  }
  return out;
}

}  // namespace recmod
