#include "recmod/train/quantized_model.h"

#include <set>
#include <typeinfo>

#include "recmod/common/errors.h"
#include "recmod/modules/embedding_modules.h"
#include "recmod/quant/embedding_modules.h"

namespace recmod::train {

namespace {

/// A plain (unsharded, not derived) EmbeddingBagCollection node, or null.
std::shared_ptr<EmbeddingBagCollectionImpl> plain_ebc(const config::ModelGraph& model, size_t i) {
  auto module = model->node_module(i);
  if (!module || typeid(*module) != typeid(EmbeddingBagCollectionImpl)) return nullptr;
  return std::dynamic_pointer_cast<EmbeddingBagCollectionImpl>(module);
}

void swap_in(config::ModelGraph& model, size_t i, std::shared_ptr<quant::EmbeddingBagCollectionImpl> q) {
  model->replace_node(i, q, [q](const std::vector<config::Value>& in) {
    return config::Value::of_pooled(q->forward(in[0].sparse));
  });
}

int64_t nbytes(const torch::Tensor& t) { return t.numel() * static_cast<int64_t>(t.element_size()); }

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::vector<QuantizedTableReport> quantize_model(config::ModelGraph& model, const quant::QuantConfig& config) {
  config.validate();
  std::set<std::string> known;
  for (size_t i = 0; i < model->nodes().size(); ++i)
    if (auto ebc = plain_ebc(model, i))
      for (const auto& t : ebc->embedding_bag_configs()) known.insert(t.name);
  for (const auto& [table, _] : config.per_table_weight_dtype)
    if (!known.count(table)) {
      std::vector<std::string> names(known.begin(), known.end());
      throw_input_error("no EmbeddingBagCollection has a table '", table, "'; the tables are ", join_names(names));
    }
  std::vector<QuantizedTableReport> reports;
  for (size_t i = 0; i < model->nodes().size(); ++i) {
    auto ebc = plain_ebc(model, i);
    if (!ebc) continue;
    auto q = quant::EmbeddingBagCollectionImpl::from_float(*ebc, config);
    const StateDict qstate = state_dict(*q);
    const auto& tables = q->embedding_bag_configs();
    for (size_t t = 0; t < tables.size(); ++t) {
      QuantizedTableReport r;
      r.node = model->nodes()[i].name;
      r.table = tables[t].name;
      r.type = tables[t].data_type;
      r.num_embeddings = tables[t].num_embeddings;
      r.embedding_dim = tables[t].embedding_dim;
      const torch::Tensor& w = ebc->table_weight(r.table);
      r.bytes_before = nbytes(w);
      const std::string prefix = "embedding_bags." + r.table + ".";
      for (const auto& [key, value] : qstate)
        if (key.rfind(prefix, 0) == 0) r.bytes_after += nbytes(value);
      if (quant::is_rowwise_quantized(r.type)) {
        const quant::RowError e = quant::quantization_error(w, q->rows(t));
        r.mean_abs_error = e.mean_abs;
        r.max_abs_error = e.max_abs;
      } else {
        const torch::Tensor diff = (w.to(torch::kDouble) - q->dequantized_weight(t).to(torch::kDouble)).abs();
        r.mean_abs_error = diff.mean().item<double>();
        r.max_abs_error = diff.max().item<double>();
      }
      reports.push_back(r);
    }
    swap_in(model, i, q);
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
    auto ebc = plain_ebc(model, i);
    if (!ebc) continue;
    const std::string node = model->nodes()[i].name;
    std::vector<EmbeddingBagConfig> tables = ebc->embedding_bag_configs();
    bool quantized = false;
    for (auto& t : tables) {
      const std::string prefix = node + ".embedding_bags." + t.name + ".";
      const torch::Tensor* weight = find_tensor(state, prefix + "weight");
      if (!weight) continue;  // load_model_state names the missing key
      const torch::Tensor* qscale = find_tensor(state, prefix + quant::kQScaleSuffix);
      const std::string what = str_cat(origin, ": table '", t.name, "' of node '", node, "' (dimension ",
                                       t.embedding_dim, ")");
      t.data_type = quant::data_type_of_checkpoint(t.embedding_dim, *weight, qscale ? *qscale : torch::Tensor(), what);
      quantized = quantized || t.data_type != DataType::FP32;
    }
    if (!quantized) continue;
    quant::EmbeddingBagCollectionOptions options(tables);
    options.is_weighted(ebc->is_weighted());
    options.uninitialized(true);  // load_model_state writes every table
    swap_in(model, i, std::make_shared<quant::EmbeddingBagCollectionImpl>(options));
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
    else
      recmod::load_state_dict(*child.value(), mine, str_cat(origin, " (", child.key(), ")"));
  }
  for (const auto& [key, _] : state)
    if (!used.count(key)) throw CheckpointError(str_cat(origin, ": unexpected key '", key, "' (no node of the model has it)"));
}

}  // namespace recmod::train
