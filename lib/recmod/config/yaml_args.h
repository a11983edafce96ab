#pragma once
// Module arguments from a model config's YAML node: every error carries the
// key's file:line:col and key path (ConfigError).
#include "recmod/common/args.h"
#include "recmod/config/config_node.h"

namespace recmod::config {

class YamlArgs : public ModuleArgs {
 public:
  explicit YamlArgs(ConfigNode node) : node_(std::move(node)) {}

  bool has(const std::string& key) const override { return node_.has(key); }
  int64_t get_int(const std::string& key) const override { return node_[key].as_int(); }
  double get_double(const std::string& key) const override { return node_[key].as_double(); }
  bool get_bool(const std::string& key) const override { return node_[key].as_bool(); }
  std::string get_string(const std::string& key) const override { return node_[key].as_string(); }
  std::vector<int64_t> get_int_list(const std::string& key) const override { return node_[key].as_int_list(); }
  std::string get_name(const std::string& key, const char* what) const override { return node_[key].as_name(what); }
  std::vector<std::string> get_name_list(const std::string& key, const char* what) const override;
  [[noreturn]] void fail(const std::string& key, const std::string& what) const override { node_[key].fail(what); }
  [[noreturn]] void fail(const std::string& key, size_t index, const std::string& what) const override {
    node_[key].at(index).fail(what);
  }

  using ModuleArgs::get_bool;
  using ModuleArgs::get_double;
  using ModuleArgs::get_int;
  using ModuleArgs::get_string;

 private:
  ConfigNode node_;
};

}  // namespace recmod::config
