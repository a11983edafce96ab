#pragma once
// The config's description of a delimited text file (`data.columns`,
// `data.side_tables`, `data.delimiter`, ...; docs/config.md "data"), read
// into a data::DelimitedSpec checked against the model's features.
#include <memory>
#include <string>
#include <vector>

#include "recmod/config/config_node.h"
#include "recmod/config/model_config.h"
#include "recmod/data/delimited.h"

namespace recmod::config {

/// The keys of `data:` that describe a delimited file (besides format,
/// train, eval).
const std::vector<std::string>& delimited_data_keys();

/// Reads `data_node`'s columns (ConfigErrors at the key: an unknown role or
/// feature, a feature no column feeds, a dense count that differs from
/// features.dense, a hashed column without a range, ...). Hashed ids take the
/// column's `range`, else the feature's `range`, else the num_embeddings of
/// the table that reads the feature.
/// `options`: whether (and from where) `ids: vocab` columns' files are read.
std::shared_ptr<const data::DelimitedSpec> parse_data_columns(const ConfigNode& data_node, const ModelSpec& spec,
                                                              const LoadOptions& options = {});

/// A `vocab: FILE` key (`at`): FILE resolved against the config file's
/// directory, or its copy in options.vocab_dir when one is there.
std::string resolve_vocab_path(const ConfigNode& at, const LoadOptions& options);
/// The vocabulary of `column` in `path` (the file of the `vocab:` key `at`;
/// `what` names it in messages: "column 'x'", "feature 'x'"), checked to fit
/// in `rows` table rows (0: unchecked) with `oov_buckets` OOV rows (else a
/// ConfigError at `at` saying how to fix it); null when the file does not
/// exist (recmod vocab has not written it yet) or options say not to read it.
std::shared_ptr<const data::ColumnVocab> load_vocab_of(const std::string& path, const std::string& column,
                                                       const std::string& what, const std::string& feature,
                                                       uint64_t rows,
                                                       int64_t oov_buckets, const ConfigNode& at,
                                                       const LoadOptions& options);

/// A hashed feature whose range is larger than a plain table that reads it
/// (EmbeddingBagCollection, EmbeddingCollection, FeatureProcessed...; not the
/// managed-collision ones, which remap their input) would look up rows past
/// the table's end: a ConfigError at the feature's range (or at the
/// features-level range it takes). `features_node` is the config's features:.
void check_feature_ranges(const ConfigNode& features_node, const ModelSpec& spec);

/// Per feature of features.sparse, the range string ids are hashed into: the
/// feature's `range`, else the num_embeddings of the table that reads it
/// (the smallest), else 0 (none).
std::vector<uint64_t> string_id_ranges(const ModelSpec& spec);
/// Per feature of spec.features.sparse: for an unhashed feature (hash: none)
/// read by plain tables (EBC, EC, FP-EBC), the smallest num_embeddings among
/// them: integer ids must be in [0, that) (JSON lines check it per record,
/// with the line); 0: no limit (hashed features, managed-collision tables).
std::vector<int64_t> unhashed_id_limits(const ModelSpec& spec);

}  // namespace recmod::config
