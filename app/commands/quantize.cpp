// recmod quantize CONFIG --checkpoint model.pt --out model_int8.pt
// [--dtype int8|int4|int2|fp16|fp32] [--table t=int4 ...]: converts a trained
// checkpoint's EmbeddingBagCollection / EmbeddingCollection tables to row-wise quantized ones
// (TorchRec's quantized state_dict keys) and reports per table the bytes
// before and after and the mean / max absolute error of the rows.
#include <iomanip>
#include <iostream>

#include <nlohmann/json.hpp>

#include "commands/commands.h"
#include "commands/config_overrides.h"
#include "commands/runtime.h"
#include "recmod/common/errors.h"
#include "recmod/common/state_dict.h"
#include "recmod/io/tensor_file.h"
#include "recmod/train/open_model.h"
#include "recmod/train/quantized_model.h"

namespace recmod::app {

namespace {

struct QuantizeArgs {
  std::string config, checkpoint, out;
  std::string dtype;  // empty: the config's int data_types, else int8
  std::vector<std::string> tables;
  bool json = false;
  int threads = 0;
  std::vector<std::string> overrides;  // --set KEY=VALUE
};

torch::Dtype weight_dtype_of(const std::string& name) {
  DataType type;
  try {
    type = quant::quantized_data_type_from_string(name);
  } catch (const InputError& e) {
    throw UsageError(e.what());
  }
  switch (type) {
    case DataType::INT8: return torch::kQInt8;
    case DataType::INT4: return torch::kQUInt4x2;
    case DataType::INT2: return torch::kQUInt2x4;
    case DataType::FP16: return torch::kHalf;
    default: return torch::kFloat;
  }
}

int run_quantize(const QuantizeArgs& args) {
  set_threads(args.threads);
  auto opened = train::open_model(args.config, args.checkpoint, args.overrides);
  if (train::has_quantized_tables(state_dict(*opened.model)))
    throw InputError(str_cat(args.checkpoint, " is already quantized; quantize the float checkpoint"));
  // Without --dtype, tables the config declares int8 / int4 / int2 get that type, the others int8.
  quant::QuantConfig config = args.dtype.empty() ? train::configured_quant_config(opened.model, torch::kQInt8)
                                                 : quant::QuantConfig{};
  if (!args.dtype.empty()) config.weight = weight_dtype_of(args.dtype);
  for (const auto& spec : args.tables) {
    const auto eq = spec.find('=');
    if (eq == std::string::npos || eq == 0)
      throw UsageError(str_cat("--table expects TABLE=DTYPE (e.g. t_C1=int4), got '", spec, "'"));
    config.per_table_weight_dtype[spec.substr(0, eq)] = weight_dtype_of(spec.substr(eq + 1));
  }
  const auto reports = train::quantize_model(opened.model, config);
  if (reports.empty())
    throw UsageError(str_cat(args.config, " has no EmbeddingBagCollection or EmbeddingCollection node; nothing to quantize"));
  train::check_checkpoint_unchanged(opened);  // before writing what was read from it
  io::save_tensors(args.out, state_dict(*opened.model));
  int64_t before = 0, after = 0;
  nlohmann::json tables = nlohmann::json::array();
  for (const auto& r : reports) {
    before += r.bytes_before;
    after += r.bytes_after;
    tables.push_back({{"node", r.node}, {"table", r.table}, {"type", to_string(r.type)},
                      {"num_embeddings", r.num_embeddings}, {"embedding_dim", r.embedding_dim},
                      {"bytes_before", r.bytes_before}, {"bytes_after", r.bytes_after},
                      {"mean_abs_error", r.mean_abs_error}, {"max_abs_error", r.max_abs_error}});
  }
  if (args.json) {
    std::cout << nlohmann::json{{"checkpoint", args.out}, {"bytes_before", before}, {"bytes_after", after},
                                {"tables", tables}}
                     .dump()
              << "\n";
    return 0;
  }
  std::cout << std::left << std::setw(28) << "table" << std::setw(6) << "type" << std::right << std::setw(14)
            << "bytes before" << std::setw(14) << "bytes after" << std::setw(8) << "ratio" << std::setw(14)
            << "mean |err|" << std::setw(14) << "max |err|" << "\n";
  for (const auto& r : reports)
    std::cout << std::left << std::setw(28) << (r.node + "." + r.table) << std::setw(6) << to_string(r.type)
              << std::right << std::setw(14) << r.bytes_before << std::setw(14) << r.bytes_after << std::setw(8)
              << std::fixed << std::setprecision(3)
              << static_cast<double>(r.bytes_after) / static_cast<double>(std::max<int64_t>(1, r.bytes_before))
              << std::scientific << std::setprecision(3) << std::setw(14) << r.mean_abs_error << std::setw(14)
              << r.max_abs_error << std::defaultfloat << "\n";
  std::cout << std::left << std::setw(34) << "total" << std::right << std::setw(14) << before << std::setw(14) << after
            << std::setw(8) << std::fixed << std::setprecision(3)
            << static_cast<double>(after) / static_cast<double>(std::max<int64_t>(1, before)) << std::defaultfloat
            << "\n";
  std::cout << "quantized checkpoint: " << args.out << "\n";
  return 0;
}

}  // namespace

void add_quantize(CLI::App& app, Actions& actions) {
  auto* cmd = app.add_subcommand(
      "quantize", "Quantize a checkpoint's embedding tables (INT8/INT4/INT2 rows with a per-row scale and bias) for inference");
  auto args = std::make_shared<QuantizeArgs>();
  cmd->add_option("config", args->config, "Model config (YAML)")->required();
  add_config_overrides(cmd, args->overrides);
  cmd->add_option("--checkpoint", args->checkpoint, "model.pt of a run (float tables)")->required();
  cmd->add_option("--out", args->out, "Where to write the quantized checkpoint")->required();
  cmd->add_option("--dtype", args->dtype,
                  "Type of every table: int8 | int4 | int2 | fp16 | fp32 (default: each table's data_type in the "
                  "config where it is int8 | int4 | int2, else int8)");
  cmd->add_option("--table", args->tables, "Per-table type, TABLE=DTYPE (repeatable), e.g. --table t_C1=int4");
  cmd->add_flag("--json", args->json, "Print one JSON object instead of a table");
  cmd->add_option("--threads", args->threads, "CPU threads (default: one per core)");
  actions["quantize"] = [args] { return run_quantize(*args); };
}

}  // namespace recmod::app
