#include "recmod/config/table_templates.h"

#include <algorithm>
#include <set>

#include "recmod/common/errors.h"

namespace recmod::config {

namespace {

const std::string kPlaceholder = "{feature}";

std::vector<std::string> template_features(const ConfigNode& entry, const std::vector<std::string>& sparse_features) {
  ConfigNode list = entry["for_each_feature"];
  if (list.is_scalar()) {
    if (list.as_string() != "all") list.fail("expected a list of feature names or 'all', found " + list.describe());
    if (sparse_features.empty()) list.fail("'all' needs features.sparse, and the config has no sparse features");
    return sparse_features;
  }
  if (!list.is_list() || list.size() == 0) list.fail("expected a non-empty list of feature names or 'all', found " + list.describe());
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& f : list.items()) {
    out.push_back(f.as_name("a feature name"));
    if (!seen.insert(out.back()).second) f.fail("feature '" + out.back() + "' is listed twice");
  }
  return out;
}

// The value of `key` for feature i: a list holds one value per feature,
// anything else is the same for all. The template's own node, not a copy:
// yaml-cpp's copies have no positions, and errors must point at the file.
YAML::Node value_for(const ConfigNode& entry, const std::string& key, size_t i, size_t num_features) {
  ConfigNode value = entry[key];
  const bool per_feature = (key == "num_embeddings" || key == "embedding_dim") && value.is_list();
  if (!per_feature) return value.yaml();
  if (value.size() != num_features)
    value.fail(str_cat("expected one value per feature of for_each_feature (", num_features, "), found ", value.size()));
  return value.at(i).yaml();
}

void expand_entry(const ConfigNode& entry, const std::vector<std::string>& sparse_features,
                  std::vector<YAML::Node>& out) {
  const auto features = template_features(entry, sparse_features);
  if (entry.has("feature_names"))
    entry["feature_names"].fail("a table with for_each_feature reads its one feature; drop feature_names");
  const std::string name = entry.has("name") ? entry["name"].as_string() : "t_" + kPlaceholder;
  if (name.find(kPlaceholder) == std::string::npos)
    entry["name"].fail(str_cat("expected a name with ", kPlaceholder, " in it (e.g. t_", kPlaceholder,
                               "), so that each feature's table has its own name; found '", name, "'"));
  std::optional<ConfigNode> overrides = entry.find("overrides");
  if (overrides) {
    overrides->expect_map();
    for (const auto& f : overrides->keys())
      if (std::find(features.begin(), features.end(), f) == features.end())
        (*overrides)[f].fail(str_cat("feature '", f, "' is not in for_each_feature ", join_names(features)));
  }
  for (size_t i = 0; i < features.size(); ++i) {
    YAML::Node table(YAML::NodeType::Map);
    std::string table_name = name;
    table_name.replace(table_name.find(kPlaceholder), kPlaceholder.size(), features[i]);
    if (auto why = ConfigNode::why_not_a_name(table_name); !why.empty())
      (entry.has("name") ? entry["name"] : entry["for_each_feature"])
          .fail(str_cat("the table name '", table_name, "' for feature '", features[i], "' is not a valid name: ", why));
    table["name"] = table_name;
    for (const auto& key : entry.keys()) {
      if (key == "for_each_feature" || key == "overrides" || key == "name") continue;
      table[key] = value_for(entry, key, i, features.size());
    }
    YAML::Node names(YAML::NodeType::Sequence);
    names.push_back(features[i]);
    table["feature_names"] = names;
    if (overrides && overrides->has(features[i])) {
      ConfigNode per = (*overrides)[features[i]];
      per.expect_map();
      for (const auto& key : per.keys()) {
        if (key == "name" || key == "feature_names" || key == "for_each_feature")
          per[key].fail("the table's name and feature come from for_each_feature; '" + key + "' cannot be overridden");
        table[key] = per[key].yaml();
      }
    }
    out.push_back(table);
  }
}

}  // namespace

void expand_table_templates(const ConfigNode& nodes, const std::vector<std::string>& sparse_features) {
  if (!nodes.is_map()) return;  // the caller reports a config without nodes
  for (const auto& node_name : nodes.keys()) {
    ConfigNode node = nodes[node_name];
    if (!node.is_map() || !node.has("tables")) continue;
    ConfigNode tables = node["tables"];
    if (!tables.is_list()) continue;  // the node's builder says what it expected
    bool any = false;
    for (const auto& t : tables.items()) any = any || (t.is_map() && t.has("for_each_feature"));
    if (!any) continue;
    std::vector<YAML::Node> expanded;
    for (const auto& t : tables.items()) {
      if (t.is_map() && t.has("for_each_feature")) {
        expand_entry(t, sparse_features, expanded);
      } else {
        expanded.push_back(t.yaml());
      }
    }
    YAML::Node list(YAML::NodeType::Sequence);
    for (auto& t : expanded) list.push_back(t);
    YAML::Node writable = node.yaml();  // a handle on the same tree
    writable["tables"] = list;
  }
}

}  // namespace recmod::config
