#pragma once
// The compact form of many similar tables: one table entry with
// `for_each_feature` stands for one table per feature, as TorchRec users
// write a Python loop over their features. It is expanded in the YAML tree
// before anything reads the tables, so the model, its state_dict keys and
// every error are those of the long form.
//
//   tables:
//     - for_each_feature: [C1, C2, C3]     # or `all`: every features.sparse name
//       name: t_{feature}                  # the default
//       embedding_dim: 16
//       num_embeddings: [1000, 50, 7]      # one per feature, or one for all
//       overrides: {C2: {pooling: mean}}   # any key, per feature
//
// expands to three tables t_C1, t_C2, t_C3 with feature_names [C1] ...
#include <string>
#include <vector>

#include "recmod/config/config_node.h"

namespace recmod::config {

/// Expands every `for_each_feature` entry of the `tables` list of every node
/// in `nodes` (in place). `sparse_features` are the config's feature names
/// (what `all` means). ConfigError at the template's keys.
void expand_table_templates(const ConfigNode& nodes, const std::vector<std::string>& sparse_features);

}  // namespace recmod::config
