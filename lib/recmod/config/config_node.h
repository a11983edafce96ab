#pragma once
// A YAML node that knows where it came from: its file, line and column, and
// its dotted key path in the config ("nodes.sparse_arch.tables[2]"). Every
// read goes through it, so every ConfigError can say
//   configs/dlrm.yaml:14:7: nodes.sparse_arch.tables[2].embedding_dim: expected an integer, found 'x'
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace recmod::config {

class ConfigNode {
 public:
  /// Parses a YAML file; syntax errors become ConfigErrors with positions,
  /// and so does a key that appears twice in one map (naming both places).
  static ConfigNode load_file(const std::string& path);
  /// Parses YAML text; `name` stands for the file name in messages.
  static ConfigNode load_string(const std::string& text, const std::string& name);

  /// This document with command-line overrides applied, each "KEY=VALUE"
  /// (`recmod train cfg.yaml --set training.batch_size=4096`): KEY a dotted
  /// path with [i] list indices ("nodes.top.layer_sizes[0]"), VALUE any YAML
  /// ("[512, 256]", "{type: adam, lr: 0.01}"; empty: null). A missing map key
  /// is added (maps on the way are created); a list index must exist. An
  /// error in an overridden value names the flag ("--set KEY=VALUE: KEY:
  /// expected ..."). The tree is changed in place.
  ConfigNode with_overrides(const std::vector<std::string>& overrides) const;

  /// "a.b[2].c", or "" for the document root.
  const std::string& path() const { return path_; }
  const std::string& file() const { return *file_; }
  /// 1-based; 0 when yaml-cpp has no position (e.g. an absent node).
  int line() const;
  int column() const;
  /// "file:line:col" of this node.
  std::string where() const;
  /// Throws ConfigError "file:line:col: path: what".
  [[noreturn]] void fail(const std::string& what) const;

  bool is_map() const { return node_.IsMap(); }
  bool is_list() const { return node_.IsSequence(); }
  bool is_scalar() const { return node_.IsScalar(); }
  bool is_null() const { return !node_.IsDefined() || node_.IsNull(); }
  /// "a map", "a list", "'text'" or "nothing": for "expected X, found Y".
  std::string describe() const;

  // --- maps ---
  bool has(const std::string& key) const;
  /// The required field `key`; a missing one is an error at this node.
  ConfigNode operator[](const std::string& key) const;
  std::optional<ConfigNode> find(const std::string& key) const;
  /// Keys in file order (this node must be a map).
  std::vector<std::string> keys() const;
  /// Errors on the first key not in `valid`, listing the valid ones.
  void allow_keys(const std::vector<std::string>& valid) const;
  /// Errors unless this node is a map.
  void expect_map() const;

  // --- lists ---
  size_t size() const;  // this node must be a list
  ConfigNode at(size_t i) const;
  std::vector<ConfigNode> items() const;

  // --- scalars (each errors with "expected <type>, found <what>") ---
  std::string as_string() const;
  int64_t as_int() const;
  double as_double() const;
  bool as_bool() const;
  std::vector<int64_t> as_int_list() const;
  std::vector<std::string> as_string_list() const;

  // --- shorthands for optional fields ---
  std::string get_string(const std::string& key, const std::string& fallback) const;
  int64_t get_int(const std::string& key, int64_t fallback) const;
  double get_double(const std::string& key, double fallback) const;
  bool get_bool(const std::string& key, bool fallback) const;

  /// Checks done by builders: `value > 0` etc., with the value in the message.
  int64_t positive_int(const std::string& key) const;
  int64_t positive_int(const std::string& key, int64_t fallback) const;
  /// Errors unless the value of this scalar is one of `choices`.
  std::string one_of(const std::vector<std::string>& choices) const;

  /// A name that becomes part of a state_dict key (a node, table or feature
  /// name): 1-64 characters from [A-Za-z0-9_-], not starting with '-'.
  /// Errors otherwise, saying which character (or byte) is not allowed.
  /// `what` names the kind ("a table name").
  std::string as_name(const char* what) const;
  /// Checks each key of this map as as_name does, at the key's position.
  void expect_name_keys(const char* what) const;
  /// "" when `name` is a valid name, else why not.
  static std::string why_not_a_name(const std::string& name);

  const YAML::Node& yaml() const { return node_; }
  /// This node as YAML text: no comments, and no aliases (nodes shared in
  /// the tree, as expanded table templates share their values, are written
  /// out each time).
  std::string emit() const;

 private:
  ConfigNode(YAML::Node node, std::shared_ptr<const std::string> file, std::string path, YAML::Mark mark);
  ConfigNode child(const YAML::Node& node, std::string path) const;
  void expect_list() const;
  void expect_scalar(const char* expected) const;
  std::string key_path(const std::string& key) const;
  /// A map key's text; a key that is a map or list is an error at the key.
  std::string key_text(const YAML::Node& key) const;

  /// Overridden key paths and the flag that set each ("--set a.b=1").
  using Overrides = std::vector<std::pair<std::string, std::string>>;

  YAML::Node node_;
  std::shared_ptr<const std::string> file_;
  std::string path_;
  YAML::Mark mark_;  // the node's own mark, or its parent's when absent
  std::shared_ptr<const Overrides> overrides_;
};

}  // namespace recmod::config
