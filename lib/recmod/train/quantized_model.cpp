#include "recmod/train/quantized_model.h"

#include <functional>
#include <set>
#include <typeinfo>

#include "recmod/common/errors.h"
#include "recmod/common/strings.h"
#include "recmod/mc/mc_embedding_modules.h"
#include "recmod/modules/embedding_modules.h"
#include "recmod/modules/fp_embedding_modules.h"
#include "recmod/quant/embedding_modules.h"
#include "recmod/quant/fp_embedding_modules.h"
#include "recmod/quant/mc_embedding_modules.h"

namespace recmod::train {

namespace {

/// A plain (unsharded, not derived) EmbeddingBagCollection node, or null.
std::shared_ptr<EmbeddingBagCollectionImpl> plain_ebc(const config::ModelGraph& model, size_t i) {
  auto module = model->node_module(i);
  if (!module || typeid(*module) != typeid(EmbeddingBagCollectionImpl)) return nullptr;
  return std::dynamic_pointer_cast<EmbeddingBagCollectionImpl>(module);
}

/// A plain EmbeddingCollection node, or null.
std::shared_ptr<EmbeddingCollectionImpl> plain_ec(const config::ModelGraph& model, size_t i) {
  auto module = model->node_module(i);
  if (!module || typeid(*module) != typeid(EmbeddingCollectionImpl)) return nullptr;
  return std::dynamic_pointer_cast<EmbeddingCollectionImpl>(module);
}

/// Node i's module when it is exactly a `Module` (not a sharded or other
/// subclass), or null.
template <typename Module>
std::shared_ptr<Module> exactly(const config::ModelGraph& model, size_t i) {
  auto module = model->node_module(i);
  if (!module || typeid(*module) != typeid(Module)) return nullptr;
  return std::dynamic_pointer_cast<Module>(module);
}

/// A node's float collection and the collection wrapping it, when the node
/// is a FeatureProcessed / ManagedCollision one: the EBC or EC that holds
/// its tables (null when the node is neither kind).
struct WrappedCollection {
  std::shared_ptr<FeatureProcessedEmbeddingBagCollectionImpl> fp;
  std::shared_ptr<ManagedCollisionEmbeddingBagCollectionImpl> mc_ebc;
  std::shared_ptr<ManagedCollisionEmbeddingCollectionImpl> mc_ec;
  const recmod::EmbeddingBagCollectionImpl* ebc = nullptr;
  const recmod::EmbeddingCollectionImpl* ec = nullptr;
};

WrappedCollection wrapped_collection(const config::ModelGraph& model, size_t i) {
  WrappedCollection w;
  if ((w.fp = exactly<FeatureProcessedEmbeddingBagCollectionImpl>(model, i))) {
    w.ebc = w.fp->embedding_bag_collection().get();
  } else if ((w.mc_ebc = exactly<ManagedCollisionEmbeddingBagCollectionImpl>(model, i))) {
    w.ebc = w.mc_ebc->embedding_bag_collection().get();
  } else if ((w.mc_ec = exactly<ManagedCollisionEmbeddingCollectionImpl>(model, i))) {
    w.ec = w.mc_ec->embedding_collection().get();
  }
  return w;
}

void swap_in(config::ModelGraph& model, size_t i,
             std::shared_ptr<quant::FeatureProcessedEmbeddingBagCollectionImpl> q) {
  model->replace_node(
      i, q, [q](const std::vector<config::Value>& in) { return config::Value::of_pooled(q->forward(in[0].sparse)); });
}

void swap_in(config::ModelGraph& model, size_t i,
             std::shared_ptr<quant::ManagedCollisionEmbeddingBagCollectionImpl> q) {
  model->replace_node(i, q, [q](const std::vector<config::Value>& in) {
    return config::Value::of_pooled(q->forward(in[0].sparse).first);
  });
}

void swap_in(config::ModelGraph& model, size_t i, std::shared_ptr<quant::ManagedCollisionEmbeddingCollectionImpl> q) {
  model->replace_node(i, q, [q](const std::vector<config::Value>& in) {
    return config::Value::of_sequence(q->forward(in[0].sparse).first);
  });
}

void swap_in(config::ModelGraph& model, size_t i, std::shared_ptr<quant::EmbeddingBagCollectionImpl> q) {
  model->replace_node(i, q, [q](const std::vector<config::Value>& in) {
    return config::Value::of_pooled(q->forward(in[0].sparse));
  });
}

void swap_in(config::ModelGraph& model, size_t i, std::shared_ptr<quant::EmbeddingCollectionImpl> q) {
  model->replace_node(i, q, [q](const std::vector<config::Value>& in) {
    return config::Value::of_sequence(q->forward(in[0].sparse));
  });
}

int64_t nbytes(const torch::Tensor& t) { return t.numel() * static_cast<int64_t>(t.element_size()); }

using QuantizeTableFn = std::function<const quant::QuantizedTable&(size_t)>;

/// The per-table report of a quantized collection `q` made from `floats`
/// (a float EBC or EC); `prefix` is "embedding_bags" or "embeddings".
template <typename Float, typename Quant, typename Configs>
void report_tables(const std::string& node, const Float& floats, const Quant& q, const Configs& tables,
                   const std::string& prefix, const QuantizeTableFn& table_of,
                   std::vector<QuantizedTableReport>& reports) {
  const StateDict qstate = state_dict(q);
  for (size_t t = 0; t < tables.size(); ++t) {
    QuantizedTableReport r;
    r.node = node;
    r.table = tables[t].name;
    r.type = tables[t].data_type;
    r.num_embeddings = tables[t].num_embeddings;
    r.embedding_dim = tables[t].embedding_dim;
    const torch::Tensor& w = floats.table_weight(r.table);
    r.bytes_before = nbytes(w);
    const std::string key_prefix = prefix + "." + r.table + ".";
    for (const auto& [key, value] : qstate)
      if (key.rfind(key_prefix, 0) == 0) r.bytes_after += nbytes(value);
    const quant::QuantizedTable& table = table_of(t);
    if (quant::is_rowwise_quantized(r.type)) {
      const quant::RowError e = quant::quantization_error(w.to(torch::kFloat), table.rows());
      r.mean_abs_error = e.mean_abs;
      r.max_abs_error = e.max_abs;
    } else {
      const torch::Tensor diff = (w.to(torch::kDouble) - table.dequantized().to(torch::kDouble)).abs();
      r.mean_abs_error = diff.mean().item<double>();
      r.max_abs_error = diff.max().item<double>();
    }
    reports.push_back(r);
  }
}

/// The weight dtype of QuantConfig for a table's DataType (BF16: float32).
torch::Dtype quant_weight_dtype(DataType type) {
  switch (type) {
    case DataType::INT8:
    case DataType::UINT8: return torch::kQInt8;
    case DataType::INT4: return torch::kQUInt4x2;
    case DataType::INT2: return torch::kQUInt2x4;
    case DataType::FP16: return torch::kHalf;
    default: return torch::kFloat;
  }
}

/// Quantizes node `i` (a plain EBC or EC) with `config`, swaps it in and
/// appends its tables' reports; false when the node is neither.
bool quantize_node(config::ModelGraph& model, size_t i, const quant::QuantConfig& config,
                   std::vector<QuantizedTableReport>& reports) {
  const std::string node = model->nodes()[i].name;
  if (auto ebc = plain_ebc(model, i)) {
    auto q = quant::EmbeddingBagCollectionImpl::from_float(*ebc, config);
    report_tables(node, *ebc, *q, q->embedding_bag_configs(), "embedding_bags",
                  [&](size_t t) -> const quant::QuantizedTable& { return q->table(t); }, reports);
    swap_in(model, i, q);
    return true;
  }
  if (auto ec = plain_ec(model, i)) {
    auto q = quant::EmbeddingCollectionImpl::from_float(*ec, config);
    report_tables(node, *ec, *q, q->embedding_configs(), "embeddings",
                  [&](size_t t) -> const quant::QuantizedTable& { return q->table(t); }, reports);
    swap_in(model, i, q);
    return true;
  }
  // Feature-processed and managed-collision collections: their tables
  // quantized, their processors / MCC kept (TorchRec's quant modules).
  const WrappedCollection w = wrapped_collection(model, i);
  // Both pooled wrappers hold a quantized EBC: report its tables, swap the node.
  const auto swap_in_pooled = [&](auto q) {
    const auto& qebc = q->embedding_bag_collection();
    report_tables(
        node, *w.ebc, *q, qebc.embedding_bag_configs(), "embedding_bags",
        [&](size_t t) -> const quant::QuantizedTable& { return qebc.table(t); }, reports);
    swap_in(model, i, q);
    return true;
  };
  if (w.fp) return swap_in_pooled(quant::FeatureProcessedEmbeddingBagCollectionImpl::from_float(*w.fp, config));
  if (w.mc_ebc) return swap_in_pooled(quant::ManagedCollisionEmbeddingBagCollectionImpl::from_float(*w.mc_ebc, config));
  if (w.mc_ec) {
    auto q = quant::ManagedCollisionEmbeddingCollectionImpl::from_float(*w.mc_ec, config);
    const auto& qec = q->embedding_collection();
    report_tables(
        node, *w.ec, *q, qec.embedding_configs(), "embeddings",
        [&](size_t t) -> const quant::QuantizedTable& { return qec.table(t); }, reports);
    swap_in(model, i, q);
    return true;
  }
  return false;
}

/// Calls f(tables) with the EmbeddingBagConfigs / EmbeddingConfigs of node
/// i's collection (plain, feature-processed or managed-collision); returns
/// whether it has one.
template <typename F>
bool with_node_tables(const config::ModelGraph& model, size_t i, F&& f) {
  if (auto ebc = plain_ebc(model, i)) {
    f(ebc->embedding_bag_configs());
    return true;
  }
  if (auto ec = plain_ec(model, i)) {
    f(ec->embedding_configs());
    return true;
  }
  const WrappedCollection w = wrapped_collection(model, i);
  if (w.ebc) {
    f(w.ebc->embedding_bag_configs());
    return true;
  }
  if (w.ec) {
    f(w.ec->embedding_configs());
    return true;
  }
  return false;
}

template <typename Configs>
bool declares_quantized(const Configs& tables) {
  for (const auto& t : tables)
    if (quant::is_rowwise_quantized(t.data_type)) return true;
  return false;
}

/// The checkpoint's type of each table of a collection (`key` is
/// "embedding_bags" or "embeddings"), checked against the config's
/// declared int types; whether any is stored quantized.
template <typename Configs>
bool checkpoint_types(Configs& tables, const StateDict& state, const std::string& node, const std::string& key,
                      const std::string& origin) {
  bool quantized = false;
  for (auto& t : tables) {
    const std::string prefix = node + "." + key + "." + t.name + ".";
    const torch::Tensor* weight = find_tensor(state, prefix + "weight");
    if (!weight) continue;  // load_model_state names the missing key
    const torch::Tensor* qscale = find_tensor(state, prefix + quant::kQScaleSuffix);
    const std::string what = str_cat(origin, ": table '", t.name, "' of node '", node, "' (dimension ",
                                     t.embedding_dim, ")");
    if (!qscale && weight->scalar_type() != torch::kUInt8 && weight->scalar_type() != torch::kHalf) {
      continue;  // a float table: loaded as the config says (load_model_state checks the dtype)
    }
    const DataType stored = quant::data_type_of_checkpoint(t.embedding_dim, *weight,
                                                           qscale ? *qscale : torch::Tensor(), what);
    if (quant::is_rowwise_quantized(t.data_type) && stored != t.data_type)
      throw CheckpointError(str_cat(what, ": the config says data_type ", to_string(t.data_type),
                                    ", the checkpoint holds ", to_string(stored),
                                    " rows; quantize the float checkpoint with the config's types (recmod quantize "
                                    "without --dtype) or change data_type"));
    if (stored == t.data_type && !quant::is_rowwise_quantized(stored)) continue;  // e.g. an fp16 table, as configured
    t.data_type = stored;
    quantized = quantized || stored != DataType::FP32;
  }
  return quantized;
}

}  // namespace

std::vector<QuantizedTableReport> quantize_model(config::ModelGraph& model, const quant::QuantConfig& config) {
  config.validate();
  std::set<std::string> known;
  for (size_t i = 0; i < model->nodes().size(); ++i)
    with_node_tables(model, i, [&](const auto& tables) {
      for (const auto& t : tables) known.insert(t.name);
    });
  for (const auto& [table, _] : config.per_table_weight_dtype)
    if (!known.count(table)) {
      std::vector<std::string> names(known.begin(), known.end());
      throw_input_error("no EmbeddingBagCollection or EmbeddingCollection has a table '", table, "'; the tables are ",
                        join_names(names));
    }
  std::vector<QuantizedTableReport> reports;
  for (size_t i = 0; i < model->nodes().size(); ++i) quantize_node(model, i, config, reports);
  return reports;
}

quant::QuantConfig configured_quant_config(const config::ModelGraph& model, torch::Dtype fallback) {
  quant::QuantConfig config;
  config.weight = fallback;
  auto add = [&](const auto& tables) {
    for (const auto& t : tables)
      if (quant::is_rowwise_quantized(t.data_type)) config.per_table_weight_dtype[t.name] = quant_weight_dtype(t.data_type);
  };
  for (size_t i = 0; i < model->nodes().size(); ++i) with_node_tables(model, i, add);
  return config;
}

std::vector<QuantizedTableReport> quantize_as_configured(config::ModelGraph& model) {
  std::vector<QuantizedTableReport> reports;
  for (size_t i = 0; i < model->nodes().size(); ++i) {
    quant::QuantConfig config;
    config.weight = torch::kFloat;
    auto add = [&](const auto& tables) {
      if (!declares_quantized(tables)) return false;
      for (const auto& t : tables) config.per_table_weight_dtype[t.name] = quant_weight_dtype(t.data_type);
      return true;
    };
    bool quantize = false;
    with_node_tables(model, i, [&](const auto& tables) { quantize = add(tables); });
    if (quantize) quantize_node(model, i, config, reports);
  }
  return reports;
}

bool has_quantized_tables(const StateDict& state) {
  for (const auto& [key, value] : state) {
    if (ends_with(key, std::string(".") + quant::kQScaleSuffix)) return true;
    if (key.find(".embedding_bags.") != std::string::npos && ends_with(key, ".weight") &&
        (value.scalar_type() == torch::kUInt8 || value.scalar_type() == torch::kHalf))
      return true;
  }
  return false;
}

void use_quantized_tables(config::ModelGraph& model, const StateDict& state, const std::string& origin) {
  for (size_t i = 0; i < model->nodes().size(); ++i) {
    const std::string node = model->nodes()[i].name;
    if (auto ebc = plain_ebc(model, i)) {
      std::vector<EmbeddingBagConfig> tables = ebc->embedding_bag_configs();
      if (!checkpoint_types(tables, state, node, "embedding_bags", origin)) continue;
      quant::EmbeddingBagCollectionOptions options(tables);
      options.is_weighted(ebc->is_weighted());
      options.uninitialized(true);  // load_model_state writes every table
      swap_in(model, i, std::make_shared<quant::EmbeddingBagCollectionImpl>(options));
    } else if (auto ec = plain_ec(model, i)) {
      std::vector<EmbeddingConfig> tables = ec->embedding_configs();
      if (!checkpoint_types(tables, state, node, "embeddings", origin)) continue;
      swap_in(model, i,
              std::make_shared<quant::EmbeddingCollectionImpl>(
                  quant::EmbeddingCollectionOptions(tables).need_indices(ec->need_indices()).uninitialized(true)));
    } else if (const WrappedCollection w = wrapped_collection(model, i); w.ebc) {
      // TorchRec's quantized FP-EBC / MC keys: the tables at the node's top level.
      std::vector<EmbeddingBagConfig> tables = w.ebc->embedding_bag_configs();
      if (!checkpoint_types(tables, state, node, "embedding_bags", origin)) continue;
      if (w.fp)
        swap_in(model, i, quant::FeatureProcessedEmbeddingBagCollectionImpl::uninitialized_like(*w.fp, tables));
      else
        swap_in(model, i, quant::ManagedCollisionEmbeddingBagCollectionImpl::uninitialized_like(*w.mc_ebc, tables));
    } else if (w.ec) {
      std::vector<EmbeddingConfig> tables = w.ec->embedding_configs();
      if (!checkpoint_types(tables, state, node, "embeddings", origin)) continue;
      swap_in(model, i, quant::ManagedCollisionEmbeddingCollectionImpl::uninitialized_like(*w.mc_ec, tables));
    }
  }
}

void load_model_state(config::ModelGraph& model, StateDict state, const std::string& origin) {
  std::set<std::string> used;
  for (const auto& child : model->named_children()) {
    const std::string prefix = child.key() + ".";
    StateDict mine;
    for (auto& [key, value] : state)
      if (key.rfind(prefix, 0) == 0) {
        mine.emplace_back(key.substr(prefix.size()), std::move(value));  // released as loaded
        used.insert(key);
      }
    if (auto q = std::dynamic_pointer_cast<quant::EmbeddingBagCollectionImpl>(child.value()))
      q->load_quantized_state_dict(std::move(mine), str_cat(origin, " (node '", child.key(), "')"));
    else if (auto qec = std::dynamic_pointer_cast<quant::EmbeddingCollectionImpl>(child.value()))
      qec->load_quantized_state_dict(std::move(mine), str_cat(origin, " (node '", child.key(), "')"));
    else if (auto qfp = std::dynamic_pointer_cast<quant::FeatureProcessedEmbeddingBagCollectionImpl>(child.value()))
      qfp->load_quantized_state_dict(std::move(mine), str_cat(origin, " (node '", child.key(), "')"));
    else if (auto qmb = std::dynamic_pointer_cast<quant::ManagedCollisionEmbeddingBagCollectionImpl>(child.value()))
      qmb->load_quantized_state_dict(std::move(mine), str_cat(origin, " (node '", child.key(), "')"));
    else if (auto qme = std::dynamic_pointer_cast<quant::ManagedCollisionEmbeddingCollectionImpl>(child.value()))
      qme->load_quantized_state_dict(std::move(mine), str_cat(origin, " (node '", child.key(), "')"));
    else
      recmod::load_state_dict(*child.value(), mine, str_cat(origin, " (", child.key(), ")"));
  }
  for (const auto& [key, _] : state)
    if (!used.count(key)) throw CheckpointError(str_cat(origin, ": unexpected key '", key, "' (no node of the model has it)"));
}

}  // namespace recmod::train
