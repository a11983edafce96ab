#include "recmod/config/data_columns.h"

#include <algorithm>
#include <map>
#include <set>

#include "recmod/common/errors.h"
#include "recmod/config/embedding_tables.h"
#include "recmod/data/vocab.h"

#include <unistd.h>

namespace recmod::config {

const std::vector<std::string>& delimited_data_keys() {
  static const std::vector<std::string> keys{"columns", "delimiter", "quote", "header", "hash_seed", "side_tables"};
  return keys;
}

namespace {

using data::ColumnRole;
using data::ColumnSpec;

char parse_char(const ConfigNode& node, bool allow_none) {
  const std::string s = node.as_string();
  if (s == "tab") return '\t';
  if (allow_none && s == "none") return 0;
  if (s.size() != 1 || s[0] == '\n' || s[0] == '\r')
    node.fail(str_cat("expected one character (or 'tab'", allow_none ? ", 'none'" : "", "), found '", s, "'"));
  return s[0];
}

/// Where hashed ids of a feature are folded: the column's range, the
/// feature's, or the size of the table that reads it.
class Ranges {
 public:
  explicit Ranges(const ModelSpec& spec) : spec_(spec) {}
  uint64_t of(const std::string& feature, const ConfigNode& column) {
    if (column.has("range")) return static_cast<uint64_t>(column.positive_int("range"));
    for (const auto& f : spec_.features.sparse)
      if (f.name == feature && f.hash != "none" && f.range > 0) return static_cast<uint64_t>(f.range);
    if (!tables_) tables_ = embedding_tables_of(spec_);
    int64_t rows = 0;
    for (const auto& t : *tables_) {
      const auto& names = t.feature_names;
      if (std::find(names.begin(), names.end(), feature) != names.end())
        rows = rows == 0 ? t.num_embeddings : std::min(rows, t.num_embeddings);
    }
    if (rows > 0) return static_cast<uint64_t>(rows);
    column.fail("hashed ids of feature '" + feature +
                "' need a range: no table reads the feature and it has no 'range'; give the column 'range: N'");
  }

 private:
  const ModelSpec& spec_;
  std::optional<std::vector<dist::TableShape>> tables_;
};

struct Parsed {
  std::vector<ColumnSpec> columns;
  std::vector<ConfigNode> nodes;  // the YAML of each column (a `names:` entry repeats)
};

int64_t feature_index(const ModelSpec& spec, const std::string& name, const ConfigNode& at) {
  const auto names = spec.features.sparse_names();
  const auto it = std::find(names.begin(), names.end(), name);
  if (it == names.end())
    at.fail("no sparse feature '" + name + "' in features.sparse; the features are " + join_names(names));
  return it - names.begin();
}

/// An `ids: vocab` column: its ids from the `vocab:` file (relative to the
/// config file), checked against the rows of the table that reads them. A
/// file that does not exist yet is left for recmod vocab to write (a reader
/// refuses the column until then).
void attach_vocab(ColumnSpec& c, const std::string& feature, const ConfigNode& item, Ranges& ranges,
                  const LoadOptions& options) {
  const ConfigNode at = item["vocab"];
  c.vocab_path = resolve_vocab_path(at, options);
  if (item.has("oov_buckets")) c.oov_buckets = item.positive_int("oov_buckets");
  const bool exists = options.read_vocab_files && ::access(c.vocab_path.c_str(), F_OK) == 0;
  const uint64_t rows = exists ? ranges.of(feature, item) : 0;
  c.vocab = load_vocab_of(c.vocab_path, c.name, "column '" + c.name + "'", feature, rows, c.oov_buckets, at, options);
}

/// A `columns:` list. `side`: a side table's (sparse, flag, dense and ignore only).
Parsed parse_columns(const ConfigNode& list, const ModelSpec& spec, Ranges& ranges, bool side,
                     const LoadOptions& options) {
  Parsed out;
  if (!list.is_list() || list.size() == 0) list.fail("expected a list of columns, found " + list.describe());
  std::set<std::string> seen;
  const std::vector<std::string> roles =
      side ? std::vector<std::string>{"sparse", "flag", "dense", "ignore"}
           : std::vector<std::string>{"label", "dense", "sparse", "weight", "flag", "sample_weight", "ignore"};
  for (const auto& item : list.items()) {
    std::vector<std::string> names;
    ColumnSpec c;
    if (item.is_scalar()) {
      names.push_back(item.as_string());
      c.role = ColumnRole::kIgnore;
    } else {
      item.expect_map();
      item.allow_keys({"name", "names", "role", "feature", "ids", "separator", "weight_separator", "range", "of", "id",
                       "transform", "threshold", "default", "join", "source", "mask", "vocab", "oov_buckets"});
      if (item.has("name") == item.has("names")) item.fail("give the column a 'name' (or 'names: [...]' for several)");
      if (item.has("name"))
        names.push_back(item["name"].as_string());
      else
        names = item["names"].as_string_list();
      if (names.empty()) item["names"].fail("expected at least one name");
      const std::string role = item["role"].one_of(roles);
      c.role = role == "label"    ? ColumnRole::kLabel
               : role == "dense"  ? ColumnRole::kDense
               : role == "sparse" ? ColumnRole::kSparse
               : role == "weight" ? ColumnRole::kWeight
               : role == "flag"   ? ColumnRole::kFlag
               : role == "sample_weight" ? ColumnRole::kSampleWeight
                                  : ColumnRole::kIgnore;
      auto only_for = [&](const char* key, std::initializer_list<ColumnRole> ok, const char* roles_text) {
        if (item.has(key) && std::find(ok.begin(), ok.end(), c.role) == ok.end())
          item[key].fail(str_cat("'", key, "' applies to columns with role ", roles_text, ", not ", role));
      };
      only_for("feature", {ColumnRole::kSparse, ColumnRole::kFlag}, "sparse or flag");
      only_for("ids", {ColumnRole::kSparse}, "sparse");
      only_for("separator", {ColumnRole::kSparse}, "sparse");
      only_for("weight_separator", {ColumnRole::kSparse}, "sparse");
      only_for("range", {ColumnRole::kSparse}, "sparse");
      only_for("of", {ColumnRole::kWeight}, "weight");
      only_for("id", {ColumnRole::kFlag}, "flag");
      only_for("transform", {ColumnRole::kDense}, "dense");
      only_for("threshold", {ColumnRole::kLabel}, "label");
      only_for("mask", {ColumnRole::kSparse}, "sparse");
      for (const char* key : {"mask", "source"})
        if (side && item.has(key))
          item[key].fail(str_cat("'", key, "' is for columns of the data file, not of a side table"));
      only_for("source", {ColumnRole::kLabel, ColumnRole::kDense, ColumnRole::kSampleWeight}, "label, dense or sample_weight");
      if (auto n = item.find("source")) {
        if (names.size() > 1) n->fail("'source' is for one column, not 'names'");
        const std::string source = n->as_string();
        for (size_t j = 0; j < out.columns.size(); ++j)
          if (out.columns[j].name == source && out.columns[j].source < 0) c.source = static_cast<int64_t>(j);
        if (c.source < 0) n->fail("expected the name of a column listed before this one, found '" + source + "'");
      }
      if (c.role == ColumnRole::kFlag && !item.has("feature")) item.fail("a flag column needs 'feature: NAME'");
      if (c.role == ColumnRole::kWeight && !item.has("of")) item.fail("a weight column needs 'of: COLUMN'");
      if (c.role == ColumnRole::kSparse && item.has("ids")) {
        const std::string ids = item["ids"].one_of({"hash", "int", "vocab"});
        c.ids = ids == "int" ? data::IdKind::kInt : ids == "vocab" ? data::IdKind::kVocab : data::IdKind::kHash;
      }
      if (c.ids == data::IdKind::kVocab && !item.has("vocab"))
        item["ids"].fail("'ids: vocab' needs 'vocab: FILE' (written by recmod vocab; relative to the config file)");
      for (const char* key : {"vocab", "oov_buckets"})
        if (item.has(key) && c.ids != data::IdKind::kVocab)
          item[key].fail(str_cat("'", key, "' applies to columns with 'ids: vocab'"));
      if (auto n = item.find("separator")) c.separator = parse_char(*n, false);
      if (auto n = item.find("weight_separator")) c.weight_separator = parse_char(*n, false);
      if (c.separator && c.separator == c.weight_separator)
        item["weight_separator"].fail("must differ from 'separator'");
      if (auto n = item.find("transform")) c.log1p = n->one_of({"none", "log1p"}) == "log1p";
      if (auto n = item.find("threshold")) c.threshold = n->as_double();
      if (auto n = item.find("default")) c.default_value = n->as_string();
      if (auto n = item.find("join")) c.join = n->as_string();
      if (auto n = item.find("id")) {
        if (names.size() > 1) n->fail("'id' is for one flag column; with 'names' the ids are 0, 1, ... in list order");
        c.flag_id = n->as_int();
      }
    }
    std::vector<std::string> masks;  // one per name
    if (item.is_map() && item.has("mask")) {
      const ConfigNode m = item["mask"];
      masks = m.is_scalar() ? std::vector<std::string>{m.as_string()} : m.as_string_list();
      if (masks.size() != names.size())
        m.fail(str_cat("expected ", names.size(), " mask column name(s), one per column, found ", masks.size()));
    }
    for (size_t k = 0; k < names.size(); ++k) {
      ColumnSpec one = c;
      one.name = names[k];
      if (!masks.empty()) one.mask_name = masks[k];
      if (!seen.insert(one.name).second) item.fail("column '" + one.name + "' is listed twice");
      if (one.role == ColumnRole::kSparse || one.role == ColumnRole::kFlag) {
        const std::string feature = item.is_map() && item.has("feature") ? item["feature"].as_string() : one.name;
        one.target = feature_index(spec, feature, item.is_map() && item.has("feature") ? item["feature"] : item);
        if (one.role == ColumnRole::kSparse && one.ids == data::IdKind::kHash) one.range = ranges.of(feature, item);
        if (one.role == ColumnRole::kSparse && one.ids == data::IdKind::kVocab)
          attach_vocab(one, feature, item, ranges, options);
        if (one.role == ColumnRole::kFlag && names.size() > 1) one.flag_id = static_cast<int64_t>(k);
      }
      out.columns.push_back(one);
      out.nodes.push_back(item);
    }
  }
  return out;
}

data::SideTableSpec parse_side_table(const std::string& name, const ConfigNode& node, const ModelSpec& spec,
                                     Ranges& ranges, const LoadOptions& options) {
  node.expect_map();
  node.allow_keys({"file", "delimiter", "quote", "header", "key", "missing", "columns"});
  data::SideTableSpec t;
  t.name = name;
  t.path = node["file"].as_string();
  if (auto n = node.find("delimiter")) t.delimiter = parse_char(*n, false);
  if (auto n = node.find("quote")) t.quote = parse_char(*n, true);
  t.header = node.get_bool("header", false);
  if (auto n = node.find("missing")) t.missing_is_bad = n->one_of({"empty", "bad"}) == "bad";
  const Parsed parsed = parse_columns(node["columns"], spec, ranges, /*side=*/true, options);
  t.columns = parsed.columns;
  const std::string key = node["key"].as_string();
  for (size_t i = 0; i < t.columns.size(); ++i)
    if (t.columns[i].name == key) t.key_column = static_cast<int64_t>(i);
  if (t.key_column < 0) node["key"].fail("no column '" + key + "' in this side table's columns");
  return t;
}

}  // namespace

std::vector<int64_t> unhashed_id_limits(const ModelSpec& spec) {
  static const std::vector<std::string> plain = {"EmbeddingBagCollection", "EmbeddingCollection",
                                                 "FeatureProcessedEmbeddingBagCollection"};
  std::vector<std::string> plain_nodes;
  for (const auto& n : spec.nodes)
    if (std::find(plain.begin(), plain.end(), n.type) != plain.end()) plain_nodes.push_back(n.name);
  const auto tables = embedding_tables_of(spec);
  std::vector<int64_t> out;
  for (const auto& f : spec.features.sparse) {
    int64_t limit = 0;
    if (f.hash == "none")
      for (const auto& t : tables)
        if (std::find(plain_nodes.begin(), plain_nodes.end(), t.module) != plain_nodes.end() &&
            std::find(t.feature_names.begin(), t.feature_names.end(), f.name) != t.feature_names.end())
          limit = limit == 0 ? t.num_embeddings : std::min(limit, t.num_embeddings);
    out.push_back(limit);
  }
  return out;
}

void check_feature_ranges(const ConfigNode& features_node, const ModelSpec& spec) {
  static const std::vector<std::string> plain = {"EmbeddingBagCollection", "EmbeddingCollection",
                                                 "FeatureProcessedEmbeddingBagCollection"};
  std::vector<std::string> plain_nodes;
  for (const auto& n : spec.nodes)
    if (std::find(plain.begin(), plain.end(), n.type) != plain.end()) plain_nodes.push_back(n.name);
  if (plain_nodes.empty()) return;
  const auto tables = embedding_tables_of(spec);
  const auto& features = spec.features.sparse;
  for (size_t i = 0; i < features.size(); ++i) {
    const auto& f = features[i];
    if (f.hash == "none" || f.range <= 0) continue;
    for (const auto& t : tables) {
      if (std::find(plain_nodes.begin(), plain_nodes.end(), t.module) == plain_nodes.end()) continue;
      if (std::find(t.feature_names.begin(), t.feature_names.end(), f.name) == t.feature_names.end()) continue;
      if (f.range <= t.num_embeddings) continue;
      const ConfigNode item = features_node["sparse"].at(i);
      const ConfigNode at = item.is_map() && item.has("range") ? item["range"] : features_node["range"];
      at.fail(str_cat("feature '", f.name, "' is hashed into range ", f.range, ", but table '", t.module, ".", t.name,
                      "' that reads it has num_embeddings ", t.num_embeddings,
                      "; ids >= that would fall outside the table (make the range <= ", t.num_embeddings, ")"));
    }
  }
}

std::vector<uint64_t> string_id_ranges(const ModelSpec& spec) {
  const auto tables = embedding_tables_of(spec);
  std::vector<uint64_t> out;
  for (const auto& f : spec.features.sparse) {
    int64_t rows = f.hash != "none" && f.range > 0 ? f.range : 0;
    if (rows == 0)
      for (const auto& t : tables)
        if (std::find(t.feature_names.begin(), t.feature_names.end(), f.name) != t.feature_names.end())
          rows = rows == 0 ? t.num_embeddings : std::min(rows, t.num_embeddings);
    out.push_back(static_cast<uint64_t>(rows));
  }
  return out;
}

std::string resolve_vocab_path(const ConfigNode& at, const LoadOptions& options) {
  std::string path = at.as_string();
  if (path.empty()) at.fail("expected a vocabulary file's path, found ''");
  if (!options.vocab_dir.empty()) {
    const auto base = path.rfind('/');
    const std::string copy = options.vocab_dir + "/" + (base == std::string::npos ? path : path.substr(base + 1));
    if (::access(copy.c_str(), F_OK) == 0) return copy;
  }
  const std::string& config_file = at.file();
  const auto slash = config_file.rfind('/');
  if (path[0] != '/' && slash != std::string::npos) path = config_file.substr(0, slash + 1) + path;
  return path;
}

std::shared_ptr<const data::ColumnVocab> load_vocab_of(const std::string& path, const std::string& column,
                                                       const std::string& what, const std::string& feature,
                                                       uint64_t rows, int64_t oov_buckets, const ConfigNode& at,
                                                       const LoadOptions& options) {
  if (!options.read_vocab_files || ::access(path.c_str(), F_OK) != 0) return nullptr;
  std::shared_ptr<const data::Vocabulary> vocab;
  try {
    vocab = std::make_shared<const data::Vocabulary>(data::load_vocabulary(path));
  } catch (const InputError& e) {
    at.fail(e.what());
  }
  const data::ColumnVocab* found = vocab->find(column);
  if (!found) {
    std::vector<std::string> names;
    for (const auto& v : vocab->columns) names.push_back(v.column);
    at.fail(str_cat(path, " has no vocabulary of ", what, "; it has ", join_names(names),
                    " (rebuild it with recmod vocab)"));
  }
  const int64_t need = found->num_rows(oov_buckets);
  const int64_t n = found->oov_id();
  const std::string buckets =
      oov_buckets == 1 ? str_cat("the OOV bucket ", n) : str_cat(oov_buckets, " OOV buckets ", n, "..", need - 1);
  if (rows > 0 && static_cast<uint64_t>(need) > rows)
    at.fail(str_cat("the vocabulary of ", what, " has ", n, " ids and ", buckets, ", ", need, " rows, but feature '",
                    feature, "' has ", rows, " (its table's num_embeddings or range); make the table >= ", need,
                    " rows or rebuild the vocabulary with --top-k ",
                    std::max<int64_t>(static_cast<int64_t>(rows) - oov_buckets, 0)));
  return std::shared_ptr<const data::ColumnVocab>(vocab, found);
}

std::shared_ptr<const data::DelimitedSpec> parse_data_columns(const ConfigNode& node, const ModelSpec& spec,
                                                              const LoadOptions& options) {
  auto out = std::make_shared<data::DelimitedSpec>();
  if (auto n = node.find("delimiter")) out->delimiter = parse_char(*n, false);
  if (auto n = node.find("quote")) out->quote = parse_char(*n, true);
  if (out->quote && out->quote == out->delimiter) node["quote"].fail("the quote must differ from the delimiter");
  out->header = node.get_bool("header", false);
  if (auto n = node.find("hash_seed")) {
    const int64_t seed = n->as_int();
    if (seed < 0) n->fail(str_cat("must be >= 0, got ", seed));
    out->hash_seed = static_cast<uint64_t>(seed);
  }
  Ranges ranges(spec);
  std::vector<std::string> table_names;
  if (auto tables = node.find("side_tables")) {
    tables->expect_map();
    for (const auto& name : tables->keys()) {
      out->side_tables.push_back(parse_side_table(name, (*tables)[name], spec, ranges, options));
      table_names.push_back(name);
    }
  }
  const ConfigNode list = node["columns"];
  const Parsed parsed = parse_columns(list, spec, ranges, /*side=*/false, options);
  out->columns = parsed.columns;
  for (auto& c : out->columns) {  // masks may name columns listed later
    if (c.mask_name.empty()) continue;
    for (size_t j = 0; j < out->columns.size(); ++j)
      if (out->columns[j].name == c.mask_name && out->columns[j].source < 0) c.mask = static_cast<int64_t>(j);
    if (c.mask < 0)
      parsed.nodes[static_cast<size_t>(&c - out->columns.data())]["mask"].fail(
          "no column '" + c.mask_name + "' in data.columns (a mask names a 0/1 column of the file; list it, e.g. as ignore)");
  }

  auto& schema = out->schema;
  schema.sparse_features = spec.features.sparse_names();
  std::vector<bool> fed(schema.sparse_features.size(), false);
  int64_t labels = 0, dense = 0, sample_weights = 0;
  for (size_t i = 0; i < out->columns.size(); ++i) {
    auto& c = out->columns[i];
    const ConfigNode& at = parsed.nodes[i];
    switch (c.role) {
      case ColumnRole::kLabel:
        c.target = labels++;  // several: one per task (config `tasks:`)
        out->label_names.push_back(c.name);
        break;
      case ColumnRole::kSampleWeight:
        if (sample_weights++ > 0) at.fail("a second sample_weight column ('" + c.name + "'); an example has one weight");
        schema.sample_weights = true;
        break;
      case ColumnRole::kDense:
        c.target = dense++;
        break;
      case ColumnRole::kSparse:
      case ColumnRole::kFlag:
        fed[c.target] = true;
        if (c.weight_separator) schema.weighted = true;
        break;
      case ColumnRole::kWeight: {
        const std::string of = at["of"].as_string();
        for (size_t j = 0; j < out->columns.size(); ++j)
          if (out->columns[j].name == of) c.weight_of = static_cast<int64_t>(j);
        if (c.weight_of < 0 || out->columns[c.weight_of].role != ColumnRole::kSparse)
          at["of"].fail("expected the name of a sparse column in data.columns, found '" + of + "'");
        schema.weighted = true;
        break;
      }
      case ColumnRole::kIgnore:
        break;
    }
    if (!c.join.empty() && std::find(table_names.begin(), table_names.end(), c.join) == table_names.end())
      at["join"].fail("no side table '" + c.join + "'; data.side_tables has " + join_names(table_names));
  }
  // A side table's dense columns come after the file's, in table order.
  for (auto& t : out->side_tables)
    for (auto& c : t.columns)
      if (c.role == ColumnRole::kDense) c.target = dense++;
  for (const auto& t : out->side_tables)
    for (const auto& c : t.columns) {
      if (c.role == ColumnRole::kSparse || c.role == ColumnRole::kFlag) fed[c.target] = true;
      if (c.weight_separator) schema.weighted = true;
    }
  if (labels == 0) list.fail("no column has role label");
  schema.num_labels = labels;
  if (dense != spec.features.num_dense)
    list.fail(str_cat(dense, " column(s) have role dense, but features.dense is ", spec.features.num_dense));
  schema.num_dense = dense;
  for (size_t f = 0; f < fed.size(); ++f)
    if (!fed[f])
      list.fail("no column (or side table column) feeds sparse feature '" + schema.sparse_features[f] +
                "' of features.sparse");
  return out;
}

}  // namespace recmod::config
