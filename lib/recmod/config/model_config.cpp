#include "recmod/config/model_config.h"
#include "recmod/config/table_templates.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "recmod/common/errors.h"
#include "recmod/config/data_columns.h"
#include "recmod/config/embedding_tables.h"

namespace recmod::config {

const std::vector<std::string>& eval_metric_names() {
  static const std::vector<std::string> names{"auc", "ne", "log_loss", "accuracy"};
  return names;
}

bool higher_is_better(const std::string& metric) {
  const std::string base = metric.substr(metric.rfind('.') + 1);  // "<task>.<metric>"
  return base == "auc" || base == "accuracy";
}

const std::vector<std::string>& task_metric_names(const std::string& loss) {
  static const std::vector<std::string> regression{"mse", "rmse"};
  return loss == "mse" ? regression : eval_metric_names();
}

std::vector<std::string> FeaturesSpec::sparse_names() const {
  std::vector<std::string> names;
  for (const auto& f : sparse) names.push_back(f.name);
  return names;
}

namespace {

// A sparse feature is a name, or {name, hash, range}.
SparseFeatureSpec parse_sparse_feature(const ConfigNode& node, const std::string& default_hash,
                                       int64_t default_range) {
  SparseFeatureSpec f;
  if (node.is_scalar()) {
    f.name = node.as_name("a feature name");
    f.hash = default_hash;
    f.range = default_range;
  } else {
    if (!node.is_map()) node.fail("expected a feature name or {name, hash, range}, found " + node.describe());
    node.allow_keys({"name", "hash", "range", "weighted", "vocab", "oov_buckets"});
    f.name = node["name"].as_name("a feature name");
    f.hash = node.has("hash") ? node["hash"].one_of({"none", "mod", "murmur"}) : default_hash;
    f.range = node.has("range") ? node.positive_int("range") : default_range;
    f.weighted = node.get_bool("weighted", false);
    if (node.has("oov_buckets")) {
      if (!node.has("vocab")) node["oov_buckets"].fail("'oov_buckets' applies to a feature with 'vocab: FILE'");
      f.oov_buckets = node.positive_int("oov_buckets");
    }
  }
  if (f.hash != "none" && f.range <= 0) node.fail("hash '" + f.hash + "' needs a range > 0 (add 'range: N')");
  return f;
}

FeaturesSpec parse_features(const ConfigNode& node) {
  node.allow_keys({"dense", "sparse", "hash", "range"});
  FeaturesSpec spec;
  if (auto dense = node.find("dense")) {
    if (dense->is_map()) {
      dense->allow_keys({"count"});
      spec.num_dense = (*dense)["count"].as_int();
    } else {
      spec.num_dense = dense->as_int();
    }
    if (spec.num_dense < 0) dense->fail(str_cat("must be >= 0, got ", spec.num_dense));
  }
  std::string default_hash = node.has("hash") ? node["hash"].one_of({"none", "mod", "murmur"}) : "none";
  int64_t default_range = node.positive_int("range", 0);
  std::set<std::string> seen;
  if (auto sparse = node.find("sparse")) {
    for (const auto& item : sparse->items()) {
      spec.sparse.push_back(parse_sparse_feature(item, default_hash, default_range));
      if (!seen.insert(spec.sparse.back().name).second) item.fail("duplicate sparse feature '" + spec.sparse.back().name + "'");
    }
  }
  return spec;
}

// A schedule is a type name, or a map: type, warmup_steps, decay_start and
// the keys the type reads (optim::schedule_keys); another key is an error
// listing the type's keys.
optim::LrScheduleOptions parse_schedule(const ConfigNode& node) {
  optim::LrScheduleOptions s;
  if (node.is_scalar()) {
    s.type(node.one_of(optim::schedule_types()));
    return s;
  }
  node.expect_map();
  if (node.has("type")) s.type(node["type"].one_of(optim::schedule_types()));
  std::vector<std::string> keys{"type", "warmup_steps", "decay_start"};
  for (auto& k : optim::schedule_keys(s.type())) keys.push_back(k);
  node.allow_keys(keys);
  s.warmup_steps(node.get_int("warmup_steps", s.warmup_steps()));
  if (node.has("decay_start")) s.decay_start(node["decay_start"].as_int());
  s.decay_steps(node.get_int("decay_steps", s.decay_steps()));
  s.end_lr(node.get_double("end_lr", s.end_lr()));
  s.power(node.get_double("power", s.power()));
  s.step_size(node.get_int("step_size", s.step_size()));
  s.gamma(node.get_double("gamma", s.gamma()));
  return s;
}

// An optimizer is a type name, or a map of OptimizerOptions' fields. The
// optimizer's own validation decides what is valid; its complaint is raised
// at the key it names.
optim::OptimizerOptions parse_optimizer(const ConfigNode& node, optim::OptimizerOptions o, optim::OptimizerRole role) {
  if (node.is_scalar()) {
    o.type(node.one_of(optim::optimizer_types(role)));
  } else {
    node.allow_keys({"type", "lr", "weight_decay", "eps", "beta1", "beta2", "initial_accumulator_value", "schedule"});
    if (node.has("type")) o.type(node["type"].one_of(optim::optimizer_types(role)));
    o.lr(node.get_double("lr", o.lr()));
    o.weight_decay(node.get_double("weight_decay", o.weight_decay()));
    o.eps(node.get_double("eps", o.eps()));
    o.beta1(node.get_double("beta1", o.beta1()));
    o.beta2(node.get_double("beta2", o.beta2()));
    o.initial_accumulator_value(node.get_double("initial_accumulator_value", o.initial_accumulator_value()));
    if (auto n = node.find("schedule")) o.schedule(parse_schedule(*n));
  }
  if (auto problem = optim::find_problem(o, role)) {
    const std::string prefix = "schedule.";
    if (problem->field.rfind(prefix, 0) == 0 && node.is_map() && node.has("schedule")) {
      const ConfigNode schedule = node["schedule"];
      const std::string key = problem->field.substr(prefix.size());
      if (schedule.is_map() && schedule.has(key)) schedule[key].fail(problem->message);
      schedule.fail(key + " " + problem->message);  // missing, or a default that does not suit the type
    }
    if (node.is_map() && node.has(problem->field)) node[problem->field].fail(problem->message);
    node.fail(problem->field + " " + problem->message);  // a default that does not suit the type
  }
  return o;
}

EarlyStoppingSpec parse_early_stopping(const ConfigNode& node, const std::vector<std::string>& metrics) {
  node.expect_map();
  node.allow_keys({"metric", "patience", "min_delta"});
  EarlyStoppingSpec e;
  e.metric = metrics.front();
  if (node.has("metric")) e.metric = node["metric"].one_of(metrics);
  e.patience = node.positive_int("patience", e.patience);
  if (auto n = node.find("min_delta")) {
    e.min_delta = n->as_double();
    if (!(e.min_delta >= 0)) n->fail(str_cat("must be >= 0, got ", e.min_delta));
  }
  return e;
}

// `metrics`: what an evaluation reports (per task "<task>.<metric>" with `tasks:`).
TrainingSpec parse_training(const ConfigNode& node, const std::vector<std::string>& metrics) {
  node.allow_keys({"dense_optimizer", "embedding_optimizer", "batch_size", "epochs", "steps", "seed",
                   "eval_interval", "checkpoint_interval", "shuffle", "log_interval", "fused_embeddings",
                   "dense_precision", "cuda_graphs", "early_stopping", "keep_best"});
  TrainingSpec t;
  if (auto n = node.find("dense_optimizer"))
    t.dense_optimizer = parse_optimizer(*n, t.dense_optimizer, optim::OptimizerRole::dense);
  if (auto n = node.find("embedding_optimizer"))
    t.embedding_optimizer = parse_optimizer(*n, t.embedding_optimizer, optim::OptimizerRole::embedding);
  t.batch_size = node.positive_int("batch_size", t.batch_size);
  t.epochs = node.positive_int("epochs", t.epochs);
  if (node.has("steps")) t.steps = node.positive_int("steps");
  if (auto n = node.find("seed")) {
    int64_t seed = n->as_int();
    if (seed < 0) n->fail(str_cat("must be >= 0, got ", seed));
    t.seed = static_cast<uint64_t>(seed);
  }
  for (auto [key, field] : {std::pair{"eval_interval", &t.eval_interval}, {"checkpoint_interval", &t.checkpoint_interval},
                            {"log_interval", &t.log_interval}}) {
    if (auto n = node.find(key)) {
      *field = n->as_int();
      if (*field < 0) n->fail(str_cat("must be >= 0, got ", *field));
    }
  }
  t.shuffle = node.get_bool("shuffle", t.shuffle);
  t.fused_embeddings = node.get_bool("fused_embeddings", t.fused_embeddings);
  if (auto n = node.find("dense_precision")) t.dense_precision = n->one_of({"fp32", "bf16"});
  if (auto n = node.find("cuda_graphs")) t.cuda_graphs = n->one_of({"off", "auto"});
  if (auto n = node.find("early_stopping")) {
    t.early_stopping = parse_early_stopping(*n, metrics);
    if (t.eval_interval == 0)
      n->fail("needs training.eval_interval > 0 (the periodic evaluations it watches)");
    t.keep_best = t.early_stopping->metric;
  }
  if (auto n = node.find("keep_best")) {
    t.keep_best = n->one_of(metrics);
    if (t.early_stopping && t.keep_best != t.early_stopping->metric)
      n->fail(str_cat("is '", t.keep_best, "' but early_stopping watches '", t.early_stopping->metric,
                      "'; the best checkpoint follows early stopping's metric"));
  }
  return t;
}

DataSpec parse_data(const ConfigNode& node, const ModelSpec& spec, const LoadOptions& options) {
  std::vector<std::string> keys{"format", "train", "eval", "strict_features", "labels", "sample_weights"};
  for (const auto& k : delimited_data_keys()) keys.push_back(k);
  node.allow_keys(keys);
  DataSpec d;
  if (node.has("format"))
    d.format = node["format"].one_of({"auto", "criteo_tsv", "jsonl", "binary", "delimited", "criteo_npy"});
  d.train = node.get_string("train", "");
  d.eval = node.get_string("eval", "");
  d.strict_features = node.get_bool("strict_features", false);
  if (auto n = node.find("hash_seed")) {
    const int64_t seed = n->as_int();
    if (seed < 0) n->fail(str_cat("must be >= 0, got ", seed));
    d.hash_seed = static_cast<uint64_t>(seed);
  }
  d.sample_weights = node.get_bool("sample_weights", false);
  if (auto n = node.find("labels")) {
    d.labels = n->as_string_list();
    if (d.labels.empty()) n->fail("expected at least one label name");
    std::set<std::string> seen;
    for (size_t i = 0; i < d.labels.size(); ++i)
      if (!seen.insert(d.labels[i]).second) n->at(i).fail("label '" + d.labels[i] + "' is listed twice");
  }
  if (node.has("columns")) {
    for (const char* key : {"labels", "sample_weights"})
      if (node.has(key))
        node[key].fail(str_cat("'", key, "' is for JSON lines; with data.columns give the columns roles ",
                               std::string(key) == "labels" ? "label" : "sample_weight"));
    d.columns = parse_data_columns(node, spec, options);
    d.labels = d.columns->label_names;
    d.sample_weights = d.columns->schema.sample_weights;
  } else {
    for (const auto& k : delimited_data_keys())
      if (k != "hash_seed" && node.has(k))
        node[k].fail("'" + k + "' describes delimited text; it needs 'columns' (docs/config.md)");
    if (d.format == "delimited") node["format"].fail("format delimited needs 'columns' (docs/config.md)");
  }
  return d;
}

// `sharding: auto`, or a map "table" / "node.table" -> a type name, `auto`,
// or {type, ranks}. Table names are checked against the nodes' tables.
dist::ShardingRequest parse_sharding(const ConfigNode& node, const ModelSpec& spec) {
  dist::ShardingRequest request;
  if (node.is_scalar()) {
    if (node.as_string() != "auto")
      node.fail("expected 'auto' or a map of table: sharding type, found '" + node.as_string() + "'");
    return request;
  }
  if (!node.is_map()) node.fail("expected 'auto' or a map of table: sharding type, found " + node.describe());
  const auto tables = embedding_tables_of(spec);
  std::vector<std::string> valid;
  for (const auto& t : tables) valid.push_back(t.module + "." + t.name);
  std::map<std::string, std::string> requested;  // "node.table" -> the key that asked for it
  std::vector<std::string> type_names = dist::sharding_type_names();
  type_names.push_back("auto");
  for (const auto& key : node.keys()) {
    ConfigNode value = node[key];
    // The table the key names.
    std::vector<const dist::TableShape*> matches;
    const auto dot = key.rfind('.');
    for (const auto& t : tables)
      if (dot == std::string::npos ? t.name == key : t.module == key.substr(0, dot) && t.name == key.substr(dot + 1))
        matches.push_back(&t);
    if (matches.empty()) value.fail("no embedding table '" + key + "'; the tables are " + join_names(valid));
    if (matches.size() > 1)
      value.fail(str_cat("table '", key, "' is in nodes '", matches[0]->module, "' and '", matches[1]->module,
                         "'; write '", matches[0]->module, ".", key, "' (node.table)"));
    const auto& table = *matches[0];
    const std::string qualified = table.module + "." + table.name;
    if (auto [it, fresh] = requested.emplace(qualified, key); !fresh)
      value.fail("table '" + qualified + "' is already given as '" + it->second + "'");
    // What is asked for it.
    dist::TableRequest req;
    if (value.is_map())
      value.allow_keys({"type", "ranks"});
    else if (!value.is_scalar())
      value.fail("expected a sharding type or {type, ranks}, found " + value.describe());
    // (Not a ConfigNode assigned later: assigning a YAML::Node writes through to the document.)
    const std::string type = (value.is_map() ? value["type"] : value).one_of(type_names);
    if (type != "auto") req.type = dist::sharding_type_from(type);
    if (auto ranks = value.is_map() ? value.find("ranks") : std::nullopt) {
      if (type != "table_wise" && type != "column_wise")
        ranks->fail(type == "auto" ? std::string("ranks need a type: table_wise or column_wise")
                                   : "ranks apply to table_wise and column_wise only (" + type + " uses every rank)");
      req.ranks = ranks->as_int_list();
      std::set<int64_t> seen;
      for (size_t i = 0; i < req.ranks.size(); ++i) {
        if (req.ranks[i] < 0) ranks->at(i).fail(str_cat("a rank must be >= 0, got ", req.ranks[i]));
        if (!seen.insert(req.ranks[i]).second) ranks->at(i).fail(str_cat("rank ", req.ranks[i], " is listed twice"));
      }
      if (type == "table_wise" && req.ranks.size() != 1)
        ranks->fail(str_cat("table_wise takes exactly one rank, got ", req.ranks.size()));
      if (type == "column_wise" && req.ranks.empty()) ranks->fail("column_wise needs at least one rank");
      if (type == "column_wise" && static_cast<int64_t>(req.ranks.size()) > table.embedding_dim)
        ranks->fail(str_cat("column_wise over ", req.ranks.size(), " ranks needs as many columns, but table '", table.name,
                            "' has embedding_dim ", table.embedding_dim));
    }
    request.tables[key] = req;
  }
  return request;
}

// `tasks:` a map task name -> {output, label, loss, weight}; labels by the
// data's label names (data.columns' label columns, or data.labels).
std::vector<TaskSpec> parse_tasks(const ConfigNode& node, const DataSpec& data) {
  node.expect_name_keys("a task name");
  std::vector<TaskSpec> tasks;
  for (const auto& name : node.keys()) {
    ConfigNode n = node[name];
    n.expect_map();
    n.allow_keys({"output", "label", "loss", "weight"});
    TaskSpec t;
    t.name = name;
    for (char c : name)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_'))
        n.fail("task names may hold letters, digits and '_' (they prefix metric names: " + name + ".auc), got '" + name + "'");
    t.output = n["output"].as_string();
    if (n.has("label")) {
      t.label_name = n["label"].as_string();
    } else if (data.labels.size() == 1) {
      t.label_name = data.labels[0];
    } else {
      n.fail("give the task a 'label:' (one of " + join_names(data.labels) + ")");
    }
    const auto it = std::find(data.labels.begin(), data.labels.end(), t.label_name);
    if (it == data.labels.end())
      (n.has("label") ? n["label"] : n)
          .fail(str_cat("no label '", t.label_name, "'; the data's labels are ", join_names(data.labels),
                        data.columns ? " (data.columns' label columns)" : " (data.labels; JSON lines give them as a \"label\" list in this order)"));
    t.label = it - data.labels.begin();
    if (n.has("loss")) t.loss = n["loss"].one_of({"bce", "mse"});
    if (auto w = n.find("weight")) {
      t.weight = w->as_double();
      if (!(t.weight >= 0) || !std::isfinite(t.weight)) w->fail(str_cat("must be a finite number >= 0, got ", t.weight));
    }
    tasks.push_back(t);
  }
  if (tasks.empty()) node.fail("expected at least one task");
  return tasks;
}

// Label columns that only regression (mse) tasks read may hold any number;
// the others stay 0/1 (checked per cell by the reader, with file:line).
void mark_regression_labels(DataSpec& data, const std::vector<TaskSpec>& tasks) {
  auto spec = std::make_shared<data::DelimitedSpec>(*data.columns);
  for (auto& c : spec->columns) {
    if (c.role != data::ColumnRole::kLabel || c.threshold) continue;
    bool binary = false, used = false;
    for (const auto& t : tasks)
      if (t.label == c.target) {
        used = true;
        binary = binary || t.loss == "bce";
      }
    c.binary = binary || !used;
  }
  data.columns = spec;
}

std::vector<std::string> parse_inputs(const ConfigNode& node) {
  if (node.has("input") && node.has("inputs")) node["inputs"].fail("give either 'input' or 'inputs', not both");
  if (auto one = node.find("input")) return {one->as_string()};
  if (auto many = node.find("inputs")) {
    auto names = many->as_string_list();
    if (names.empty()) many->fail("expected at least one input");
    return names;
  }
  node.fail("missing required field 'input' (a node name, features.dense or features.sparse)");
}

}  // namespace

namespace {

/// features.sparse's `vocab:` keys (JSON lines' string ids): each file read
/// and checked against the rows the feature's ids index (its range or table).
void attach_feature_vocabs(const ConfigNode& features_node, ModelConfig& config, const LoadOptions& options) {
  const auto sparse = features_node.find("sparse");
  if (!sparse) return;
  std::vector<uint64_t> rows;
  for (size_t i = 0; i < config.features.sparse.size(); ++i) {
    const ConfigNode item = sparse->at(i);
    if (!item.is_map() || !item.has("vocab")) continue;
    auto& f = config.features.sparse[i];
    if (config.data.columns)
      item["vocab"].fail("a feature's 'vocab' is for JSON lines; with data.columns give the column 'ids: vocab' "
                         "and 'vocab: FILE'");
    if (rows.empty()) rows = string_id_ranges(config);
    f.vocab_path = resolve_vocab_path(item["vocab"], options);
    if (rows[i] == 0)
      item["vocab"].fail("feature '" + f.name + "' is read by no table and has no range; its vocabulary ids need one");
    f.vocab = load_vocab_of(f.vocab_path, f.name, "feature '" + f.name + "'", f.name, rows[i], f.oov_buckets,
                            item["vocab"], options);
  }
}

}  // namespace

ModelConfig parse_model_config(const ConfigNode& root, const LoadOptions& options) {
  if (root.is_null()) root.fail("the config is empty; expected a map with features, nodes and output");
  root.allow_keys({"features", "nodes", "output", "tasks", "training", "data", "sharding"});
  ModelConfig config;
  config.file = root.file();
  config.features = parse_features(root["features"]);
  ConfigNode nodes = root["nodes"];
  nodes.expect_name_keys("a node name");
  expand_table_templates(nodes, config.features.sparse_names());
  for (const auto& name : nodes.keys()) {
    ConfigNode n = nodes[name];
    n.expect_map();
    if (name.rfind("features", 0) == 0) n.fail("node names may not start with 'features' (reserved for inputs)");
    config.nodes.push_back(NodeSpec{name, n["type"].as_string(), parse_inputs(n), n});
  }
  if (config.nodes.empty()) nodes.fail("expected at least one node");
  check_feature_ranges(root["features"], config);
  if (auto d = root.find("data")) config.data = parse_data(*d, config, options);
  attach_feature_vocabs(root["features"], config, options);
  auto add_vocab_file = [&config](const std::string& path) {
    auto& files = config.data.vocab_files;
    if (!path.empty() && std::find(files.begin(), files.end(), path) == files.end()) files.push_back(path);
  };
  if (config.data.columns) {
    for (const auto& c : config.data.columns->columns) add_vocab_file(c.vocab_path);
    for (const auto& t : config.data.columns->side_tables)
      for (const auto& c : t.columns) add_vocab_file(c.vocab_path);
  }
  for (const auto& f : config.features.sparse) add_vocab_file(f.vocab_path);
  config.num_labels = static_cast<int64_t>(config.data.labels.size());
  std::vector<std::string> metrics = eval_metric_names();
  if (auto tasks = root.find("tasks")) {
    if (root.has("output")) root["output"].fail("give either 'output' (one task) or 'tasks' (several), not both");
    config.training.tasks = parse_tasks(*tasks, config.data);
    metrics.clear();
    for (const auto& t : config.training.tasks) {
      config.outputs.push_back(t.output);
      config.outputs_yaml.push_back((*tasks)[t.name]["output"]);
      for (const auto& m : task_metric_names(t.loss)) metrics.push_back(t.name + "." + m);
    }
    config.output = config.outputs.front();
    config.output_yaml = config.outputs_yaml.front();
    if (config.data.columns) mark_regression_labels(config.data, config.training.tasks);
  } else {
    ConfigNode output = root["output"];
    config.output = output.as_string();
    config.output_yaml = output;
  }
  if (auto t = root.find("training")) {
    auto tasks = std::move(config.training.tasks);
    config.training = parse_training(*t, metrics);
    config.training.tasks = std::move(tasks);
  }
  if (auto s = root.find("sharding")) config.sharding = parse_sharding(*s, config);
  return config;
}

ModelConfig load_model_config(const std::string& path, const std::vector<std::string>& overrides,
                              const LoadOptions& options) {
  if (overrides.empty()) return parse_model_config(ConfigNode::load_file(path), options);
  const ConfigNode root = ConfigNode::load_file(path).with_overrides(overrides);
  ModelConfig config = parse_model_config(root, options);
  config.overrides = overrides;
  config.effective_yaml = str_cat("# ", path, " with --set ", join_names(overrides), "\n", root.emit(), "\n");
  return config;
}

}  // namespace recmod::config
